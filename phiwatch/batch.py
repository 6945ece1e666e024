"""The types every stage shares: a `Batch` in, its `Counts` and `BatchResult` out, the
`Sink`s a result is emitted to and the `Forwarder` that hands events to `detect`.

A leaf: sinks, the detect stage and the rules import these, never the orchestrator.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import structlog

from phiwatch.archive.names import safe_name
from phiwatch.envelope import Body
from phiwatch.model import AccessEvent, Alert, BatchHealth, DeadLetter

log = structlog.get_logger("phiwatch.batch")


class Sink(Protocol):
    """Receives each batch's output once it is archived."""

    def emit(self, result: BatchResult) -> None: ...


def emit_to(sinks: Sequence[Sink], result: BatchResult) -> int:
    """Hand an archived result to every sink; returns how many failed. Everything is archived
    by now, so a sink that fails must not make the host retry the batch (its records would
    come back as duplicates and not be re-sent): Sentinel's outbox retries on its own."""
    failures = 0
    for sink in sinks:
        try:
            sink.emit(result)
        except Exception as exc:
            failures += 1
            log.error("sink failed", sink=type(sink).__name__, error=type(exc).__name__)
    return failures


class Forwarder(Protocol):
    """Hands a batch's events to the `detect` stage (the `phi-events` hub). Unlike a sink it
    must succeed before the batch counts as done: if it raises, the batch is rolled back and
    the host retries it, so no event is lost on the way to detection."""

    def forward(
        self, events: Sequence[tuple[AccessEvent, datetime | None]], stream: str
    ) -> None: ...


@dataclass(slots=True)
class Batch:
    """Bodies processed together. `stream` names the input stream (an Event Hub partition,
    a local file) whose manifest chain the batch extends; `first`..`last` is its position in
    that stream (sequence numbers, or line numbers). The name is derived from nothing else
    (and `identity`), so a redelivered batch gets the same archive names."""

    stream: str
    first: int
    last: int
    bodies: list[Body]
    # Which incarnation of the stream (Event Hubs: generation and first enqueued time), so
    # a re-created hub, whose sequence numbers start again, never reuses an old name.
    identity: str = ""

    @property
    def name(self) -> str:
        name = f"{self.stream}-{self.first:012d}-{self.last:012d}"
        return safe_name(f"{name}-{self.identity}" if self.identity else name)


@dataclass
class Counts:
    records: int = 0
    undecodable: int = 0  # of the dead-letters: bytes that were not a JSON record at all
    event_records: int = 0
    events: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    alerts: Counter[str] = field(default_factory=Counter)
    # One operator-readable example per dead-letter/skip code.
    examples: dict[str, str] = field(default_factory=dict)

    @property
    def accounted(self) -> bool:
        total = self.event_records + sum(self.dead_letters.values()) + sum(self.skipped.values())
        return total == self.records

    def add(self, other: Counts) -> None:
        self.records += other.records
        self.undecodable += other.undecodable
        self.event_records += other.event_records
        self.events += other.events
        self.dead_letters.update(other.dead_letters)
        self.skipped.update(other.skipped)
        self.alerts.update(other.alerts)
        for code, text in other.examples.items():
            self.examples.setdefault(code, text)

    def as_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "undecodable": self.undecodable,
            "event_records": self.event_records,
            "events": self.events,
            "dead_letters": dict(sorted(self.dead_letters.items())),
            "skipped": dict(sorted(self.skipped.items())),
            "alerts": dict(sorted(self.alerts.items())),
            "reasons": dict(sorted(self.examples.items())),
            "accounted": self.accounted,
        }


@dataclass
class BatchResult:
    counts: Counts
    events: list[AccessEvent]
    alerts: list[Alert]
    dead_letters: list[DeadLetter]
    late: int
    health: BatchHealth | None = None  # None for the alerts settled when a replay ends

    @classmethod
    def empty(cls) -> BatchResult:
        """Nothing yet: what results are merged into."""
        return cls(Counts(), [], [], [], 0)

    @classmethod
    def of_alerts(cls, alerts: Sequence[Alert], late: int = 0) -> BatchResult:
        """Alerts raised outside a normalize batch (detect, scheduled rules, a settle, the
        outbox backlog), as the sinks take them: no records, events or health."""
        return cls(Counts(), [], list(alerts), [], late)
