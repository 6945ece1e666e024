"""No patient identifier leaves in clear: FHIR URIs in every encoding, and the names, user
agents and correlation ids the normalisers copy from the wire (issue #12 item 8)."""

from __future__ import annotations

import json
import re
import typing

import pytest

from phiwatch.config import Settings
from phiwatch.model import AccessEvent
from phiwatch.pseudonym import Pseudonymizer, load_pseudonymizer
from phiwatch.sinks.outbox import LocalOutbox
from phiwatch.sources.fhir_uri import parse_fhir_uri
from phiwatch.sources.verbatim import IDS_AND_ENUMS, VERBATIM
from phiwatch.wiring import build_pipeline
from tests.harness import batches_of
from tests.logs_ingestion_standin import logs_ingestion
from tests.records import FHIR_ID, KV_ID, SUB, activity, fhir, keyvault
from tests.test_sentinel_sink import EVENTS, StaticCredential, make_sink

__all__ = ["logs_ingestion"]  # the stand-in's fixture, used by name below

NAMESPACE = FHIR_ID.lower()
# Shaped like no configured pattern, so only the URI parsing can hide it.
PID = "pat-Q7Z"


def text_of(events: list[AccessEvent]) -> str:
    return "".join(e.to_json().decode() for e in events)


@pytest.mark.parametrize(
    "path",
    [
        # The three forms from the issue.
        f"Observation?patient%3D{PID}",
        f"Observation?Patient/{PID}",
        f"Patient/$match/{PID}",
        # Other encodings and shapes of the same request.
        f"Observation?patient%253D{PID}",  # double encoding
        f"Observation?patient%3DPatient%252F{PID}",
        f"Observation?patient=+{PID}+",
        f"PATIENT/{PID}",
        f"patient/{PID}/Observation",
        f"Patient%2F{PID}",
        f"Patient%252F{PID}/Observation",
        f"Patient/{PID}#section",
        f"Patient/{PID}%23section",
        f"Patient/{PID};version=2",
        f"Observation?subject:Patient={PID}",
        f"Observation?subject:patient={PID}",
        f"Observation?PATIENT={PID}",
        f"Observation?subject=patient/{PID}",
        f"Observation?subject=Patient%2F{PID}",
        f"Observation?subject=Patient/{PID}",
        f"Patient?_id={PID}",
        f"Patient/_search?_id={PID}",
        f"Observation?patient._id={PID}",
        f"Observation?subject:Patient._id={PID}",
        f"Patient/{PID}/*",
        f"Patient/{PID}/$everything",
        f"Patient/{PID}/_history/3",
        f"Observation?code=8867-4&patient={PID}#x",
        f"Observation?code=x%26patient%3D{PID}",
    ],
)
def test_every_form_of_a_patient_id_becomes_a_pseudonym(normalise, pseudonymizer, path):
    events = normalise(fhir(1, path=path, interaction="search-type"))
    ref = pseudonymizer.patient_ref(NAMESPACE, PID)
    assert [e.patient_ref for e in events] == [ref]
    assert PID.lower() not in text_of(events).lower()


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (f"Observation?patient%3D{PID}", "Observation?patient"),
        (f"Observation?Patient/{PID}", "Observation?Patient/{ref}"),
        (f"Patient/$match/{PID}", "Patient/$match/{ref}"),
        (f"PATIENT/{PID}", "Patient/{ref}"),
        (f"Patient%2F{PID}/Observation", "Patient/{ref}/Observation"),
        (f"Patient/{PID};v=2/_history/3", "Patient/{ref}/_history/{{version}}"),
        (f"Patient/{PID}/*", "Patient/{ref}/*"),
        ("Observation/obs-1/$lastn", "Observation/{{id}}/$lastn"),
        ("Observation?obs-1", "Observation?{{param}}"),
        ("Patient?identifier=MRN%7C4471992", "Patient?identifier"),
        ("fhir/R4/Patient?name=smith", "Patient?name"),
    ],
)
def test_object_keeps_the_shape_with_pseudonyms_only(normalise, pseudonymizer, path, expected):
    (event,) = normalise(fhir(1, path=path, interaction="search-type"))
    ref = pseudonymizer.patient_ref(NAMESPACE, PID)
    assert event.object == expected.format(ref=ref)


def test_decoding_is_bounded_and_parsing_never_fails_on_odd_uris():
    deep = "Patient/" + "%25" * 50 + "2F1"
    parsed = parse_fhir_uri(deep)
    assert parsed.resource_type == "Patient"
    for odd in ["", "%", "%zz", "?", "??&&==", "Patient/", "//Patient//", "Patient?=1", "#"]:
        parse_fhir_uri(odd)  # no exception


# ------------------------------------------------------------------ names and paths

MRN = "MRN12345"
SECRET = f"patient-{MRN}-key"


def test_key_vault_secret_named_after_a_patient_keeps_its_shape(normalise, pseudonymizer):
    (event,) = normalise(keyvault(secret=SECRET))
    token = pseudonymizer.identifier_token(MRN)
    assert event.object == f"https://kv-phi.vault.azure.net/secrets/patient-{token}-key"
    assert re.fullmatch(r"pt_[0-9a-f]{16}", token)
    assert MRN.lower() not in event.to_json().decode().lower()
    # The same identifier gives the same token, whatever its case: analysts can still group.
    (again,) = normalise(keyvault(5, secret=SECRET.lower()))
    assert again.object == event.object


def test_user_agent_and_correlation_id_are_redacted(normalise):
    record = keyvault(secret="fhir-client-secret")
    record["correlationId"] = f"lookup-{MRN}"
    record["properties"]["clientInfo"] = (
        "PortalApp/2.1 (patient 123-45-6789; jane.doe@example.org; acct 00123456789)"
    )
    (event,) = normalise(record)
    wire = event.to_json().decode()
    for secret in (MRN, "123-45-6789", "jane.doe@example.org", "00123456789"):
        assert secret not in wire
    assert event.http_user_agent.startswith("PortalApp/2.1 (patient pt_")
    assert event.event_original_uid.startswith("lookup-pt_")
    assert event.object == "https://kv-phi.vault.azure.net/secrets/fhir-client-secret"


def test_activity_resource_named_after_a_patient(normalise, pseudonymizer):
    resource = f"{KV_ID}-{MRN}"
    (event,) = normalise(
        activity(operation="MICROSOFT.KEYVAULT/VAULTS/DELETE", resource_id=resource)
    )
    token = pseudonymizer.identifier_token(MRN)
    assert event.object == f"kv-phi-{token}"
    assert event.target_resource_id == f"{KV_ID.lower()}-{token}"
    assert MRN.lower() not in event.to_json().decode().lower()


def test_guids_versions_and_pseudonyms_are_never_mistaken_for_identifiers(normalise):
    version = "0123456789abcdef0123456789abcdef"
    record = keyvault(secret=f"fhir-client-secret/{version}")
    record["correlationId"] = "00000000-1234-4567-8901-000000000000"
    (event,) = normalise(record)
    assert event.object.endswith(f"/fhir-client-secret/{version}")
    assert event.event_original_uid == "00000000-1234-4567-8901-000000000000"
    assert event.dvc_scope_id == SUB
    assert event.actor_user_id == "11111111-aaaa-4bbb-8ccc-000000000001"


def test_patterns_are_a_setting(monkeypatch):
    monkeypatch.setenv("PHIWATCH_IDENTIFIER_PATTERNS", json.dumps([r"EMP-\d{4}"]))
    settings = Settings()
    assert settings.identifier_patterns == [r"EMP-\d{4}"]
    redact = load_pseudonymizer(settings).redact_identifiers
    assert "EMP-0042" not in redact("badge-EMP-0042-cert")
    assert redact("patient-MRN12345-key") == "patient-MRN12345-key"  # defaults replaced
    monkeypatch.setenv("PHIWATCH_IDENTIFIER_PATTERNS", json.dumps(["(unclosed"]))
    with pytest.raises(ValueError, match="IDENTIFIER_PATTERNS"):
        Settings()


def test_default_patterns(pseudonymizer):
    redact = pseudonymizer.redact_identifiers
    for text in ["MRN12345", "mrn-4471", "123-45-6789", "a.b@c.org", "4471992"]:
        assert redact(f"x {text} y") != f"x {text} y", text
    for text in [
        "SecretGet",
        "azsdk-python-keyvault-secrets/4.8.0 Python/3.11.9 (Linux-5.15.0-1051-azure)",
        "/subscriptions/0f3c2a10-1111-4aaa-8bbb-222233334444/resourcegroups/rg-phi",
        "Microsoft.HealthcareApis/services/fhir-R4/read",
        "pr_0123456789abcdef0123456789abcdef",
        "200",
    ]:
        assert redact(text) == text, text


def test_redaction_is_keyed(pseudonymizer):
    other = Pseudonymizer(b"k" * 32)
    assert pseudonymizer.redact_identifiers(SECRET) != other.redact_identifiers(SECRET)


# ------------------------------------------------------------------ every field, every source


def _string_fields() -> set[str]:
    fields = set()
    for name, info in AccessEvent.model_fields.items():
        if typing.get_origin(info.annotation) is typing.Literal:
            fields.add(name)  # an enum: its values are strings
            continue
        args = typing.get_args(info.annotation) or (info.annotation,)
        # A list of strings counts as text too (SQL sensitivity labels).
        args = tuple(
            a
            for arg in args
            for a in (typing.get_args(arg) if typing.get_origin(arg) is list else (arg,))
        )
        if any(arg is str or typing.get_origin(arg) is typing.Literal for arg in args):
            fields.add(name)
    return fields


def test_every_string_field_of_an_event_is_classified():
    """A new text column must go on the allow-list (and so through the redactor) or be
    shown to be an id or enum; until then this fails."""
    fields = _string_fields()
    assert "object" in fields and "event_type" in fields  # the walk sees both kinds
    assert not VERBATIM.keys() & IDS_AND_ENUMS.keys()
    assert fields == VERBATIM.keys() | IDS_AND_ENUMS.keys()


def _plant(value, marker: str):
    """Every string in a record, nested ones included, with an identifier spliced in."""
    if isinstance(value, str):
        return f"{value}-{marker}" if value else marker
    if isinstance(value, dict):
        return {k: _plant(v, marker) for k, v in value.items()}
    if isinstance(value, list):
        return [_plant(v, marker) for v in value]
    return value


# Fields a planted record must keep intact for the normaliser to route it and produce an
# event at all; each is checked separately above or is not text an event copies.
_STRUCTURAL = {"time", "category", "resultType", "callerIpAddress", "identity", "eventCategory"}


@pytest.mark.parametrize(
    "record",
    [
        keyvault(secret=SECRET),
        fhir(path=f"Patient/{PID}/Observation?code=x"),
        activity(operation="MICROSOFT.KEYVAULT/VAULTS/WRITE", resource_id=KV_ID),
    ],
    ids=["keyvault", "fhir", "activity"],
)
@pytest.mark.parametrize("marker", ["MRN99881", "555-12-3456", "48815162342"])
def test_no_planted_identifier_reaches_a_field_from_the_wire(normalise, record, marker):
    planted = {k: v if k in _STRUCTURAL else _plant(v, marker) for k, v in record.items()}
    if "properties" in record:
        planted["properties"] = {
            k: v if k in _STRUCTURAL else _plant(v, marker) for k, v in record["properties"].items()
        }
    events = normalise(planted)
    assert events
    for event in events:
        dumped = event.model_dump()
        for name in VERBATIM:
            assert marker not in str(dumped[name] or ""), name
        assert marker not in event.to_json().decode()


# ------------------------------------------------------------------ end to end


def test_sentinel_rows_carry_no_identifier_end_to_end(logs_ingestion, tmp_path):
    """The real pipeline into the real Logs Ingestion client, against the local stand-in."""
    records = [
        fhir(1, path=f"Observation?patient%3D{PID}", interaction="search-type"),
        fhir(2, path=f"Observation?Patient/{PID}", interaction="search-type"),
        fhir(3, path=f"Patient/$match/{PID}", interaction="search-type"),
        keyvault(4, secret=SECRET),
        activity(5, operation="MICROSOFT.KEYVAULT/VAULTS/DELETE", resource_id=f"{KV_ID}-{MRN}"),
    ]
    records[3]["properties"]["clientInfo"] = f"PortalApp/2.1 ({MRN})"
    records[3]["correlationId"] = f"lookup-{MRN}"
    sentinel = make_sink(logs_ingestion, LocalOutbox(tmp_path / "outbox"), StaticCredential())
    pipeline = build_pipeline(Settings(), tmp_path / "archive", [sentinel])
    for batch in batches_of(records):
        pipeline.process(batch)

    rows = logs_ingestion.rows(EVENTS)
    assert len(rows) == 5
    for secret in (PID, MRN):
        assert secret.lower() not in json.dumps(rows).lower()
    # The three FHIR forms name one patient, as `Patient/<id>` would.
    assert {row.get("PatientRef") for row in rows} - {None} == {
        load_pseudonymizer(Settings()).patient_ref(NAMESPACE, PID)
    }


def test_fhir_identifier_searches_and_audit_headers_carry_no_mrn_end_to_end(tmp_path):
    """An MRN searched for (`identifier=system|MRN`, chained) or sent in an audit header
    reaches no event, dead-letter or alert; the searches still name their patient."""
    from tests.harness import run
    from tests.records import fhir_on_behalf

    digits = "9931177"  # an MRN as EHRs send it: digits only, no "MRN" prefix
    records = [
        fhir(1, path=f"Patient?identifier=urn:oid:1.2.3|{digits}", interaction="search-type"),
        fhir(2, path=f"Observation?patient.identifier=urn:oid:1.2.3|{digits}"),
        fhir(3, path=f"Observation?subject:Patient.identifier=urn:oid:1.2.3%7C{digits}"),
        fhir_on_behalf(4, headers={"X-MS-AZUREFHIR-AUDIT-USERNAME": f"lookup {MRN}"}),
    ]
    sink = run(records, tmp_path)
    assert len(sink.events) == 4 and not sink.dead
    text = "".join(e.to_json().decode() for e in sink.events)
    text += "".join(a.to_json().decode() for a in sink.alerts.values())
    assert digits not in text and MRN.lower() not in text.lower()
    assert len({e.patient_ref for e in sink.events[:3]}) == 1
