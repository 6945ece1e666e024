"""Activity Log administrative normaliser: diagnostic settings, roles, deletes, Start pairs."""

from __future__ import annotations

import json

import pytest

from phiwatch.sources import RecordRejected, RecordSkipped
from phiwatch.sources.activity import diagnostic_setting_target
from tests.records import KV_ID, STORAGE_ID, SUB, activity

DIAG_ID = KV_ID + "/PROVIDERS/MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/TO-HUB"


def test_diagnostic_setting_delete(normalise):
    (event,) = normalise(activity(3))
    assert (event.event_type, event.event_result) == ("Delete", "Success")
    assert event.operation == "MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/DELETE"
    assert event.event_sub_type == "microsoft.insights/diagnosticsettings"
    assert event.object_type == "Configuration Atom"
    assert event.object == "to-hub"
    assert event.target_resource_id == DIAG_ID.lower()
    assert event.dvc_scope_id == SUB
    assert event.actor_user_id == "44444444-aaaa-4bbb-8ccc-000000000004"
    assert event.actor_username == "mallory.admin@contoso-health.org"
    assert event.actor_user_type == "Regular"
    assert event.src_ip_addr == "203.0.113.9"
    assert event.event_product == "Azure Resource Manager"
    assert event.source_category == "Administrative"


def test_monitored_resource_of_a_diagnostic_setting():
    assert diagnostic_setting_target(DIAG_ID) == KV_ID.lower()
    assert diagnostic_setting_target(STORAGE_ID) is None


@pytest.mark.parametrize("category", ["Administrative", "Write", "Delete", "Action"])
def test_streamed_category_variants_are_all_administrative(normalise, category):
    (event,) = normalise(activity(category=category))
    assert event.source_category == "Administrative"


@pytest.mark.parametrize("result", ["Start", "Accept"])
def test_non_terminal_records_are_skipped(normalise, result):
    with pytest.raises(RecordSkipped) as info:
        normalise(activity(result=result))
    assert info.value.code == "non-terminal"


def test_failure_result(normalise):
    (event,) = normalise(activity(result="Failure"))
    assert event.event_result == "Failure"


def _body(enabled: list[bool]) -> str:
    logs = [{"category": f"C{i}", "enabled": e} for i, e in enumerate(enabled)]
    return json.dumps({"properties": {"eventHubName": "diagnostics", "logs": logs}})


@pytest.mark.parametrize(
    ("body", "event_type"),
    [
        (_body([False, False]), "Disable"),
        (_body([]), "Set"),
        (_body([False, True]), "Set"),
        ("not json", "Set"),
        (None, "Set"),
    ],
)
def test_diagnostic_write_that_turns_every_log_off_is_disable(normalise, body, event_type):
    record = activity(operation="MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/WRITE", request_body=body)
    (event,) = normalise(record)
    assert event.event_type == event_type


def test_terminal_record_response_body_shows_the_resulting_settings(normalise):
    record = activity(
        operation="MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/WRITE", request_body=_body([True])
    )
    record["properties"]["responseBody"] = _body([False])
    (event,) = normalise(record)
    assert event.event_type == "Disable"


def test_role_assignment_and_created_status(normalise):
    rid = f"/SUBSCRIPTIONS/{SUB.upper()}/PROVIDERS/MICROSOFT.AUTHORIZATION/ROLEASSIGNMENTS/RA1"
    (event,) = normalise(
        activity(
            operation="MICROSOFT.AUTHORIZATION/ROLEASSIGNMENTS/WRITE",
            resource_id=rid,
            status_code="Created",
        )
    )
    assert (event.event_type, event.object_type) == ("Create", "Policy Rule")


def test_resource_delete(normalise):
    (event,) = normalise(
        activity(operation="MICROSOFT.STORAGE/STORAGEACCOUNTS/DELETE", resource_id=STORAGE_ID)
    )
    assert (event.event_type, event.object_type) == ("Delete", "Cloud Resource")
    assert event.target_resource_id == STORAGE_ID.lower()


def test_policy_events_are_counted_skips(normalise):
    with pytest.raises(RecordSkipped) as info:
        normalise(activity(category="Action", event_category="Policy"))
    assert info.value.reason == "activity log category 'Policy' is not monitored"
    with pytest.raises(RecordSkipped):
        normalise(activity(category="Policy"))


def test_unknown_categories_are_dead_letters_naming_the_category(normalise):
    # (StorageRead was the example until Storage got its normaliser.)
    gateway = f"/SUBSCRIPTIONS/{SUB}/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.NETWORK/"
    gateway += "APPLICATIONGATEWAYS/AGW"
    record = activity(category="ApplicationGatewayFirewallLog", resource_id=gateway)
    with pytest.raises(RecordRejected) as info:
        normalise(record)
    assert info.value.code == "unknown-category"
    assert info.value.reason == (
        "no normaliser for category 'ApplicationGatewayFirewallLog' from "
        "microsoft.network/applicationgateways"
    )


def test_principal_type_from_authorization_evidence(normalise):
    record = activity()
    record["identity"]["claims"] = {"appid": "app-9"}
    record["identity"]["authorization"]["evidence"]["principalType"] = "ServicePrincipal"
    (event,) = normalise(record)
    assert (event.actor_user_type, event.acting_app_id) == ("ServicePrincipal", "app-9")
