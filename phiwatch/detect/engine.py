"""Runs every detection over the event stream in event time.

Event time advances with a watermark (the latest event time seen). An event older than the
watermark minus the allowed lateness is *late*: it is counted in the `late` metric (and it is
still archived and sent to Sentinel) but no longer changes detection state, because the
windows it belongs to have been let go.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from phiwatch.detect.alert_book import AlertBook
from phiwatch.detect.detection import Detection, DetectionContext, utc
from phiwatch.model import AccessEvent, Alert

# A record stamped far in the future must not drag the watermark and make all else late.
MAX_CLOCK_SKEW = 300.0


class DetectionEngine:
    def __init__(self, detections: Iterable[Detection], lateness: float) -> None:
        self.detections = tuple(detections)
        self._by_rule = {d.rule_id: d for d in self.detections}
        self.lateness = lateness
        self.book = AlertBook()
        self.watermark = float("-inf")
        self.late = 0

    def process(self, event: AccessEvent, arrival: datetime | None) -> None:
        time = event.time_generated.timestamp()
        if time < self.watermark - self.lateness:
            self.late += 1
            return
        bound = time if arrival is None else min(time, arrival.timestamp() + MAX_CLOCK_SKEW)
        self.watermark = max(self.watermark, bound)
        relevant = [d for d in self.detections if d.applies(event)]
        if not relevant:
            return
        ctx = DetectionContext(self.book, self.watermark, arrival or event.time_generated)
        for detection in relevant:
            detection.observe(event, time, ctx)

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

    def drain(self) -> list[Alert]:
        """Alerts opened or enriched since the last drain, in their latest state."""
        return [self._by_rule[s.rule_id].render(s) for s in self.book.drain()]

    def state_size(self) -> int:
        return sum(d.state_size() for d in self.detections) + len(self.book)
