"""audit-tampering: the audit trail itself was weakened, beyond diagnostic settings.

A successful Activity Log change that deletes or weakens where PHI-access evidence is kept
or how it reaches phiwatch and Sentinel: an immutability policy deleted or set below the
retention floor, a legal hold cleared; blob soft delete or versioning turned off; a
lifecycle rule that deletes audit containers; Log Analytics retention set below the floor,
a table deleted or moved to a cheaper plan, a workspace deleted or purged, a data export
deleted; a data collection rule, endpoint or association deleted, or a rule's transform
set; the Event Hub path (namespace, hub, consumer group, authorisation rules) deleted or
changed; SQL auditing disabled; a Defender plan set to Free or deleted; Sentinel rules,
connectors or automation deleted; a resource lock deleted. (diagnostics-disabled covers
diagnostic settings and is unchanged.)

Deleting a parent deletes its children with it: a change explained by the deletion of a
parent resource (the workspace of a table, the resource group of a workspace or lock)
within the grace period, before or after, is decommissioning, not tampering. So it is an
absence rule, like diagnostics-disabled; a tamper that is itself a delete (a namespace)
also explains its children's deletes, so one decommissioning raises at most its root.

Writes are judged on their new value (NewValue, successes only). A write whose bodies did
not reach phiwatch (NewValue None) or do not say (a missing key) is not guessed at.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from phiwatch.detect.alert_book import AlertState
from phiwatch.detect.detection import Detection, DetectionParams, actor_label
from phiwatch.detect.kinds import Absence
from phiwatch.detect.snapshot import snapshot_class
from phiwatch.detect.times import hhmm, utc
from phiwatch.model import AccessEvent, Alert
from phiwatch.sources import activity

# Operations that are tampering whenever they succeed (upper-cased, as events carry them).
_ALWAYS: dict[str, str] = {
    "MICROSOFT.STORAGE/STORAGEACCOUNTS/BLOBSERVICES/CONTAINERS/IMMUTABILITYPOLICIES/DELETE": (
        "immutability policy deleted"
    ),
    "MICROSOFT.STORAGE/STORAGEACCOUNTS/BLOBSERVICES/CONTAINERS/CLEARLEGALHOLD/ACTION": (
        "legal hold cleared"
    ),
    "MICROSOFT.OPERATIONALINSIGHTS/WORKSPACES/DELETE": "Log Analytics workspace deleted",
    "MICROSOFT.OPERATIONALINSIGHTS/WORKSPACES/PURGE/ACTION": "Log Analytics data purged",
    "MICROSOFT.OPERATIONALINSIGHTS/WORKSPACES/TABLES/DELETE": "Log Analytics table deleted",
    "MICROSOFT.OPERATIONALINSIGHTS/WORKSPACES/DATAEXPORTS/DELETE": "workspace data export deleted",
    "MICROSOFT.INSIGHTS/DATACOLLECTIONRULES/DELETE": "data collection rule deleted",
    "MICROSOFT.INSIGHTS/DATACOLLECTIONRULEASSOCIATIONS/DELETE": (
        "data collection rule association deleted"
    ),
    "MICROSOFT.INSIGHTS/DATACOLLECTIONENDPOINTS/DELETE": "data collection endpoint deleted",
    "MICROSOFT.INSIGHTS/LOGPROFILES/DELETE": "activity log profile deleted",
    "MICROSOFT.EVENTHUB/NAMESPACES/DELETE": "Event Hubs namespace deleted",
    "MICROSOFT.EVENTHUB/NAMESPACES/EVENTHUBS/DELETE": "event hub deleted",
    "MICROSOFT.EVENTHUB/NAMESPACES/EVENTHUBS/CONSUMERGROUPS/DELETE": "consumer group deleted",
    "MICROSOFT.EVENTHUB/NAMESPACES/AUTHORIZATIONRULES/DELETE": (
        "Event Hubs authorisation rule deleted"
    ),
    "MICROSOFT.EVENTHUB/NAMESPACES/EVENTHUBS/AUTHORIZATIONRULES/DELETE": (
        "event hub authorisation rule deleted"
    ),
    "MICROSOFT.EVENTHUB/NAMESPACES/AUTHORIZATIONRULES/REGENERATEKEYS/ACTION": (
        "Event Hubs keys regenerated"
    ),
    "MICROSOFT.EVENTHUB/NAMESPACES/EVENTHUBS/AUTHORIZATIONRULES/REGENERATEKEYS/ACTION": (
        "event hub keys regenerated"
    ),
    "MICROSOFT.SECURITY/PRICINGS/DELETE": "Defender plan deleted",
    "MICROSOFT.SECURITYINSIGHTS/ALERTRULES/DELETE": "Sentinel analytics rule deleted",
    "MICROSOFT.SECURITYINSIGHTS/DATACONNECTORS/DELETE": "Sentinel data connector deleted",
    "MICROSOFT.SECURITYINSIGHTS/AUTOMATIONRULES/DELETE": "Sentinel automation rule deleted",
    "MICROSOFT.INSIGHTS/SCHEDULEDQUERYRULES/DELETE": "scheduled query alert rule deleted",
    "MICROSOFT.INSIGHTS/ACTIONGROUPS/DELETE": "alert action group deleted",
    "MICROSOFT.AUTHORIZATION/LOCKS/DELETE": "resource lock deleted",
}

_BLOB_SERVICE = "MICROSOFT.STORAGE/STORAGEACCOUNTS/BLOBSERVICES/WRITE"
_IMMUTABILITY = (
    "MICROSOFT.STORAGE/STORAGEACCOUNTS/BLOBSERVICES/CONTAINERS/IMMUTABILITYPOLICIES/WRITE"
)
_LIFECYCLE = "MICROSOFT.STORAGE/STORAGEACCOUNTS/MANAGEMENTPOLICIES/WRITE"
_WORKSPACE = "MICROSOFT.OPERATIONALINSIGHTS/WORKSPACES/WRITE"
_TABLE = "MICROSOFT.OPERATIONALINSIGHTS/WORKSPACES/TABLES/WRITE"
_DCR = "MICROSOFT.INSIGHTS/DATACOLLECTIONRULES/WRITE"
_AUTH_RULES = {
    "MICROSOFT.EVENTHUB/NAMESPACES/AUTHORIZATIONRULES/WRITE",
    "MICROSOFT.EVENTHUB/NAMESPACES/EVENTHUBS/AUTHORIZATIONRULES/WRITE",
}
_SQL_AUDITING = {
    "MICROSOFT.SQL/SERVERS/AUDITINGSETTINGS/WRITE",
    "MICROSOFT.SQL/SERVERS/EXTENDEDAUDITINGSETTINGS/WRITE",
    "MICROSOFT.SQL/SERVERS/DATABASES/AUDITINGSETTINGS/WRITE",
    "MICROSOFT.SQL/SERVERS/DATABASES/EXTENDEDAUDITINGSETTINGS/WRITE",
}
_PRICING = "MICROSOFT.SECURITY/PRICINGS/WRITE"
# Azure Monitor writes exported logs to containers named insights-logs-<category> and
# insights-activity-logs: a lifecycle delete rule over them (or over everything) ages audit out.
_AUDIT_PREFIXES = ("insights-logs", "insights-activity-logs", "am-")
_CHEAP_PLANS = {"basic", "auxiliary"}
CONDITIONAL = {_BLOB_SERVICE, _IMMUTABILITY, _LIFECYCLE, _WORKSPACE, _TABLE, _DCR, _PRICING}
CONDITIONAL |= _AUTH_RULES | _SQL_AUDITING


class Params(DetectionParams):
    grace_minutes: float = Field(default=10, gt=0, le=24 * 60)
    # Retention below these is weakening: HIPAA keeps audit documentation six years
    # (45 CFR 164.316(b)(2)); 90 days is Log Analytics' interactive retention for Sentinel.
    min_immutability_days: int = Field(default=2190, ge=1, le=146_000)
    min_retention_days: int = Field(default=90, ge=1, le=4383)


@snapshot_class
@dataclass(slots=True)
class TamperFacts:
    change: str  # what was done, in words ("immutability policy deleted")
    detail: str  # the value that makes it tampering, or ""


def _body(event: AccessEvent) -> dict[str, Any] | None:
    if event.new_value is None:
        return None
    try:
        body = json.loads(event.new_value)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _disabled(value: Any) -> bool:
    return isinstance(value, dict) and value.get("enabled") is False


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _lifecycle_deletes_audit(body: dict[str, Any]) -> bool:
    policy = body.get("policy")
    rules = policy.get("rules") if isinstance(policy, dict) else None
    for rule in rules if isinstance(rules, list) else ():
        definition = rule.get("definition") if isinstance(rule, dict) else None
        if not isinstance(definition, dict) or rule.get("enabled") is False:
            continue
        actions = definition.get("actions")
        deletes = isinstance(actions, dict) and any(
            isinstance(a, dict) and "delete" in a for a in actions.values()
        )
        filters = definition.get("filters")
        prefixes = filters.get("prefixMatch") if isinstance(filters, dict) else None
        everything = not prefixes
        audit = isinstance(prefixes, list) and any(
            isinstance(p, str) and p.lower().startswith(_AUDIT_PREFIXES) for p in prefixes
        )
        if deletes and (everything or audit):
            return True
    return False


def _transform_set(body: dict[str, Any]) -> bool:
    flows = body.get("dataFlows")
    return isinstance(flows, list) and any(
        isinstance(f, dict)
        and isinstance(f.get("transformKql"), str)
        and f["transformKql"].strip().lower() not in {"", "source"}
        for f in flows
    )


class AuditTampering(Detection[Params]):
    rule_id = "audit-tampering"
    rule_name = "Audit trail tampered with"
    severity = "High"
    tactics = ("DefenseEvasion", "Impact")
    techniques = ("T1562.008", "T1485")
    # Relates a change to deletes of its parents: all in one subscription.
    group_by = "subscription"
    planes = frozenset({"control"})
    products = frozenset({activity.PRODUCT})
    Params = Params
    Facts = TamperFacts

    def applies(self, event: AccessEvent) -> bool:
        return (
            event.event_product == activity.PRODUCT
            and event.event_result == "Success"
            and event.target_resource_id is not None
            and (
                event.event_type == "Delete"
                or event.operation in _ALWAYS
                or event.operation in CONDITIONAL
            )
        )

    def tamper(self, event: AccessEvent) -> TamperFacts | None:
        """What makes this successful change tampering, or None."""
        if event.event_result != "Success" or event.target_resource_id is None:
            return None
        op = event.operation
        if op in _ALWAYS:
            return TamperFacts(_ALWAYS[op], "")
        # A resource created with weak settings turned nothing off: changes only.
        if op not in CONDITIONAL or event.event_type == "Create":
            return None
        if op in _AUTH_RULES:
            return TamperFacts("Event Hubs authorisation rule changed", "")
        body = _body(event)
        if body is None:
            return None
        return self._weakened(op, body)

    def _weakened(self, op: str, body: dict[str, Any]) -> TamperFacts | None:
        p = self.params
        if op == _BLOB_SERVICE:
            off = [
                label
                for key, label in (
                    ("deleteRetentionPolicy", "blob soft delete"),
                    ("containerDeleteRetentionPolicy", "container soft delete"),
                    ("changeFeed", "change feed"),
                )
                if _disabled(body.get(key))
            ]
            if body.get("isVersioningEnabled") is False:
                off.append("blob versioning")
            return TamperFacts(" and ".join(off) + " turned off", "") if off else None
        if op == _IMMUTABILITY:
            days = _number(body.get("immutabilityPeriodSinceCreationInDays"))
            if days is not None and days < p.min_immutability_days:
                floor = p.min_immutability_days
                return TamperFacts(
                    "immutability policy shortened", f"{days:g} days, below the {floor}-day floor"
                )
            return None
        if op == _LIFECYCLE:
            if _lifecycle_deletes_audit(body):
                return TamperFacts("lifecycle rule set to delete audit containers", "")
            return None
        if op in (_WORKSPACE, _TABLE):
            what = "Log Analytics table" if op == _TABLE else "Log Analytics workspace"
            plan = body.get("plan")
            if op == _TABLE and isinstance(plan, str) and plan.lower() in _CHEAP_PLANS:
                return TamperFacts(f"{what} moved to the {plan} plan", "")
            for key in ("retentionInDays", "totalRetentionInDays"):
                days = _number(body.get(key))
                if days is not None and 0 < days < p.min_retention_days:
                    floor = p.min_retention_days
                    return TamperFacts(
                        f"{what} retention lowered", f"{days:g} days, below the {floor}-day floor"
                    )
            return None
        if op == _DCR:
            if _transform_set(body):
                return TamperFacts("data collection rule transform set", "")
            return None
        if op in _SQL_AUDITING:
            state = body.get("state")
            if isinstance(state, str) and state.lower() == "disabled":
                return TamperFacts("SQL auditing disabled", "")
            return None
        tier = body.get("pricingTier")  # _PRICING
        if isinstance(tier, str) and tier.lower() == "free":
            return TamperFacts("Defender plan set to Free", "")
        return None

    def declare(self) -> Absence:
        def expect(event: AccessEvent) -> str | None:
            return (event.target_resource_id or "").lower() if self.tamper(event) else None

        def deleted(event: AccessEvent) -> str | None:
            ok = event.event_type == "Delete" and event.event_result == "Success"
            return (event.target_resource_id or "").lower() or None if ok else None

        def facts(event: AccessEvent) -> TamperFacts:
            return self.tamper(event) or TamperFacts("audit configuration changed", "")

        return Absence(
            grace=self.params.grace_minutes * 60,
            expect=expect,
            shows=deleted,
            # Only a parent's deletion explains a change: a resource's own delete never does.
            explains=lambda gone, changed: changed.startswith(gone + "/"),
            alert_key=lambda event: (event.target_resource_id or "").lower() or None,
            facts=facts,
            triggers_explain=True,
        )

    def render(self, state: AlertState) -> Alert:
        facts: TamperFacts = state.facts
        who = actor_label(state)
        resource = state.top_target or state.key
        name = resource.rsplit("/", 1)[-1]
        detail = f" ({facts.detail})" if facts.detail else ""
        what = f"{facts.change[0].upper()}{facts.change[1:]}: {name}"
        grace = round(self.params.grace_minutes)
        more = state.event_count - 1
        reasons = [
            f"{what}{detail}, by {who} at {hhmm(state.first_time)}.",
            f"No parent of {name} was deleted within {grace} minutes, so this is not the "
            "cascade of a decommissioning.",
            "It weakens where PHI-access evidence is kept or how it reaches phiwatch and "
            "Sentinel. Check first whether a change ticket covers it, then restore the "
            "setting and review what the same identity did next.",
        ]
        if more > 0:
            changes = "change of the same resource is" if more == 1 else "changes of it are"
            reasons.append(f"{more} later {changes} in the evidence.")
        return self.base_alert(
            state,
            title=f"{what} by {who}",
            description=(
                f"{what}{detail}. Removing or shortening audit retention, or cutting the log "
                "path, is a known way to hide activity (MITRE T1562.008) or destroy evidence "
                f"(T1485). Resource: {resource}. Detected at "
                f"{utc(state.first_time):%Y-%m-%d %H:%M} UTC."
            ),
            reasons=reasons,
        )


DETECTION = AuditTampering
