"""privilege-escalation: someone was given a privileged role, or gave themselves access.

Signals (control plane):
- an Azure role assignment (Activity `Microsoft.Authorization/roleAssignments/write`,
  successful) of a privileged role (Owner, Contributor, User Access Administrator, Role
  Based Access Control Administrator, Security Admin, and `extra_privileged_roles`): High;
  of a PHI data role (Storage Blob Data Owner/Contributor, Key Vault Administrator/Secrets
  Officer/Data Access Administrator, FHIR Data Contributor/Exporter): Medium. Judged by the
  role definition id in `NewValue` (`roleDefinitionId`, whichever casing the caller sent: the
  source camel-cases it); Reader and every other role never fire;
- `Microsoft.Authorization/elevateAccess/action` (a Global Administrator made User Access
  Administrator at the root): High;
- Entra ID: a member added to a directory role by Core Directory other than through PIM
  (`Add member to role` not by MS-PIM, or `Add member to role outside of PIM`), or a
  permanent PIM assignment (`... in PIM completed (permanent)`): High. A timebound
  assignment or a PIM activation is what PIM is for and never fires;
- a Key Vault access policy write (`Microsoft.KeyVault/vaults/accessPolicies/write`) whose
  added policy names the caller's own object id: High.

One alert per granting actor (within a subscription, where Activity events meet; directory
changes are tenant-level) and gap: further grants by the same actor enrich it, and a High
grant upgrades a Medium alert.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from phiwatch.detect.alert_book import AlertState
from phiwatch.detect.context import DetectionContext, RuleInfo
from phiwatch.detect.detection import Detection, DetectionParams, actor_label
from phiwatch.detect.grouping import actor_key, subscription_key
from phiwatch.detect.kinds import StatefulRule
from phiwatch.detect.kinds.base import Fired, enrich, open_alert
from phiwatch.detect.snapshot import snapshot_class
from phiwatch.detect.times import hhmm, utc
from phiwatch.model import AccessEvent, Alert, Severity
from phiwatch.sources import activity, entra_audit

# Built-in role definition ids (the last segment of roleDefinitionId).
PRIVILEGED_ROLES: dict[str, str] = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": "User Access Administrator",
    "f58310d9-a9f6-439a-9e8d-f62e7b41a168": "Role Based Access Control Administrator",
    "fb1c8493-542b-48eb-b624-b4c8fea62acd": "Security Admin",
}
DATA_ROLES: dict[str, str] = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "00482a5a-887f-4fb3-b363-3b7fe8e74483": "Key Vault Administrator",
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Key Vault Secrets Officer",
    "8b54135c-b56d-4d72-a534-26097cfdc8d8": "Key Vault Data Access Administrator",
    "5a1fc7df-4bf1-4951-a576-89034ee01acd": "FHIR Data Contributor",
    "3db33094-8700-4567-8da5-1501d4e7e843": "FHIR Data Exporter",
}
ROLE_ASSIGNMENTS = "microsoft.authorization/roleassignments"
ELEVATE_ACCESS = "microsoft.authorization/elevateaccess"
ELEVATE_ACTIVITY = "user has elevated their access to user access administrator"
ACCESS_POLICIES = "microsoft.keyvault/vaults/accesspolicies"
PIM_APPS = frozenset({"ms-pim", "ms-pim-fairfax"})
_RANK: dict[Severity, int] = {"Informational": 0, "Low": 1, "Medium": 2, "High": 3}


class Params(DetectionParams):
    # Role definition ids (GUIDs, or full ids) judged as privileged (High) beside the built-ins.
    extra_privileged_roles: tuple[str, ...] = Field(default=(), max_length=200)
    gap_minutes: float = Field(default=60, gt=0, le=24 * 60)


@snapshot_class
@dataclass(slots=True)
class EscalationFacts:
    grants: list[str] = field(default_factory=list)  # plain words, one per grant


@snapshot_class
@dataclass(slots=True)
class Grants:
    fired: Fired = field(default_factory=Fired)

    def __len__(self) -> int:
        return len(self.fired)


def _nv(event: AccessEvent) -> dict[str, Any]:
    try:
        value = json.loads(event.new_value) if event.new_value else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _role_id(value: Any) -> str:
    return value.rstrip("/").rsplit("/", 1)[-1].lower() if isinstance(value, str) else ""


def _scope_name(event: AccessEvent, nv: dict[str, Any]) -> str:
    scope = nv.get("scope")
    text = scope if isinstance(scope, str) and scope else (event.target_resource_id or "")
    parts = text.strip("/").split("/")
    if len(parts) == 2 and parts[0].lower() == "subscriptions":
        return f"subscription {parts[1]}"
    return parts[-1] or "the tenant"


def judged(event: AccessEvent, extra: frozenset[str]) -> tuple[Severity, str] | None:
    """(severity, what happened) for a grant the rule reports, else None."""
    kind = (event.event_sub_type or "").lower()
    if event.event_product == activity.PRODUCT:
        if kind == ELEVATE_ACCESS:
            return "High", "elevated their access to User Access Administrator at the root"
        nv = _nv(event)
        if kind == ROLE_ASSIGNMENTS and event.event_type != "Delete":
            role = _role_id(nv.get("roleDefinitionId"))
            name = PRIVILEGED_ROLES.get(role) or ("a privileged role" if role in extra else None)
            where = _scope_name(event, nv)
            if name is not None:
                return "High", f"assigned {name} on {where}"
            if role in DATA_ROLES:
                return "Medium", f"assigned {DATA_ROLES[role]} on {where}"
            return None
        if kind == ACCESS_POLICIES and event.event_type != "Delete":
            policies = nv.get("accessPolicies")
            caller = (event.actor_user_id or "").lower()
            if caller and isinstance(policies, list):
                for policy in policies:
                    if (
                        isinstance(policy, dict)
                        and str(policy.get("objectId", "")).lower() == caller
                    ):
                        vault = _scope_name(event, {})
                        return "High", f"granted themselves an access policy on {vault}"
        return None
    if event.event_product == entra_audit.PRODUCT:
        operation = (event.operation or "").lower()
        service = (event.event_sub_type or "").split("/", 1)[0].lower()
        role = event.object or "a directory role"
        if operation == "add member to role outside of pim":
            return "High", f"added a member to {role} outside PIM"
        by_pim = (event.acting_app_name or "").lower() in PIM_APPS
        if operation == "add member to role" and service == "core directory" and not by_pim:
            return "High", f"added a member to {role} outside PIM"
        if operation.endswith("in pim completed (permanent)"):
            return "High", f"made a permanent PIM assignment to {role}"
        # The directory's own record of elevateAccess (loggedByService "Azure RBAC (Elevated
        # Access)"): tenants that export Entra audit logs but not the root Activity Log
        # see it only here.
        if operation.startswith(ELEVATE_ACTIVITY) and event.event_result == "Success":
            return "High", "elevated their access to User Access Administrator at the root"
    return None


def step(
    rule: RuleInfo, state: Grants, event: AccessEvent, time: float, ctx: DetectionContext
) -> None:
    params: Params = rule.params
    extra = frozenset(_role_id(r) for r in params.extra_privileged_roles)
    found = judged(event, extra)
    who = actor_key(event)
    if found is None or who is None or not state.fired.first(event.event_uid, time):
        return
    severity, words = found
    key = f"{subscription_key(event)}|{who}"
    gap = params.gap_minutes * 60

    def fold(facts: EscalationFacts, grant: str) -> None:
        if grant not in facts.grants:
            facts.grants.append(grant)

    if enrich(rule, ctx, key, event, time, gap, value=words, fold=fold):
        alert = ctx.book.open_for(rule.rule_id, key, time, gap)
        if alert is not None and _RANK[severity] > _RANK[alert.severity]:
            alert.severity = severity
            ctx.book.changed(alert)
        return
    opened = open_alert(
        rule,
        ctx,
        key,
        event,
        time,
        anchor=event.event_uid,
        facts=EscalationFacts(),
        value=words,
        fold=fold,
    )
    opened.severity = severity


def expire(state: Grants, before: float) -> None:
    state.fired.expire(before)


class PrivilegeEscalation(Detection[Params]):
    rule_id = "privilege-escalation"
    rule_name = "Privileged role or access granted"
    severity = "High"
    tactics = ("PrivilegeEscalation", "Persistence")
    techniques = ("T1098.003", "T1078.004")
    # Activity role assignments meet in their subscription; directory changes key `sub:`.
    group_by = "subscription"
    planes = frozenset({"control"})
    products = frozenset({activity.PRODUCT, entra_audit.PRODUCT})
    Params = Params
    Facts = EscalationFacts

    def applies(self, event: AccessEvent) -> bool:
        return (
            event.event_product in {activity.PRODUCT, entra_audit.PRODUCT}
            and event.event_result == "Success"
        )

    def declare(self) -> StatefulRule:
        return StatefulRule(state=Grants, step=step, drop_before=expire, name="grants")

    def render(self, state: AlertState) -> Alert:
        facts: EscalationFacts = state.facts
        who = actor_label(state)
        grants = "; ".join(facts.grants)
        first = facts.grants[0] if facts.grants else "granted access"
        more = f" (+{len(facts.grants) - 1} more)" if len(facts.grants) > 1 else ""
        reasons = [
            f"{who} {grants}, first at {hhmm(state.first_time)}; the change succeeded.",
            "Privileged roles and PHI data roles are normally granted through PIM, time-bound "
            "and approved; Reader and other read-only roles are not reported.",
            f"Check first whether the grant by {who} was requested and approved; if not, "
            "remove it and review what the grantee did with it.",
        ]
        return self.base_alert(
            state,
            title=f"{who} {first}{more}",
            description=(
                f"{who} {grants}. Granting privileged or PHI data access outside the approval "
                "process is a known way to keep or widen access (MITRE T1098.003). Detected "
                f"at {utc(state.first_time):%Y-%m-%d %H:%M} UTC."
            ),
            reasons=reasons,
        )


DETECTION = PrivilegeEscalation
