"""`phiwatch roster sync-patients`: the patient index built from a FHIR service's Patient
resources (phiwatch/privacy/fhir_sync.py), against the FHIR stand-in (tests/fhir_standin.py)."""

from __future__ import annotations

import csv
import io
import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError
from azure.core.pipeline.transport import RequestsTransport
from typer.testing import CliRunner

from phiwatch.commands import roster as roster_command
from phiwatch.commands.app import app
from phiwatch.logs import configure_logging
from phiwatch.privacy.fhir_sync import (
    ELEMENTS,
    HEADER,
    MAX_ATTEMPTS,
    MAX_WAIT_SECONDS,
    FhirAccessDenied,
    FhirSyncError,
    SyncReport,
    patient_row,
    sync_patients,
)
from phiwatch.privacy.patients import load_patients
from phiwatch.pseudonym import Pseudonymizer
from phiwatch.sources.fhir import namespace_of
from tests.fhir_standin import FhirStandIn
from tests.https_standin import StaticToken

SERVICE = (
    "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg-phi/providers/"
    "Microsoft.HealthcareApis/workspaces/ws1/fhirservices/fhir1"
)
V2 = "http://terminology.hl7.org/CodeSystem/v2-0203"
CONF = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
TOKEN = "t0ken-for-tests"


def _type(code: str, system: str = V2) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


# Everything the mapping reads, with the decoys it must pass over.
FULL = {
    "resourceType": "Patient",
    "id": "pat-full-1",
    "meta": {
        "versionId": "3",
        "security": [
            {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HTEST"},
            {"system": CONF, "code": "R"},
        ],
    },
    "identifier": [
        {"use": "old", "type": _type("MR"), "value": "MRN-OLD-77"},
        {"type": _type("SS"), "value": "123-45-6789"},
        {"type": _type("EN"), "value": "EMPLOYER-HOSPITAL"},
        {"use": "usual", "type": _type("MR"), "value": "MRN-4411"},
        {"type": _type("EI"), "value": "E-000417"},
    ],
    "name": [
        {"use": "usual", "family": "Nickname", "given": ["Annie"]},
        {"use": "official", "family": "Zabrowski-Quill", "given": ["Ann"]},
    ],
    "address": [
        {"use": "work", "line": ["1 Hospital Plaza"], "postalCode": "11111"},
        {"use": "home", "line": ["12 North Main Street", "Apt 4"], "postalCode": "12345-6789"},
    ],
    "birthDate": "1970-01-01",
}
# Only an id: every other cell empty, not restricted.
BARE = {"resourceType": "Patient", "id": "pat-bare-2"}
# No official name, no home address, STU3 systems, very restricted.
FALLBACKS = {
    "resourceType": "Patient",
    "id": "pat-fallback-3",
    "meta": {"security": [{"system": "http://hl7.org/fhir/v3/Confidentiality", "code": "V"}]},
    "identifier": [{"type": _type("MR", "http://hl7.org/fhir/v2/0203"), "value": "MRN-9\n9"}],
    "name": [{"family": "Vantongeren"}, {"use": "maiden", "family": "Olderly"}],
    "address": [{"line": ["7 Elm  Road"], "postalCode": "SW1A 1AA"}, {"use": "temp"}],
}
# Normal confidentiality is not restricted; an MR without its system is not an MRN.
NORMAL = {
    "resourceType": "Patient",
    "id": "pat-normal-4",
    "meta": {"security": [{"system": CONF, "code": "N"}]},
    "identifier": [{"type": {"coding": [{"code": "MR"}]}, "value": "NOT-AN-MRN"}],
}


def _many(n: int) -> list[dict[str, Any]]:
    return [
        {
            "resourceType": "Patient",
            "id": f"gen-{i}",
            "identifier": [{"type": _type("MR"), "value": f"MRN-G{i}"}],
            "name": [{"family": f"Surname{i}"}],
        }
        for i in range(n)
    ]


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[FhirStandIn]:
    server = FhirStandIn(tmp_path, [FULL, BARE, FALLBACKS, NORMAL], token=TOKEN).start()
    yield server
    server.stop()


def _sync(
    standin: FhirStandIn,
    out: Path,
    credential: StaticToken | None = None,
    sleeps: list[float] | None = None,
    page_size: int = 2,
) -> SyncReport:
    return sync_patients(
        standin.url,
        out,
        SERVICE,
        credential or StaticToken(TOKEN),
        page_size=page_size,
        transport=RequestsTransport(connection_verify=standin.ca_file),
        sleep=(sleeps.append if sleeps is not None else lambda _s: None),
    )


def _rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


# ------------------------------------------------------------------ mapping


def test_every_column_is_mapped_from_the_resource() -> None:
    assert patient_row(FULL, SERVICE) == [
        SERVICE,
        "pat-full-1",
        "MRN-4411",  # the current MR, not the old one
        "Zabrowski-Quill",  # the official name, though another comes first
        "12 North Main Street, Apt 4",  # the home address's lines, not the work one
        "12345-6789",
        "E-000417",  # employee number (EI), not the employer's number (EN)
        "true",  # v3-Confidentiality R
        "",  # care teams come from the EHR extract
    ]


def test_missing_elements_are_empty_cells() -> None:
    assert patient_row(BARE, SERVICE) == [SERVICE, "pat-bare-2", "", "", "", "", "", "false", ""]


def test_fallbacks_first_name_first_address_and_older_code_systems() -> None:
    row = patient_row(FALLBACKS, SERVICE)
    assert row[2:8] == ["MRN-9 9", "Vantongeren", "7 Elm Road", "SW1A 1AA", "", "true"]


def test_normal_confidentiality_and_an_uncoded_type_are_neither_restricted_nor_mrn() -> None:
    assert patient_row(NORMAL, SERVICE)[2] == ""
    assert patient_row(NORMAL, SERVICE)[7] == "false"


def test_malformed_elements_do_not_fail_the_row() -> None:
    odd = {
        "resourceType": "Patient",
        "id": "p",
        "identifier": "not-a-list",
        "name": [{"family": 7}, "x"],
        "address": [{"line": "one string", "postalCode": None}],
        "meta": {"security": "R"},
    }
    assert patient_row(odd, SERVICE) == [SERVICE, "p", "", "", "", "", "", "false", ""]


# ------------------------------------------------------------------ paging and the file


def test_every_page_is_read_through_the_next_links(standin: FhirStandIn, tmp_path: Path) -> None:
    credential = StaticToken(TOKEN)
    out = tmp_path / "patients.csv"
    report = _sync(standin, out, credential)
    rows = _rows(out)
    assert rows[0] == list(HEADER)
    assert [r[1] for r in rows[1:]] == [
        "pat-full-1",
        "pat-bare-2",
        "pat-fallback-3",
        "pat-normal-4",
    ]
    assert rows[1] == patient_row(FULL, SERVICE)
    assert (report.pages, report.patients, report.restricted, report.with_mrn) == (2, 4, 2, 2)
    assert report.with_employee_id == 1
    first, second = standin.requests
    assert first.path == "/Patient"
    assert first.query == {"_count": ["2"], "_elements": [ELEMENTS]}
    assert "ct" in second.query  # the server's continuation, followed as given
    assert {r.authorization for r in standin.requests} == {f"Bearer {TOKEN}"}
    assert credential.scopes[0] == (f"{standin.url}/.default",)


def test_many_pages_stream_into_the_file(tmp_path: Path) -> None:
    server = FhirStandIn(tmp_path, _many(25), token=TOKEN, max_count=10).start()
    try:
        out = tmp_path / "p.csv"
        report = _sync(server, out, page_size=50)  # the server caps the page at 10
    finally:
        server.stop()
    assert (report.pages, report.patients) == (3, 25)
    assert [r[1] for r in _rows(out)[1:]] == [f"gen-{i}" for i in range(25)]


def test_the_file_is_owner_only_even_over_a_looser_one(
    standin: FhirStandIn, tmp_path: Path
) -> None:
    out = tmp_path / "patients.csv"
    out.write_text("old\n")
    out.chmod(0o644)
    _sync(standin, out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert not list(tmp_path.glob(".*.partial"))


def test_an_entry_that_is_not_a_patient_is_counted_and_skipped(tmp_path: Path) -> None:
    outcome = {"resourceType": "OperationOutcome", "id": "o1"}
    server = FhirStandIn(tmp_path, [BARE, outcome, {"resourceType": "Patient"}], token=TOKEN)
    server.start()
    try:
        report = _sync(server, tmp_path / "p.csv", page_size=10)
    finally:
        server.stop()
    assert (report.patients, report.skipped) == (1, 2)


# ------------------------------------------------------------------ retries and errors


def test_a_429_is_retried_after_its_retry_after(standin: FhirStandIn, tmp_path: Path) -> None:
    standin.fail_next(429, {"Retry-After": "2"})
    sleeps: list[float] = []
    report = _sync(standin, tmp_path / "p.csv", sleeps=sleeps)
    assert sleeps == [2.0]
    assert (report.patients, report.retries) == (4, 1)
    assert [r.status for r in standin.requests] == [429, 200, 200]


def test_the_services_millisecond_hint_wins_and_waits_are_capped(
    standin: FhirStandIn, tmp_path: Path
) -> None:
    standin.fail_next(429, {"x-ms-retry-after-ms": "250", "Retry-After": "1"})
    standin.fail_next(503, {"Retry-After": "86400"})
    standin.fail_next(500)  # no hint: back-off (the third attempt waits 4 s)
    sleeps: list[float] = []
    _sync(standin, tmp_path / "p.csv", sleeps=sleeps)
    assert sleeps == [0.25, MAX_WAIT_SECONDS, 4.0]


def test_retries_are_bounded_and_leave_the_old_file(standin: FhirStandIn, tmp_path: Path) -> None:
    out = tmp_path / "p.csv"
    out.write_text("the index in force\n")
    for _ in range(MAX_ATTEMPTS):
        standin.fail_next(503)
    with pytest.raises(FhirSyncError, match=f"503 after {MAX_ATTEMPTS} attempts"):
        _sync(standin, out)
    assert len(standin.requests) == MAX_ATTEMPTS
    assert out.read_text() == "the index in force\n"
    assert not list(tmp_path.glob(".*.partial"))


def test_a_failure_on_a_later_page_writes_nothing(standin: FhirStandIn, tmp_path: Path) -> None:
    out = tmp_path / "p.csv"
    real_answer = standin.answer

    def second_page_fails(path: str, query: dict[str, list[str]], auth: str | None):
        if "ct" in query:
            return 400, {}, {"resourceType": "OperationOutcome"}
        return real_answer(path, query, auth)

    standin.answer = second_page_fails  # type: ignore[method-assign]
    with pytest.raises(FhirSyncError, match="answered 400"):
        _sync(standin, out)
    assert not out.exists()
    assert not list(tmp_path.glob(".*.partial"))


def test_a_401_is_a_clear_access_error(standin: FhirStandIn, tmp_path: Path) -> None:
    with pytest.raises(FhirAccessDenied, match=r"refused the identity \(401\).*FHIR Data Reader"):
        _sync(standin, tmp_path / "p.csv", StaticToken("wrong"))
    assert not (tmp_path / "p.csv").exists()


def test_a_next_link_off_the_service_is_not_followed(standin: FhirStandIn, tmp_path: Path) -> None:
    standin.next_link_host = "https://elsewhere.invalid"
    with pytest.raises(FhirSyncError, match="off the FHIR service"):
        _sync(standin, tmp_path / "p.csv")
    assert len(standin.requests) == 1  # the token went nowhere else


def test_plain_http_and_a_wrong_service_id_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="https"):
        sync_patients("http://fhir.example", tmp_path / "p.csv", SERVICE, StaticToken(TOKEN))
    with pytest.raises(ValueError, match="ARM resource id"):
        sync_patients("https://fhir.example", tmp_path / "p.csv", "fhir1", StaticToken(TOKEN))


# ------------------------------------------------------------------ the loader and the logs


def test_the_file_loads_into_the_expected_pseudonymised_rows(
    standin: FhirStandIn, tmp_path: Path, pseudonymizer: Pseudonymizer
) -> None:
    out = tmp_path / "p.csv"
    _sync(standin, out)
    tagger = pseudonymizer.privacy_tagger()
    with out.open("rb") as handle:
        index = load_patients(handle, pseudonymizer, tagger)
    assert index.report.errors == []
    assert (index.report.rows, index.report.loaded) == (4, 4)

    def facts(patient_id: str):
        # The FHIR normaliser's PatientRef for the service the records name (any case).
        found = index.table.patient(pseudonymizer.patient_ref(namespace_of(SERVICE), patient_id))
        assert found is not None
        return found

    full = facts("pat-full-1")
    expect = pseudonymizer.privacy_tagger()
    assert full.surname == expect.surname("ZABROWSKI QUILL")
    assert (full.address, full.street) == expect.address("12 N Main St", "12345")
    assert full.employee == expect.employee("E-000417")
    assert full.restricted is True
    assert full.care_team == frozenset()
    assert index.table.by_mrn(expect.mrn("MRN-4411")) == pseudonymizer.patient_ref(
        namespace_of(SERVICE), "pat-full-1"
    )
    bare = facts("pat-bare-2")
    assert (bare.surname, bare.address, bare.employee, bare.restricted) == (None, None, None, False)
    assert facts("pat-fallback-3").restricted is True
    assert facts("pat-normal-4").restricted is False


RAW_VALUES = (
    "pat-full-1",
    "MRN-4411",
    "MRN-OLD-77",
    "Zabrowski",
    "Main Street",
    "12345",
    "E-000417",
    "Vantongeren",
    "Elm",
    "SW1A",
    "123-45-6789",
)


def test_no_raw_value_reaches_the_logs(standin: FhirStandIn, tmp_path: Path) -> None:
    stream = io.StringIO()
    configure_logging("DEBUG", stream=stream)
    try:
        standin.fail_next(429, {"Retry-After": "0"})
        _sync(standin, tmp_path / "p.csv")
        with pytest.raises(FhirAccessDenied):
            _sync(standin, tmp_path / "q.csv", StaticToken("wrong"))
    finally:
        configure_logging("INFO", stream=io.StringIO())
    text = stream.getvalue()
    # urllib3's own DEBUG lines (the request line: no patient value in it) are not JSON.
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    written = next(line for line in lines if line["event"] == "patient index written")
    assert (written["patients"], written["pages"], written["restricted"]) == (4, 2, 2)
    assert any(line["event"] == "fhir request retried" for line in lines)
    for value in RAW_VALUES:
        assert value.casefold() not in text.casefold(), value


# ------------------------------------------------------------------ the command

runner = CliRunner()


def _cli(standin: FhirStandIn, monkeypatch: pytest.MonkeyPatch, *args: str, token: str = TOKEN):
    # The command signs in with DefaultAzureCredential; here a static token stands in, and
    # requests trusts the stand-in's certificate through its usual environment variable.
    monkeypatch.setattr(roster_command, "_credential", lambda: StaticToken(token))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", standin.ca_file)
    return runner.invoke(app, ["roster", "sync-patients", "--fhir-url", standin.url, *args])


def test_the_command_writes_the_index_and_says_only_counts(
    standin: FhirStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "patients.csv"
    result = _cli(
        standin, monkeypatch, "--out", str(out), "--fhir-service", SERVICE, "--page-size", "3"
    )
    assert result.exit_code == 0, result.output
    assert "4 patients from 2 pages" in result.output
    assert len(_rows(out)) == 5
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    for value in RAW_VALUES:
        assert value not in result.output


def test_the_command_exits_1_on_a_401(
    standin: FhirStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "patients.csv"
    result = _cli(standin, monkeypatch, "--out", str(out), "--fhir-service", SERVICE, token="wrong")
    assert result.exit_code == 1
    assert "FHIR Data Reader" in result.output
    assert "unchanged" in result.output
    assert not out.exists()


@pytest.mark.parametrize(
    "args",
    [
        ["--fhir-service", SERVICE],  # no --out
        ["--out", "p.csv"],  # no --fhir-service
        ["--out", "p.csv", "--fhir-service", "fhir1"],  # not an ARM id
        ["--out", "p.csv", "--fhir-service", SERVICE, "--page-size", "1001"],
        ["--out", "no/such/dir/p.csv", "--fhir-service", SERVICE],
    ],
)
def test_the_command_refuses_bad_usage(
    standin: FhirStandIn, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, args: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    result = _cli(standin, monkeypatch, *args)
    assert result.exit_code == 2, result.output
    assert standin.requests == []


class NoToken:
    def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        raise ClientAuthenticationError("no identity here\nsecond line of the chain")


def test_no_token_is_an_access_error_naming_the_scope(standin: FhirStandIn, tmp_path: Path) -> None:
    with pytest.raises(
        FhirAccessDenied, match=r"no token for https://.*/\.default: no identity here$"
    ):
        sync_patients(standin.url, tmp_path / "p.csv", SERVICE, NoToken())
    assert standin.requests == []


def test_an_unreachable_service_is_retried_then_refused(tmp_path: Path) -> None:
    server = FhirStandIn(tmp_path, [BARE], token=TOKEN).start()
    url, ca_file = server.url, server.ca_file
    server.stop()  # nothing listens on the port now
    sleeps: list[float] = []
    with pytest.raises(FhirSyncError, match="cannot reach the FHIR service"):
        sync_patients(
            url,
            tmp_path / "p.csv",
            SERVICE,
            StaticToken(TOKEN),
            transport=RequestsTransport(connection_verify=ca_file),
            sleep=sleeps.append,
        )
    assert len(sleeps) == MAX_ATTEMPTS - 1
