"""What every rule kind shares: the part protocol and the suppression step.

A part is a declaration (frozen configuration). Its state is created by `new_state`, held
by the rule's Detection base and passed in with every call, so the engine snapshots all of
it; a part keeps nothing on itself.

Suppression: one burst raises one alert. While an alert is open for the rule and key
(its events within the gap of the new one), a new matching event enriches it; otherwise
an alert is opened with the matching events so far as its evidence.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from phiwatch.detect.alert_book import AlertState
from phiwatch.detect.snapshot import snapshot_class
from phiwatch.model import AccessEvent

if TYPE_CHECKING:
    from phiwatch.detect.context import DetectionContext, RuleInfo
    from phiwatch.detect.windows import KeyedWindows, SlidingWindow

# What a windowed part keeps of each event: (value, patient, source address, target). The
# value is what a value_count counts distinct, or the rule's note on the event (folded into
# its alert facts as the event joins the alert).
Kept = tuple[Any, str | None, str | None, str | None]
Fold = Callable[[Any, Any], None]  # (the alert's facts, an event's value)


class Part:
    """One declaration of a rule kind. Subclasses are frozen dataclasses."""

    kind: ClassVar[str]
    name: str  # unique within the rule: its state's name in snapshots

    def takes(self, event: AccessEvent) -> bool:
        """Whether this part looks at one of the rule's events at all."""
        return True

    def new_state(self) -> Any:
        return None

    def adopt(self, state: Any) -> Any:
        """A restored state, made to fit the configuration in force now."""
        return state

    def observe(
        self, rule: RuleInfo, state: Any, event: AccessEvent, time: float, ctx: DetectionContext
    ) -> None:
        raise NotImplementedError

    def step_function(self) -> Callable[..., None]:
        """What observe calls for each event the part takes, as (rule, state, event, time,
        ctx): its own `observe`, or a function of the rule's that it would only pass on to."""
        return self.observe

    def on_watermark(self, rule: RuleInfo, state: Any, ctx: DetectionContext) -> None:
        return None

    def on_end(self, rule: RuleInfo, state: Any, ctx: DetectionContext) -> None:
        return None

    def expire(self, state: Any, before: float) -> None:
        return None

    def size(self, state: Any) -> int:
        return 0


def kept_of(event: AccessEvent, value: Any) -> Kept:
    return (value, event.patient_ref, event.src_ip_addr, event.target_resource_id)


def count_in(
    windows: KeyedWindows,
    key: str,
    event: AccessEvent,
    time: float,
    value: Any,
    horizon: float,
) -> SlidingWindow | None:
    """The key's window with the event counted in it (`value` kept beside it); None when the
    EventUid is in it already (a redelivery changes no count). `horizon`: the in-time
    boundary (watermark less lateness), below which the window may drop entries."""
    window = windows.window(key, time, horizon)
    return window if window.add(time, event.event_uid, kept_of(event, value)) else None


def enrich(
    rule: RuleInfo,
    ctx: DetectionContext,
    key: str,
    event: AccessEvent,
    time: float,
    gap: float,
    *,
    value: Any = None,
    fold: Fold | None = None,
    stretch: bool = True,
) -> bool:
    """The suppression step's first half: add the event to the alert open for `key`, if
    there is one; True when it did. `stretch`: the event extends the alert's window."""
    alert = ctx.book.open_for(rule.rule_id, key, time, gap)
    if alert is None:
        return False
    alert.add(time, event)
    if fold is not None:
        fold(alert.facts, value)
    if stretch:
        alert.window_end = max(alert.window_end, time)
    ctx.book.changed(alert)
    return True


def open_alert(
    rule: RuleInfo,
    ctx: DetectionContext,
    key: str,
    event: AccessEvent,
    time: float,
    *,
    anchor: str,
    facts: Any,
    entries: Iterable[tuple[float, str, Kept]] = (),
    window: tuple[float, float] | None = None,
    value: Any = None,
    fold: Fold | None = None,
) -> AlertState:
    """The second half: open an alert whose evidence is `entries` (the window so far) and
    the event that completed the pattern, in that order."""
    alert = ctx.book.open(
        rule.rule_id,
        key,
        anchor=anchor,
        severity=rule.severity,
        detected_at=ctx.arrival,
        window=window or (time, time),
    )
    alert.facts = facts
    for entry_time, uid, (entry_value, patient, ip, target) in entries:
        if uid != event.event_uid:
            alert.add_entry(entry_time, uid, patient=patient, ip=ip, target=target)
            if fold is not None:
                fold(facts, entry_value)
    alert.add(time, event)
    if fold is not None:
        fold(facts, value)
    return alert


@snapshot_class
class Fired:
    """EventUids that already raised or enriched an alert, with their event times: a
    redelivered event changes nothing. An entry is needed only while a copy of its event
    can still arrive in time (after that the engine counts the copy as late)."""

    # `_memo` (not in snapshots: phiwatch.detect.snapshot.MEMO) is a heap of (time, uid)
    # over `times`, rebuilt from it after a restore. Expiry pops what fell out of reach
    # instead of rebuilding the whole dict every batch: curious-access records every
    # patient access here, so the dict holds lateness x rate entries (issue #18: the volume
    # run's cost per batch grew with it).
    __slots__ = ("_memo", "times")

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self._memo: list[tuple[float, str]] | None = []

    def _heap(self) -> list[tuple[float, str]]:
        heap = self._memo
        if heap is None:
            heap = self._memo = [(t, u) for u, t in self.times.items()]
            heapq.heapify(heap)
        return heap

    def first(self, uid: str, time: float) -> bool:
        """Record `uid`; False when it was already there."""
        if uid in self.times:
            return False
        self.times[uid] = time
        heapq.heappush(self._heap(), (time, uid))
        return True

    def expire(self, before: float) -> None:
        heap, times = self._heap(), self.times
        while heap and heap[0][0] < before:
            _, uid = heapq.heappop(heap)
            times.pop(uid, None)

    def __len__(self) -> int:
        return len(self.times)


def raise_once(
    rule: RuleInfo,
    ctx: DetectionContext,
    fired: Fired,
    key: str,
    event: AccessEvent,
    time: float,
    *,
    gap: float,
    facts: Callable[[AccessEvent], Any],
) -> None:
    """Single-event suppression: enrich the alert open for `key`, else open one anchored
    on the event's EventUid; each EventUid counts once."""
    if not fired.first(event.event_uid, time):
        return
    if not enrich(rule, ctx, key, event, time, gap, stretch=False):
        open_alert(rule, ctx, key, event, time, anchor=event.event_uid, facts=facts(event))


def always(event: AccessEvent) -> bool:
    return True
