"""public-exposure on events (RuleHarness) and once from raw Activity records."""

from __future__ import annotations

import json
from typing import Any

import pytest

from phiwatch.detect.alert_book import alert_id
from phiwatch.detect.testing import RuleHarness, access
from phiwatch.model import AccessEvent, EventResult, EventType
from phiwatch.sources import activity
from tests import records
from tests.harness import run

RULE = "public-exposure"
SUB = "/subscriptions/sub-1/resourcegroups/rg-phi/providers"
ACCOUNT = f"{SUB}/microsoft.storage/storageaccounts/stphi01"
CONTAINER = f"{ACCOUNT}/blobservices/default/containers/lab-results"
SQL = f"{SUB}/microsoft.sql/servers/sql-phi"
NSG_RULE = f"{SUB}/microsoft.network/networksecuritygroups/nsg-app/securityrules/allow-rdp"
ADMIN = "mallory.admin@contoso-health.example"


def change(
    at: str,
    target: str,
    new_value: dict[str, Any] | None,
    *,
    sub_type: str,
    event_type: EventType = "Set",
    result: EventResult = "Success",
    uid: str | None = None,
    actor: str = ADMIN,
) -> AccessEvent:
    event = access(
        at,
        actor=actor,
        ip="203.0.113.9",
        product=activity.PRODUCT,
        operation=f"{sub_type.upper()}/WRITE",
        event_type=event_type,
        sub_type=sub_type,
        result=result,
        target=target,
        uid=uid or f"{at}|{target}|{json.dumps(new_value)}|{result}",
    )
    return event.model_copy(update={"new_value": json.dumps(new_value) if new_value else None})


def account(at: str, nv: dict[str, Any], **kw: Any) -> AccessEvent:
    return change(at, ACCOUNT, nv, sub_type="microsoft.storage/storageaccounts", **kw)


def container(at: str, level: str, **kw: Any) -> AccessEvent:
    sub_type = "microsoft.storage/storageaccounts/blobservices/containers"
    return change(at, CONTAINER, {"publicAccess": level}, sub_type=sub_type, **kw)


def firewall(at: str, start: str, end: str, name: str = "open") -> AccessEvent:
    nv = {"startIpAddress": start, "endIpAddress": end}
    return change(
        at, f"{SQL}/firewallrules/{name}", nv, sub_type="microsoft.sql/servers/firewallrules"
    )


PRIVATE = {"allowBlobPublicAccess": False, "publicNetworkAccess": "Disabled"}


def test_anonymous_access_on_a_private_account_fires_high_with_its_history():
    rule = RuleHarness(RULE).feed(account("2026-11-02 09:00:00Z", PRIVATE))
    opened = account("2026-11-02 21:14:05Z", {"allowBlobPublicAccess": True})
    (alert,) = rule.feed(opened).alerts
    assert alert.alert_id == alert_id(RULE, ACCOUNT, opened.event_uid)
    assert alert.severity == "High"
    assert alert.title == f"{ADMIN} allowed anonymous blob access on stphi01"
    assert alert.reasons[0] == (
        f"{ADMIN} allowed anonymous blob access on stphi01 at 2026-11-02 21:14:05 UTC; "
        "the change succeeded."
    )
    assert "last saw this setting private at 2026-11-02 09:00:00 UTC" in alert.reasons[1]
    assert alert.reasons[2].startswith(f"Check first whether {ADMIN} meant to open stphi01")
    assert alert.target_resource_id == ACCOUNT
    assert alert.src_ip_addr == "203.0.113.9"
    assert alert.actor_username == ADMIN
    assert alert.tactics == ["DefenseEvasion", "Collection"]


def test_an_unknown_earlier_state_fires_and_says_so():
    (alert,) = RuleHarness(RULE).feed(container("2026-11-02 10:00:00Z", "Container")).alerts
    assert alert.title == f"{ADMIN} made the container public (container) on lab-results"
    assert "whether it was private before is unknown" in alert.reasons[1]


def test_network_and_blob_opened_together_are_one_alert():
    nv = {"allowBlobPublicAccess": True, "networkAcls": {"defaultAction": "Allow"}}
    (alert,) = RuleHarness(RULE).feed(account("2026-11-02 10:00:00Z", nv)).alerts
    assert alert.severity == "High" and alert.event_count == 1
    assert (
        "allowed anonymous blob access; set the network default action to Allow" in alert.reasons[0]
    )


def test_a_later_opening_of_the_same_resource_enriches_and_upgrades():
    rule = RuleHarness(RULE)
    first = account("2026-11-02 10:00:00Z", {"publicNetworkAccess": "Enabled"})
    rule.feed(first)
    assert rule.alerts[0].severity == "Medium"
    rule.feed(account("2026-11-02 10:05:00Z", {"allowBlobPublicAccess": True}))
    (alert,) = rule.alerts
    assert alert.alert_id == alert_id(RULE, ACCOUNT, first.event_uid)
    assert alert.severity == "High" and alert.event_count == 2


@pytest.mark.parametrize(
    ("start", "end", "severity", "words"),
    [
        ("0.0.0.0", "255.255.255.255", "High", "opened the SQL firewall to every address"),
        ("0.0.0.0", "0.0.0.0", "Medium", "allowed every Azure service through the SQL firewall"),
    ],
)
def test_sql_firewall_rules(start, end, severity, words):
    (alert,) = RuleHarness(RULE).feed(firewall("2026-11-02 10:00:00Z", start, end)).alerts
    assert alert.severity == severity
    assert alert.title == f"{ADMIN} {words} on open"


def test_nsg_inbound_from_the_internet_is_high_on_rdp_and_medium_on_https():
    sub_type = "microsoft.network/networksecuritygroups/securityrules"
    rdp = {
        "direction": "Inbound",
        "access": "Allow",
        "sourceAddressPrefix": "Internet",
        "destinationPortRange": "3389",
    }
    https = {**rdp, "destinationPortRange": "443"}
    rule = RuleHarness(RULE).feed(change("2026-11-02 10:00:00Z", NSG_RULE, rdp, sub_type=sub_type))
    rule.feed(change("2026-11-02 10:00:00Z", NSG_RULE + "-https", https, sub_type=sub_type))
    assert [a.severity for a in rule.alerts] == ["High", "Medium"]
    assert "port 3389" in rule.alerts[0].title
    vnet_only = {**rdp, "sourceAddressPrefix": "VirtualNetwork"}
    quiet = RuleHarness(RULE).feed(
        change("2026-11-02 11:00:00Z", NSG_RULE, vnet_only, sub_type=sub_type)
    )
    assert quiet.alerts == []


def test_a_private_endpoint_connection_deleted_fires():
    target = f"{ACCOUNT}/privateendpointconnections/pe-1"
    sub_type = "microsoft.storage/storageaccounts/privateendpointconnections"
    event = change("2026-11-02 10:00:00Z", target, None, sub_type=sub_type, event_type="Delete")
    (alert,) = RuleHarness(RULE).feed(event).alerts
    assert alert.title == f"{ADMIN} deleted a private endpoint on pe-1"
    assert alert.severity == "Medium"


# ---------------------------------------------------------------- near misses


def test_writes_that_keep_it_private_never_fire():
    rule = RuleHarness(RULE).feed(
        account("2026-11-02 10:00:00Z", PRIVATE),
        account(
            "2026-11-02 10:01:00Z",
            {"publicNetworkAccess": "Enabled", "networkAcls": {"defaultAction": "Deny"}},
        ),
        container("2026-11-02 10:02:00Z", "None"),
        firewall("2026-11-02 10:03:00Z", "198.51.100.0", "198.51.100.63", name="vpn"),
    )
    assert rule.alerts == []


def test_a_failed_write_never_fires():
    failed = account("2026-11-02 10:00:00Z", {"allowBlobPublicAccess": True}, result="Failure")
    assert RuleHarness(RULE).feed(failed).alerts == []


def test_an_account_creation_never_fires_but_a_later_change_is_judged_against_it():
    created = account(
        "2026-11-02 10:00:00Z", {"publicNetworkAccess": "Enabled"}, event_type="Create"
    )
    rule = RuleHarness(RULE).feed(created)
    assert rule.alerts == []
    # Created public, then re-applied public by the pipeline: a no-op, not an exposure.
    rule.feed(account("2026-11-02 10:30:00Z", {"publicNetworkAccess": "Enabled"}))
    assert rule.alerts == []


def test_a_reapplied_public_state_is_not_a_new_exposure():
    rule = RuleHarness(RULE).feed(container("2026-11-02 10:00:00Z", "Blob"))
    rule.feed(container("2026-11-02 12:00:00Z", "Blob"))
    assert len(rule.alerts) == 1 and rule.alerts[0].event_count == 1


def test_allow_listed_resources_and_their_children_stay_quiet():
    rule = RuleHarness(RULE, {"allow_resources": [ACCOUNT.upper()]})
    rule.feed(container("2026-11-02 10:00:00Z", "Container"))
    assert rule.alerts == []


def test_unknown_params_are_refused():
    with pytest.raises(Exception, match="allow_resource"):
        RuleHarness(RULE, {"allow_resource": []})


# ---------------------------------------------------------------- delivery


def test_redelivery_batch_splits_and_restarts_change_nothing():
    events = [
        account("2026-11-02 09:00:00Z", PRIVATE),
        account("2026-11-02 10:00:00Z", {"allowBlobPublicAccess": True}),
        firewall("2026-11-02 10:10:00Z", "0.0.0.0", "255.255.255.255"),
    ]
    once = RuleHarness(RULE).feed(*events).alerts
    split = RuleHarness(RULE).feed(events[0]).restart().feed(events[1], events[0])
    split.restart().feed(events[2], events[1])
    assert once == split.alerts
    assert len(once) == 2


# ---------------------------------------------------------------- full pipeline


def _write(seconds: float, result: str, body: dict[str, Any] | None, corr: str) -> dict[str, Any]:
    record = records.activity(
        seconds,
        operation="MICROSOFT.STORAGE/STORAGEACCOUNTS/WRITE",
        resource_id=records.STORAGE_ID,
        result=result,
        request_body=json.dumps(body) if body else None,
    )
    record["correlationId"] = corr
    return record


def test_from_raw_records_start_body_carries_the_change(tmp_path):
    # Both request-body casings: Properties.AllowBlobPublicAccess is camel-cased by the source.
    raw = [
        _write(0, "Start", {"properties": {"allowBlobPublicAccess": False}}, "c1"),
        _write(5, "Success", None, "c1"),
        _write(600, "Start", {"Properties": {"AllowBlobPublicAccess": True}}, "c2"),
        _write(605, "Failure", None, "c2"),
        _write(900, "Start", {"Properties": {"AllowBlobPublicAccess": True}}, "c3"),
        _write(905, "Success", None, "c3"),
    ]
    (alert,) = run(raw, tmp_path, per_body=2, bodies_per_batch=1).alerts.values()
    assert alert.rule_id == RULE
    assert (
        alert.title == "mallory.admin@contoso-health.org allowed anonymous blob access on stphi01"
    )
    assert "last saw this setting private at 2026-11-02 08:00:05 UTC" in alert.reasons[1]
