"""attestation-coverage-drop: a HIPAA control's coverage of the PHI estate fell below the floor.

The estate is the inventory file (`inventory`: CSV or JSON, docs/attestation.md); each
resource's checks (phiwatch/attest/attestation.py) start from it and are kept current from
the Activity stream, on the terminal successful writes the other rules read:

- public network (public-exposure's reading of `NewValue`): `publicNetworkAccess` or the
  network default action, anonymous blob access, a SQL firewall rule open to every address
  (or to every Azure service) fail `public-network-off`; the same settings made private
  (and the open firewall rule deleted) pass it again;
- a private endpoint connection deleted fails `private-endpoint`, one written passes it
  (a delete is taken as the resource's last connection: the record does not say);
- a diagnostic setting deleted or written to send no logs (diagnostics-disabled's
  reading) fails `diagnostics`, one written with logs passes it;
- a container's immutability policy deleted fails `immutability-locked`, one locked passes.

A change to a SQL server applies to its databases in the inventory, a change to a child
(a blob service's setting, a container) to the inventory resource it belongs to.

The stream cannot see the archive, so an empty `Diagnostics` in the inventory is taken as
on here (the HIPAA report judges it from the logs). Coverage is per subscription: the rule
groups by subscription (a resource and its parents meet there), so each partition holds
exactly the state of its subscriptions' resources and its coverage is exact.

When a resource falls out of a control and the control's coverage in that subscription is
then below `min_coverage` (default 0.95: an estate may carry a known exception in twenty;
1.0 would make one long-accepted exception an alert on every later change), the rule
raises a Medium alert, High below `high_below` (0.8). One alert per control per drop
episode: later resources falling out while it is below join the alert (while the engine
keeps it open, a day after its last change); coverage back at the floor ends the episode.
A control already below the floor at start-up raises on its first further drop. Without
`inventory` the rule is off, and says so once when it loads.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cache

import structlog
from pydantic import Field, model_validator

from detections.public_exposure import (
    FIREWALL,
    NETWORKED,
    PRIVATE_ENDPOINT_CONNECTIONS,
    STORAGE,
    exposures,
)
from phiwatch.attest.attestation import (
    CONTROLS,
    Check,
    Control,
    ControlCoverage,
    State,
    coverage_of,
    initial_state,
)
from phiwatch.attest.inventory import Inventory, PhiResource, load_inventory
from phiwatch.detect.alert_book import AlertState
from phiwatch.detect.context import DetectionContext, RuleInfo
from phiwatch.detect.detection import Detection, DetectionParams, actor_label
from phiwatch.detect.kinds import StatefulRule
from phiwatch.detect.kinds.base import Fired, enrich, open_alert
from phiwatch.detect.snapshot import snapshot_class
from phiwatch.detect.times import hhmm, utc
from phiwatch.model import AccessEvent, Alert
from phiwatch.sources import activity
from phiwatch.sources.activity import DIAGNOSTIC_SETTINGS, diagnostic_setting_target

log = structlog.get_logger("phiwatch.detect")
RULE_ID = "attestation-coverage-drop"
# The engine keeps an alert open a day after its last event (alert_book.expire).
EPISODE_GAP = 86_400.0
MAX_NAMED = 50  # resources named in one alert's facts; the count says the rest
IMMUTABILITY = "microsoft.storage/storageaccounts/blobservices/containers/immutabilitypolicies"
_CONTAINER_CHILD = "/blobservices/"
# Aspects the stream sets that are a check's value as they are.
_SET_BY: tuple[tuple[str, Check], ...] = (
    ("private-endpoint", "private-endpoint"),
    ("diagnostics", "diagnostics"),
    ("immutability", "immutability-locked"),
)
CHECK_WORDS: dict[str, str] = {
    "diagnostics": "diagnostic logs no longer reach phiwatch",
    "public-network-off": "open to the public network",
    "customer-managed-key": "no customer-managed key",
    "private-endpoint": "no private endpoint",
    "immutability-locked": "immutability not locked",
}


class CoverageParams(DetectionParams):
    inventory: str | None = None  # the inventory file (CSV or JSON); off until set
    min_coverage: float = Field(default=0.95, gt=0, le=1)
    high_below: float = Field(default=0.8, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> CoverageParams:
        if self.high_below > self.min_coverage:
            raise ValueError("high_below must not exceed min_coverage")
        return self


@snapshot_class
@dataclass(slots=True)
class CoverageDropFacts:
    subscription: str
    control_id: str
    title: str
    min_coverage: float
    percentage: float  # the latest coverage
    lowest: float
    passing: int
    applicable: int
    fell_out: list[str] = field(default_factory=list)  # in the order they fell
    failing_checks: dict[str, list[str]] = field(default_factory=dict)  # resource → checks
    more: int = 0  # resources fallen out beyond MAX_NAMED


@snapshot_class
@dataclass(slots=True)
class AttestationState:
    # "<resource>|<aspect>" → value seen in the stream (aspects: network-open, blob-open,
    # firewall-open:<rule>, private-endpoint, diagnostics, immutability); only inventory
    # resources are kept, so the inventory bounds it.
    seen: dict[str, bool] = field(default_factory=dict)
    # "<subscription>|<control>" → the episode's alert anchor ("": below since start-up).
    episodes: dict[str, str] = field(default_factory=dict)
    fired: Fired = field(default_factory=Fired)

    def __len__(self) -> int:
        return len(self.seen) + len(self.episodes) + len(self.fired)


@dataclass(frozen=True, slots=True)
class Drop:
    coverage: ControlCoverage
    fell: list[str]
    event: AccessEvent


def _subscription(resource_id: str) -> str:
    parts = resource_id.lower().split("/")
    return parts[2] if len(parts) > 2 and parts[1] == "subscriptions" else ""


@cache
def _say_off() -> None:
    log.warning(
        "detection off until configured: set inventory to the PHI inventory file",
        rule=RULE_ID,
    )


@cache
def _say_loaded(source: str, resources: int) -> None:
    # Once per inventory: the registry's load-time checks build the rule more than once.
    log.info("attestation inventory loaded", rule=RULE_ID, source=source, resources=resources)


class Estate:
    """The inventory, indexed for the stream: resources by subscription, baselines."""

    def __init__(self, inventory: Inventory) -> None:
        self.by_sub: dict[str, list[PhiResource]] = defaultdict(list)
        self.baseline: dict[str, State] = {}
        for resource in inventory:
            self.by_sub[resource.subscription].append(resource)
            # The stream cannot see the archive: unknown diagnostics are taken as on.
            seeded = (
                dataclasses.replace(resource, diagnostics=True)
                if resource.diagnostics is None
                else resource
            )
            self.baseline[resource.resource_id] = initial_state(seeded)

    def affected(self, target: str) -> list[str]:
        """The inventory resources a change to `target` applies to: itself, the resource it
        belongs to (nearest ancestor), or those below it (a SQL server's databases)."""
        target = target.lower()
        resources = self.by_sub.get(_subscription(target), [])
        owners = [
            r.resource_id
            for r in resources
            if target == r.resource_id or target.startswith(r.resource_id + "/")
        ]
        if owners:
            return [max(owners, key=len)]
        return [r.resource_id for r in resources if r.resource_id.startswith(target + "/")]

    def state_of(self, resource: PhiResource, seen: dict[str, bool]) -> State:
        rid = resource.resource_id
        state = dict(self.baseline[rid])
        prefix = f"{rid}|"
        mine = {k[len(prefix) :]: v for k, v in seen.items() if k.startswith(prefix)}
        if "public-network-off" in state:
            network_ok = (
                not mine["network-open"] if "network-open" in mine else state["public-network-off"]
            )
            opened = any(
                v for k, v in mine.items() if k == "blob-open" or k.startswith("firewall-open:")
            )
            state["public-network-off"] = network_ok and not opened
        for aspect, check in _SET_BY:
            if aspect in mine and check in state:
                state[check] = mine[aspect]
        return state

    def coverage(self, subscription: str, seen: dict[str, bool]) -> list[ControlCoverage]:
        resources = self.by_sub.get(subscription, [])
        states = {r.resource_id: self.state_of(r, seen) for r in resources}
        return [coverage_of(control, resources, states) for control in CONTROLS]


def changes(event: AccessEvent) -> list[tuple[str, str, bool]]:
    """What an Activity event says of attested state: (target, aspect, value)."""
    target = (event.target_resource_id or "").lower()
    kind = (event.event_sub_type or "").lower()
    found: list[tuple[str, str, bool]] = []
    if kind == DIAGNOSTIC_SETTINGS:
        monitored = diagnostic_setting_target(target) or target
        found.append((monitored, "diagnostics", event.event_type not in {"Delete", "Disable"}))
        return found
    if kind == IMMUTABILITY:
        op = event.operation.upper()
        if event.event_type == "Delete":
            found.append((target, "immutability", False))
        elif op.endswith("/LOCK/ACTION"):
            found.append((target, "immutability", True))
        return found
    if kind in PRIVATE_ENDPOINT_CONNECTIONS:
        parent = target.rsplit("/", 2)[0]
        found.append((parent, "private-endpoint", event.event_type != "Delete"))
        return found
    if kind == FIREWALL:
        server, rule = (
            target.rsplit("/firewallrules/", 1)
            if "/firewallrules/" in target
            else (
                target,
                "",
            )
        )
        if event.event_type == "Delete":
            return [(server, f"firewall-open:{rule}", False)]
    for exposure in exposures(event):
        if exposure.aspect == "network":
            found.append((target, "network-open", exposure.open))
        elif exposure.aspect == "blob-public":
            # A container's public access is its account's exposure.
            owner = target.split(_CONTAINER_CHILD, 1)[0] if kind != STORAGE else target
            found.append((owner, "blob-open", exposure.open))
        elif exposure.aspect == "firewall" and "/firewallrules/" in target:
            server, rule = target.rsplit("/firewallrules/", 1)
            found.append((server, f"firewall-open:{rule}", exposure.open))
    return found


class AttestationCoverageDrop(Detection[CoverageParams]):
    rule_id = RULE_ID
    rule_name = "HIPAA control coverage of the PHI estate dropped"
    severity = "Medium"
    tactics = ("DefenseEvasion",)
    techniques = ("T1562",)  # Impair Defenses
    # A resource and its parents (a SQL server, an account) meet in one subscription.
    group_by = "subscription"
    planes = frozenset({"control"})
    products = frozenset({activity.PRODUCT})
    Params = CoverageParams
    Facts = CoverageDropFacts

    def __init__(self, params: CoverageParams, lateness: float) -> None:
        self.estate: Estate | None = None
        if params.inventory:
            try:
                inventory = load_inventory(params.inventory)
            except OSError as error:
                # Refused at load, as a bad parameter is (a ValueError the registry reports).
                raise ValueError(f"inventory cannot be read: {error.strerror}") from None
            self.estate = Estate(inventory)
            _say_loaded(inventory.source, len(inventory))
        else:
            _say_off()
        super().__init__(params, lateness)

    def applies(self, event: AccessEvent) -> bool:
        if self.estate is None or event.event_product != activity.PRODUCT:
            return False
        if event.event_result != "Success" or not event.target_resource_id:
            return False
        kind = (event.event_sub_type or "").lower()
        watched = (
            kind in NETWORKED
            or kind in PRIVATE_ENDPOINT_CONNECTIONS
            or kind in {DIAGNOSTIC_SETTINGS, IMMUTABILITY, FIREWALL}
            or kind.startswith(STORAGE + "/blobservices/")
        )
        return watched and _subscription(event.target_resource_id) in self.estate.by_sub

    def declare(self) -> StatefulRule:
        return StatefulRule(
            state=self._seeded,
            step=self._step,
            drop_before=lambda state, before: state.fired.expire(before),
            name="attestation",
        )

    def _seeded(self) -> AttestationState:
        """A fresh state: the controls already below the floor start their episode (no
        alert: the drop happened before phiwatch watched)."""
        state = AttestationState()
        if self.estate is not None:
            for subscription in self.estate.by_sub:
                for covered in self.estate.coverage(subscription, {}):
                    if covered.ratio < self.params.min_coverage:
                        state.episodes[f"{subscription}|{covered.control_id}"] = ""
        return state

    def _step(
        self,
        rule: RuleInfo,
        state: AttestationState,
        event: AccessEvent,
        time: float,
        ctx: DetectionContext,
    ) -> None:
        estate = self.estate
        if estate is None or not state.fired.first(event.event_uid, time):
            return
        updates = [
            (rid, aspect, value)
            for target, aspect, value in changes(event)
            for rid in estate.affected(target)
        ]
        if not updates:
            return
        subscription = _subscription(updates[0][0])
        before = estate.coverage(subscription, state.seen)
        for rid, aspect, value in updates:
            if aspect.startswith("firewall-open:") and not value:
                # A closed or deleted rule is the same as none: keep only open ones.
                state.seen.pop(f"{rid}|{aspect}", None)
            else:
                state.seen[f"{rid}|{aspect}"] = value
        after = estate.coverage(subscription, state.seen)
        for control, old, new in zip(CONTROLS, before, after, strict=True):
            key = f"{subscription}|{control.control_id}"
            if new.ratio >= self.params.min_coverage:
                state.episodes.pop(key, None)  # back at the floor: the episode is over
                continue
            fell = [rid for rid in new.failing if rid not in old.failing]
            if fell:
                self._raise(rule, ctx, state, key, control, Drop(new, fell, event), time)

    def _raise(
        self,
        rule: RuleInfo,
        ctx: DetectionContext,
        state: AttestationState,
        key: str,
        control: Control,
        drop: Drop,
        time: float,
    ) -> None:
        params = self.params
        high = drop.coverage.ratio < params.high_below

        def fold(facts: CoverageDropFacts, value: Drop) -> None:
            covered = value.coverage
            facts.percentage, facts.passing = covered.percentage, covered.passing
            facts.applicable = covered.applicable
            facts.lowest = min(facts.lowest, covered.percentage)
            for rid in value.fell:
                if rid in facts.fell_out:
                    continue
                if len(facts.fell_out) >= MAX_NAMED:
                    facts.more += 1
                    continue
                facts.fell_out.append(rid)
                facts.failing_checks[rid] = list(covered.failing_checks.get(rid, ()))

        anchor = state.episodes.get(key)
        if anchor and enrich(rule, ctx, key, drop.event, time, EPISODE_GAP, value=drop, fold=fold):
            alert = ctx.book.open_for(rule.rule_id, key, time, EPISODE_GAP)
            if alert is not None and high and alert.severity != "High":
                alert.severity = "High"
                ctx.book.changed(alert)
            return
        subscription = key.split("|", 1)[0]
        facts = CoverageDropFacts(
            subscription,
            control.control_id,
            control.title,
            params.min_coverage,
            drop.coverage.percentage,
            drop.coverage.percentage,
            drop.coverage.passing,
            drop.coverage.applicable,
        )
        alert = open_alert(
            rule,
            ctx,
            key,
            drop.event,
            time,
            anchor=drop.event.event_uid,
            facts=facts,
            value=drop,
            fold=fold,
        )
        alert.severity = "High" if high else "Medium"
        state.episodes[key] = drop.event.event_uid

    def render(self, state: AlertState) -> Alert:
        facts: CoverageDropFacts = state.facts
        who = actor_label(state)
        floor = round(facts.min_coverage * 100, 1)
        names = [rid.rsplit("/", 1)[-1] for rid in facts.fell_out]
        fell = "; ".join(
            f"{rid.rsplit('/', 1)[-1]} ({', '.join(CHECK_WORDS.get(c, c) for c in checks)})"
            for rid, checks in facts.failing_checks.items()
        )
        more = f" and {facts.more} more" if facts.more else ""
        reasons = [
            f"HIPAA {facts.control_id} ({facts.title}) now covers {facts.passing} of "
            f"{facts.applicable} PHI resources in subscription {facts.subscription} "
            f"({facts.percentage}%), below the {floor}% floor (lowest {facts.lowest}%).",
            f"Fell out after changes by {who} from {hhmm(state.first_time)} to "
            f"{hhmm(state.last_time)}: {fell}{more}.",
            "Resources: " + ", ".join(facts.fell_out) + more + ".",
            "Check first whether the change was planned (a change record, an exception): if "
            "not, revert the setting and review access to the resource since the change.",
        ]
        return self.base_alert(
            state,
            title=(
                f"HIPAA {facts.control_id} coverage fell to {facts.percentage}% "
                f"({', '.join(names[:3])}{'…' if len(names) > 3 or facts.more else ''})"
            ),
            description=(
                f"Attested coverage of HIPAA {facts.control_id} ({facts.title}) over the PHI "
                f"inventory's resources in subscription {facts.subscription} fell to "
                f"{facts.percentage}% (floor {floor}%) when {who} changed "
                f"{', '.join(names)}{more}. Detected at "
                f"{utc(state.first_time):%Y-%m-%d %H:%M} UTC."
            ),
            reasons=reasons,
        )


DETECTION = AttestationCoverageDrop
