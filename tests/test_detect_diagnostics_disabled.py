"""diagnostics-disabled: deletes not explained by a resource deletion, and switched-off logs."""

from __future__ import annotations

import json

from phiwatch.detect.alert_book import alert_id
from tests.harness import run
from tests.records import KV_ID, STORAGE_ID, SUB, activity, at, fhir

DIAG = KV_ID + "/PROVIDERS/MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/TO-HUB"
STORAGE_DIAG = STORAGE_ID + "/PROVIDERS/MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/TO-HUB"


def filler(start: float, minutes: int) -> list[dict]:
    """Unrelated traffic that moves event time forward."""
    return [
        fhir(start + 60 * m, path="metadata", interaction="capabilities") for m in range(minutes)
    ]


def test_delete_without_resource_deletion_alerts_once_time_passes_the_grace(tmp_path):
    records = [activity(60, result="Start"), activity(61)] + filler(120, 40)
    sink = run(records, tmp_path, finish=False)
    (alert,) = sink.alerts.values()
    delete_uid = next(e.event_uid for e in sink.events if e.operation.endswith("/DELETE"))
    assert alert.alert_id == alert_id("diagnostics-disabled", DIAG.lower(), delete_uid)
    assert alert.severity == "High"
    assert alert.title == (
        "Diagnostic setting 'to-hub' was deleted from kv-phi by mallory.admin@contoso-health.org"
    )
    assert alert.reasons[0] == (
        "Diagnostic setting 'to-hub' was deleted from kv-phi by "
        "mallory.admin@contoso-health.org at 2026-11-02 08:01:01 UTC."
    )
    assert "not the cascade of a resource deletion" in alert.reasons[1]
    assert (alert.target_resource_id, alert.actor_username, alert.src_ip_addr) == (
        DIAG.lower(),
        "mallory.admin@contoso-health.org",
        "203.0.113.9",
    )
    assert alert.evidence_event_uids == [delete_uid]
    assert alert.detected_at == at(61)
    assert alert.tactics == ["DefenseEvasion"] and alert.techniques == ["T1562.008"]


def test_pending_delete_is_settled_at_end_of_input(tmp_path):
    sink = run([activity(0)], tmp_path, finish=True)
    assert len(sink.alerts) == 1
    assert run([activity(0)], tmp_path, finish=False).alerts == {}


def test_resource_deleted_around_the_same_time_explains_it(tmp_path):
    resource_delete = activity(
        120, operation="MICROSOFT.STORAGE/STORAGEACCOUNTS/DELETE", resource_id=STORAGE_ID
    )
    before = [activity(60, resource_id=STORAGE_DIAG), resource_delete]
    after = [resource_delete, activity(180, resource_id=STORAGE_DIAG)]
    assert run(before + filler(200, 20), tmp_path).alerts == {}
    assert run(after + filler(200, 20), tmp_path).alerts == {}


def test_resource_group_deletion_explains_it(tmp_path):
    rg = f"/SUBSCRIPTIONS/{SUB.upper()}/RESOURCEGROUPS/RG-PHI"
    records = [
        activity(0, resource_id=STORAGE_DIAG),
        activity(
            30, operation="MICROSOFT.RESOURCES/SUBSCRIPTIONS/RESOURCEGROUPS/DELETE", resource_id=rg
        ),
    ]
    assert run(records, tmp_path).alerts == {}


def test_resource_deleted_long_after_does_not_explain_it(tmp_path):
    records = [
        activity(0, resource_id=STORAGE_DIAG),
        *filler(60, 30),
        activity(
            1900, operation="MICROSOFT.STORAGE/STORAGEACCOUNTS/DELETE", resource_id=STORAGE_ID
        ),
    ]
    assert len(run(records, tmp_path).alerts) == 1


def test_write_that_turns_logging_off_alerts_without_waiting_for_the_grace(tmp_path):
    body = json.dumps({"properties": {"logs": [{"category": "AuditEvent", "enabled": False}]}})
    record = activity(5, operation="MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/WRITE", request_body=body)
    # Four minutes of traffic: past the reorder delay, well inside the 10-minute grace.
    traffic = [fhir(10 + 5 * i, path="metadata", interaction="capabilities") for i in range(48)]
    (alert,) = run([record, *traffic], tmp_path, finish=False).alerts.values()
    assert alert.title.startswith(
        "Diagnostic setting 'to-hub' on kv-phi was changed to send no logs"
    )
    assert "never a side effect" in alert.reasons[1]


def test_failed_or_enabling_changes_do_not_alert(tmp_path):
    enable = json.dumps({"properties": {"logs": [{"category": "AuditEvent", "enabled": True}]}})
    records = [
        activity(0, result="Failure"),
        activity(5, operation="MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/WRITE", request_body=enable),
    ]
    assert run(records, tmp_path).alerts == {}


def test_redelivered_delete_is_one_alert(tmp_path):
    records = [activity(0), activity(0), *filler(30, 15), activity(0)]
    assert len(run(records, tmp_path).alerts) == 1
