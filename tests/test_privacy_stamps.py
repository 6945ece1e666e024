"""The privacy stamps (phiwatch/privacy/explain.py): each case, the pipeline and replay wiring,
the blob source against Azurite, and that no raw roster value leaves its input."""

from __future__ import annotations

import gzip
import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import ContainerClient
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from phiwatch.batch import Batch
from phiwatch.commands.app import app
from phiwatch.config import Settings
from phiwatch.envelope import Body
from phiwatch.eventhubs.message import EventHubMessage
from phiwatch.hosts.functions import EventHubBatchProcessor
from phiwatch.logs import configure_logging
from phiwatch.model import AccessEvent
from phiwatch.privacy.blobs import BlobDirectorySource
from phiwatch.privacy.csvrows import byte_lines
from phiwatch.privacy.directory import Member, PatientFacts
from phiwatch.privacy.explain import STAMPS, Explainer, employment_status, stamp
from phiwatch.privacy.files import FileDirectorySource
from phiwatch.privacy.inputs import log_inputs
from phiwatch.pseudonym import Pseudonymizer
from phiwatch.wiring import ConfigurationError, build_pipeline, directory_source
from tests.azurite import Azurite
from tests.records import EHR_APP_ID, FHIR_ID, T0, fhir, fhir_on_behalf, keyvault

ANN = "11111111-aaaa-4bbb-8ccc-000000000001"
BOB = "22222222-aaaa-4bbb-8ccc-000000000002"
CAROL = "33333333-aaaa-4bbb-8ccc-000000000003"
APP = "99999999-aaaa-4bbb-8ccc-000000000009"
REF = "pr_" + "ab" * 16
OTHER_REF = "pr_" + "cd" * 16
AT = T0.timestamp()
DAY = 86400.0


# ------------------------------------------------------------------ a directory by hand


@dataclass
class Stub:
    """A `Directory` from dicts; None for an input that is not loaded."""

    members: dict[str, Member] | None = None
    patients: dict[str, PatientFacts] | None = None
    version: str = "stub"

    @property
    def has_roster(self) -> bool:
        return self.members is not None

    @property
    def has_patients(self) -> bool:
        return self.patients is not None

    def member(self, object_id: str) -> Member | None:
        return (self.members or {}).get(object_id.lower())

    def patient(self, patient_ref: str) -> PatientFacts | None:
        return (self.patients or {}).get(patient_ref)


def member(**kw: Any) -> Member:
    fields: dict[str, Any] = dict(
        object_id=ANN,
        employee=1,
        surname=10,
        address=100,
        street=1000,
        status="active",
        terminated_at=None,
    )
    return Member(**(fields | kw))


def facts(**kw: Any) -> PatientFacts:
    fields: dict[str, Any] = dict(
        employee=None,
        surname=None,
        surname_rare=False,
        address=None,
        street=None,
        restricted=False,
        care_team=frozenset(),
    )
    return PatientFacts(**(fields | kw))


def event(
    *,
    actor: str | None = ANN,
    patient: str | None = REF,
    app: str | None = None,
    at: datetime = T0,
) -> AccessEvent:
    return AccessEvent(
        time_generated=at,
        event_uid="uid-1",
        event_type="Read",
        event_result="Success",
        event_product="Azure Health Data Services",
        operation="read",
        actor_user_id=actor,
        acting_app_id=app,
        patient_ref=patient,
        phi_category="clinical" if patient else "none",
        source_category="AuditLogs",
        raw_record_ref="raw/x#0",
    )


def stamps(e: AccessEvent) -> dict[str, Any]:
    return {name: getattr(e, name) for name in STAMPS}


def directory(patient: PatientFacts | None = None, actor: Member | None = None) -> Stub:
    return Stub(
        members={ANN: actor or member()},
        patients={REF: patient if patient is not None else facts()},
    )


NOTHING = dict.fromkeys(STAMPS)


# ------------------------------------------------------------------ explanations


def test_a_care_team_access_is_explained_and_raises_no_relationship() -> None:
    # Ann's own chart (her employee id), but she is on its care team.
    own = facts(employee=1, surname=10, address=100, restricted=True, care_team={ANN})
    assert stamps(stamp(event(), directory(own))) == {
        "access_explanation": "care-team",
        "patient_relation": None,
        "patient_relation_basis": None,
        "patient_restricted": True,
        "actor_employment_status": "active",
    }


def test_an_allowed_application_explains_its_access() -> None:
    family = facts(surname=10, address=100)
    stamped = stamp(event(app=APP.upper()), directory(family), frozenset({APP}))
    assert stamped.access_explanation == "allowed-application"
    assert stamped.patient_relation is None and stamped.patient_restricted is False
    # Another application explains nothing: the relationship stands.
    other = stamp(event(app=EHR_APP_ID), directory(family), frozenset({APP}))
    assert (other.access_explanation, other.patient_relation) == ("unexplained", "family")


def test_the_care_team_is_named_before_an_allowed_application() -> None:
    cared = facts(care_team={ANN})
    assert stamp(event(app=APP), directory(cared), frozenset({APP})).access_explanation == (
        "care-team"
    )


def test_an_access_nothing_explains_is_unexplained_with_its_relationship() -> None:
    neighbour = facts(surname=20, address=200, street=1000)
    assert stamps(stamp(event(), directory(neighbour))) == {
        "access_explanation": "unexplained",
        "patient_relation": "neighbour",
        "patient_relation_basis": "street-and-postcode",
        "patient_restricted": False,
        "actor_employment_status": "active",
    }
    stranger = stamp(event(), directory(facts(street=2000)))
    assert (stranger.access_explanation, stranger.patient_relation) == ("unexplained", None)


def test_a_patient_the_loaded_index_lacks_is_unexplained_unless_the_app_is_allowed() -> None:
    found = directory()
    unknown = stamp(event(patient=OTHER_REF), found, frozenset({APP}))
    assert stamps(unknown) == NOTHING | {
        "access_explanation": "unexplained",
        "actor_employment_status": "active",
    }
    allowed = stamp(event(patient=OTHER_REF, app=APP), found, frozenset({APP}))
    assert allowed.access_explanation == "allowed-application"
    assert allowed.patient_restricted is None


def test_without_a_patient_index_only_an_allowed_application_explains() -> None:
    roster_only = Stub(members={ANN: member()})
    assert stamps(stamp(event(), roster_only)) == NOTHING | {"actor_employment_status": "active"}
    assert stamp(event(app=APP), roster_only, frozenset({APP})).access_explanation == (
        "allowed-application"
    )
    # No inputs at all, only the allow-list.
    assert stamps(stamp(event(app=APP), None, frozenset({APP}))) == NOTHING | {
        "access_explanation": "allowed-application"
    }
    plain = event()
    assert stamp(plain, None) is plain


def test_without_a_roster_the_explanation_and_restriction_still_hold() -> None:
    patients_only = Stub(patients={REF: facts(restricted=True, surname=10)})
    assert stamps(stamp(event(), patients_only)) == NOTHING | {
        "access_explanation": "unexplained",
        "patient_restricted": True,
    }


# ------------------------------------------------------------------ relationships


@pytest.mark.parametrize(
    ("patient", "expected"),
    [
        # One's own chart shares one's surname and address: self first.
        (facts(employee=1, surname=10, address=100, street=1000), ("self", "employee-id")),
        (facts(surname=10, address=100, street=1000), ("family", "surname-and-address")),
        (facts(surname=10, surname_rare=True, address=999), ("family", "rare-surname")),
        # A common surname elsewhere: the look-alike raises nothing.
        (facts(surname=10, address=999, street=9999), (None, None)),
        # A colleague living on one's street: coworker before neighbour.
        (facts(employee=7, street=1000, address=300), ("coworker", "patient-is-employee")),
        (facts(surname=20, address=300, street=1000), ("neighbour", "street-and-postcode")),
        # The same household under another surname: not a neighbour of oneself.
        (facts(surname=20, address=100, street=1000), (None, None)),
    ],
)
def test_relationships_in_precedence(patient: PatientFacts, expected: tuple) -> None:
    stamped = stamp(event(), directory(patient))
    assert (stamped.patient_relation, stamped.patient_relation_basis) == expected
    assert stamped.access_explanation == "unexplained"


@pytest.mark.parametrize("how", ["care-team", "allowed-application"])
def test_an_explained_access_gets_no_relationship(how: str) -> None:
    own = facts(employee=1, surname=10, address=100, care_team={ANN} if how == "care-team" else ())
    app = APP if how == "allowed-application" else None
    stamped = stamp(event(app=app), directory(own), frozenset({APP}))
    assert stamped.access_explanation == how
    assert (stamped.patient_relation, stamped.patient_relation_basis) == (None, None)


# ------------------------------------------------------------------ employment


def test_termination_is_judged_at_the_event_time() -> None:
    # Marked terminated ahead of a date next week: active until then.
    leaver = member(status="terminated", terminated_at=AT + 7 * DAY)
    found = directory(actor=leaver)
    assert stamp(event(), found).actor_employment_status == "active"
    later = T0 + timedelta(days=7)
    assert stamp(event(at=later), found).actor_employment_status == "terminated"
    assert stamp(event(at=later - timedelta(seconds=1)), found).actor_employment_status == (
        "active"
    )
    # Still marked active in HR, but past the date: terminated.
    past = member(status="active", terminated_at=AT - DAY)
    assert stamp(event(), directory(actor=past)).actor_employment_status == "terminated"


def test_terminated_without_a_date_and_leave() -> None:
    assert employment_status(member(status="terminated"), AT) == "terminated"
    assert employment_status(member(status="terminated"), 0.0) == "terminated"
    assert employment_status(member(status="leave"), AT) == "leave"
    assert employment_status(member(status="leave", terminated_at=AT - 1), AT) == "terminated"
    assert employment_status(member(status="leave", terminated_at=AT + 1), AT) == "leave"


def test_every_roster_actor_is_stamped_patient_or_not() -> None:
    found = directory(actor=member(status="terminated"))
    no_patient = stamp(event(patient=None, actor=ANN.upper()), found)
    assert stamps(no_patient) == NOTHING | {"actor_employment_status": "terminated"}
    stranger = event(actor=BOB, patient=None)
    assert stamp(stranger, found) is stranger
    nobody = event(actor=None, patient=None)
    assert stamp(nobody, found) is nobody


def test_a_patient_access_without_an_actor_is_unexplained_and_has_no_relationship() -> None:
    stamped = stamp(event(actor=None), directory(facts(care_team={ANN}, surname=10)))
    assert stamps(stamped) == NOTHING | {
        "access_explanation": "unexplained",
        "patient_restricted": False,
    }


def test_a_serialised_event_is_stamped_in_its_bytes_too() -> None:
    plain = event()
    plain.to_json()  # cached
    stamped = stamp(plain, directory())
    assert json.loads(stamped.to_json())["AccessExplanation"] == "unexplained"
    assert json.loads(plain.to_json())["AccessExplanation"] is None


# ------------------------------------------------------------------ property


_OIDS = st.sampled_from([ANN, BOB, CAROL, ANN.upper()])
_TAGS = st.one_of(st.none(), st.integers(1, 4))
_MEMBERS = st.builds(
    Member,
    object_id=st.sampled_from([ANN, BOB, CAROL]),
    employee=_TAGS,
    surname=_TAGS,
    address=_TAGS,
    street=_TAGS,
    status=st.sampled_from(["active", "leave", "terminated"]),
    terminated_at=st.one_of(st.none(), st.floats(AT - 3 * DAY, AT + 3 * DAY)),
)
_FACTS = st.builds(
    PatientFacts,
    employee=_TAGS,
    surname=_TAGS,
    surname_rare=st.booleans(),
    address=_TAGS,
    street=_TAGS,
    restricted=st.booleans(),
    care_team=st.frozensets(st.sampled_from([ANN, BOB, CAROL])),
)
_ROSTERS = st.lists(_MEMBERS).map(lambda ms: {m.object_id: m for m in ms})
_DIRECTORIES = st.one_of(
    st.none(),
    st.builds(
        Stub,
        members=st.one_of(
            st.none(), st.lists(_MEMBERS).map(lambda ms: {m.object_id: m for m in ms})
        ),
        patients=st.one_of(st.none(), st.dictionaries(st.sampled_from([REF, OTHER_REF]), _FACTS)),
    ),
)
_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
_EVENTS = st.builds(
    event,
    actor=st.one_of(st.none(), _OIDS, _TEXT),
    patient=st.one_of(st.none(), st.sampled_from([REF, OTHER_REF]), _TEXT),
    app=st.one_of(st.none(), st.sampled_from([APP, APP.upper(), EHR_APP_ID]), _TEXT),
    at=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
)


@given(_EVENTS, _DIRECTORIES, st.frozensets(st.sampled_from([APP, EHR_APP_ID])))
def test_stamping_never_raises_and_changes_only_the_stamps(
    original: AccessEvent, found: Stub | None, allowed: frozenset[str]
) -> None:
    stamped = Explainer(found, allowed).stamp(original)
    before, after = original.model_dump(), stamped.model_dump()
    for name in STAMPS:
        before.pop(name)
        after.pop(name)
    assert before == after
    # Still a valid event, in its bytes as in its fields.
    assert AccessEvent.model_validate_json(stamped.to_json()) == stamped
    if stamped.patient_relation is not None:
        assert stamped.access_explanation == "unexplained" and stamped.patient_relation_basis
    if stamped.access_explanation == "care-team":
        assert original.actor_user_id is not None
    if original.patient_ref is None:
        assert stamped.access_explanation is None and stamped.patient_restricted is None


# ------------------------------------------------------------------ in the pipeline


@dataclass
class CountingSource:
    """A `DirectorySource` whose directory can change between calls."""

    found: Stub | None
    calls: int = 0
    log: list[str] = field(default_factory=list)

    def current(self) -> Stub | None:
        self.calls += 1
        return self.found


def _batch(records: list[dict], name: str = "b1") -> Batch:
    body = json.dumps({"records": records}).encode()
    return Batch(name, 0, 0, [Body(body, "t", "0")])


def test_the_pipeline_stamps_with_the_directory_in_force_when_the_batch_starts(
    tmp_path: Path, pseudonymizer: Pseudonymizer
) -> None:
    ref = pseudonymizer.patient_ref(FHIR_ID.lower(), "p1")
    source = CountingSource(Stub(members={ANN: member()}, patients={ref: facts(surname=10)}))
    pipeline = build_pipeline(Settings(), tmp_path / "archive")
    pipeline.directory = source
    records = [fhir(i, path="Patient/p1", oid=ANN) for i in range(3)]
    result = pipeline.process(_batch(records))
    assert source.calls == 1  # once a batch, not once a record
    assert {e.access_explanation for e in result.events} == {"unexplained"}
    assert {e.patient_relation for e in result.events} == {None}  # a common surname
    archived = [
        json.loads(line)
        for path in (tmp_path / "archive" / "events").rglob("*.jsonl.gz")
        for line in gzip.decompress(path.read_bytes()).splitlines()
    ]
    assert [e["AccessExplanation"] for e in archived] == ["unexplained"] * 3
    assert {e["ActorEmploymentStatus"] for e in archived} == {"active"}
    source.found = None  # the inputs gone: the next batch is not stamped
    later = pipeline.process(_batch([fhir(9, path="Patient/p1", oid=ANN)], "b2"))
    assert stamps(later.events[0]) == NOTHING


# ------------------------------------------------------------------ replay, end to end

POSTCODE = "ZX9 9QW"
ROSTER = (
    "ObjectId,UserPrincipalName,EmployeeId,Surname,Address,Postcode,Department,Status,"
    "TerminationDate\n"
    f"{ANN},ann.rostered@contoso-health.org,QX77123,Zebrowski,12 North Main Street,{POSTCODE},"
    "Oncology,active,\n"
    f"{BOB},bob.rostered@contoso-health.org,QX77124,Pettigrew-Lund,3 Quarry Lane,AB1 2CD,"
    "Radiology,terminated,2026-11-01\n"
    f"{CAROL},carol.rostered@contoso-health.org,QX77125,Abernathy,9 Orchard Way,EF3 4GH,"
    "Oncology,active,\n"
)
PATIENTS = (
    "FhirService,PatientId,Mrn,Surname,Address,Postcode,EmployeeId,Restricted,CareTeamObjectIds\n"
    f"{FHIR_ID},p-family,MRN55501,Zebrowski,12 N. Main St,{POSTCODE},,yes,{CAROL}\n"
    f"{FHIR_ID},p-neighbour,MRN55502,Quennell,40 North Main Street,{POSTCODE},,no,\n"
    f"{FHIR_ID},p-self,MRN55503,Zebrowski,12 North Main Street,{POSTCODE},QX77123,no,\n"
    f"{FHIR_ID},p-cared,MRN55504,Featherstonehaugh,1 Distant Road,IJ5 6KL,,no,{ANN}\n"
)
# Every raw roster and index value that must stay in its input.
RAW_VALUES = (
    "zebrowski",
    "pettigrew",
    "abernathy",
    "quennell",
    "featherstonehaugh",
    "north main",
    "main st",
    "quarry",
    "orchard",
    "distant road",
    "zx9",
    "ab1 2cd",
    "mrn555",
    "qx77123",
    "qx77124",
    "qx77125",
    "rostered",
    "oncology",
    "radiology",
)


def _inputs(folder: Path, roster: str = ROSTER, patients: str = PATIENTS) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "roster.csv").write_text(roster)
    (folder / "patients.csv").write_text(patients)
    return folder / "roster.csv", folder / "patients.csv"


def _logs_file(folder: Path) -> Path:
    records = [
        fhir(0, path="Patient/p-family", oid=ANN),
        fhir(1, path="Patient/p-family", oid=CAROL, upn="carol.nurse@contoso-health.org"),
        fhir(2, path="Patient/p-neighbour", oid=ANN),
        fhir(3, path="Patient/p-self/Observation", oid=ANN),
        fhir(4, path="Patient/p-cared", oid=ANN),
        fhir(5, path="Patient/p-cared", oid=BOB, upn="bob.nurse@contoso-health.org"),
        fhir(6, path="Patient/p-unknown", oid=ANN),
        fhir_on_behalf(7, path="Patient/p-family"),
        keyvault(8, oid=ANN),
    ]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "logs.jsonl"
    path.write_text(json.dumps({"records": records}) + "\n")
    return path


def _every_output(folder: Path) -> list[tuple[Path, bytes]]:
    found = []
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found.append((path, gzip.decompress(data) if path.suffix == ".gz" else data))
    return found


@pytest.fixture
def log_stream(monkeypatch: pytest.MonkeyPatch):
    stream = io.StringIO()
    configure_logging("DEBUG", stream=stream)
    monkeypatch.setenv("PHIWATCH_LOG_LEVEL", "DEBUG")  # the CLI's own level
    yield stream
    configure_logging("WARNING", stream=io.StringIO())


def test_replay_stamps_archived_events_and_no_raw_value_leaves_the_inputs(
    tmp_path: Path, pseudonymizer: Pseudonymizer, log_stream: io.StringIO
) -> None:
    roster, patients = _inputs(tmp_path / "inputs")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "replay",
            str(_logs_file(tmp_path / "logs")),
            "--out",
            str(out),
            "--roster",
            str(roster),
            "--patients",
            str(patients),
            "--allow-application",
            EHR_APP_ID.upper(),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output

    def ref(patient: str) -> str:
        return pseudonymizer.patient_ref(FHIR_ID.lower(), patient)

    archived = [
        json.loads(line)
        for path, data in _every_output(out / "archive" / "events")
        for line in data.splitlines()
    ]
    by_access = {(e["ActorUserId"], e["PatientRef"]): e for e in archived}
    assert len(by_access) == len(archived) == 9

    def stamped(actor: str | None, patient: str | None) -> tuple:
        e = by_access[(actor, ref(patient) if patient else None)]
        return (
            e["AccessExplanation"],
            e["PatientRelation"],
            e["PatientRelationBasis"],
            e["PatientRestricted"],
            e["ActorEmploymentStatus"],
        )

    assert stamped(ANN, "p-family") == (
        "unexplained",
        "family",
        "surname-and-address",
        True,
        "active",
    )
    assert stamped(CAROL, "p-family") == ("care-team", None, None, True, "active")
    assert stamped(ANN, "p-neighbour") == (
        "unexplained",
        "neighbour",
        "street-and-postcode",
        False,
        "active",
    )
    assert stamped(ANN, "p-self") == ("unexplained", "self", "employee-id", False, "active")
    assert stamped(ANN, "p-cared") == ("care-team", None, None, False, "active")
    # Bob left on 1 November; the access is on the 2nd.
    assert stamped(BOB, "p-cared") == ("unexplained", None, None, False, "terminated")
    assert stamped(ANN, "p-unknown") == ("unexplained", None, None, None, "active")
    # The EHR's own token (not a trusted audit app here), allow-listed on the command line.
    ehr = next(e for e in archived if e["ActingAppId"] == EHR_APP_ID)
    assert (ehr["AccessExplanation"], ehr["PatientRelation"]) == ("allowed-application", None)
    assert stamped(ANN, None) == (None, None, None, None, "active")  # Key Vault: no patient
    # The local files hold the same stamps as the archive.
    local = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert sorted(map(json.dumps, local)) == sorted(map(json.dumps, archived))

    lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    (start,) = [line for line in lines if line["event"] == "privacy inputs"]
    assert start["loaded"] == {
        "roster": {"rows": 3, "loaded": 3, "refused": 0},
        "patients": {"rows": 4, "loaded": 4, "refused": 0},
    }
    assert (start["missing"], start["off"], start["allow_applications"]) == ([], [], 1)
    texts = [("log", log_stream.getvalue().encode()), ("stdout", result.output.encode())]
    for where, data in [*_every_output(out), *texts]:
        lowered = data.decode("utf-8", "replace").lower()
        leaked = [value for value in RAW_VALUES if value in lowered]
        assert not leaked, f"{where} holds {leaked}"


def test_replay_fails_when_a_named_privacy_file_is_refused(tmp_path: Path) -> None:
    roster, _ = _inputs(tmp_path / "inputs", roster="Surname\nZebrowski\n")
    out = tmp_path / "out"
    args = ["replay", str(_logs_file(tmp_path / "logs")), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--roster", str(roster), "--quiet"])
    assert result.exit_code == 1
    assert "the roster file was not loaded" in result.output
    assert "zebrowski" not in result.output.lower()


def test_replay_refuses_an_allowed_application_that_is_no_app_id(tmp_path: Path) -> None:
    args = ["replay", str(_logs_file(tmp_path / "logs")), "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(app, [*args, "--allow-application", "not-an-id", "--quiet"])
    assert result.exit_code != 0
    assert "PHIWATCH_PRIVACY_ALLOW_APPLICATIONS" in result.output


def test_the_start_up_line_names_what_is_off(
    tmp_path: Path, pseudonymizer: Pseudonymizer, log_stream: io.StringIO
) -> None:
    roster, _ = _inputs(tmp_path)
    source = FileDirectorySource(pseudonymizer, roster=roster)
    source.current()
    log_inputs(source, frozenset())
    log_inputs(None, frozenset({APP}))
    lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    with_roster, without = [line for line in lines if line["event"] == "privacy inputs"]
    assert with_roster["configured"] == ["roster"] and with_roster["missing"] == ["patients"]
    assert "vip-record-access" in with_roster["off"]
    assert "terminated-user-access" not in with_roster["off"]
    assert without["missing"] == ["roster", "patients"]
    assert "terminated-user-access" in without["off"]
    assert "zebrowski" not in log_stream.getvalue().lower()


# ------------------------------------------------------------------ settings


def test_allowed_applications_are_comma_separated_app_ids(monkeypatch) -> None:
    monkeypatch.setenv("PHIWATCH_PRIVACY_ALLOW_APPLICATIONS", f" {APP.upper()},{EHR_APP_ID},,")
    assert Settings().privacy_allow_applications == [APP, EHR_APP_ID]
    monkeypatch.setenv("PHIWATCH_PRIVACY_ALLOW_APPLICATIONS", f"{APP},ehr")
    with pytest.raises(ValueError, match="PHIWATCH_PRIVACY_ALLOW_APPLICATIONS"):
        Settings()


def test_a_privacy_url_that_is_no_blob_url_is_a_configuration_error(pseudonymizer) -> None:
    with pytest.raises(ConfigurationError, match="PHIWATCH_ROSTER_URL"):
        directory_source(Settings(roster_url="<optional: a blob URL>"), pseudonymizer)
    assert directory_source(Settings(), pseudonymizer) is None


# ------------------------------------------------------------------ blobs


@given(
    st.lists(st.text(alphabet='aé,"x€\r', max_size=12).map(lambda s: s + "\n"), max_size=8),
    st.text(alphabet="aé€", max_size=5),
    st.lists(st.integers(1, 7), min_size=1, max_size=6),
)
def test_chunks_split_into_the_lines_a_file_yields(
    lines: list[str], tail: str, sizes: list[int]
) -> None:
    data = ("".join(lines) + tail).encode()
    chunks, start, i = [], 0, 0
    while start < len(data):
        size = sizes[i % len(sizes)]
        chunks.append(data[start : start + size])
        start += size
        i += 1
    assert list(byte_lines(chunks)) == list(io.BytesIO(data))


def test_the_blob_source_loads_and_reloads_a_new_version(
    azurite: Azurite, blob_container: ContainerClient, pseudonymizer: Pseudonymizer
) -> None:
    blob_container.upload_blob("hr/roster.csv", ROSTER.encode())
    blob_container.upload_blob("patients.csv", PATIENTS.encode())
    settings = Settings(
        roster_url=f"{blob_container.url}/hr/roster.csv",
        patients_url=f"{blob_container.url}/patients.csv",
        privacy_connection_string=azurite.connection_string,
        privacy_check_seconds=0.001,
    )
    source = directory_source(settings, pseudonymizer)
    assert isinstance(source, BlobDirectorySource)
    first = source.current()
    assert first is not None and first.has_roster and first.has_patients
    assert source.loads == 2
    ann = first.member(ANN)
    assert ann is not None and ann.status == "active"
    assert source.current() is first and source.loads == 2  # the same ETags: no download

    blob_container.upload_blob(
        "hr/roster.csv", ROSTER.replace("Oncology,active", "Oncology,leave"), overwrite=True
    )
    second = source.current()
    assert second is not None and second is not first and source.loads == 3
    assert second.member(ANN).status == "leave"
    assert second.version != first.version and second.patients is first.patients

    # Refused whole: the previous roster stays, and is not downloaded again until it changes.
    blob_container.upload_blob("hr/roster.csv", b"Surname\nZebrowski\n", overwrite=True)
    assert source.current() is second
    assert source.current() is second and source.loads == 3
    # Gone: kept.
    blob_container.delete_blob("hr/roster.csv")
    assert source.current() is second
    blob_container.upload_blob("hr/roster.csv", ROSTER.encode())
    assert source.current().member(ANN).status == "active"


def test_the_blob_source_checks_at_most_every_interval(
    azurite: Azurite, blob_container: ContainerClient, pseudonymizer: Pseudonymizer
) -> None:
    blob_container.upload_blob("roster.csv", ROSTER.encode())
    now = [0.0]
    source = BlobDirectorySource.from_urls(
        pseudonymizer,
        roster_url=f"{blob_container.url}/roster.csv",
        patients_url=None,
        connection_string=azurite.connection_string,
        check_seconds=300,
        clock=lambda: now[0],
    )
    first = source.current()
    assert first is not None and not first.has_patients
    blob_container.upload_blob("roster.csv", ROSTER.replace("active", "leave"), overwrite=True)
    now[0] = 299.0
    assert source.current() is first
    now[0] = 300.0
    assert source.current() is not first


def test_an_unreachable_blob_leaves_the_source_empty_and_never_raises(
    blob_container: ContainerClient, pseudonymizer: Pseudonymizer
) -> None:
    # A blob that does not exist yet (the first deployment before the HR export lands).
    source = BlobDirectorySource(
        pseudonymizer, roster=blob_container.get_blob_client("missing.csv"), check_seconds=0
    )
    assert source.current() is None
    blob_container.upload_blob("missing.csv", ROSTER.encode())
    assert source.current() is not None


def test_the_functions_host_stamps_from_the_blob_settings(
    azurite: Azurite, blob_container: ContainerClient, pseudonymizer: Pseudonymizer, tmp_path: Path
) -> None:
    blob_container.upload_blob("roster.csv", ROSTER.encode())
    blob_container.upload_blob("patients.csv", PATIENTS.encode())
    settings = Settings(
        archive_dir=tmp_path / "archive",
        roster_url=f"{blob_container.url}/roster.csv",
        patients_url=f"{blob_container.url}/patients.csv",
        privacy_connection_string=azurite.connection_string,
        privacy_allow_applications=[EHR_APP_ID],
    )
    processor = EventHubBatchProcessor(settings, sinks=[])
    records = [fhir(0, path="Patient/p-neighbour", oid=ANN), fhir_on_behalf(1, path="Patient/p1")]
    body = json.dumps({"records": records}).encode()
    message = EventHubMessage(body=body, sequence_number=1, enqueued_time=T0, partition_id="0")
    result = processor.process("diagnostics", [message])
    by_actor = {e.actor_user_id: e for e in result.events}
    neighbour = by_actor[ANN]
    assert (neighbour.access_explanation, neighbour.patient_relation) == (
        "unexplained",
        "neighbour",
    )
    assert neighbour.actor_employment_status == "active"
    ehr = next(e for e in result.events if e.acting_app_id == EHR_APP_ID)
    assert ehr.access_explanation == "allowed-application"
