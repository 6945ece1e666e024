"""FHIR AuditLogs normaliser: patient ids and identifiers from URIs, pseudonyms, categories,
Start pairs, the whole audit sub-type vocabulary, exports and their polls, audit headers."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phiwatch.pseudonym import Pseudonymizer
from phiwatch.sources import RecordRejected, RecordSkipped
from phiwatch.sources.fhir import _PREFIXES_START, _may_hold_header
from phiwatch.sources.fhir_uri import _query_pairs, parse_fhir_uri
from tests.conftest import TEST_KEY_HEX
from tests.records import EHR_APP_ID, FHIR_ID, fhir, fhir_on_behalf

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


# ------------------------------------------------------------------ the whole vocabulary

# The FHIR server's audit sub-types (microsoft/fhir-server AuditEventSubType.cs), written out
# here rather than read from the normaliser, and the EventType each must get.
EXPECTED_TYPES = {
    "create": "Create",
    "conditional-create": "Create",
    "read": "Read",
    "vread": "Read",
    "update": "Set",
    "conditional-update": "Set",
    "delete": "Delete",
    "conditional-delete": "Delete",
    "history": "Read",
    "history-type": "Read",
    "history-system": "Read",
    "history-instance": "Read",
    "search": "Read",
    "search-type": "Read",
    "search-system": "Read",
    "capabilities": "Read",
    "smart-on-fhir-authorize": "Other",
    "smart-on-fhir-callback": "Other",
    "smart-on-fhir-token": "Other",
    "bundle-post": "Execute",
    "batch": "Execute",
    "transaction": "Execute",
    "patch": "Set",
    "conditional-patch": "Set",
    "export": "Read",
    "reindex": "Execute",
    "convert-data": "Execute",
    "validate": "Execute",
    "import": "Create",
    "member-match": "Read",
    "everything": "Read",
    "purge-history": "Delete",
    "search-parameter-status": "Other",
    "bulk-delete": "Delete",
    "bulk-update": "Set",
}
OPERATION_PREFIXES = [
    "Microsoft.HealthcareApis/services/fhir-R4",  # Azure API for FHIR
    "Microsoft.HealthcareApis/workspaces/fhirservices",  # Health Data Services
    "MICROSOFT.HEALTHCAREAPIS/WORKSPACES/FHIRSERVICES",  # as real streams upper-case it
]


def test_the_table_covers_every_audit_sub_type():
    from phiwatch.sources.fhir import SUB_TYPES

    assert SUB_TYPES == EXPECTED_TYPES


@pytest.mark.parametrize("prefix", OPERATION_PREFIXES)
@pytest.mark.parametrize(("sub_type", "event_type"), sorted(EXPECTED_TYPES.items()))
def test_every_sub_type_in_both_operation_name_forms(normalise, prefix, sub_type, event_type):
    record = fhir(path="Observation/9", interaction=sub_type)
    record["operationName"] = f"{prefix}/{sub_type.upper() if prefix.isupper() else sub_type}"
    (event,) = normalise(record)
    assert (event.event_type, event.event_sub_type) == (event_type, sub_type)
    assert event.operation == record["operationName"]
    assert event.record_count == (1 if sub_type in {"read", "vread", "everything"} else None)


@pytest.mark.parametrize(
    ("logged", "sub_type", "event_type"),
    [
        ("search-compartment", "search-compartment", "Read"),  # unknown, read by its family
        ("history-something", "history-something", "Read"),
        ("$export", "export", "Read"),
        ("brand-new-thing", "brand-new-thing", "Other"),
        ("", "unknown", "Other"),
        ("Patient 123", "unknown", "Other"),  # an odd name is not copied as a sub-type
    ],
)
def test_unknown_sub_types(normalise, logged, sub_type, event_type):
    record = fhir(path="Observation")
    record["operationName"] = f"Microsoft.HealthcareApis/services/fhir-R4/{logged}"
    (event,) = normalise(record)
    assert (event.event_sub_type, event.event_type) == (sub_type, event_type)


# ------------------------------------------------------------------ $export and its polls


@pytest.mark.parametrize(
    ("path", "obj"),
    [
        ("$export", "$export"),
        ("$export?_type=Patient,Observation&_since=2026-01-01", "$export?_type&_since"),
        ("Patient/$export", "Patient/$export"),
        ("Group/cohort-42/$export", "Group/{id}/$export"),
        ("fhir/R4/Group/7/$export?_container=out", "Group/{id}/$export?_container"),
    ],
)
def test_export_kick_offs_are_exports(normalise, path, obj):
    (event,) = normalise(fhir(path=path, interaction="export", status=202))
    assert (event.event_type, event.event_sub_type, event.object) == ("Read", "export", obj)
    assert event.patient_ref is None and event.record_count is None
    assert "cohort-42" not in event.to_json().decode()


@pytest.mark.parametrize(
    ("path", "logged", "sub_type"),
    [
        ("_operations/export/88454", "export", "export-status"),
        ("_operations/export/1f3a-77", "export", "export-status"),  # a cancel looks the same
        ("fhir/_operations/import/5", "import", "import-status"),
        ("_operations/reindex/9", "reindex", "reindex-status"),
        ("_operations/bulk-delete/12", "export", "bulk-delete-status"),  # logged as export
        ("_operations/Weird%20Kind/3", "export", "operation-status"),
    ],
)
def test_job_status_polls_are_not_the_job(normalise, path, logged, sub_type):
    (event,) = normalise(fhir(path=path, interaction=logged))
    assert (event.event_type, event.event_sub_type) == ("Other", sub_type)
    kind = sub_type.removesuffix("-status")
    assert event.object == f"_operations/{kind}/{{id}}"
    assert "88454" not in event.to_json().decode()


# ------------------------------------------------------------------ identifier searches

MRN = "4471992"
SYSTEM = "urn:oid:1.2.36.146.595.217.0.1"


def _identifier_ref(pseudonymizer, system, value=MRN):
    return pseudonymizer.patient_ref(f"fhir-identifier:{system}", value)


@pytest.mark.parametrize(
    "path",
    [
        f"Patient?identifier={SYSTEM}|{MRN}",
        f"Patient?identifier={SYSTEM}%7C{MRN}",
        f"Patient/_search?identifier={SYSTEM}|{MRN}",
        f"fhir/Patient?family=x&identifier={SYSTEM}|{MRN}&_count=10",
        f"Observation?patient.identifier={SYSTEM}|{MRN}",
        f"Observation?subject:Patient.identifier={SYSTEM}|{MRN}",
        f"Condition?patient:Patient.identifier={SYSTEM}|{MRN}",
        f"Encounter?patient:identifier={SYSTEM}|{MRN}",
        f"Coverage?beneficiary.identifier={SYSTEM}|{MRN}",
        f"Observation?code=8867-4&PATIENT.IDENTIFIER={SYSTEM}|{MRN}",
    ],
)
def test_identifier_search_becomes_a_patient_ref_in_the_system_namespace(
    normalise, pseudonymizer, path
):
    (event,) = normalise(fhir(path=path, interaction="search-type"))
    assert event.patient_ref == _identifier_ref(pseudonymizer, SYSTEM)
    assert MRN not in event.to_json().decode()
    assert MRN not in (event.object or "")
    assert event.phi_category != "none"


def test_identifier_namespace_is_the_system_not_the_service(normalise, pseudonymizer):
    (here,) = normalise(fhir(path=f"Patient?identifier={SYSTEM}|{MRN}", interaction="search"))
    other = fhir(path=f"Patient?identifier={SYSTEM}|{MRN}", interaction="search")
    other["resourceId"] = FHIR_ID.replace("FHIR-PROD", "FHIR-DR")
    (there,) = normalise(other)
    assert here.patient_ref == there.patient_ref  # the same MRN, whichever service was asked
    (by_id,) = normalise(fhir(path=f"Patient/{MRN}"))
    assert by_id.patient_ref != here.patient_ref  # a FHIR id is not an MRN
    (elsewhere,) = normalise(fhir(path=f"Patient?identifier=urn:other|{MRN}"))
    assert elsewhere.patient_ref != here.patient_ref


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (f"{MRN}", [("", MRN)]),  # any system
        (f"|{MRN}", [("", MRN)]),  # explicitly none
        (f"{SYSTEM}|{MRN},{SYSTEM}|4471993", [(SYSTEM, MRN), (SYSTEM, "4471993")]),
        (r"sys|a\,b", [("sys", "a,b")]),  # an escaped comma is part of the value
        (r"sys\|x|v", [(r"sys|x", "v")]),
        ("sys|", []),  # no value, no patient
        ("a|b|c", []),  # not a token
    ],
)
def test_identifier_tokens(normalise, pseudonymizer, query, expected):
    events = normalise(fhir(path=f"Patient?identifier={query}", interaction="search-type"))
    refs = [_identifier_ref(pseudonymizer, system, value) for system, value in expected]
    assert [e.patient_ref for e in events] == (refs or [None])


def test_identifier_of_type_uses_the_type_as_namespace(normalise, pseudonymizer):
    path = f"Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|{MRN}"
    (event,) = normalise(fhir(path=path, interaction="search-type"))
    namespace = "fhir-identifier-type:http://terminology.hl7.org/CodeSystem/v2-0203|MR"
    assert event.patient_ref == pseudonymizer.patient_ref(namespace, MRN)


@pytest.mark.parametrize(
    "path",
    [
        f"Observation?identifier={SYSTEM}|{MRN}",  # the observation's own identifier
        f"Observation?subject.identifier={SYSTEM}|{MRN}",  # subject may be a Group
        f"Observation?subject:identifier={SYSTEM}|{MRN}",
        f"Observation?patient.organization.identifier={SYSTEM}|{MRN}",
        f"Patient?identifier:not={SYSTEM}|{MRN}",
        f"Patient?identifier:text={MRN}",
        f"Patient/5?identifier={SYSTEM}|{MRN}",  # not a type-level search
    ],
)
def test_identifiers_that_name_no_patient(normalise, pseudonymizer, path):
    events = normalise(fhir(path=path, interaction="search-type"))
    refs = {e.patient_ref for e in events}
    assert _identifier_ref(pseudonymizer, SYSTEM) not in refs
    assert MRN not in "".join(e.to_json().decode() for e in events)


def test_identifier_and_id_search_together_are_two_patients(normalise, pseudonymizer):
    events = normalise(fhir(path=f"Patient?_id=abc&identifier={SYSTEM}|{MRN}"))
    assert [e.patient_ref for e in events] == [
        pseudonymizer.patient_ref(NAMESPACE, "abc"),
        _identifier_ref(pseudonymizer, SYSTEM),
    ]


# ------------------------------------------------------------------ audit headers

CLINICIAN = "77777777-aaaa-4bbb-8ccc-000000000007"


def _normalise_with(pseudonymizer, record, trusted=frozenset()):
    from phiwatch.envelope import Body, decode_body
    from phiwatch.sources import NormaliseContext, Record, route

    (raw,) = decode_body(Body(json.dumps({"records": [record]}).encode(), "t", "t"))
    parsed = Record(raw.value, raw.content_uid())
    context = NormaliseContext(pseudonymizer, "raw/x#0", fhir_trusted_audit_apps=trusted)
    return route(parsed).normalise(parsed, context)


ACTOR = ("actor_user_id", "actor_username", "actor_user_type", "acting_app_id")


def _actor(event):
    return tuple(getattr(event, name) for name in ACTOR)


def test_untrusted_app_stays_the_actor_and_the_claim_is_kept(pseudonymizer):
    with_headers = fhir_on_behalf()
    without = fhir_on_behalf(headers={})
    (event,) = _normalise_with(pseudonymizer, with_headers, frozenset({"someone-else"}))
    (plain,) = _normalise_with(pseudonymizer, without)
    assert _actor(event) == _actor(plain)
    assert event.acting_app_id == EHR_APP_ID
    assert event.actor_user_type == "ServicePrincipal"
    assert event.claimed_user_id == CLINICIAN
    # A claimed name is wire text: the e-mail pattern turns it into a keyed token.
    assert event.claimed_username == pseudonymizer.redact_identifiers(
        "carol.doctor@contoso-health.org"
    )
    assert event.purpose_of_use == "TREAT"


def test_trusted_app_names_the_actor(pseudonymizer):
    (event,) = _normalise_with(pseudonymizer, fhir_on_behalf(), frozenset({EHR_APP_ID}))
    assert event.actor_user_id == CLINICIAN
    assert event.actor_username == "carol.doctor@contoso-health.org"
    assert event.actor_user_type == "Regular"
    assert event.acting_app_id == EHR_APP_ID  # the app is still the acting application
    assert (event.claimed_user_id, event.purpose_of_use) == (CLINICIAN, "TREAT")


def test_trusted_app_with_its_own_user_ids(pseudonymizer):
    record = fhir_on_behalf(headers={"x-ms-azurefhir-audit-user-id": "dr-1234"})
    (event,) = _normalise_with(pseudonymizer, record, frozenset({EHR_APP_ID}))
    assert (event.actor_user_id, event.actor_username) == ("dr-1234", None)
    assert (event.claimed_user_id, event.claimed_username) == (None, "dr-1234")


def test_trusted_app_without_a_user_header_keeps_its_actor(pseudonymizer):
    record = fhir_on_behalf(headers={"X-MS-AZUREFHIR-AUDIT-USERLOCATION": "HospitalA"})
    (event,) = _normalise_with(pseudonymizer, record, frozenset({EHR_APP_ID}))
    (plain,) = _normalise_with(pseudonymizer, fhir_on_behalf(headers={}))
    assert _actor(event) == _actor(plain)
    assert (event.claimed_user_id, event.claimed_username, event.purpose_of_use) == (None,) * 3
    assert "HospitalA" not in event.to_json().decode()  # unknown headers are not copied


def test_records_without_headers_are_unchanged_by_trust(pseudonymizer):
    plain = fhir_on_behalf(headers={})
    (trusted,) = _normalise_with(pseudonymizer, plain, frozenset({EHR_APP_ID}))
    (untrusted,) = _normalise_with(pseudonymizer, plain)
    assert trusted == untrusted
    assert (trusted.claimed_user_id, trusted.claimed_username, trusted.purpose_of_use) == (
        None,
    ) * 3


@pytest.mark.parametrize(
    "place",
    ["properties", "properties-as-text", "nested", "top-level", "healthcareapis-prefix"],
)
def test_headers_are_found_where_they_are_written(pseudonymizer, place):
    record = fhir_on_behalf(headers={})
    headers = {"X-MS-AZUREFHIR-AUDIT-USERID": CLINICIAN, "X-MS-AZUREFHIR-AUDIT-POU": "ETREAT"}
    if place == "properties-as-text":
        record["properties"] = json.dumps(record["properties"] | headers)
    elif place == "nested":
        record["properties"]["customHeaders"] = headers
    elif place == "top-level":
        record |= headers
    elif place == "healthcareapis-prefix":
        record["properties"] |= {
            k.replace("AZUREFHIR", "HEALTHCAREAPIS"): v for k, v in headers.items()
        }
    else:
        record["properties"] |= headers
    (event,) = _normalise_with(pseudonymizer, record, frozenset({EHR_APP_ID}))
    assert (event.actor_user_id, event.purpose_of_use) == (CLINICIAN, "ETREAT")


def test_claimed_names_lose_control_and_bidi_characters(pseudonymizer):
    record = fhir_on_behalf(
        headers={
            "X-MS-AZUREFHIR-AUDIT-USERNAME": "eve\u202egro.htlaeh\u0000\u200b",
            "X-MS-AZUREFHIR-AUDIT-PURPOSEOFUSE": "TREAT\n" + "x" * 5000,
        }
    )
    (event,) = _normalise_with(pseudonymizer, record, frozenset({EHR_APP_ID}))
    assert event.claimed_username == "evegro.htlaeh"
    assert event.purpose_of_use is not None
    assert event.purpose_of_use.startswith("TREATx") and len(event.purpose_of_use) == 256


def test_trusted_audit_apps_setting_reaches_the_normaliser(tmp_path, monkeypatch):
    from phiwatch.config import Settings
    from phiwatch.wiring import build_pipeline
    from tests.harness import CollectingSink, batches_of

    monkeypatch.setenv("PHIWATCH_FHIR_TRUSTED_AUDIT_APPS", json.dumps([EHR_APP_ID.upper()]))
    settings = Settings()
    assert settings.fhir_trusted_audit_apps == [EHR_APP_ID]
    sink = CollectingSink()
    pipeline = build_pipeline(settings, tmp_path / "archive", [sink])
    for batch in batches_of([fhir_on_behalf(), fhir_on_behalf(1, app_id=CLINICIAN)]):
        pipeline.process(batch)
    pipeline.finish()
    by_app = {e.acting_app_id: e for e in sink.events}
    assert by_app[EHR_APP_ID].actor_user_id == CLINICIAN
    assert by_app[CLINICIAN].actor_user_id == "66666666-aaaa-4bbb-8ccc-000000000006"


@pytest.mark.parametrize("value", ['["not-an-app-id"]', '["MRN12345"]', '"x"'])
def test_trusted_audit_apps_setting_is_validated_without_echoing(monkeypatch, value):
    from phiwatch.config import Settings
    from phiwatch.wiring import settings_problem

    monkeypatch.setenv("PHIWATCH_FHIR_TRUSTED_AUDIT_APPS", value)
    with pytest.raises(Exception) as info:
        Settings()
    problem = settings_problem(info.value)
    assert "PHIWATCH_FHIR_TRUSTED_AUDIT_APPS" in problem
    assert "MRN12345" not in problem


# ------------------------------------------------------------------ quirks


def test_request_uri_instead_of_uri_and_missing_result_type(normalise, pseudonymizer):
    record = fhir(path="Patient/9/$everything", interaction="everything")
    record["RequestUri"] = record.pop("uri")
    del record["resultType"]
    record["properties"] = json.dumps({"fhirResourceType": "Patient"})
    (event,) = normalise(record)
    assert event.patient_ref == pseudonymizer.patient_ref(NAMESPACE, "9")
    assert (event.event_type, event.event_result, event.record_count) == ("Read", "Success", 1)
    assert event.object == f"Patient/{event.patient_ref}/$everything"


def test_uri_only_in_properties(normalise, pseudonymizer):
    record = fhir(path="Patient/9")
    del record["uri"]
    (event,) = normalise(record)
    assert event.patient_ref == pseudonymizer.patient_ref(NAMESPACE, "9")


def test_failed_everything_counts_no_record(normalise):
    (event,) = normalise(
        fhir(path="Patient/9/$everything", interaction="everything", status=403, result="Failed")
    )
    assert (event.event_result, event.record_count) == ("Failure", None)


# ------------------------------------------------------------------ properties

_PSEUDONYMIZER = Pseudonymizer(bytes.fromhex(TEST_KEY_HEX))  # hypothesis: no fixtures

URI_PARTS = st.sampled_from(
    [
        "Patient",
        "Observation",
        "Group",
        "_operations",
        "export",
        "$export",
        "$everything",
        "_history",
        "_search",
        "metadata",
        "identifier",
        "patient.identifier",
        "subject:Patient.identifier",
        "identifier:of-type",
        "?",
        "&",
        "=",
        "|",
        ",",
        "\\",
        "/",
        "%7C",
        "%2F",
        "%25",
        "%",
        "#",
        ";",
        ":",
        ".",
        MRN,
        "urn:oid:1.2",
        "\u202e",
    ]
)


@given(parts=st.lists(URI_PARTS | st.text(max_size=6), max_size=24))
def test_any_uri_normalises_and_no_mrn_is_copied(parts):
    pseudonymizer = _PSEUDONYMIZER
    path = "".join(parts)
    record = fhir(path=path, interaction="search-type")
    try:
        events = _normalise_with(pseudonymizer, record)
    except (RecordRejected, RecordSkipped):
        return
    assert events
    for event in events:
        assert MRN not in event.model_dump_json(exclude={"raw_record_ref"})


HEADER_NAMES = st.sampled_from(
    [
        "X-MS-AZUREFHIR-AUDIT-USERID",
        "x-ms-azurefhir-audit-username",
        "X-MS-AZUREFHIR-AUDIT-UPN",
        "X-MS-AZUREFHIR-AUDIT-PURPOSEOFUSE",
        "X-MS-AZUREFHIR-AUDIT-USERLOCATION",
        "X-MS-HEALTHCAREAPIS-AUDIT-USER-ID",
        "X-MS-AZUREFHIR-AUDIT-",
        "userid",
        "",
    ]
)
HEADER_VALUES = (
    st.text(max_size=40)
    | st.sampled_from([CLINICIAN, CLINICIAN.upper(), "a@b.org", "MRN" + MRN, ""])
    | st.integers()
    | st.none()
    | st.booleans()
    | st.lists(st.text(max_size=3), max_size=2)
    | st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2)
)


@given(
    headers=st.dictionaries(HEADER_NAMES | st.text(max_size=30), HEADER_VALUES, max_size=12),
    trusted=st.booleans(),
)
def test_any_headers_normalise_and_unknown_headers_are_never_copied(headers, trusted):
    pseudonymizer = _PSEUDONYMIZER
    record = fhir_on_behalf(headers={})
    record["properties"] |= {k: v for k, v in headers.items() if k not in record["properties"]}
    apps = frozenset({EHR_APP_ID}) if trusted else frozenset()
    (plain,) = _normalise_with(pseudonymizer, fhir_on_behalf(headers={}), apps)
    try:
        (event,) = _normalise_with(pseudonymizer, record, apps)
    except (RecordRejected, RecordSkipped):
        return
    claimed = (event.claimed_user_id, event.claimed_username, event.purpose_of_use)
    if claimed == (None, None, None) or not trusted:
        assert _actor(event) == _actor(plain)
    # An MRN sent in a header reaches no field unredacted.
    assert "MRN" + MRN not in event.to_json().decode()
    others = event.model_dump(
        exclude={*ACTOR, "claimed_user_id", "claimed_username", "purpose_of_use", "event_uid"}
    )
    assert others == plain.model_dump(
        exclude={*ACTOR, "claimed_user_id", "claimed_username", "purpose_of_use", "event_uid"}
    )


# ------------------------------------------------------------------ issue #18 shortcuts

_QUERY = st.text(alphabet="ab=&%+;:._-/|,2 ", max_size=24)


@given(query=_QUERY)
def test_query_pairs_are_parse_qsl(query):
    assert _query_pairs(query) == parse_qsl(query, keep_blank_values=True)


_HEADER_KEY = st.sampled_from(
    ["X-MS-AZUREFHIR-AUDIT-USERID", "x-ms-healthcareapis-audit-purpose", "x-ms-other", "a"]
) | st.text(max_size=6)


@given(places=st.lists(st.dictionaries(_HEADER_KEY | st.integers(), st.just("v")), max_size=4))
def test_the_header_check_by_key_set_is_the_join(places):
    for place in places * 2:  # a key set seen before comes from the cache
        try:
            expected = _PREFIXES_START in "\n".join(place).lower()
        except TypeError:
            expected = None
        assert _may_hold_header(place) == expected
