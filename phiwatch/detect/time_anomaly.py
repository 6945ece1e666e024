"""The `event-time-anomaly` alert: a time the detections refused to believe.

Detection runs on event time, and whoever can write `phi-events` (or a diagnostics hub, or
the state container) can claim any time. One tick or a handful of events from the year 9999
would move a watermark there for good: every honest event after it would be late, no alert
would ever be raised again, and the snapshot would carry the poison over every restart. So
the engine bounds each claimed time by what cannot be forged, the hub's own arrival
(enqueued) time plus the allowed clock skew, and by a fixed sane range; a time outside is
refused (it moves nothing) and reported here instead.

Refusals are counted per stream (a partition) and hour of arrival, so a flood of forged
messages is one alert, re-emitted with its growing count under the same AlertId. The alert
says what kind of claim was refused, how many, and at which positions (sequence numbers):
never an event's content, which may carry PHI.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from phiwatch.detect.snapshot import snapshot_class
from phiwatch.detect.system_alert import system_alert
from phiwatch.model import Alert

RULE_ID = "event-time-anomaly"

# No Azure log is older than this, and nothing real is newer than the ceiling: a time
# outside is refused even without an arrival time to compare with (a local file). Both are
# far from datetime's limits, so no window or lateness arithmetic on an admitted time can
# leave its range (a read timed 0001-01-01 once crashed the engine subtracting lateness).
FLOOR = datetime(2000, 1, 1, tzinfo=UTC).timestamp()
CEILING = datetime(2200, 1, 1, tzinfo=UTC).timestamp()
# Hours of refusals kept (in the snapshot too): enough to go on counting into one alert
# across a day of batches, bounded whatever a forger sends.
KEEP_HOURS = 48

# What a refusal was about: the key in `Refusals.kinds` and the sentence an analyst reads.
KINDS = {
    "event": "an event time beyond the message's arrival plus the allowed clock skew",
    "event-range": "an event time outside any plausible range",
    "arrival": "an ArrivedAt later than the message's own arrival on the hub",
    "tick": "a watermark tick beyond the message's arrival plus the allowed clock skew",
    "tick-range": "a watermark tick outside any plausible range",
    "snapshot": "a saved detection state holding an impossible time (the partition started afresh)",
}


def plausible(ts: float) -> bool:
    return FLOOR <= ts < CEILING


def hour_of(ts: float) -> float:
    return ts - ts % 3600


@snapshot_class
@dataclass(slots=True)
class Refusals:
    """What one stream refused during one hour of arrival."""

    hour: float
    count: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    first_at: float = float("inf")  # trusted arrival times of the first and last refusal
    last_at: float = float("-inf")
    first_position: str | None = None
    last_position: str | None = None
    example: str | None = None  # the first refused claim, e.g. "tick 9999-12-31T23:00:00Z"


@snapshot_class
class TimeAnomalies:
    """Refusals by hour, and which changed since the last commit (as `AlertBook` does)."""

    __slots__ = ("_changed", "_hours")

    def __init__(self) -> None:
        self._hours: dict[float, Refusals] = {}
        self._changed: set[float] = set()

    def record(self, kind: str, at: float, claimed: str, position: str | None) -> None:
        """`at`: the trusted arrival the refusal is filed under; `claimed`: what was refused,
        in words without content ("tick 9999-12-31T23:00:00+00:00")."""
        hour = hour_of(at)
        entry = self._hours.get(hour)
        if entry is None:
            entry = self._hours[hour] = Refusals(hour)
            for old in sorted(self._hours)[:-KEEP_HOURS]:
                del self._hours[old]
                self._changed.discard(old)
        entry.count += 1
        entry.kinds[kind] += 1
        if at < entry.first_at:
            entry.first_at, entry.first_position = at, position
            entry.example = claimed
        if at >= entry.last_at:
            entry.last_at, entry.last_position = at, position
        if hour in self._hours:
            self._changed.add(hour)

    def changes(self) -> list[Refusals]:
        return [self._hours[h] for h in sorted(self._changed) if h in self._hours]

    def commit(self) -> None:
        self._changed.clear()

    def __len__(self) -> int:
        return len(self._hours)


def anomaly_alert(scope: str, refusals: Refusals) -> Alert:
    """The alert for one stream's refusals in one hour; its id depends on nothing else."""
    hour = datetime.fromtimestamp(refusals.hour, tz=UTC)
    first = datetime.fromtimestamp(refusals.first_at, tz=UTC)
    last = datetime.fromtimestamp(refusals.last_at, tz=UTC)
    where = f" on {scope}" if scope else ""
    reasons = [
        f"Refused {n} × {KINDS.get(kind, kind)}." for kind, n in sorted(refusals.kinds.items())
    ]
    reasons.append(
        f"First refused at {_position(refusals.first_position)} ({refusals.example}), last at "
        f"{_position(refusals.last_position)}."
    )
    return system_alert(
        rule_id=RULE_ID,
        key=scope,
        anchor=hour.isoformat(),
        rule_name="Event time anomaly",
        severity="High",
        tactics=["DefenseEvasion"],
        techniques=["T1562"],
        title=f"{refusals.count} impossible event time(s) refused{where}",
        description=(
            "Detection refused times it cannot believe: later than the message's arrival on "
            "the hub plus the allowed clock skew, outside any plausible range, or held by a "
            "saved state. Accepted, one such time would have moved event time ahead and "
            "blinded every detection on this partition. phiwatch's own messages never carry "
            "one: look for a foreign writer on the hub (a Send rule that should not reach it) "
            "or a clock gone badly wrong. The refused times did not change detection state."
        ),
        reasons=reasons,
        at=first,
        window=(hour, datetime.fromtimestamp(refusals.hour + 3600, tz=UTC)),
        events=(first, last),
        event_count=refusals.count,
    )


def _position(position: str | None) -> str:
    return position or "an unnumbered message"


__all__ = ["CEILING", "FLOOR", "RULE_ID", "TimeAnomalies", "anomaly_alert", "plausible"]
