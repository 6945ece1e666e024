"""A sink and an engine probe for one observed (untimed) run: what reaches Sentinel, and which
record made each alert open."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import orjson

from phiwatch.batch import BatchResult
from phiwatch.detect.engine import DetectionEngine
from phiwatch.model import Alert
from phiwatch.schema.tables import spec_for, wire_row
from phiwatch.sinks.sentinel import sentinel_alert


class ProbeEngine(DetectionEngine):
    """The real engine; notes the event whose processing opened each alert (None when event
    time passing opened it, as for a timeout rule)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.opened_by: dict[str, str | None] = {}

    def _raised(self) -> int:
        return sum(self.book.raised.values())

    def _note(self, before: int, uid: str | None) -> None:
        if self._raised() != before:
            for state in self.book.changes():
                self.opened_by.setdefault(state.alert_id, uid)

    def process(self, event, arrival) -> None:
        before = self._raised()
        super().process(event, arrival)
        self._note(before, event.event_uid)

    def advance(self) -> None:
        before = self._raised()
        super().advance()
        self._note(before, None)

    def finish(self) -> None:
        before = self._raised()
        super().finish()
        self._note(before, None)


@dataclass(slots=True)
class FirstSeen:
    alert: Alert
    batch: int
    last_record: int  # global index of the last record of the batch that emitted it
    watermark: float


class Observer:
    """Sink: wire bytes per row kind, record index of every event, first version of alerts."""

    def __init__(self, engine: DetectionEngine) -> None:
        self.engine = engine
        self.records = 0
        self.batch = 0
        self.events: dict[str, tuple[int, int, float]] = {}  # uid → (record, batch, time)
        self.first: dict[str, FirstSeen] = {}
        self.wire_bytes: Counter[str] = Counter()
        self.rows: Counter[str] = Counter()

    def _wire(self, kind: str, model) -> None:
        self.wire_bytes[kind] += len(orjson.dumps(wire_row(spec_for(model), model)))
        self.rows[kind] += 1

    def emit(self, result: BatchResult) -> None:
        start = self.records
        for event in result.events:
            index = start + int(event.raw_record_ref.rpartition("#")[2])
            when = event.time_generated.timestamp()
            self.events.setdefault(event.event_uid, (index, self.batch, when))
            self._wire("events", event)
        for alert in result.alerts:
            self._wire("alerts", sentinel_alert(alert))  # the capped copy the sink sends
            if alert.alert_id not in self.first:
                last = start + result.counts.records - 1
                self.first[alert.alert_id] = FirstSeen(
                    alert, self.batch, last, self.engine.watermark
                )
        for dead in result.dead_letters:
            # No Sentinel table (the archive holds them, the health row counts them): their
            # JSON is what they would add if they were sent.
            self.wire_bytes["dead_letters"] += len(dead.model_dump_json())
            self.rows["dead_letters"] += 1
        if result.health is not None:
            self._wire("health", result.health)
        self.records += result.counts.records
        self.batch += 1
