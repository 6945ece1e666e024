"""JSON-lines output for the local replay: events, dead-letters and (final) alerts."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from phiwatch.batch import BatchResult
from phiwatch.model import Alert


class LocalFileSink:
    """Events and dead-letters stream to disk; alerts are kept by id and written on close,
    one line per alert in its final state (updates enrich an alert, they never add one)."""

    def __init__(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.out_dir = out_dir
        self._events = (out_dir / "events.jsonl").open("wb")
        self._dead = (out_dir / "deadletter.jsonl").open("wb")
        self.alerts: dict[str, Alert] = {}
        # Events per EventProduct: what the replay summary shows per source.
        self.events_by_product: Counter[str] = Counter()

    def emit(self, result: BatchResult) -> None:
        self._events.writelines(e.to_json() + b"\n" for e in result.events)
        self.events_by_product.update(e.event_product for e in result.events)
        self._dead.writelines(d.to_json() + b"\n" for d in result.dead_letters)
        for alert in result.alerts:
            self.alerts[alert.alert_id] = alert

    def close(self) -> None:
        self._events.close()
        self._dead.close()
        ordered = sorted(self.alerts.values(), key=lambda a: (a.first_event_time, a.alert_id))
        with (self.out_dir / "alerts.jsonl").open("wb") as fh:
            fh.writelines(a.to_json() + b"\n" for a in ordered)
