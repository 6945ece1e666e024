"""Test-only rules, one per grouping the shipped rules do not use, for the routing tests and
the multi-partition simulation: each counts, per key of its grouping, distinct values (events,
or actors) within a sliding event-time window and raises an alert at a threshold. They are
registered by patching the registry (`registered`), never by a file in detections/.

The generated scenario has no CredentialId (no source fills it yet), so `with_credentials`
makes normalize stamp Key Vault events with a stand-in: one "credential" per vault, used by
every caller of it, so that credential routing and actor routing disagree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import pytest
from pydantic import Field

import detections
from phiwatch.detect.alert_book import AlertState
from phiwatch.detect.detection import Detection, DetectionParams
from phiwatch.detect.grouping import Grouping, actor_key
from phiwatch.detect.kinds import ValueCount
from phiwatch.model import AccessEvent, Alert, Plane
from phiwatch.sources.base import NormaliseContext


class BurstParams(DetectionParams):
    threshold: int = Field(default=2, ge=1)
    window_seconds: float = Field(default=600, gt=0)


class KeyedBurst(Detection[BurstParams]):
    """At least `threshold` distinct `distinct(event)` per key within the window: a
    value_count on the engine (phiwatch.detect.kinds), keyed by the rule's grouping."""

    rule_name = "Test burst"
    severity = "Medium"
    tactics = ()
    techniques = ()
    Params = BurstParams
    wants: ClassVar[Callable[[AccessEvent], bool]]
    distinct: ClassVar[Callable[[AccessEvent], str | None]]
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, params: BurstParams, lateness: float) -> None:
        params = params.model_copy(
            update={**self.defaults, **params.model_dump(exclude_unset=True)}
        )
        super().__init__(params, lateness)

    def applies(self, event: AccessEvent) -> bool:
        return type(self).wants(event)

    def declare(self) -> ValueCount:
        return ValueCount(
            window=self.params.window_seconds,
            at_least=self.params.threshold,
            distinct=type(self).distinct,
            facts=lambda event: None,
        )

    def render(self, state: AlertState) -> Alert:
        what = f"{state.event_count} events of one {self.group_by} key"
        return self.base_alert(
            state,
            title=f"{self.rule_id}: {what}",
            description=f"{what} within {self.params.window_seconds:.0f} s ({state.key}).",
            reasons=[f"{state.event_count} events, {len(state.src_ips)} source addresses."],
        )


def _rule(
    rule_id: str,
    grouping: Grouping,
    planes: frozenset[Plane],
    wants: Callable[[AccessEvent], bool],
    distinct: Callable[[AccessEvent], str | None] = lambda e: e.event_uid,
    **defaults: Any,
) -> type[KeyedBurst]:
    return type(  # type: ignore[return-value]
        rule_id.title().replace("-", ""),
        (KeyedBurst,),
        {
            "rule_id": rule_id,
            "group_by": grouping,
            "planes": planes,
            "wants": staticmethod(wants),
            "distinct": staticmethod(distinct),
            "defaults": defaults,
        },
    )


DATA: frozenset[Plane] = frozenset({"data"})


def _patient_read(event: AccessEvent) -> bool:
    return event.patient_ref is not None and event.event_result == "Success"


SYNTHETIC: tuple[type[KeyedBurst], ...] = (
    # One chart opened by two or more people within 12 hours.
    _rule(
        "test-patient-readers",
        "patient",
        DATA,
        _patient_read,
        distinct=actor_key,
        threshold=2,
        window_seconds=12 * 3600,
    ),
    # One address busy across every data-plane product, whoever signs in from it.
    _rule("test-address-burst", "source_address", DATA, lambda e: True, threshold=40),
    # One credential used 30 times in 10 minutes.
    _rule(
        "test-credential-burst",
        "credential",
        DATA,
        lambda e: e.credential_id is not None,
        threshold=30,
    ),
    # One resource's one log category busy.
    _rule("test-resource-burst", "resource_category", DATA, lambda e: True, threshold=60),
    # Four control-plane changes in one subscription within 10 minutes.
    _rule(
        "test-subscription-changes",
        "subscription",
        frozenset({"control"}),
        lambda e: e.event_result == "Success",
        threshold=4,
    ),
)
SYNTHETIC_IDS = frozenset(cls.rule_id for cls in SYNTHETIC)


@contextmanager
def registered(env: pytest.MonkeyPatch) -> Iterator[None]:
    """The registry loads the shipped detections and the synthetic ones."""
    shipped = detections.detection_classes
    env.setattr(detections, "detection_classes", lambda: [*shipped(), *SYNTHETIC])
    yield


def stand_in_credential(event_fields: dict[str, Any]) -> str | None:
    if event_fields.get("event_product") != "Key Vault":
        return None
    vault = (event_fields.get("target_resource_id") or "").lower()
    return "ck_" + hashlib.sha256(vault.encode()).hexdigest()[:16] if vault else None


@contextmanager
def with_credentials(env: pytest.MonkeyPatch) -> Iterator[None]:
    """Normalize stamps Key Vault events with a stand-in CredentialId (test-only)."""
    redacted = NormaliseContext.redacted

    def stamped(self: NormaliseContext, fields: dict[str, Any]) -> dict[str, Any]:
        out = redacted(self, fields)
        return {**out, "credential_id": stand_in_credential(out)}

    env.setattr(NormaliseContext, "redacted", stamped)
    yield
