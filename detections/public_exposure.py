"""public-exposure: a successful change opened a PHI-holding resource to the internet.

Read from the Activity Log change (`NewValue`: the write's request and response `properties`,
docs/detections.md): Storage `allowBlobPublicAccess: true`; a container's `publicAccess`
Blob or Container; `publicNetworkAccess` Enabled or `networkAcls.defaultAction` Allow on a
Storage account, Key Vault, SQL server or FHIR service (Enabled with a Deny default is
"selected networks", not open); a SQL firewall rule 0.0.0.0-255.255.255.255 (High) or
0.0.0.0-0.0.0.0, "allow Azure services" (Medium); an NSG inbound allow from `*`, Internet or
0.0.0.0/0 (High on 22, 3389, 1433, 445 or any port); a private endpoint connection deleted.

A failed write carries no NewValue and never fires; neither does a write setting the
property private, nor the creation of an account, vault, server or service (it holds no
PHI yet). The Activity record has no old value, so the rule keeps the last state it saw of
each resource's property (bounded, per subscription: a resource and its parents meet
there): a change from a state seen private fires, a re-applied public state (an IaC
pipeline's no-op) does not, and an unknown earlier state fires with the reasons saying so.
Resources in `allow_resources` (and their children) are intentionally public.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from phiwatch.detect.alert_book import AlertState
from phiwatch.detect.context import DetectionContext, RuleInfo
from phiwatch.detect.detection import Detection, DetectionParams, actor_label
from phiwatch.detect.kinds import StatefulRule
from phiwatch.detect.kinds.base import Fired, enrich, open_alert
from phiwatch.detect.snapshot import snapshot_class
from phiwatch.detect.times import hhmm, utc
from phiwatch.model import AccessEvent, Alert, Severity
from phiwatch.sources import activity

# Resources whose last state is remembered; beyond, the least recently seen are let go
# (a change to one of them then reads "earlier state unknown", which still fires).
MAX_RESOURCES = 20_000
SENSITIVE_PORTS = frozenset({"22", "3389", "1433", "445", "*"})
ANY_ADDRESS = ".".join(["0"] * 4)  # the unspecified address (spelled so: not a bind)
EVERY_ADDRESS = "255.255.255.255"
OPEN_SOURCES = frozenset({"*", "internet", f"{ANY_ADDRESS}/0", "any"})
_RANK: dict[Severity, int] = {"Informational": 0, "Low": 1, "Medium": 2, "High": 3}

STORAGE = "microsoft.storage/storageaccounts"
CONTAINER = "microsoft.storage/storageaccounts/blobservices/containers"
FIREWALL = "microsoft.sql/servers/firewallrules"
NSG_RULE = "microsoft.network/networksecuritygroups/securityrules"
# Resources with a network switch (publicNetworkAccess / networkAcls.defaultAction).
NETWORKED = frozenset(
    {
        STORAGE,
        "microsoft.keyvault/vaults",
        "microsoft.sql/servers",
        "microsoft.healthcareapis/workspaces/fhirservices",
        "microsoft.healthcareapis/services",
    }
)
PRIVATE_ENDPOINT_CONNECTIONS = frozenset(f"{t}/privateendpointconnections" for t in NETWORKED)
WRITES = NETWORKED | {CONTAINER, FIREWALL, NSG_RULE}


class Params(DetectionParams):
    # ARM ids of intentionally public resources (a static website account); children too.
    allow_resources: tuple[str, ...] = Field(default=(), max_length=1000)
    gap_minutes: float = Field(default=60, gt=0, le=24 * 60)


@snapshot_class
@dataclass(slots=True)
class ExposureFacts:
    resource: str  # the resource opened (lower case)
    what: str  # plain words: "allowed anonymous blob access"
    before: str  # "private", "unknown"
    last_seen: float | None  # when the private state was last seen
    changes: list[str] = field(default_factory=list)  # every opening joined to the alert


@snapshot_class
@dataclass(slots=True)
class Exposure:
    """One opening a change made: the property, whether it is now open, plain words."""

    aspect: str
    open: bool
    what: str
    severity: Severity


@snapshot_class
@dataclass(slots=True)
class LastSeen:
    """The last state seen per resource property, and the EventUids already judged."""

    # "<resource>|<aspect>" -> (open, event time)
    states: dict[str, tuple[bool, float]] = field(default_factory=dict)
    fired: Fired = field(default_factory=Fired)

    def __len__(self) -> int:
        return len(self.states) + len(self.fired)


def _nv(event: AccessEvent) -> dict[str, Any] | None:
    if event.new_value is None:
        return None
    try:
        value = json.loads(event.new_value)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) else None


def _network(nv: dict[str, Any]) -> Exposure | None:
    access = (_text(nv.get("publicNetworkAccess")) or "").lower()
    acls = nv.get("networkAcls") or nv.get("networkRuleSet")
    default = (_text(acls.get("defaultAction")) if isinstance(acls, dict) else None) or ""
    default = default.lower()
    if access == "disabled" or default == "deny":
        return Exposure("network", False, "closed public network access", "Medium")
    if access == "enabled" or default == "allow":
        words = (
            "set the network default action to Allow"
            if default == "allow"
            else "enabled public network access"
        )
        return Exposure("network", True, words, "Medium")
    return None


def _firewall(nv: dict[str, Any]) -> Exposure | None:
    start, end = _text(nv.get("startIpAddress")), _text(nv.get("endIpAddress"))
    if start is None or end is None:
        return None
    if start == ANY_ADDRESS and end == EVERY_ADDRESS:
        return Exposure("firewall", True, "opened the SQL firewall to every address", "High")
    if start == ANY_ADDRESS and end == ANY_ADDRESS:
        return Exposure(
            "firewall", True, "allowed every Azure service through the SQL firewall", "Medium"
        )
    return Exposure("firewall", False, f"allowed {start}-{end}", "Medium")


def _nsg(nv: dict[str, Any]) -> Exposure | None:
    direction = (_text(nv.get("direction")) or "").lower()
    access = (_text(nv.get("access")) or "").lower()
    if not direction or not access:
        return None
    sources = [nv.get("sourceAddressPrefix"), *(nv.get("sourceAddressPrefixes") or [])]
    from_anywhere = any(isinstance(s, str) and s.lower() in OPEN_SOURCES for s in sources)
    if direction != "inbound" or access != "allow" or not from_anywhere:
        return Exposure("inbound", False, "changed an NSG rule", "Medium")
    ports = [nv.get("destinationPortRange"), *(nv.get("destinationPortRanges") or [])]
    named = [str(p) for p in ports if isinstance(p, str | int)]
    sensitive = any(p in SENSITIVE_PORTS for p in named)
    words = f"allowed inbound traffic from the internet to port {', '.join(named) or '?'}"
    return Exposure("inbound", True, words, "High" if sensitive else "Medium")


def exposures(event: AccessEvent) -> list[Exposure]:
    """What a successful Activity event sets, open or private, property by property."""
    kind = event.event_sub_type or ""
    if event.event_type == "Delete":
        if kind in PRIVATE_ENDPOINT_CONNECTIONS:
            return [Exposure("private-endpoint", True, "deleted a private endpoint", "Medium")]
        return []
    nv = _nv(event)
    if nv is None:
        return []
    found: list[Exposure] = []
    if kind == STORAGE and isinstance(nv.get("allowBlobPublicAccess"), bool):
        opened = nv["allowBlobPublicAccess"]
        words = "allowed anonymous blob access" if opened else "disallowed anonymous access"
        found.append(Exposure("blob-public", opened, words, "High"))
    if kind == CONTAINER:
        level = (_text(nv.get("publicAccess")) or "").lower()
        if level in {"blob", "container"}:
            found.append(
                Exposure("blob-public", True, f"made the container public ({level})", "High")
            )
        elif level == "none":
            found.append(Exposure("blob-public", False, "made the container private", "High"))
    if kind in NETWORKED:
        network = _network(nv)
        if network is not None:
            found.append(network)
    if kind == FIREWALL:
        rule = _firewall(nv)
        if rule is not None:
            found.append(rule)
    if kind == NSG_RULE:
        rule = _nsg(nv)
        if rule is not None:
            found.append(rule)
    return found


def _allowed(resource: str, allow: tuple[str, ...]) -> bool:
    return any(resource == a or resource.startswith(a + "/") for a in allow)


def step(
    rule: RuleInfo, state: LastSeen, event: AccessEvent, time: float, ctx: DetectionContext
) -> None:
    resource = (event.target_resource_id or "").lower()
    if not resource or not state.fired.first(event.event_uid, time):
        return
    params: Params = rule.params
    # A new account, vault, server or service holds no PHI yet: its state is noted only.
    created = event.event_type == "Create" and (event.event_sub_type or "") in NETWORKED
    allowed = _allowed(resource, tuple(a.lower().rstrip("/") for a in params.allow_resources))
    opened: list[tuple[Exposure, tuple[bool, float] | None]] = []
    for found in exposures(event):
        slot = f"{resource}|{found.aspect}"
        before = state.states.pop(slot, None)
        if found.aspect != "private-endpoint":
            state.states[slot] = (found.open, time)
        if found.open and not created and not allowed and not (before and before[0]):
            opened.append((found, before))
    if opened:
        _raise(rule, ctx, resource, event, time, opened, params.gap_minutes * 60)
    while len(state.states) > MAX_RESOURCES:
        state.states.pop(next(iter(state.states)))


def _raise(
    rule: RuleInfo,
    ctx: DetectionContext,
    resource: str,
    event: AccessEvent,
    time: float,
    opened: list[tuple[Exposure, tuple[bool, float] | None]],
    gap: float,
) -> None:
    """One event, whatever it opened: one alert (or one enrichment of the open one)."""
    words = [found.what for found, _ in opened]
    severity = max((found.severity for found, _ in opened), key=_RANK.__getitem__)

    def fold(facts: ExposureFacts, value: list[str]) -> None:
        facts.changes.extend(w for w in value if w not in facts.changes)

    if enrich(rule, ctx, resource, event, time, gap, value=words, fold=fold):
        alert = ctx.book.open_for(rule.rule_id, resource, time, gap)
        if alert is not None and _RANK[severity] > _RANK[alert.severity]:
            alert.severity = severity
            ctx.book.changed(alert)
        return
    first, before = opened[0]
    facts = ExposureFacts(
        resource,
        first.what,
        "unknown" if before is None else "private",
        None if before is None else before[1],
    )
    alert = open_alert(
        rule,
        ctx,
        resource,
        event,
        time,
        anchor=event.event_uid,
        facts=facts,
        value=words,
        fold=fold,
    )
    alert.severity = severity


def expire(state: LastSeen, before: float) -> None:
    state.fired.expire(before)  # the last states stay: bounded by count, not by time


class PublicExposure(Detection[Params]):
    rule_id = "public-exposure"
    rule_name = "PHI resource opened to the public"
    severity = "High"
    tactics = ("DefenseEvasion", "Collection")
    techniques = ("T1562.007", "T1530")
    # A resource's states and its parents' meet in one subscription.
    group_by = "subscription"
    planes = frozenset({"control"})
    products = frozenset({activity.PRODUCT})
    Params = Params
    Facts = ExposureFacts

    def applies(self, event: AccessEvent) -> bool:
        kind = event.event_sub_type or ""
        return (
            event.event_product == activity.PRODUCT
            and event.event_result == "Success"
            and (kind in WRITES or kind in PRIVATE_ENDPOINT_CONNECTIONS)
        )

    def declare(self) -> StatefulRule:
        return StatefulRule(state=LastSeen, step=step, drop_before=expire, name="last_seen")

    def render(self, state: AlertState) -> Alert:
        facts: ExposureFacts = state.facts
        who = actor_label(state)
        name = facts.resource.rsplit("/", 1)[-1]
        if facts.before == "private" and facts.last_seen is not None:
            before = (
                f"phiwatch last saw this setting private at {hhmm(facts.last_seen)}, so this "
                "change newly exposes the resource."
            )
        else:
            before = (
                "phiwatch has not seen this setting before, so whether it was private before "
                "is unknown: check the resource's change history (Resource Graph "
                "resourcechanges)."
            )
        changes = "; ".join(facts.changes)
        reasons = [
            f"{who} {changes} on {name} at {hhmm(state.first_time)}; the change succeeded.",
            before,
            f"Check first whether {who} meant to open {name}: if not, revert the setting, "
            "then review anonymous or external reads of it since the change.",
        ]
        return self.base_alert(
            state,
            title=f"{who} {facts.what} on {name}",
            description=(
                f"{who} {changes} on {facts.resource}, a resource holding PHI. A resource "
                "opened to the internet exposes its data to anyone who finds it (MITRE "
                "T1562.007, T1530); it is not on the public-exposure allow-list. Detected at "
                f"{utc(state.first_time):%Y-%m-%d %H:%M} UTC."
            ),
            reasons=reasons,
        )


DETECTION = PublicExposure
