"""Runs every detection over the event stream in event time.

Event time advances with a watermark. An event older than the watermark minus the allowed
lateness is *late*: it is counted in the `late` metric (and it is still archived and sent to
Sentinel) but no longer changes detection state, because its windows have been let go.

The watermark is the median of the most recent event times, never the maximum: one record
with a wrong clock (hours ahead) would otherwise make every honest record after it late and
blind the detections. A real jump in time (logs resuming after a quiet night) moves the
median within a few records.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from collections.abc import Iterable
from datetime import datetime

from phiwatch.detect.alert_book import AlertBook
from phiwatch.detect.detection import Detection, DetectionContext, utc
from phiwatch.model import AccessEvent, Alert

# With an arrival time (Event Hubs), no event time counts as later than arrival plus this.
MAX_CLOCK_SKEW = 300.0
# How many recent event times the watermark's median is taken over.
WATERMARK_SAMPLE = 31


class DetectionEngine:
    def __init__(self, detections: Iterable[Detection], lateness: float) -> None:
        self.detections = tuple(detections)
        self._by_rule = {d.rule_id: d for d in self.detections}
        self.lateness = lateness
        self.book = AlertBook()
        self.watermark = float("-inf")
        self.late = 0
        self._recent: deque[float] = deque()
        self._recent_sorted: list[float] = []

    def process(self, event: AccessEvent, arrival: datetime | None) -> None:
        time = event.time_generated.timestamp()
        if time < self.watermark - self.lateness:
            self.late += 1
            return
        bound = time if arrival is None else min(time, arrival.timestamp() + MAX_CLOCK_SKEW)
        self._advance_watermark(bound)
        relevant = [d for d in self.detections if d.applies(event)]
        if not relevant:
            return
        ctx = DetectionContext(self.book, self.watermark, arrival or event.time_generated)
        for detection in relevant:
            detection.observe(event, time, ctx)

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
        ctx = DetectionContext(self.book, self.watermark, utc(self.watermark))
        for detection in self.detections:
            detection.on_watermark(ctx)
            detection.expire(self.watermark - self.lateness)
        self.book.expire(self.watermark - self.lateness - 86400)

    def finish(self) -> None:
        """The input is exhausted (local replay only): settle pending rules."""
        if self.watermark == float("-inf"):
            return
        ctx = DetectionContext(self.book, self.watermark, utc(self.watermark))
        for detection in self.detections:
            detection.on_end(ctx)

    def changed_alerts(self) -> list[Alert]:
        """Alerts opened or enriched since the last commit, in their latest state."""
        return [self._by_rule[s.rule_id].render(s) for s in self.book.changes()]

    def commit(self) -> None:
        """The batch's alerts are archived: stop reporting them as changed."""
        self.book.commit()

    def state_size(self) -> int:
        return sum(d.state_size() for d in self.detections) + len(self.book)
