"""Runs every detection over the event stream in event time.

Event time advances with a watermark. An event older than the watermark minus the allowed
lateness is *late*: it is counted in the `late` metric (and it is still archived and sent to
Sentinel) but no longer changes detection state, because its windows have been let go.

The watermark is the median of the most recent event times, never the maximum: one record
with a wrong clock (hours ahead) would otherwise make every honest record after it late and
blind the detections. A real jump in time (logs resuming after a quiet night) moves the
median within a few records.

With a reorder delay, events wait in a buffer until the watermark is that far past them and
then reach the detections in event-time order (ties by EventUid). Every host then feeds each
detection the same sequence whatever the arrival order within the delay (a replay of files,
one Event Hub partition, or 32 partitions merged onto `phi-events`), so alerts, their counts
and their ids are the same. An event that arrives after its place has passed, but within the
allowed lateness, is still counted, out of order.

On `phi-events` an event comes once per grouping a loaded rule needs it in (phievents.routing),
each copy tagged with its grouping, and two copies may land on one partition. A tagged copy is
offered only to the rules of its grouping, so every rule sees an event once, as in-process
(untagged: every rule) it does. The watermark and the `late` and `out_of_order` counters see
every copy: on one partition they count (event, grouping) deliveries, which in-process are
events. A copy is late or not for the rules it is offered to, which is what the counters say.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from phiwatch.detect import legacy_v1
from phiwatch.detect.alert_book import AlertBook
from phiwatch.detect.detection import Detection, DetectionContext
from phiwatch.detect.grouping import Grouping
from phiwatch.detect.time_anomaly import (
    CEILING,
    FLOOR,
    TimeAnomalies,
    anomaly_alert,
    plausible,
)
from phiwatch.detect.times import utc
from phiwatch.model import AccessEvent, Alert
from phiwatch.phievents.routing import PLANES, plane_of

# With an arrival time (Event Hubs), no event time counts as later than arrival plus this,
# and none is believed at all beyond the hub's own enqueued time plus this (time_anomaly).
MAX_CLOCK_SKEW = 300.0
# How many recent event times the watermark's median is taken over.
WATERMARK_SAMPLE = 31


# A buffered event: (event time, EventUid, arrival order, event, arrival time, grouping of
# the copy or None for every rule).
_Buffered = tuple[float, str, int, AccessEvent, datetime | None, Grouping | None]
# What a copy is offered to: each rule's `applies` and `observe`, bound.
_Offered = tuple[
    tuple[Callable[[AccessEvent], bool], Callable[[AccessEvent, float, DetectionContext], None]],
    ...,
]


class DetectionEngine:
    def __init__(
        self, detections: Iterable[Detection], lateness: float, reorder: float = 0.0
    ) -> None:
        if not 0 <= reorder < lateness:
            raise ValueError("the reorder delay must be at least 0 and less than the lateness")
        self.detections = tuple(detections)
        self._by_rule = {d.rule_id: d for d in self.detections}
        self._by_plane = {
            plane: tuple(d for d in self.detections if plane in d.planes) for plane in PLANES
        }
        # A tagged copy's rules: of its grouping, per plane.
        self._by_grouping: dict[tuple[str, Grouping], tuple[Detection, ...]] = {}
        for plane, members in self._by_plane.items():
            for d in members:
                key = (plane, d.group_by)
                self._by_grouping[key] = (*self._by_grouping.get(key, ()), d)
        # The rules offered a copy, by its grouping and its event's product: found once.
        self._offers: dict[Grouping | None, dict[str, _Offered]] = {}
        self.lateness = lateness
        self.reorder = reorder
        self.book = AlertBook()
        self.watermark = float("-inf")
        self.late = 0
        self.out_of_order = 0  # in-time events that came after the reorder delay
        self._recent: deque[float] = deque()
        self._recent_sorted: list[float] = []
        self._buffer: list[_Buffered] = []
        self._arrivals = 0
        # With a reorder delay: the event time up to which detections have seen everything
        # (released in order). Absence rules and window horizons go by it, not the watermark.
        self._clock = float("-inf")
        self._ticks: dict[str, float] = {}  # diagnostics stream → newest tick from it
        # Times refused as impossible (event-time-anomaly alerts), and what they are filed
        # under: the stream this engine reads (a partition), set by its owner.
        self.anomalies = TimeAnomalies()
        self.refused = 0
        self.scope = ""

    @property
    def frontier(self) -> float:
        """Event time up to which buffered events are released to the detections."""
        return self.watermark - self.reorder

    def process(
        self,
        event: AccessEvent,
        arrival: datetime | None,
        *,
        now: datetime | None = None,
        position: str | None = None,
        grouping: Grouping | None = None,
    ) -> bool:
        """Run one event through the detections; False when its time is refused.

        `grouping` tags a `phi-events` copy: only the rules of that grouping see it. None
        (in-process: a local replay, one partition) offers it to every rule.

        `arrival` stamps DetectedAt and caps the event's say in the watermark. `now` is the
        message's own arrival on the hub this engine reads, when `arrival` came from the
        message body (phi-events' ArrivedAt) and so may be forged: it bounds both. Without
        `now`, `arrival` is the trusted one (the diagnostics hub's enqueued time)."""
        time = event.time_generated.timestamp()
        # Each time converted once: this runs for every copy of every event.
        arrival_ts = arrival.timestamp() if arrival is not None else None
        now_ts = now.timestamp() if now is not None else None
        trusted_ts = now_ts if now is not None else arrival_ts
        if not (
            FLOOR <= time < CEILING
            and (trusted_ts is None or time <= trusted_ts + MAX_CLOCK_SKEW)
            and (
                arrival_ts is None
                or (
                    FLOOR <= arrival_ts < CEILING
                    and (now_ts is None or arrival_ts <= now_ts + MAX_CLOCK_SKEW)
                )
            )
        ):
            return self._refuse_event(time, arrival, now, position)
        if time < self.watermark - self.lateness:
            self.late += 1
            return True
        capped = time
        if arrival_ts is not None and arrival_ts + MAX_CLOCK_SKEW < capped:
            capped = arrival_ts + MAX_CLOCK_SKEW
        if now_ts is not None and now_ts + MAX_CLOCK_SKEW < capped:
            capped = now_ts + MAX_CLOCK_SKEW
        self._advance_watermark(capped)
        if not self.reorder:
            self._dispatch(event, time, arrival, self.watermark, grouping)
            return True
        if time <= self._clock:
            self.out_of_order += 1
            self._dispatch(event, time, arrival, self._clock, grouping)
        else:
            self._arrivals += 1
            heapq.heappush(
                self._buffer, (time, event.event_uid, self._arrivals, event, arrival, grouping)
            )
        self._release(self.frontier)
        return True

    def _refuse_event(
        self, time: float, arrival: datetime | None, now: datetime | None, position: str | None
    ) -> bool:
        """Why an event's time is refused (the checks `process` makes at once), filed."""
        trusted = now if now is not None else arrival
        refusal = self._refusal(time, trusted, "event")
        # An ArrivedAt after the message's own arrival was not stamped by normalize.
        if refusal is None and arrival is not None and impossible_time(arrival.timestamp(), now):
            refusal, time = "arrival", arrival.timestamp()
        if refusal is None:  # pragma: no cover - process refuses only what these refuse
            raise AssertionError("an event time refused without a reason")
        self._refuse(refusal, trusted, f"{refusal} {utc_text(time)}", position)
        return False

    def tick(
        self,
        time: datetime,
        stream: str,
        *,
        now: datetime | None = None,
        position: str | None = None,
    ) -> bool:
        """normalize has forwarded `stream`'s events up to about `time`. The slowest stream
        still active (not more than the allowed lateness behind the fastest) bounds what can
        still arrive, so the watermark may move up to it even when this partition gets no
        events of its own. A tick beyond `now` (its message's arrival) plus the clock skew is
        refused: normalize caps its ticks so, and a forged one must not move event time."""
        ts = time.timestamp()
        refusal = self._refusal(ts, now, "tick")
        if refusal is not None:
            self._refuse(refusal, now, f"tick {utc_text(ts)}", position)
            return False
        ticks = self._ticks
        ticks[stream] = max(ticks.get(stream, float("-inf")), ts)
        newest = max(ticks.values())
        for idle in [s for s, t in ticks.items() if t < newest - self.lateness]:
            del ticks[idle]  # a stream gone quiet (or moved away) holds nothing back
        self.watermark = max(self.watermark, min(ticks.values()))
        if self.reorder:
            self._release(self.frontier)
        return True

    def _refusal(self, ts: float, trusted: datetime | None, kind: str) -> str | None:
        if not plausible(ts):
            return f"{kind}-range"
        if trusted is not None and ts > trusted.timestamp() + MAX_CLOCK_SKEW:
            return kind
        return None

    def _refuse(
        self, kind: str, trusted: datetime | None, claimed: str, position: str | None
    ) -> None:
        self.refused += 1
        # Filed under the trusted arrival; without one (a local file), under event time as
        # far as it got, so a replay files it the same way every time.
        at = trusted.timestamp() if trusted is not None else None
        if at is None or not plausible(at):
            at = self.watermark if plausible(self.watermark) else FLOOR
        self.anomalies.record(kind, at, claimed, position)

    def refuse_state(self, now: datetime | None, claimed: str) -> None:
        """A snapshot was refused (its owner starts this engine afresh instead)."""
        self._refuse("snapshot", now, claimed, None)

    def impossible_times(self, now: datetime | None) -> list[str]:
        """What in this (restored) state no honest stream can have produced: a time beyond
        `now` plus the clock skew, or outside the plausible range. Empty when sane."""

        def bad(ts: float) -> bool:
            return ts != float("-inf") and impossible_time(ts, now)

        found = [
            f"{what} {utc_text(ts)}"
            for what, ts in [("watermark", self.watermark), ("clock", self._clock)]
            if bad(ts)
        ]
        found += [f"tick {utc_text(t)}" for t in self._ticks.values() if bad(t)][:1]
        found += [f"recent event time {utc_text(t)}" for t in self._recent if bad(t)][:1]
        found += [f"buffered event time {utc_text(b[0])}" for b in self._buffer if bad(b[0])][:1]
        return found

    def _release(self, upto: float) -> None:
        """Hand buffered events up to `upto` to the detections, oldest first. Each is seen
        at its own time: the watermark may have jumped far ahead (logs resuming after a
        gap) and the window of an event released now must not be cut by that jump."""
        buffer = self._buffer
        while buffer and buffer[0][0] <= upto:
            time, _, _, event, arrival, grouping = heapq.heappop(buffer)
            self._clock = max(self._clock, time)
            self._dispatch(event, time, arrival, self._clock, grouping)
        self._clock = max(self._clock, upto)

    def _dispatch(
        self,
        event: AccessEvent,
        time: float,
        arrival: datetime | None,
        clock: float,
        grouping: Grouping | None,
    ) -> None:
        # This runs for every copy: the rules' filters and observers come bound, found once
        # per grouping and product, and no list of the rules that apply is built. A rule's
        # `applies` reads only the event and its params, so asking it just before observing
        # (rather than all rules first) changes nothing a rule sees.
        by_product = self._offers.get(grouping)
        offered = by_product.get(event.event_product) if by_product is not None else None
        if offered is None:
            offered = self._offer(event, grouping)
        ctx = None
        for applies, observe in offered:
            if applies(event):
                if ctx is None:
                    ctx = DetectionContext(self.book, clock, arrival or event.time_generated)
                observe(event, time, ctx)

    def _offer(self, event: AccessEvent, grouping: Grouping | None) -> _Offered:
        """The rules offered a copy of this grouping and product, in the engine's order."""
        plane = plane_of(event)  # RoutingError for a product no source declares
        if grouping is None:
            members = self._by_plane[plane]
        else:
            members = self._by_grouping.get((plane, grouping), ())
        product = event.event_product
        offered = tuple(
            (d.applies, d.observe) for d in members if d.products is None or product in d.products
        )
        self._offers.setdefault(grouping, {})[product] = offered
        return offered

    def _advance_watermark(self, time: float) -> None:
        self._recent.append(time)
        insort(self._recent_sorted, time)
        if len(self._recent) > WATERMARK_SAMPLE:
            oldest = self._recent.popleft()
            del self._recent_sorted[bisect_left(self._recent_sorted, oldest)]
        median = self._recent_sorted[len(self._recent_sorted) // 2]
        self.watermark = max(self.watermark, median)

    def advance(self) -> None:
        """End of a batch: timeouts fire, and state nobody can need any more is dropped."""
        if self.watermark == float("-inf"):
            return
        clock = self.watermark
        if self.reorder:
            self._release(self.frontier)
            clock = self._clock
        ctx = DetectionContext(self.book, clock, utc(clock))
        for detection in self.detections:
            detection.on_watermark(ctx)
            detection.expire(self.watermark - self.lateness)
        self.book.expire(self.watermark - self.lateness - 86400)

    def finish(self) -> None:
        """The input is exhausted (local replay only): settle pending rules."""
        if self.watermark == float("-inf"):
            return
        self._release(float("inf"))
        ctx = DetectionContext(self.book, self.watermark, utc(self.watermark))
        for detection in self.detections:
            detection.on_end(ctx)

    def changed_alerts(self) -> list[Alert]:
        """Alerts opened or enriched since the last commit, in their latest state."""
        alerts = [self._by_rule[s.rule_id].render(s) for s in self.book.changes()]
        return alerts + [anomaly_alert(self.scope, r) for r in self.anomalies.changes()]

    def commit(self) -> None:
        """The batch's alerts are archived: stop reporting them as changed."""
        self.book.commit()
        self.anomalies.commit()

    def state_size(self) -> int:
        return sum(d.state_size() for d in self.detections) + len(self.book) + len(self._buffer)

    def state(self) -> dict[str, Any]:
        """Everything a restarted engine needs to go on as if it had never stopped; taken
        after commit(), so no alert is pending in it."""
        return {
            "watermark": self.watermark,
            "late": self.late,
            "out_of_order": self.out_of_order,
            "recent": list(self._recent),
            "buffer": list(self._buffer),
            "arrivals": self._arrivals,
            "clock": self._clock,
            "ticks": dict(self._ticks),
            "book": self.book,
            "anomalies": self.anomalies,
            "refused": self.refused,
            "detections": {d.rule_id: d.state() for d in self.detections},
            "rules_layout": legacy_v1.LAYOUT,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.watermark = state["watermark"]
        self.late = state["late"]
        self.out_of_order = state["out_of_order"]
        self._recent = deque(state["recent"])
        self._recent_sorted = sorted(self._recent)
        # Snapshots from before copies were tagged buffer 5-tuples, for every rule.
        self._buffer = [(*b, None) if len(b) == 5 else tuple(b) for b in state["buffer"]]
        heapq.heapify(self._buffer)
        self._arrivals = state["arrivals"]
        self._clock = state["clock"]
        self._ticks = dict(state.get("ticks", {}))
        self.book = state["book"]
        self.anomalies = state.get("anomalies") or TimeAnomalies()  # older snapshots: none
        self.refused = state.get("refused", 0)
        if state.get("rules_layout") != legacy_v1.LAYOUT:
            legacy_v1.upgrade(state, self._by_rule)  # written before rules were declarations
        for rule_id, detection_state in state["detections"].items():
            # A rule removed since the snapshot is dropped; a new one starts empty.
            if rule_id in self._by_rule:
                self._by_rule[rule_id].load_state(detection_state)


def utc_text(ts: float) -> str:
    """A time for an anomaly's reasons; one outside datetime's range still reads."""
    try:
        return utc(ts).isoformat()
    except (ValueError, OverflowError, OSError):
        return f"{ts:.0f} s since 1970"


def impossible_time(ts: float, now: datetime | None) -> bool:
    """Outside the plausible range, or beyond `now` plus the allowed clock skew."""
    return not plausible(ts) or (now is not None and ts > now.timestamp() + MAX_CLOCK_SKEW)
