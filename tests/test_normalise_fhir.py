"""FHIR AuditLogs normaliser: patient ids from URIs, pseudonyms, categories, Start pairs."""

from __future__ import annotations

import pytest

from phiwatch.sources import RecordSkipped
from phiwatch.sources.fhir_uri import parse_fhir_uri
from tests.records import FHIR_ID, fhir

NAMESPACE = FHIR_ID.lower()


@pytest.mark.parametrize(
    ("path", "patients", "resource_type"),
    [
        ("Patient/123", ("123",), "Patient"),
        ("Patient/123/_history/4", ("123",), "Patient"),
        ("Patient/abc-9f/Observation?_count=50", ("abc-9f",), "Observation"),
        ("Observation?patient=123&code=8867-4", ("123",), "Observation"),
        ("Observation?patient=Patient/123", ("123",), "Observation"),
        ("Condition?subject=Patient/77", ("77",), "Condition"),
        ("Condition?subject:Patient=77", ("77",), "Condition"),
        ("Encounter?subject=https://fhir-prod/Patient/88", ("88",), "Encounter"),
        ("Observation?subject=Group/5", (), "Observation"),
        ("Observation?subject=5", (), "Observation"),
        ("Patient?_id=1,2,3", ("1", "2", "3"), "Patient"),
        ("Observation?patient=1,1,2", ("1", "2"), "Observation"),
        ("fhir/Patient/42", ("42",), "Patient"),
        ("Patient/$export", (), "Patient"),
        ("metadata", (), None),
        ("Practitioner/9", (), "Practitioner"),
    ],
)
def test_patient_ids_come_from_path_and_search_parameters(path, patients, resource_type):
    parsed = parse_fhir_uri(f"https://fhir-prod.azurehealthcareapis.com/{path}")
    assert parsed.patient_ids == patients
    assert parsed.resource_type == resource_type


def test_read_becomes_event_with_pseudonym_and_no_identifier_anywhere(normalise, pseudonymizer):
    (event,) = normalise(fhir(1, path="Patient/123456/Observation?code=x"))
    expected = pseudonymizer.patient_ref(NAMESPACE, "123456")
    assert event.patient_ref == expected
    assert event.object == f"Patient/{expected}/Observation?code"
    assert "123456" not in event.to_json().decode()
    assert (event.event_type, event.event_sub_type, event.event_result) == (
        "Read",
        "read",
        "Success",
    )
    assert event.phi_category == "clinical"
    assert event.record_count == 1
    assert event.actor_username == "alice.nurse@contoso-health.org"
    assert event.event_product == "FHIR Service"
    assert event.target_resource_id == NAMESPACE
    assert (
        event.event_original_uid
        == fhir(1, path="Patient/123456/Observation?code=x")["correlationId"]
    )


def test_pseudonyms_are_keyed_and_scoped_to_the_fhir_service(pseudonymizer):
    from phiwatch.pseudonym import Pseudonymizer

    ref = pseudonymizer.patient_ref(NAMESPACE, "123")
    assert ref == pseudonymizer.patient_ref(NAMESPACE, "123")
    assert ref != pseudonymizer.patient_ref("/other/fhir", "123")
    assert ref != Pseudonymizer(b"k" * 32).patient_ref(NAMESPACE, "123")
    assert ref.startswith("pr_") and len(ref) == 35


def test_multi_patient_search_yields_one_event_per_patient(normalise):
    events = normalise(fhir(2, path="Patient?_id=1,2,3", interaction="search-type"))
    assert len({e.patient_ref for e in events}) == 3
    uids = [e.event_uid for e in events]
    assert uids[1:] == [f"{uids[0]}-1", f"{uids[0]}-2"]
    assert all(e.phi_category == "demographic" for e in events)
    assert all(e.record_count is None for e in events)


@pytest.mark.parametrize("started", ["Started", "started"])
def test_started_records_are_skipped_as_non_terminal(normalise, started):
    with pytest.raises(RecordSkipped) as info:
        normalise(fhir(result=started))
    assert info.value.code == "non-terminal"


@pytest.mark.parametrize(("result", "status"), [("Failed", 403), ("Failed", "404")])
def test_failures_and_string_status(normalise, result, status):
    (event,) = normalise(fhir(result=result, status=status))
    assert (event.event_result, event.event_result_details) == ("Failure", str(status))
    assert event.record_count is None


@pytest.mark.parametrize(
    ("path", "interaction", "event_type", "category"),
    [
        ("Observation", "create", "Create", "clinical"),
        ("Observation/9", "update", "Set", "clinical"),
        ("Coverage/1", "delete", "Delete", "financial"),
        ("metadata", "capabilities", "Read", "none"),
        ("$export", "$export", "Read", "none"),
        ("Claim?patient=5", "search-type", "Read", "financial"),
    ],
)
def test_interactions_and_phi_categories(normalise, path, interaction, event_type, category):
    (event,) = normalise(fhir(path=path, interaction=interaction))
    assert (event.event_type, event.phi_category) == (event_type, category)


def test_workspace_fhir_service_and_properties_as_string(normalise):
    record = fhir(time_text="2026-11-02T08:01:29.1234567Z")
    record["resourceId"] = FHIR_ID.replace(
        "SERVICES/FHIR-PROD", "WORKSPACES/AHDS/FHIRSERVICES/FHIR2"
    )
    record["operationName"] = "Microsoft.HealthcareApis/workspaces/fhirservices/read"
    record["properties"] = '{"fhirResourceType": "Patient"}'
    record["resultSignature"] = "200"
    (event,) = normalise(record)
    assert event.patient_ref is not None
    assert event.event_sub_type == "read"
    assert event.time_generated.second == 29
