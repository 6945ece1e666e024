"""privilege-escalation on events (RuleHarness) and from raw Activity and Entra records."""

from __future__ import annotations

import json
from typing import Any

import pytest

from phiwatch.detect.alert_book import alert_id
from phiwatch.detect.grouping import actor_key, subscription_key
from phiwatch.detect.testing import RuleHarness, access
from phiwatch.model import AccessEvent, EventResult
from phiwatch.sources import activity, entra_audit
from tests import records
from tests.harness import run

RULE = "privilege-escalation"
SUB = "/subscriptions/sub-1"
ADMIN = "mallory.admin@contoso-health.example"
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
BLOB_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"


def assignment(
    at: str, role: str, *, scope: str = SUB, result: EventResult = "Success", n: int = 0
) -> AccessEvent:
    target = f"{SUB}/providers/microsoft.authorization/roleassignments/ra-{n}"
    event = access(
        at,
        actor=ADMIN,
        ip="203.0.113.9",
        product=activity.PRODUCT,
        operation="MICROSOFT.AUTHORIZATION/ROLEASSIGNMENTS/WRITE",
        event_type="Create",
        sub_type="microsoft.authorization/roleassignments",
        result=result,
        target=target,
        uid=f"ra-{at}-{role}-{n}-{result}",
    )
    nv = {
        "roleDefinitionId": f"{SUB}/providers/Microsoft.Authorization/roleDefinitions/{role}",
        "principalId": "99999999-aaaa-4bbb-8ccc-000000000009",
        "scope": scope,
    }
    return event.model_copy(update={"new_value": json.dumps(nv) if result == "Success" else None})


def directory(at: str, operation: str, *, sub_type: str, app: str | None = None) -> AccessEvent:
    event = access(
        at,
        actor=ADMIN,
        product=entra_audit.PRODUCT,
        operation=operation,
        sub_type=sub_type,
        target="/tenants/t1/providers/Microsoft.aadiam",
        uid=f"dir-{at}-{operation}",
    )
    return event.model_copy(update={"object": "Global Administrator", "acting_app_name": app})


def test_owner_on_a_subscription_fires_high():
    event = assignment("2026-11-02 22:10:00Z", OWNER)
    (alert,) = RuleHarness(RULE).feed(event).alerts
    key = f"{subscription_key(event)}|{actor_key(event)}"
    assert alert.alert_id == alert_id(RULE, key, event.event_uid)
    assert alert.severity == "High"
    assert alert.title == f"{ADMIN} assigned Owner on subscription sub-1"
    assert alert.reasons[0] == (
        f"{ADMIN} assigned Owner on subscription sub-1, first at 2026-11-02 22:10:00 UTC; "
        "the change succeeded."
    )
    assert "Reader and other read-only roles are not reported" in alert.reasons[1]
    assert alert.reasons[2].startswith(f"Check first whether the grant by {ADMIN}")
    assert alert.actor_username == ADMIN and alert.src_ip_addr == "203.0.113.9"
    assert alert.tactics == ["PrivilegeEscalation", "Persistence"]


def test_a_data_role_is_medium_and_a_later_owner_upgrades_the_same_alert():
    rule = RuleHarness(RULE)
    first = assignment("2026-11-02 10:00:00Z", BLOB_OWNER, scope=f"{SUB}/x/stphi01")
    rule.feed(first)
    assert rule.alerts[0].severity == "Medium"
    assert rule.alerts[0].title == f"{ADMIN} assigned Storage Blob Data Owner on stphi01"
    rule.feed(assignment("2026-11-02 10:05:00Z", OWNER, n=1))
    (alert,) = rule.alerts
    assert alert.severity == "High" and alert.event_count == 2
    assert alert.title.endswith("(+1 more)")


def test_extra_privileged_roles_and_elevate_access():
    custom = "11111111-2222-4333-8444-555555555555"
    rule = RuleHarness(RULE, {"extra_privileged_roles": [custom.upper()]})
    assert rule.feed(assignment("2026-11-02 10:00:00Z", custom)).alerts[0].severity == "High"
    elevate = access(
        "2026-11-02 10:00:00Z",
        actor="ga@contoso-health.example",
        product=activity.PRODUCT,
        event_type="Execute",
        sub_type="microsoft.authorization/elevateaccess",
        target=None,
    )
    (alert,) = RuleHarness(RULE).feed(elevate).alerts
    assert "elevated their access to User Access Administrator" in alert.title


def test_directory_role_outside_pim_and_permanent_pim_fire():
    rule = RuleHarness(RULE).feed(
        directory(
            "2026-11-02 10:00:00Z", "Add member to role", sub_type="Core Directory/RoleManagement"
        )
    )
    assert rule.alerts[0].title == f"{ADMIN} added a member to Global Administrator outside PIM"
    permanent = "Add member to role in PIM completed (permanent)"
    other = RuleHarness(RULE).feed(
        directory("2026-11-02 10:00:00Z", permanent, sub_type="PIM/RoleManagement", app="MS-PIM")
    )
    assert "permanent PIM assignment" in other.alerts[0].title


def test_a_key_vault_access_policy_the_caller_grants_itself():
    def policy(object_id: str) -> AccessEvent:
        event = access(
            "2026-11-02 10:00:00Z",
            actor=ADMIN,
            actor_id="44444444-aaaa-4bbb-8ccc-000000000004",
            product=activity.PRODUCT,
            sub_type="microsoft.keyvault/vaults/accesspolicies",
            target=f"{SUB}/resourcegroups/rg/providers/microsoft.keyvault/vaults/kv-phi/accesspolicies/add",
            uid=f"kv-{object_id}",
        )
        nv = {"accessPolicies": [{"objectId": object_id, "permissions": {"secrets": ["get"]}}]}
        return event.model_copy(update={"new_value": json.dumps(nv)})

    (alert,) = RuleHarness(RULE).feed(policy("44444444-AAAA-4bbb-8ccc-000000000004")).alerts
    assert alert.title == f"{ADMIN} granted themselves an access policy on add"
    # Granting an application its policy is the vault's ordinary administration.
    assert RuleHarness(RULE).feed(policy("77777777-aaaa-4bbb-8ccc-000000000007")).alerts == []


# ---------------------------------------------------------------- near misses


@pytest.mark.parametrize(
    "event",
    [
        assignment("2026-11-02 10:00:00Z", READER),
        assignment("2026-11-02 10:00:00Z", OWNER, result="Failure"),
        directory(
            "2026-11-02 10:00:00Z",
            "Add member to role in PIM completed (timebound)",
            sub_type="PIM/RoleManagement",
            app="MS-PIM",
        ),
        directory(
            "2026-11-02 10:00:00Z",
            "Add member to role completed (PIM activation)",
            sub_type="PIM/RoleManagement",
            app="MS-PIM",
        ),
        directory(
            "2026-11-02 10:00:00Z",
            "Add member to role",
            sub_type="Core Directory/RoleManagement",
            app="MS-PIM",
        ),
    ],
    ids=["reader", "failed-owner", "pim-timebound", "pim-activation", "core-directory-by-pim"],
)
def test_near_misses_stay_quiet(event):
    assert RuleHarness(RULE).feed(event).alerts == []


def test_redelivery_and_restarts_change_nothing():
    events = [
        assignment("2026-11-02 10:00:00Z", BLOB_OWNER),
        assignment("2026-11-02 10:20:00Z", OWNER, n=2),
    ]
    once = RuleHarness(RULE).feed(*events).alerts
    again = RuleHarness(RULE).feed(events[0]).restart().feed(events[0], events[1]).restart()
    assert again.feed(events[1]).alerts == once
    assert len(once) == 1 and once[0].severity == "High"


# ---------------------------------------------------------------- full pipeline


def _role_write(
    seconds: float, result: str, body: dict[str, Any] | None, corr: str
) -> dict[str, Any]:
    record = records.activity(
        seconds,
        operation="MICROSOFT.AUTHORIZATION/ROLEASSIGNMENTS/WRITE",
        resource_id=f"/SUBSCRIPTIONS/{records.SUB.upper()}/PROVIDERS/MICROSOFT.AUTHORIZATION/ROLEASSIGNMENTS/{corr.upper()}",
        result=result,
        request_body=json.dumps(body) if body else None,
        status_code="Created",
    )
    record["correlationId"] = corr
    return record


def _role_body(role: str, pascal: bool) -> dict[str, Any]:
    definition = (
        f"/subscriptions/{records.SUB}/providers/Microsoft.Authorization/roleDefinitions/{role}"
    )
    if pascal:
        return {"Properties": {"RoleDefinitionId": definition, "PrincipalId": "p", "Scope": "/"}}
    return {"properties": {"roleDefinitionId": definition, "principalId": "p", "scope": "/"}}


def test_from_raw_records_both_casings_and_directory_records(tmp_path):
    raw = [
        _role_write(0, "Start", _role_body(READER, pascal=False), "c1"),
        _role_write(5, "Success", None, "c1"),
        _role_write(60, "Start", _role_body(OWNER, pascal=True), "c2"),
        _role_write(65, "Success", None, "c2"),
        records.entra_audit(120),
        records.entra_audit(
            180,
            activity="Add member to role in PIM completed (timebound)",
            service="PIM",
            app_name="MS-PIM",
        ),
    ]
    alerts = sorted(
        run(raw, tmp_path, per_body=2, bodies_per_batch=1).alerts.values(), key=lambda a: a.title
    )
    assert [a.rule_id for a in alerts] == [RULE, RULE]
    # Activity grants meet in their subscription, directory ones tenant-wide: two alerts.
    assert (
        alerts[0].title
        == "mallory.admin@contoso-health.org added a member to Global Administrator outside PIM"
    )
    assert alerts[1].title == "mallory.admin@contoso-health.org assigned Owner on the tenant"
