"""attestation-coverage-drop on events (RuleHarness): the inventory seeds the state, Activity
changes move it, one alert per control per drop episode, and off without an inventory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from detections import RegistryError, attestation_coverage_drop
from phiwatch.attest.inventory import COLUMNS
from phiwatch.detect.alert_book import alert_id
from phiwatch.detect.testing import RuleHarness, access
from phiwatch.model import AccessEvent, EventType
from phiwatch.sources import activity
from tests import records
from tests.harness import run

RULE = "attestation-coverage-drop"
DAY = "2026-03-02"
SUB = "/subscriptions/sub-1/resourcegroups/rg-phi/providers"
OTHER_SUB = "/subscriptions/sub-2/resourcegroups/rg-phi/providers"
ACCOUNTS = [f"{SUB}/microsoft.storage/storageaccounts/stphi{i:02}" for i in range(10)]
VAULT = f"{SUB}/microsoft.keyvault/vaults/kv-phi"
SERVER = f"{SUB}/microsoft.sql/servers/sql-phi"
DB = f"{SERVER}/databases/ehr"
FAR = f"{OTHER_SUB}/microsoft.keyvault/vaults/kv-far"
ADMIN = "mallory.admin@contoso-health.example"
ALL = [*ACCOUNTS, VAULT, DB, FAR]
# The full-pipeline records' account and vault, with a third resource beside them.
PIPELINE_ESTATE = [
    (records.STORAGE_ID, "storage"),
    (records.KV_ID, "keyvault"),
    (records.STORAGE_ID.rsplit("/", 1)[0] + "/stother", "storage"),
]


def inventory(tmp_path: Path, *, vault_public: bool = False) -> str:
    lines = [",".join(COLUMNS)]
    for rid in ALL:
        kind = {"vaults": "keyvault", "storageaccounts": "storage", "servers": "sql"}
        kind_of = next(k for part, k in kind.items() if f"/{part}/" in rid)
        network = "Enabled" if (vault_public and rid == VAULT) else "Disabled"
        lines.append(f"{rid},{kind_of},,,{network},,true,,")
    path = tmp_path / "inventory.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def change(
    clock: str,
    target: str,
    new_value: dict[str, Any] | None,
    *,
    sub_type: str,
    event_type: EventType = "Set",
    operation: str | None = None,
) -> AccessEvent:
    event = access(
        f"{DAY} {clock}+00:00",
        actor=ADMIN,
        ip="203.0.113.9",
        product=activity.PRODUCT,
        operation=operation or f"{sub_type.upper()}/WRITE",
        event_type=event_type,
        sub_type=sub_type,
        target=target,
        uid=f"{clock}|{target}|{json.dumps(new_value)}|{event_type}",
    )
    return event.model_copy(update={"new_value": json.dumps(new_value) if new_value else None})


def network(clock: str, target: str, setting: str) -> AccessEvent:
    sub_type = next(
        t
        for t in (
            "microsoft.storage/storageaccounts",
            "microsoft.keyvault/vaults",
            "microsoft.sql/servers",
        )
        if f"/{t.split('/')[1]}/" in target
    )
    return change(clock, target, {"publicNetworkAccess": setting}, sub_type=sub_type)


def settings_deleted(clock: str, resource: str) -> AccessEvent:
    setting = f"{resource}/providers/microsoft.insights/diagnosticsettings/to-phiwatch"
    return change(
        clock,
        setting,
        None,
        sub_type=activity.DIAGNOSTIC_SETTINGS,
        event_type="Delete",
        operation="MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/DELETE",
    )


def harness(tmp_path: Path, **params: Any) -> RuleHarness:
    return RuleHarness(RULE, {"inventory": inventory(tmp_path), **params})


def test_a_resource_opened_drops_transmission_coverage_once(tmp_path: Path) -> None:
    rule = harness(tmp_path)
    rule.feed(network("10:00:00", VAULT, "Enabled"))
    # A second resource in the same episode joins the alert; it does not open another.
    rule.feed(network("10:05:00", ACCOUNTS[3], "Enabled"))
    rule.finish()
    (alert,) = rule.alerts
    key = "sub-1|164.312(e)(1)"
    anchor = network("10:00:00", VAULT, "Enabled").event_uid
    assert alert.alert_id == alert_id(RULE, key, anchor)
    # 12 resources in sub-1: 10 of 12 after the second (83.3%), above the 0.8 High floor.
    assert alert.severity == "Medium"
    assert alert.title == "HIPAA 164.312(e)(1) coverage fell to 83.3% (kv-phi, stphi03)"
    assert alert.reasons[0] == (
        "HIPAA 164.312(e)(1) (Transmission security) now covers 10 of 12 PHI resources in "
        "subscription sub-1 (83.3%), below the 95.0% floor (lowest 83.3%)."
    )
    assert alert.reasons[1] == (
        f"Fell out after changes by {ADMIN} from {DAY} 10:00:00 UTC to {DAY} 10:05:00 UTC: "
        "kv-phi (open to the public network); stphi03 (open to the public network)."
    )
    assert alert.reasons[2] == f"Resources: {VAULT.lower()}, {ACCOUNTS[3].lower()}."
    assert alert.target_resource_id == VAULT


def test_high_below_the_second_floor(tmp_path: Path) -> None:
    rule = harness(tmp_path, high_below=0.9)
    rule.feed(network("10:00:00", VAULT, "Enabled")).finish()
    assert [a.severity for a in rule.alerts] == ["Medium"]  # 11 of 12: 91.7%
    rule.feed(network("10:01:00", ACCOUNTS[0], "Enabled")).finish()
    assert [a.severity for a in rule.alerts] == ["High"]  # 10 of 12: 83.3%, the same alert


def test_recovery_ends_the_episode_and_a_new_drop_is_a_new_alert(tmp_path: Path) -> None:
    rule = harness(tmp_path)
    rule.feed(network("10:00:00", VAULT, "Enabled"))
    rule.feed(network("10:10:00", VAULT, "Disabled"))  # back: 100%
    rule.feed(network("10:20:00", VAULT, "Enabled"))
    rule.finish()
    assert len(rule.alerts) == 2
    # A restart keeps the episode: the same change again (another uid) joins it.
    rule.restart()
    rule.feed(network("10:30:00", ACCOUNTS[1], "Enabled")).finish()
    assert len(rule.alerts) == 2


def test_diagnostics_deleted_drops_audit_controls_and_a_new_setting_restores(tmp_path: Path):
    rule = harness(tmp_path)
    rule.feed(settings_deleted("10:00:00", ACCOUNTS[0]))
    rule.feed(
        change(
            "10:30:00",
            f"{ACCOUNTS[0]}/providers/microsoft.insights/diagnosticsettings/to-phiwatch",
            None,
            sub_type=activity.DIAGNOSTIC_SETTINGS,
        )
    )
    rule.feed(settings_deleted("10:40:00", ACCOUNTS[0]))
    rule.finish()
    assert [a.title for a in rule.alerts] == [
        "HIPAA 164.312(b) coverage fell to 91.7% (stphi00)",
        "HIPAA 164.312(b) coverage fell to 91.7% (stphi00)",
    ]
    assert "diagnostic logs no longer reach phiwatch" in rule.alerts[0].reasons[1]


def test_a_sql_server_change_reaches_its_databases(tmp_path: Path) -> None:
    rule = harness(tmp_path)
    rule.feed(network("10:00:00", SERVER, "Enabled")).finish()
    (alert,) = rule.alerts
    assert alert.reasons[2] == f"Resources: {DB.lower()}."


def test_a_private_endpoint_deleted_fails_transmission(tmp_path: Path) -> None:
    rule = harness(tmp_path)
    connection = f"{VAULT}/privateendpointconnections/pe-1"
    sub_type = "microsoft.keyvault/vaults/privateendpointconnections"
    rule.feed(change("10:00:00", connection, None, sub_type=sub_type, event_type="Delete"))
    rule.finish()
    (alert,) = rule.alerts
    assert "kv-phi (no private endpoint)" in alert.reasons[1]


def test_look_alikes_stay_quiet(tmp_path: Path) -> None:
    rule = harness(tmp_path)
    rule.feed(
        network("10:00:00", VAULT, "Disabled"),  # already private
        network("10:01:00", f"{SUB}/microsoft.keyvault/vaults/not-phi", "Enabled"),  # not PHI
        settings_deleted("10:02:00", f"{SUB}/microsoft.keyvault/vaults/not-phi"),
    )
    failed = network("10:03:00", ACCOUNTS[0], "Enabled").model_copy(
        update={"event_result": "Failure", "event_uid": "failed"}
    )
    rule.feed(failed).finish()
    assert rule.alerts == []


def test_coverage_is_per_subscription(tmp_path: Path) -> None:
    rule = harness(tmp_path)
    rule.feed(network("10:00:00", FAR, "Enabled")).finish()
    (alert,) = rule.alerts
    assert alert.title == "HIPAA 164.312(e)(1) coverage fell to 0.0% (kv-far)"
    assert alert.severity == "High"  # 0 of 1, below 0.8


def test_a_control_below_at_start_up_raises_on_its_next_drop(tmp_path: Path) -> None:
    path = inventory(tmp_path, vault_public=True)  # 11 of 12: below 0.95 already
    rule = RuleHarness(RULE, {"inventory": path})
    rule.feed(network("10:00:00", VAULT, "Enabled")).finish()  # no change: still out
    assert rule.alerts == []
    rule.feed(network("10:05:00", ACCOUNTS[2], "Enabled")).finish()
    (alert,) = rule.alerts
    assert alert.reasons[2] == f"Resources: {ACCOUNTS[2].lower()}."


def test_off_without_an_inventory_and_says_so_once() -> None:
    attestation_coverage_drop._say_off.cache_clear()
    with capture_logs() as logs:
        rule = RuleHarness(RULE)
        RuleHarness(RULE)
    assert [e["rule"] for e in logs if "off until configured" in e["event"]] == [RULE]
    assert rule.feed(network("10:00:00", VAULT, "Enabled")).finish().alerts == []


def test_parameters_are_checked(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="high_below"):
        RuleHarness(RULE, {"inventory": inventory(tmp_path), "min_coverage": 0.5})
    with pytest.raises(RegistryError, match="inventory cannot be read"):
        RuleHarness(RULE, {"inventory": str(tmp_path / "missing.csv")})
    bad = tmp_path / "bad.csv"
    bad.write_text("ResourceId,Kind\nnot-an-id,fhir\n", encoding="utf-8")
    with pytest.raises(RegistryError, match="row 1: ResourceId"):
        RuleHarness(RULE, {"inventory": str(bad)})


def test_an_open_sql_firewall_rule_and_its_deletion(tmp_path: Path) -> None:
    rule = harness(tmp_path)
    firewall = f"{SERVER}/firewallrules/everyone"
    open_rule = {"startIpAddress": "0.0.0.0", "endIpAddress": "255.255.255.255"}
    sub_type = "microsoft.sql/servers/firewallrules"
    rule.feed(change("10:00:00", firewall, open_rule, sub_type=sub_type))
    rule.feed(change("10:10:00", firewall, None, sub_type=sub_type, event_type="Delete"))
    rule.feed(change("10:20:00", firewall, open_rule, sub_type=sub_type))  # a new episode
    rule.finish()
    assert [a.reasons[2] for a in rule.alerts] == [f"Resources: {DB.lower()}."] * 2


def test_a_public_container_is_its_accounts_exposure(tmp_path: Path) -> None:
    rule = harness(tmp_path)
    container = f"{ACCOUNTS[4]}/blobservices/default/containers/lab-results"
    sub_type = "microsoft.storage/storageaccounts/blobservices/containers"
    rule.feed(change("10:00:00", container, {"publicAccess": "Blob"}, sub_type=sub_type))
    rule.finish()
    (alert,) = rule.alerts
    assert alert.reasons[2] == f"Resources: {ACCOUNTS[4].lower()}."


def test_the_archive_immutability_policy_deleted(tmp_path: Path) -> None:
    archive = f"{SUB}/microsoft.storage/storageaccounts/stphiarchive"
    path = tmp_path / "inventory.json"
    row = {
        "ResourceId": archive,
        "Kind": "storage",
        "Archive": True,
        "PublicNetworkAccess": "Disabled",
        "CustomerManagedKey": True,
        "PrivateEndpoint": True,
        "ImmutabilityLocked": True,
    }
    path.write_text(json.dumps([row]), encoding="utf-8")
    rule = RuleHarness(RULE, {"inventory": str(path)})
    policy = f"{archive}/blobservices/default/containers/audit/immutabilitypolicies/default"
    sub_type = "microsoft.storage/storageaccounts/blobservices/containers/immutabilitypolicies"
    rule.feed(change("10:00:00", policy, None, sub_type=sub_type, event_type="Delete"))
    rule.finish()
    # Both integrity controls rest on the lock: one alert each, High (0 of 1).
    assert sorted(a.title for a in rule.alerts) == [
        "HIPAA 164.312(c)(1) coverage fell to 0.0% (stphiarchive)",
        "HIPAA 164.312(c)(2) coverage fell to 0.0% (stphiarchive)",
    ]
    assert {a.severity for a in rule.alerts} == {"High"}


# ---------------------------------------------------------------- full pipeline


def test_from_raw_activity_records(tmp_path: Path) -> None:
    path = tmp_path / "inventory.csv"
    rows = [",".join(COLUMNS)]
    rows += [f"{rid},{kind},,,Disabled,,true,,true" for rid, kind in PIPELINE_ESTATE]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    opened = {"properties": {"publicNetworkAccess": "Enabled"}}
    write = "MICROSOFT.STORAGE/STORAGEACCOUNTS/WRITE"
    start = records.activity(
        0,
        operation=write,
        resource_id=records.STORAGE_ID,
        result="Start",
        request_body=json.dumps(opened),
    )
    done = records.activity(5, operation=write, resource_id=records.STORAGE_ID)
    start["correlationId"] = done["correlationId"] = "c1"
    deleted = records.activity(60)  # the vault's diagnostic setting deleted
    params = {RULE: {"inventory": str(path)}}
    alerts = run([start, done, deleted], tmp_path, per_body=1, bodies_per_batch=1, params=params)
    mine = sorted((a for a in alerts.alerts.values() if a.rule_id == RULE), key=lambda a: a.title)
    assert [a.title.split(" coverage")[0] for a in mine] == [
        "HIPAA 164.312(b)",
        "HIPAA 164.312(e)(1)",
    ]
    assert mine[1].target_resource_id == records.STORAGE_ID.lower()
    assert mine[0].severity == "High"  # 2 of 3 log: 66.7%, below 0.8
