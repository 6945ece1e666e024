"""Entra directory AuditLogs: role grants (Core Directory, PIM), actors, targets, modified
properties; told apart from FHIR's AuditLogs in both directions."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phiwatch.pseudonym import Pseudonymizer
from phiwatch.sources import NormaliseContext, Record, RecordRejected, RecordSkipped, route
from phiwatch.sources import entra_audit as entra_audit_source
from phiwatch.sources import fhir as fhir_source
from tests.mutations import mutate
from tests.records import (
    AADIAM_ID,
    GLOBAL_ADMIN_TEMPLATE,
    at,
    entra_audit,
    fhir,
)


def _values(text: str | None) -> dict[str, Any]:
    assert text is not None
    return json.loads(text)


def test_role_assignment_by_a_user(normalise):
    (event,) = normalise(entra_audit(3))
    assert event.event_product == "Entra ID Audit"
    assert (event.event_type, event.event_result, event.event_result_details) == (
        "Create",
        "Success",
        "success",
    )
    assert event.operation == "Add member to role"
    assert event.event_sub_type == "Core Directory/RoleManagement"
    assert event.object == "Global Administrator"
    assert event.object_type == "Directory Service Object"
    assert event.time_generated == at(3)
    assert event.actor_user_id == "44444444-aaaa-4bbb-8ccc-000000000004"
    assert event.actor_username == "mallory.admin@contoso-health.org"
    assert event.actor_user_type == "Regular"
    assert event.src_ip_addr == "203.0.113.50"
    assert event.target_user_id == "55555555-aaaa-4bbb-8ccc-000000000005"
    assert event.target_username == "carol.doctor@contoso-health.org"
    assert event.target_resource_id == AADIAM_ID.lower()
    assert event.source_category == "AuditLogs"
    new = _values(event.new_value)
    assert new["Role.DisplayName"] == "Global Administrator"
    assert new["Role.TemplateId"] == GLOBAL_ADMIN_TEMPLATE  # whole, despite its digit run
    assert event.old_value is None


def test_pim_activation_by_ms_pim(normalise):
    record = entra_audit(
        activity="Add member to role completed (PIM activation)",
        service="PIM",
        operation_type="Add",
        app_name="MS-PIM",
    )
    record["properties"]["additionalDetails"] = [
        {"key": "RoleDefinitionOriginId", "value": GLOBAL_ADMIN_TEMPLATE},
        {"key": "Justification", "value": "covering for MRN-9988776 ward round"},
        {"key": "StartTime", "value": "2026-11-02T08:00:00Z"},
    ]
    (event,) = normalise(record)
    assert event.event_sub_type == "PIM/RoleManagement"
    assert event.acting_app_name == "MS-PIM"
    assert event.actor_user_type == "ServicePrincipal"
    assert event.actor_user_id == "88888888-aaaa-4bbb-8ccc-000000000008"
    assert event.actor_username is None
    new = _values(event.new_value)
    assert new["RoleDefinitionOriginId"] == GLOBAL_ADMIN_TEMPLATE
    assert new["StartTime"] == "2026-11-02T08:00:00Z"
    # Free text (a justification) is never kept.
    assert "Justification" not in new
    assert "9988776" not in event.to_json().decode()


def test_role_removal_keeps_the_old_value(normalise):
    record = entra_audit(activity="Remove member from role", operation_type="Unassign")
    for prop in record["properties"]["targetResources"][0]["modifiedProperties"]:
        prop["oldValue"], prop["newValue"] = prop["newValue"], None
    (event,) = normalise(record)
    assert event.event_type == "Delete"
    assert event.object == "Global Administrator"
    assert _values(event.old_value)["Role.DisplayName"] == "Global Administrator"
    assert event.new_value is None


@pytest.mark.parametrize(("result", "expected"), [("failure", "Failure"), ("timeout", "Failure")])
def test_failed_changes(normalise, result, expected):
    (event,) = normalise(entra_audit(result=result))
    assert (event.event_result, event.event_result_details) == (expected, result)


def test_missing_result_is_na(normalise):
    record = entra_audit()
    del record["properties"]["result"]
    (event,) = normalise(record)
    assert (event.event_result, event.event_result_details) == ("NA", None)


@pytest.mark.parametrize(
    ("activity", "operation_type", "expected"),
    [
        ("Disable account", "Update", "Disable"),
        ("Enable account", "Update", "Enable"),
        ("Update user", "Update", "Set"),
        ("Reset user password", "", "Set"),
        ("Delete user", "Delete", "Delete"),
        ("Add user", "Add", "Create"),
        ("Something new", "Whatever", "Other"),
    ],
)
def test_event_types(normalise, activity, operation_type, expected):
    (event,) = normalise(entra_audit(activity=activity, operation_type=operation_type))
    assert event.event_type == expected


def test_personal_data_in_other_properties_keeps_only_their_names(normalise):
    extra = [
        {
            "displayName": "StrongAuthenticationPhoneNumber",
            "oldValue": None,
            "newValue": '"+1 555 0100"',
        },
        {"displayName": "StreetAddress", "oldValue": '"1 Main St"', "newValue": '"2 Side St"'},
        {
            "displayName": "Included Updated Properties",
            "oldValue": None,
            "newValue": '"StrongAuthenticationPhoneNumber, StreetAddress"',
        },
    ]
    (event,) = normalise(
        entra_audit(activity="Update user", operation_type="Update", extra_properties=extra)
    )
    text = event.to_json().decode()
    for secret in ("555 0100", "Main St", "Side St"):
        assert secret not in text
    changed = _values(event.new_value)["ChangedProperties"]
    assert changed == ["StrongAuthenticationPhoneNumber", "StreetAddress"]


def test_modified_values_are_bounded(normalise):
    extra = [
        {"displayName": f"Role.Extra{i}", "oldValue": None, "newValue": json.dumps("x" * 5000)}
        for i in range(40)
    ]
    (event,) = normalise(entra_audit(extra_properties=extra))
    assert event.new_value is not None and len(event.new_value) <= 2048
    assert all(len(v) <= 256 for v in _values(event.new_value).values() if isinstance(v, str))


def test_identifier_patterns_apply_inside_values(normalise):
    extra = [
        {"displayName": "Group.DisplayName", "oldValue": None, "newValue": '"Ward MRN-1234567"'}
    ]
    (event,) = normalise(entra_audit(extra_properties=extra))
    assert "1234567" not in (event.new_value or "")


def test_properties_and_nested_lists_as_text(normalise):
    record = entra_audit()
    props = record["properties"]
    props["targetResources"] = json.dumps(props["targetResources"])
    props["initiatedBy"] = json.dumps(props["initiatedBy"])
    record["properties"] = json.dumps(props)
    record["Level"] = "4"
    record["level"] = "Informational"
    (event,) = normalise(record)
    assert event.object == "Global Administrator"
    assert event.actor_username == "mallory.admin@contoso-health.org"


def test_activity_time_when_the_envelope_has_none(normalise):
    record = entra_audit(7)
    del record["time"]
    (event,) = normalise(record)
    assert event.time_generated == at(7)


def test_object_of_a_non_role_change_is_the_target_never_a_person_name(normalise):
    record = entra_audit(activity="Update user", operation_type="Update")
    target = record["properties"]["targetResources"][0]
    target["displayName"] = "Carol Doctor"
    target["modifiedProperties"] = []
    record["properties"]["targetResources"] = [target]
    (event,) = normalise(record)
    assert event.object == "User"
    assert event.target_username == "carol.doctor@contoso-health.org"
    assert "Carol Doctor" not in event.to_json().decode()


def test_group_target_is_the_object(normalise):
    record = entra_audit(activity="Add member to group", category="GroupManagement")
    record["properties"]["targetResources"] = [
        {
            "id": "99999999-aaaa-4bbb-8ccc-000000000009",
            "displayName": "PHI Readers",
            "type": "Group",
        }
    ]
    (event,) = normalise(record)
    assert event.object == "PHI Readers"
    assert event.target_user_id is None


# ------------------------------------------------------------------ FHIR apart


def test_entra_audit_records_go_to_entra_audit_and_fhir_to_fhir():
    assert route(Record(entra_audit(), "u")) is entra_audit_source
    assert route(Record(fhir(), "u")) is fhir_source
    assert not entra_audit_source.matches(Record(fhir(), "u"))
    assert not fhir_source.matches(Record(entra_audit(), "u"))


def test_fhir_records_keep_their_events(normalise):
    (event,) = normalise(fhir(path="Patient/123"))
    assert event.event_product == "FHIR Service"
    assert event.patient_ref is not None


def test_fhir_record_without_resource_id_is_not_taken():
    record = fhir()
    del record["resourceId"]
    assert not entra_audit_source.matches(Record(record, "u"))


def test_directory_record_without_resource_id_is_recognised_by_its_shape():
    record = entra_audit()
    del record["resourceId"]
    assert entra_audit_source.matches(Record(record, "u"))
    record["properties"] = "not json"
    assert not entra_audit_source.matches(Record(record, "u"))


def test_other_provider_auditlogs_are_not_taken():
    record = entra_audit()
    record["resourceId"] = "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Other/things/t"
    assert not entra_audit_source.matches(Record(record, "u"))
    with pytest.raises(RecordRejected) as info:
        route(Record(record, "u"))
    assert info.value.code == "unknown-category"


# ------------------------------------------------------------------ hostile input

_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(['"x"', "[1e999]", '[{"a": NaN}]', "{}", "[]", '[[[[["deep"]]]]]', "[" * 5000]),
    st.lists(
        st.one_of(
            st.none(),
            st.text(max_size=5),
            st.dictionaries(st.text(max_size=5), st.text(max_size=5)),
        ),
        max_size=3,
    ),
    st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
)
_KEYS = [
    "time",
    "resourceId",
    "operationName",
    "properties",
    "properties.result",
    "properties.activityDisplayName",
    "properties.operationType",
    "properties.loggedByService",
    "properties.initiatedBy",
    "properties.initiatedBy.user",
    "properties.initiatedBy.user.id",
    "properties.initiatedBy.user.ipAddress",
    "properties.targetResources",
    "properties.additionalDetails",
    "properties.activityDateTime",
]


@given(
    base=st.sampled_from([entra_audit(), entra_audit(app_name="MS-PIM", service="PIM")]),
    changes=st.lists(st.tuples(st.sampled_from(_KEYS), _VALUES), min_size=1, max_size=5),
    modified=st.lists(
        st.fixed_dictionaries({"displayName": _VALUES, "oldValue": _VALUES, "newValue": _VALUES}),
        max_size=4,
    ),
)
def test_mutated_directory_records_never_raise_anything_but_rejected_or_skipped(
    base, changes, modified
):
    record = copy.deepcopy(base)
    record["properties"]["targetResources"][0]["modifiedProperties"].extend(modified)
    for path, value in changes:
        mutate(record, path, value)
    rec = Record(record, "uid")
    ctx = NormaliseContext(Pseudonymizer(b"k" * 32), "raw/x#0")
    try:
        events = route(rec).normalise(rec, ctx)
    except (RecordRejected, RecordSkipped):
        return
    for event in events:
        event.to_json()
        for value in (event.new_value, event.old_value):
            assert value is None or (len(value) <= 2048 and isinstance(json.loads(value), dict))


def test_properties_nested_deeper_than_the_parser_is_a_dead_letter(normalise):
    record = entra_audit()
    record["properties"] = "[" * 5000
    with pytest.raises(RecordRejected) as info:
        normalise(record)
    assert info.value.code == "properties-not-json"
