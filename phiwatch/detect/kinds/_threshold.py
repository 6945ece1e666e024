"""The shared half of event_count and value_count: a keyed sliding window of the rule's
matching events, EventUid dedupe, expiry, the suppression step and an escalation step."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from phiwatch.detect.grouping import key_of
from phiwatch.detect.kinds.base import Fold, Part, always, count_in, enrich, open_alert
from phiwatch.detect.kinds.sequence import Then
from phiwatch.detect.times import window_anchor
from phiwatch.detect.windows import Entry, KeyedWindows, SlidingWindow
from phiwatch.model import AccessEvent

if TYPE_CHECKING:
    from phiwatch.detect.context import DetectionContext, RuleInfo


@dataclass(frozen=True)
class Threshold(Part):
    """Counts the rule's events per key (its `group_by`) over `window` seconds and opens an
    alert when the count reaches `at_least`. Its AlertId anchors on the window-aligned
    bucket of the event that crossed the threshold."""

    window: float
    at_least: int
    facts: Callable[[AccessEvent], Any]  # the new alert's facts, from the crossing event
    where: Callable[[AccessEvent], bool] = always  # which of the rule's events count
    note: Callable[[AccessEvent], Any] | None = None  # kept per event, folded into facts
    fold: Fold | None = None
    then: Then | None = None  # an escalation step on the open alert
    name: str = ""

    def __post_init__(self) -> None:
        if self.window <= 0 or self.at_least < 1:
            raise ValueError(f"{self.kind}: window must be > 0 and at_least >= 1")
        if not self.name:
            object.__setattr__(self, "name", self.kind)

    def takes(self, event: AccessEvent) -> bool:
        return self.where(event) or (self.then is not None and self.then.where(event))

    def new_state(self) -> KeyedWindows:
        return KeyedWindows(self.window)

    def adopt(self, state: KeyedWindows) -> KeyedWindows:
        state.width = self.window  # the width configured now, not the one at snapshot time
        return state

    def value(self, event: AccessEvent) -> Any:
        return self.note(event) if self.note is not None else None

    def crossing(self, window: SlidingWindow, time: float) -> list[Entry] | None:
        """The window's entries when the new event at `time` completes the pattern."""
        raise NotImplementedError

    def observe(
        self,
        rule: RuleInfo,
        state: KeyedWindows,
        event: AccessEvent,
        time: float,
        ctx: DetectionContext,
    ) -> None:
        key = key_of(rule.group_by, event)
        if key is None:
            return
        if not self.where(event):
            if self.then is not None:
                self.then.step(rule, ctx, key, event, time, self.window)
            return
        value = self.value(event)
        window = count_in(state, key, event, time, value, ctx.watermark - rule.lateness)
        if window is None:
            return  # redelivered: already counted
        if enrich(rule, ctx, key, event, time, self.window, value=value, fold=self.fold):
            return
        entries = self.crossing(window, time)
        if entries is None:
            return
        open_alert(
            rule,
            ctx,
            key,
            event,
            time,
            anchor=window_anchor(time, self.window),
            facts=self.facts(event),
            entries=entries,
            window=(entries[0][0], entries[-1][0]),
            value=value,
            fold=self.fold,
        )

    def expire(self, state: KeyedWindows, before: float) -> None:
        state.expire(before)

    def size(self, state: KeyedWindows) -> int:
        return len(state)
