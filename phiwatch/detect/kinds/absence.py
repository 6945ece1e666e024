"""Absence: an expected event missing by a deadline.

A trigger (a diagnostic setting deleted) is held as pending until event time is `grace`
seconds past it; then it fires unless an explaining event (its resource, or a parent,
deleted) happened within `grace` of it, before or after. Event time is the engine's clock,
so a replay settles every trigger at the same point whatever the batch split. With
`triggers_explain` an event can be both (audit-tampering: a namespace delete explains its
event hubs' deletes, and is judged itself).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from phiwatch.detect.context import DetectionContext
from phiwatch.detect.grouping import key_of
from phiwatch.detect.kinds.base import Fired, Part, raise_once
from phiwatch.detect.snapshot import snapshot_class
from phiwatch.model import AccessEvent

if TYPE_CHECKING:
    from phiwatch.detect.context import RuleInfo


@snapshot_class
@dataclass(slots=True)
class Pending:
    time: float
    event: AccessEvent
    expected: str  # what would explain it (the monitored resource)
    arrival: datetime  # when the trigger arrived: the alert's DetectedAt


@snapshot_class
@dataclass(slots=True)
class AbsenceState:
    pending: dict[str, Pending] = field(default_factory=dict)  # by the trigger's EventUid
    seen: dict[str, float] = field(default_factory=dict)  # explaining thing → latest time
    fired: Fired = field(default_factory=Fired)


@dataclass(frozen=True)
class Absence(Part):
    kind: ClassVar[str] = "absence"
    grace: float
    # A trigger: what must be seen to explain it, or None for any other event.
    expect: Callable[[AccessEvent], str | None]
    # An explaining event: the thing it shows, or None.
    shows: Callable[[AccessEvent], str | None]
    # Whether a thing shown explains an expectation.
    explains: Callable[[str, str], bool]
    facts: Callable[[AccessEvent], Any]
    alert_key: Callable[[AccessEvent], str | None] | None = None
    gap: float = 3600.0
    # An event that shows something may be a trigger too (a workspace deleted: a tamper of
    # its own, and the parent deletion that explains its tables' deletes).
    triggers_explain: bool = False
    name: str = "absence"

    def takes(self, event: AccessEvent) -> bool:
        return self.shows(event) is not None or self.expect(event) is not None

    def new_state(self) -> AbsenceState:
        return AbsenceState()

    def observe(
        self,
        rule: RuleInfo,
        state: AbsenceState,
        event: AccessEvent,
        time: float,
        ctx: DetectionContext,
    ) -> None:
        shown = self.shows(event)
        if shown is not None:
            state.seen[shown] = max(time, state.seen.get(shown, time))
            if not self.triggers_explain:
                return
        expected = self.expect(event)
        if expected is not None and event.event_uid not in state.pending:
            state.pending[event.event_uid] = Pending(time, event, expected, ctx.arrival)

    def on_watermark(self, rule: RuleInfo, state: AbsenceState, ctx: DetectionContext) -> None:
        self._settle(rule, state, ctx, lambda p: ctx.watermark >= p.time + self.grace)

    def on_end(self, rule: RuleInfo, state: AbsenceState, ctx: DetectionContext) -> None:
        self._settle(rule, state, ctx, lambda p: True)

    def _settle(
        self,
        rule: RuleInfo,
        state: AbsenceState,
        ctx: DetectionContext,
        due: Callable[[Pending], bool],
    ) -> None:
        # In event-time order (EventUid breaks ties): the earliest trigger of a key anchors.
        due_now = sorted((p.time, u) for u, p in state.pending.items() if due(p))
        for _, uid in due_now:
            pending = state.pending.pop(uid)
            if self._explained(state, pending):
                continue
            event = pending.event
            key = self.alert_key(event) if self.alert_key else key_of(rule.group_by, event)
            if key is None:
                continue
            at_arrival = DetectionContext(ctx.book, ctx.watermark, pending.arrival)
            raise_once(
                rule,
                at_arrival,
                state.fired,
                key,
                event,
                pending.time,
                gap=self.gap,
                facts=self.facts,
            )

    def _explained(self, state: AbsenceState, pending: Pending) -> bool:
        return any(
            abs(when - pending.time) <= self.grace and self.explains(shown, pending.expected)
            for shown, when in state.seen.items()
        )

    def expire(self, state: AbsenceState, before: float) -> None:
        horizon = before - 2 * self.grace
        state.seen = {s: t for s, t in state.seen.items() if t >= horizon}
        state.fired.expire(before)

    def size(self, state: AbsenceState) -> int:
        return len(state.pending) + len(state.seen)
