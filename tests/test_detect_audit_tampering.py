"""audit-tampering: changes that weaken the audit trail, unless a parent was deleted with them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from detections import RegistryError
from phiwatch.detect.alert_book import alert_id
from phiwatch.detect.testing import RuleHarness, access
from phiwatch.model import AccessEvent
from phiwatch.sources import activity as act
from tests.harness import run
from tests.records import STORAGE_ID, activity, fhir

SUB = "/subscriptions/s1"
RG = f"{SUB}/resourcegroups/rg-audit"
LAW = f"{RG}/providers/microsoft.operationalinsights/workspaces/law-phi"
ACCOUNT = f"{RG}/providers/microsoft.storage/storageaccounts/staudit"
CONTAINER = f"{ACCOUNT}/blobservices/default/containers/insights-logs-auditevent"
POLICY = f"{CONTAINER}/immutabilitypolicies/default"
NAMESPACE = f"{RG}/providers/microsoft.eventhub/namespaces/ehn-phi"
HUB = f"{NAMESPACE}/eventhubs/phi-diagnostics"
WHO = "mallory.admin@contoso-health.org"


def change(
    at: str,
    operation: str,
    target: str,
    new_value: dict[str, Any] | None = None,
    *,
    event_type: str | None = None,
    result: str = "Success",
    uid: str | None = None,
) -> AccessEvent:
    verb = operation.rsplit("/", 1)[-1]
    kind = event_type or {"DELETE": "Delete", "ACTION": "Execute"}.get(verb, "Set")
    event = access(
        at,
        actor=WHO,
        ip="203.0.113.9",
        product=act.PRODUCT,
        operation=operation,
        event_type=kind,  # type: ignore[arg-type]
        sub_type=operation.lower().rpartition("/")[0],
        result=result,  # type: ignore[arg-type]
        target=target,
        uid=uid or f"{operation}-{target}-{at}",
    )
    if new_value is None:
        return event
    return event.model_copy(update={"new_value": json.dumps(new_value, separators=(",", ":"))})


def later(at: str = "2026-03-02 10:30:00+00:00") -> AccessEvent:
    """Unrelated traffic that moves event time past the grace period."""
    return access(at, target=f"{SUB}/resourcegroups/rg/providers/x/services/one", uid="later")


def run_rule(*events: AccessEvent, params: dict[str, Any] | None = None) -> RuleHarness:
    return RuleHarness("audit-tampering", params).feed(*events, later()).finish()


def test_immutability_policy_deleted_fires_once_with_reasons_and_entities():
    delete = change(
        "2026-03-02 10:00:00+00:00",
        "MICROSOFT.STORAGE/STORAGEACCOUNTS/BLOBSERVICES/CONTAINERS/IMMUTABILITYPOLICIES/DELETE",
        POLICY,
    )
    rule = run_rule(delete)
    (alert,) = rule.alerts
    assert alert.alert_id == alert_id("audit-tampering", POLICY, delete.event_uid)
    assert alert.severity == "High"
    assert alert.title == f"Immutability policy deleted: default by {WHO}"
    assert alert.reasons[0] == (
        f"Immutability policy deleted: default, by {WHO} at 2026-03-02 10:00:00 UTC."
    )
    assert alert.reasons[1] == (
        "No parent of default was deleted within 10 minutes, so this is not the cascade of "
        "a decommissioning."
    )
    assert "change ticket" in alert.reasons[2]
    assert (alert.target_resource_id, alert.actor_username, alert.src_ip_addr) == (
        POLICY,
        WHO,
        "203.0.113.9",
    )
    assert alert.evidence_event_uids == [delete.event_uid]
    assert alert.tactics == ["DefenseEvasion", "Impact"]
    assert alert.techniques == ["T1562.008", "T1485"]


@pytest.mark.parametrize(
    ("operation", "target", "body", "title"),
    [
        (
            "MICROSOFT.STORAGE/STORAGEACCOUNTS/BLOBSERVICES/WRITE",
            f"{ACCOUNT}/blobservices/default",
            {"deleteRetentionPolicy": {"enabled": False}, "isVersioningEnabled": False},
            "Blob soft delete and blob versioning turned off: default",
        ),
        (
            "MICROSOFT.STORAGE/STORAGEACCOUNTS/BLOBSERVICES/CONTAINERS/IMMUTABILITYPOLICIES/WRITE",
            POLICY,
            {"immutabilityPeriodSinceCreationInDays": 1, "allowProtectedAppendWrites": True},
            "Immutability policy shortened: default",
        ),
        (
            "MICROSOFT.STORAGE/STORAGEACCOUNTS/MANAGEMENTPOLICIES/WRITE",
            f"{ACCOUNT}/managementpolicies/default",
            {
                "policy": {
                    "rules": [
                        {
                            "name": "age-out",
                            "enabled": True,
                            "type": "Lifecycle",
                            "definition": {
                                "filters": {
                                    "blobTypes": ["appendBlob"],
                                    "prefixMatch": ["insights-logs-auditevent/"],
                                },
                                "actions": {
                                    "baseBlob": {"delete": {"daysAfterModificationGreaterThan": 1}}
                                },
                            },
                        }
                    ]
                }
            },
            "Lifecycle rule set to delete audit containers: default",
        ),
        (
            "MICROSOFT.OPERATIONALINSIGHTS/WORKSPACES/WRITE",
            LAW,
            {"retentionInDays": 7, "sku": {"name": "PerGB2018"}},
            "Log Analytics workspace retention lowered: law-phi",
        ),
        (
            "MICROSOFT.OPERATIONALINSIGHTS/WORKSPACES/TABLES/WRITE",
            f"{LAW}/tables/PhiAccessEvents_CL",
            {"plan": "Basic"},
            "Log Analytics table moved to the Basic plan: PhiAccessEvents_CL",
        ),
        (
            "MICROSOFT.INSIGHTS/DATACOLLECTIONRULES/WRITE",
            f"{RG}/providers/microsoft.insights/datacollectionrules/dcr-phi",
            {"dataFlows": [{"streams": ["Custom-Phi"], "transformKql": "source | where false"}]},
            "Data collection rule transform set: dcr-phi",
        ),
        (
            "MICROSOFT.SQL/SERVERS/AUDITINGSETTINGS/WRITE",
            f"{RG}/providers/microsoft.sql/servers/sql-ehr/auditingsettings/default",
            {"state": "Disabled"},
            "SQL auditing disabled: default",
        ),
        (
            "MICROSOFT.SECURITY/PRICINGS/WRITE",
            f"{SUB}/providers/microsoft.security/pricings/StorageAccounts",
            {"pricingTier": "Free"},
            "Defender plan set to Free: StorageAccounts",
        ),
    ],
)
def test_weakening_writes_fire_on_their_new_value(operation, target, body, title):
    (alert,) = run_rule(change("2026-03-02 10:00:00+00:00", operation, target, body)).alerts
    assert alert.title == f"{title} by {WHO}"
    assert alert.target_resource_id == target


@pytest.mark.parametrize(
    ("operation", "target", "body"),
    [
        # Hardening, or a value above the floors.
        (
            "MICROSOFT.STORAGE/STORAGEACCOUNTS/BLOBSERVICES/WRITE",
            f"{ACCOUNT}/blobservices/default",
            {"deleteRetentionPolicy": {"enabled": True, "days": 30}, "isVersioningEnabled": True},
        ),
        (
            "MICROSOFT.STORAGE/STORAGEACCOUNTS/BLOBSERVICES/CONTAINERS/IMMUTABILITYPOLICIES/WRITE",
            POLICY,
            {"immutabilityPeriodSinceCreationInDays": 2555},
        ),
        (
            "MICROSOFT.OPERATIONALINSIGHTS/WORKSPACES/WRITE",
            LAW,
            {"retentionInDays": 365},
        ),
        (
            "MICROSOFT.OPERATIONALINSIGHTS/WORKSPACES/TABLES/WRITE",
            f"{LAW}/tables/PhiAccessEvents_CL",
            {"plan": "Analytics", "retentionInDays": 180},
        ),
        (
            "MICROSOFT.INSIGHTS/DATACOLLECTIONRULES/WRITE",
            f"{RG}/providers/microsoft.insights/datacollectionrules/dcr-phi",
            {"dataFlows": [{"streams": ["Custom-Phi"], "transformKql": "source"}]},
        ),
        (
            "MICROSOFT.SQL/SERVERS/AUDITINGSETTINGS/WRITE",
            f"{RG}/providers/microsoft.sql/servers/sql-ehr/auditingsettings/default",
            {"state": "Enabled"},
        ),
        (
            "MICROSOFT.SECURITY/PRICINGS/WRITE",
            f"{SUB}/providers/microsoft.security/pricings/StorageAccounts",
            {"pricingTier": "Standard"},
        ),
        # A lifecycle rule that only tiers, or deletes another container's blobs.
        (
            "MICROSOFT.STORAGE/STORAGEACCOUNTS/MANAGEMENTPOLICIES/WRITE",
            f"{ACCOUNT}/managementpolicies/default",
            {
                "policy": {
                    "rules": [
                        {
                            "name": "scratch",
                            "enabled": True,
                            "definition": {
                                "filters": {"prefixMatch": ["scratch/"]},
                                "actions": {"baseBlob": {"delete": {"daysAfterModification": 7}}},
                            },
                        }
                    ]
                }
            },
        ),
        # The bodies did not reach phiwatch: unknown, not guessed at.
        ("MICROSOFT.OPERATIONALINSIGHTS/WORKSPACES/WRITE", LAW, None),
    ],
)
def test_benign_or_unknown_writes_do_not_fire(operation, target, body):
    assert run_rule(change("2026-03-02 10:00:00+00:00", operation, target, body)).alerts == []


def test_a_failed_change_or_a_creation_does_not_fire():
    failed = change(
        "2026-03-02 10:00:00+00:00",
        "MICROSOFT.OPERATIONALINSIGHTS/WORKSPACES/PURGE/ACTION",
        LAW,
        result="Failure",
    )
    created = change(
        "2026-03-02 10:01:00+00:00",
        "MICROSOFT.OPERATIONALINSIGHTS/WORKSPACES/WRITE",
        LAW,
        {"retentionInDays": 30},
        event_type="Create",
    )
    assert run_rule(failed, created).alerts == []


def test_near_miss_resource_group_deleted_with_its_workspace_and_lock():
    lock = change(
        "2026-03-02 10:00:00+00:00",
        "MICROSOFT.AUTHORIZATION/LOCKS/DELETE",
        f"{RG}/providers/microsoft.authorization/locks/do-not-delete",
    )
    workspace = change(
        "2026-03-02 10:02:00+00:00", "MICROSOFT.OPERATIONALINSIGHTS/WORKSPACES/DELETE", LAW
    )
    group = change(
        "2026-03-02 10:06:00+00:00", "MICROSOFT.RESOURCES/SUBSCRIPTIONS/RESOURCEGROUPS/DELETE", RG
    )
    assert run_rule(lock, workspace, group).alerts == []
    # Out of order across batches: the same.
    rule = RuleHarness("audit-tampering").feed(group).feed(workspace, lock).feed(later())
    assert rule.finish().alerts == []


def test_a_parent_deleted_after_the_grace_period_does_not_explain():
    workspace = change(
        "2026-03-02 10:00:00+00:00", "MICROSOFT.OPERATIONALINSIGHTS/WORKSPACES/DELETE", LAW
    )
    group = change(
        "2026-03-02 10:20:00+00:00", "MICROSOFT.RESOURCES/SUBSCRIPTIONS/RESOURCEGROUPS/DELETE", RG
    )
    (alert,) = run_rule(workspace, group).alerts
    assert alert.title == f"Log Analytics workspace deleted: law-phi by {WHO}"


def test_a_namespace_delete_fires_and_explains_its_hubs_delete():
    hub = change("2026-03-02 10:00:00+00:00", "MICROSOFT.EVENTHUB/NAMESPACES/EVENTHUBS/DELETE", HUB)
    namespace = change(
        "2026-03-02 10:01:00+00:00", "MICROSOFT.EVENTHUB/NAMESPACES/DELETE", NAMESPACE
    )
    (alert,) = run_rule(hub, namespace).alerts
    assert alert.alert_id == alert_id("audit-tampering", NAMESPACE, namespace.event_uid)
    assert alert.title == f"Event Hubs namespace deleted: ehn-phi by {WHO}"


def test_later_changes_of_one_resource_enrich_one_alert_and_redelivery_changes_nothing():
    first = change(
        "2026-03-02 10:00:00+00:00",
        "MICROSOFT.OPERATIONALINSIGHTS/WORKSPACES/WRITE",
        LAW,
        {"retentionInDays": 30},
    )
    second = change(
        "2026-03-02 10:03:00+00:00",
        "MICROSOFT.OPERATIONALINSIGHTS/WORKSPACES/PURGE/ACTION",
        LAW,
    )
    one = RuleHarness("audit-tampering").feed(first, second, later()).finish()
    split = (
        RuleHarness("audit-tampering")
        .feed(first)
        .restart()
        .feed(second, first)
        .restart()
        .feed(later(), second)
        .finish()
    )
    (alert,) = one.alerts
    assert [a.model_dump() for a in split.alerts] == [alert.model_dump()]
    assert alert.alert_id == alert_id("audit-tampering", LAW, first.event_uid)
    assert alert.evidence_event_uids == [first.event_uid, second.event_uid]
    assert alert.title == f"Log Analytics workspace retention lowered: law-phi by {WHO}"
    assert alert.reasons[0].startswith(
        "Log Analytics workspace retention lowered: law-phi (30 days, below the 90-day floor), by"
    )
    assert alert.reasons[-1] == "1 later change of the same resource is in the evidence."


def test_floors_are_parameters():
    write = change(
        "2026-03-02 10:00:00+00:00",
        "MICROSOFT.OPERATIONALINSIGHTS/WORKSPACES/WRITE",
        LAW,
        {"retentionInDays": 30},
    )
    assert run_rule(write, params={"min_retention_days": 30}).alerts == []
    with pytest.raises(RegistryError, match="min_retention_days"):
        RuleHarness("audit-tampering", {"min_retention_days": 0})


def test_full_pipeline_legal_hold_cleared_from_raw_records(tmp_path):
    container = STORAGE_ID + "/BLOBSERVICES/DEFAULT/CONTAINERS/INSIGHTS-LOGS-AUDITEVENT"
    operation = "MICROSOFT.STORAGE/STORAGEACCOUNTS/BLOBSERVICES/CONTAINERS/CLEARLEGALHOLD/ACTION"
    records = [
        activity(60, operation=operation, resource_id=container, result="Start"),
        activity(61, operation=operation, resource_id=container),
    ] + [fhir(120 + 60 * m, path="metadata", interaction="capabilities") for m in range(20)]
    sink = run(records, tmp_path)
    tamper = [a for a in sink.alerts.values() if a.rule_id == "audit-tampering"]
    (alert,) = tamper
    uid = next(e.event_uid for e in sink.events if e.operation == operation)
    assert alert.alert_id == alert_id("audit-tampering", container.lower(), uid)
    assert alert.title == f"Legal hold cleared: insights-logs-auditevent by {WHO}"
    assert alert.target_resource_id == container.lower()
