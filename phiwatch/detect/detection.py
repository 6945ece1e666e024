"""The contract a streaming detection (one file in `detections/`) implements.

A rule is metadata, its Params, a cheap filter (`applies`), one or more declarations of
rule kinds (`declare`, phiwatch.detect.kinds) and how to render its alert. It holds no
state: every declaration says what state it needs (`Part.new_state`) and this base class
holds it, hands it to the declaration with each event, and snapshots and restores all of
it, so there is no list of stateful attributes a rule could forget.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import ClassVar, Generic, TypeVar

import structlog
from pydantic import BaseModel, ConfigDict

from phiwatch.detect.alert_book import AlertState
from phiwatch.detect.context import DetectionContext
from phiwatch.detect.grouping import Grouping
from phiwatch.detect.kinds.base import Part
from phiwatch.detect.kinds.baseline import DAY, DAYS, NAME, ActorBaseline, DailyCounts
from phiwatch.detect.times import utc
from phiwatch.model import AccessEvent, Alert, Plane, Severity
from phiwatch.sources.fields import clean_identity

log = structlog.get_logger("phiwatch.detect")


class DetectionParams(BaseModel):
    """Base for a detection's tunables; unknown keys in configuration are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


P = TypeVar("P", bound=DetectionParams)
# One part as observe calls it: its `takes` (None: every event), its step, its state.
_Step = tuple[Callable[[AccessEvent], bool] | None, Callable[..., None], object]


class Detection(ABC, Generic[P]):
    rule_id: ClassVar[str]
    rule_name: ClassVar[str]
    severity: ClassVar[Severity]
    tactics: ClassVar[tuple[str, ...]]
    techniques: ClassVar[tuple[str, ...]]
    # What the rule's state is keyed by and which source planes it reads: the routing must
    # put every event of one key on one partition (checked when the registry loads it).
    group_by: ClassVar[Grouping]
    planes: ClassVar[frozenset[Plane]]
    # The event products `applies` can be true for (its first test), or None for any. The
    # engine then offers a rule only events of those products: in-process every rule is
    # offered every event, and most rules read one source.
    products: ClassVar[frozenset[str] | None] = None
    Params: ClassVar[type[DetectionParams]]
    # The rule's facts about one alert (a snapshot_class dataclass), or None.
    Facts: ClassVar[type | None] = None

    def __init__(self, params: P, lateness: float) -> None:
        self.params: P = params
        self.lateness = lateness
        declared = self.declare()
        parts = tuple(declared) if isinstance(declared, Sequence) else (declared,)
        # Every actor alert says what is usual for that actor: the engine keeps the volume.
        if self.group_by == "actor":
            parts = (*parts, ActorBaseline())
        self.parts: tuple[Part, ...] = parts
        # The state of each part, by part name: the engine-held containers the parts declared.
        self._held: dict[str, object] = {part.name: part.new_state() for part in self.parts}
        self._steps: tuple[_Step, ...] = ()
        self._bind()
        self._sealed = True

    def _bind(self) -> None:
        """What observe calls per part: its `takes` (None when it takes every event, so
        that call is skipped), its step and the state it holds now. Observe runs for every
        event a rule applies to; this is found again only when a restore replaces a state."""
        held = self._held
        steps = tuple(
            (None if type(p).takes is Part.takes else p.takes, p.step_function(), held[p.name])
            for p in self.parts
        )
        object.__setattr__(self, "_steps", steps)

    def __setattr__(self, name: str, value: object) -> None:
        # State kept on the rule itself would never reach a snapshot: refuse it outright.
        if getattr(self, "_sealed", False):
            raise AttributeError(
                f"{self.rule_id}: a rule keeps no state of its own ({name}); declare a part "
                "(phiwatch.detect.kinds) whose state the engine holds"
            )
        object.__setattr__(self, name, value)

    @abstractmethod
    def applies(self, event: AccessEvent) -> bool:
        """Cheap filter: does this event concern the rule at all?"""

    def presence_of(self, event: AccessEvent) -> str | None:
        """A key under which copies of events are interchangeable to this rule (it needs only
        the earliest of them), or None when it needs every copy (the default). normalize
        sends one copy per key and batch when every rule of the grouping agrees on the
        key (phiwatch.phievents.routing.Router.presence)."""
        return None

    @abstractmethod
    def declare(self) -> Part | Sequence[Part]:
        """The rule kinds this rule is made of, configured from `self.params`."""

    @abstractmethod
    def render(self, state: AlertState) -> Alert:
        """The analyst-facing alert for an open alert's current state."""

    # ---------------------------------------------------------------- engine-facing

    def observe(self, event: AccessEvent, time: float, ctx: DetectionContext) -> None:
        """One in-time event that `applies`: every part that takes it updates its state."""
        for takes, step, state in self._steps:
            if takes is None or takes(event):
                step(self, state, event, time, ctx)

    def on_watermark(self, ctx: DetectionContext) -> None:
        """Event time has advanced to ctx.watermark (absence parts act here)."""
        for part in self.parts:
            part.on_watermark(self, self._held[part.name], ctx)

    def on_end(self, ctx: DetectionContext) -> None:
        """The input is finished (local replay): settle anything still pending."""
        for part in self.parts:
            part.on_end(self, self._held[part.name], ctx)

    def expire(self, before: float) -> None:
        """Drop state that no future in-time event can need."""
        for part in self.parts:
            part.expire(self._held[part.name], before)

    def horizon(self) -> float:
        """Seconds of event time past an event after which the rule holds nothing of it
        beyond the engine's lateness (0: no longer than that); a rule that keeps a history
        (a baseline of days) says how long, so the bounded-state checks wait that long."""
        return 0.0

    def state_size(self) -> int:
        """Keys held, for metrics and the bounded-state tests."""
        return sum(part.size(self._held[part.name]) for part in self.parts)

    def state(self) -> dict[str, object]:
        return dict(self._held)

    def load_state(self, state: dict[str, object]) -> None:
        """Adopt restored part states. A part missing from the snapshot (new since) starts
        empty; one of another type (the part changed kind) is dropped for an empty one."""
        for part in self.parts:
            restored = state.get(part.name)
            if restored is None:
                continue
            if type(restored) is not type(self._held[part.name]):
                log.warning(
                    "detect snapshot: rule part state of another kind dropped",
                    rule=self.rule_id,
                    part=part.name,
                )
                continue
            self._held[part.name] = part.adopt(restored)
        self._bind()

    def usual_volume(self, state: AlertState) -> tuple[float | None, int | None]:
        """The alert's actor's median daily events of this rule before the alert's day, and
        the active days it rests on; (None, None) for a rule not keyed by actor."""
        held = self._held.get(NAME)
        if not isinstance(held, DailyCounts) or state.key not in held.days:
            return None, None
        return held.usual(state.key, int(state.first_time // DAY))

    def base_alert(self, state: AlertState, **fields: object) -> Alert:
        usual, days = self.usual_volume(state)
        if usual is not None and isinstance(fields.get("reasons"), list):
            fields["reasons"] = [
                *fields["reasons"],  # type: ignore[misc]
                f"Usually {usual:g} of these events a day: the median of the {days} active "
                f"day(s) in the {DAYS} days before.",
            ]
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
            evidence_complete=False if state.evidence_dropped else None,
            patient_refs=sorted(state.patients) or None,
            patient_refs_complete=False if state.patients_dropped else None,
            detected_at=state.detected_at,
            actor_usual_daily_events=usual,
            actor_baseline_days=days,
            **fields,  # type: ignore[arg-type]
        )


def actor_label(state: AlertState) -> str:
    """Who an alert title names. The sources clean identities already; this holds for events
    that came another way (an archive replayed from before, a rule test's events)."""
    label = state.actor_username or state.actor_user_id or state.key.split(":", 1)[-1]
    return clean_identity(label) or "an unnamed actor"
