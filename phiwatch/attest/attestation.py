"""Per resource the attestation checks; per HIPAA control the coverage, failing resources named.

Checks (which apply to which resource: `applicable_checks`):

- `diagnostics`: the resource's logs reach phiwatch. Judged from the logs themselves when
  they are given (`logging_resources`: the resource, or one of its children, is the target
  of an archived event in the period), else from the inventory's `Diagnostics` column.
- `public-network-off`: public network access disabled (or a Deny default action).
- `customer-managed-key`: encryption at rest with a customer-managed key, required where
  the tier requires it: a `restricted` tier, or the audit archive account (its integrity is
  the evidence of every other control). Key Vaults are exempt: they hold the keys.
- `private-endpoint`: at least one private endpoint connection.
- `immutability-locked`: a locked immutability policy, judged on the archive account only.

A check whose property is unknown (None) fails: an attestation needs evidence.

Controls (`CONTROLS`) and why each check is its evidence:

- 164.312(b) audit controls: `diagnostics` (activity on the resource is recorded).
- 164.312(c)(1) integrity: `immutability-locked` and `customer-managed-key` (the archive
  cannot be altered, and restricted data is encrypted under a key the customer can revoke).
- 164.312(c)(2) mechanism to authenticate ePHI: `immutability-locked` (the archive's
  signed manifests prove what was written only while the objects cannot be replaced).
- 164.312(e)(1) transmission security: `public-network-off` and `private-endpoint` (PHI
  travels on the private network, never across the internet).

164.308(a)(1)(ii)(D) information system activity review rests on the same evidence as
164.312(b) (what is not logged cannot be reviewed) plus the alerts themselves; it is not a
separate coverage figure, so one diagnostics change never counts twice.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from phiwatch.archive.archive import decode_lines
from phiwatch.archive.store import ObjectMissing, ObjectStore
from phiwatch.attest.inventory import Inventory, PhiResource
from phiwatch.model import AccessEvent
from phiwatch.sources import activity

Check = Literal[
    "diagnostics",
    "public-network-off",
    "customer-managed-key",
    "private-endpoint",
    "immutability-locked",
]
CHECKS: tuple[Check, ...] = (
    "diagnostics",
    "public-network-off",
    "customer-managed-key",
    "private-endpoint",
    "immutability-locked",
)
# A resource's state: check → passing, for the checks that apply to it.
State = dict[Check, bool]


@dataclass(frozen=True, slots=True)
class Control:
    control_id: str
    title: str
    checks: tuple[Check, ...]


CONTROLS: tuple[Control, ...] = (
    Control("164.312(b)", "Audit controls", ("diagnostics",)),
    Control("164.312(c)(1)", "Integrity", ("immutability-locked", "customer-managed-key")),
    Control("164.312(c)(2)", "Mechanism to authenticate ePHI", ("immutability-locked",)),
    Control("164.312(e)(1)", "Transmission security", ("public-network-off", "private-endpoint")),
)


@dataclass(frozen=True, slots=True)
class ControlCoverage:
    control_id: str
    title: str
    applicable: int  # resources at least one of the control's checks applies to
    passing: int
    percentage: float  # 100.0 when nothing applies (nothing to fail), rounded to 0.1
    failing: tuple[str, ...]  # resource ids, sorted
    failing_checks: dict[str, tuple[Check, ...]]  # resource id → the checks it fails

    @property
    def ratio(self) -> float:
        return 1.0 if self.applicable == 0 else self.passing / self.applicable


def cmk_required(resource: PhiResource) -> bool:
    return resource.kind != "keyvault" and (resource.tier == "restricted" or resource.archive)


def applicable_checks(resource: PhiResource) -> tuple[Check, ...]:
    checks: list[Check] = ["diagnostics", "public-network-off"]
    if cmk_required(resource):
        checks.append("customer-managed-key")
    checks.append("private-endpoint")
    if resource.archive:
        checks.append("immutability-locked")
    return tuple(checks)


def owner_of(target: str, resources: Iterable[str]) -> str | None:
    """The inventory resource an event's target belongs to: itself or its nearest
    ancestor (a container's account, a blob service's account)."""
    target = target.lower()
    best: str | None = None
    for rid in resources:
        if (target == rid or target.startswith(rid + "/")) and (
            best is None or len(rid) > len(best)
        ):
            best = rid
    return best


def logging_resources(events: Iterable[AccessEvent], inventory: Inventory) -> set[str]:
    """The inventory resources that logged: an event targets them or a child of them.
    Activity Log events are left out: the control plane logs even when the resource's
    own diagnostics are off."""
    return _owners(
        (
            event.target_resource_id
            for event in events
            if event.event_product != activity.PRODUCT and event.target_resource_id
        ),
        inventory,
    )


def archived_targets(store: ObjectStore, since: datetime, until: datetime) -> Iterator[str]:
    """The data-plane targets of the archive's events objects of the hours in
    [since, until): read as plain JSON, only the two fields the check needs."""
    hour = since.replace(minute=0, second=0, microsecond=0)
    while hour < until:
        for name in store.list(f"events/{hour:%Y/%m/%d/%H}/"):
            try:
                lines = decode_lines(store.get(name))
            except (ObjectMissing, OSError, EOFError, zlib.error, ValueError):
                # Altered or truncated: archive verify names it; its events count as unseen.
                continue
            for line in lines:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue  # not a record (verify fails the object)
                if not isinstance(row, dict):
                    continue
                target = row.get("TargetResourceId")
                if target and row.get("EventProduct") != activity.PRODUCT:
                    yield target
        hour += timedelta(hours=1)


def logging_from_archive(
    store: ObjectStore, inventory: Inventory, since: datetime, until: datetime
) -> set[str]:
    """`logging_resources` over the events phiwatch archived in the period: a resource
    whose logs reached phiwatch has events there."""
    return _owners(archived_targets(store, since, until), inventory)


def _owners(targets: Iterable[str], inventory: Inventory) -> set[str]:
    ids = [r.resource_id for r in inventory]
    seen: set[str] = set()
    for target in {t.lower() for t in targets}:
        owner = owner_of(target, ids)
        if owner is not None:
            seen.add(owner)
    return seen


def initial_state(resource: PhiResource, logging: set[str] | None = None) -> State:
    """The resource's checks from the inventory (and from the logs, when given)."""
    values: dict[Check, bool | None] = {
        "diagnostics": (
            resource.resource_id in logging if logging is not None else resource.diagnostics
        ),
        "public-network-off": resource.public_network_disabled,
        "customer-managed-key": resource.customer_managed_key,
        "private-endpoint": resource.private_endpoint,
        "immutability-locked": resource.immutability_locked,
    }
    return {check: values[check] is True for check in applicable_checks(resource)}


def attest(inventory: Inventory, logging: set[str] | None = None) -> dict[str, State]:
    """Every resource's state, from the inventory and (optionally) the logs."""
    return {r.resource_id: initial_state(r, logging) for r in inventory}


def coverage_of(
    control: Control, resources: Iterable[PhiResource], states: Mapping[str, Mapping[Check, bool]]
) -> ControlCoverage:
    applicable = 0
    failing: dict[str, tuple[Check, ...]] = {}
    for resource in resources:
        state = states.get(resource.resource_id) or initial_state(resource)
        checks = [c for c in control.checks if c in applicable_checks(resource)]
        if not checks:
            continue
        applicable += 1
        failed = tuple(c for c in checks if not state.get(c, False))
        if failed:
            failing[resource.resource_id] = failed
    passing = applicable - len(failing)
    percentage = 100.0 if applicable == 0 else round(100.0 * passing / applicable, 1)
    return ControlCoverage(
        control.control_id,
        control.title,
        applicable,
        passing,
        percentage,
        tuple(sorted(failing)),
        dict(sorted(failing.items())),
    )


def coverage_by_control(
    inventory: Inventory | Iterable[PhiResource],
    states: Mapping[str, Mapping[Check, bool]] | None = None,
) -> list[ControlCoverage]:
    """Per HIPAA control, the share of applicable resources passing its checks, and the
    failing ones named. A resource without a state is judged from the inventory alone."""
    resources = list(inventory)
    return [coverage_of(control, resources, states or {}) for control in CONTROLS]
