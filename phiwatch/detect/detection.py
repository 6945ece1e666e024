"""The contract a streaming detection (one file in `detections/`) implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from phiwatch.detect.alert_book import AlertBook, AlertState
from phiwatch.detect.grouping import Grouping
from phiwatch.model import AccessEvent, Alert, Plane, Severity

# What a detection groups its state by (phiwatch/detect/grouping.py), and which source planes
# it reads. Event routing (two-stage scaling) puts every event of one group on one partition:
# the registry checks the pair against phiwatch/phievents/routing.py when it loads the rule.
GroupBy = Grouping


class DetectionParams(BaseModel):
    """Base for a detection's tunables; unknown keys in configuration are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(slots=True)
class DetectionContext:
    book: AlertBook
    watermark: float
    # When the record that completed a pattern arrived: the Event Hub enqueued time in
    # Azure, the event time in a local replay. Deterministic, so replays are identical.
    arrival: datetime


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def hhmm(ts: float) -> str:
    return utc(ts).strftime("%Y-%m-%d %H:%M:%S UTC")


class Detection(ABC):
    rule_id: ClassVar[str]
    rule_name: ClassVar[str]
    severity: ClassVar[Severity]
    tactics: ClassVar[tuple[str, ...]]
    techniques: ClassVar[tuple[str, ...]]
    group_by: ClassVar[GroupBy]
    planes: ClassVar[frozenset[Plane]]
    # The attributes that hold state (not configuration): what a per-partition snapshot
    # saves and restores (phiwatch.detect.snapshot encodes their values).
    state_attrs: ClassVar[tuple[str, ...]]
    Params: ClassVar[type[DetectionParams]]

    def __init__(self, params: DetectionParams, lateness: float) -> None:
        self.params = params
        self.lateness = lateness

    @abstractmethod
    def applies(self, event: AccessEvent) -> bool:
        """Cheap filter: does this event concern the rule at all?"""

    @abstractmethod
    def observe(self, event: AccessEvent, time: float, ctx: DetectionContext) -> None:
        """Update state with one in-time event; open or enrich alerts through ctx.book."""

    def on_watermark(self, ctx: DetectionContext) -> None:  # noqa: B027 - optional hook
        """Event time has advanced to ctx.watermark (absence/timeout rules act here)."""

    def on_end(self, ctx: DetectionContext) -> None:  # noqa: B027 - optional hook
        """The input is finished (local replay): settle anything still pending."""

    @abstractmethod
    def expire(self, before: float) -> None:
        """Drop state that no future in-time event can need."""

    @abstractmethod
    def state_size(self) -> int:
        """Keys held, for metrics and the bounded-state tests."""

    def state(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.state_attrs}

    def load_state(self, state: dict[str, object]) -> None:
        for name in self.state_attrs:
            if name in state:
                current = getattr(self, name)
                restored = state[name]
                # Windows keep the width configured now, not the one at snapshot time.
                if hasattr(current, "width") and hasattr(restored, "width"):
                    restored.width = current.width  # type: ignore[attr-defined]
                setattr(self, name, restored)

    @abstractmethod
    def render(self, state: AlertState) -> Alert:
        """The analyst-facing alert for an open alert's current state."""

    def base_alert(self, state: AlertState, **fields: object) -> Alert:
        return Alert(
            alert_id=state.alert_id,
            rule_id=self.rule_id,
            rule_name=self.rule_name,
            severity=state.severity,
            tactics=list(self.tactics),
            techniques=list(self.techniques),
            actor_user_id=state.actor_user_id,
            actor_username=state.actor_username,
            src_ip_addr=state.top_ip,
            target_resource_id=state.top_target,
            window_start=utc(state.window_start),
            window_end=utc(state.window_end),
            first_event_time=utc(state.first_time),
            last_event_time=utc(state.last_time),
            event_count=state.event_count,
            distinct_patient_count=len(state.patients),
            evidence_event_uids=[uid for _, uid in state.evidence],
            detected_at=state.detected_at,
            **fields,  # type: ignore[arg-type]
        )


def actor_key(event: AccessEvent) -> str | None:
    """Who did it: Entra object id, else the app id, else the source address."""
    if event.actor_user_id:
        return f"oid:{event.actor_user_id}"
    if event.acting_app_id:
        return f"app:{event.acting_app_id}"
    if event.src_ip_addr:
        return f"ip:{event.src_ip_addr}"
    return None


def actor_label(state: AlertState) -> str:
    return state.actor_username or state.actor_user_id or state.key.split(":", 1)[-1]


def window_anchor(time: float, width: float) -> str:
    """Window-aligned start of the bucket `time` falls in: the alert id's time component."""
    return utc(time - (time % width)).isoformat()
