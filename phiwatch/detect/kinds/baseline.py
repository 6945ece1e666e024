"""The actor's usual volume: how many of a rule's events each actor has on a normal day.

An alert that says "220 patients in 8 minutes" means more next to "this nurse opens about 30
a day". The Detection base adds this part to every rule grouped by actor (its events are
the ones the rule's `applies` takes), so the engine holds, snapshots and restores it like
any declared kind. Bounded: DAYS days per actor, at most MAX_ACTORS actors per rule (those
seen least recently go first), one small count per active day.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import median
from typing import TYPE_CHECKING, Any, ClassVar

from phiwatch.detect.grouping import actor_key
from phiwatch.detect.kinds.base import Part
from phiwatch.detect.snapshot import snapshot_class
from phiwatch.model import AccessEvent

if TYPE_CHECKING:
    from phiwatch.detect.context import DetectionContext, RuleInfo

DAY = 86400.0
DAYS = 14  # the days before an alert's day that its baseline rests on
# Per rule: at 14 active days an actor costs a few hundred bytes, so the bound keeps a rule's
# baseline within a few MB of memory and snapshot.
MAX_ACTORS = 20_000
NAME = "actor_baseline"


@snapshot_class
@dataclass(slots=True)
class DailyCounts:
    # actor key → {UTC day number: events that day}, at most DAYS + 1 days each
    days: dict[str, dict[int, int]] = field(default_factory=dict)
    last_day: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.days)

    def add(self, key: str, day: int) -> None:
        counts = self.days.get(key)
        if counts is None:
            if len(self.days) >= MAX_ACTORS:
                self._evict()
            counts = self.days[key] = {}
        counts[day] = counts.get(day, 0) + 1
        # Every event of an actor rule comes here: the days are scanned in Python only
        # when the oldest of them is out of reach.
        low = day - DAYS
        if len(counts) > 1 and min(counts) < low:
            for old in [d for d in counts if d < low]:
                del counts[old]
        # Re-inserted at the end: `last_day` is in the order actors were last seen, so the
        # least recently seen is its first key (the same one in every instance that saw the
        # same events, and kept by snapshots, which keep dict order).
        last = self.last_day.pop(key, day)
        self.last_day[key] = max(day, last)

    def _evict(self) -> None:
        # The first key: O(1). A scan for the oldest day made every new actor past the bound
        # cost a pass over all of them (100,000 active actors: minutes per million events).
        gone = next(iter(self.last_day))
        self.days.pop(gone, None)
        self.last_day.pop(gone, None)

    def usual(self, key: str, day: int) -> tuple[float | None, int]:
        """Median events per active day over the DAYS days before `day`, and how many
        active days that is (0: no history yet, the median is None)."""
        counts = self.days.get(key, {})
        before = [n for d, n in counts.items() if day - DAYS <= d < day]
        return (float(median(before)) if before else None, len(before))

    def expire(self, before: float) -> None:
        horizon = int(before // DAY) - DAYS - 1
        for key in [k for k, d in self.last_day.items() if d < horizon]:
            self.days.pop(key, None)
            self.last_day.pop(key, None)


@dataclass(frozen=True)
class ActorBaseline(Part):
    kind: ClassVar[str] = "baseline"
    name: str = NAME

    def new_state(self) -> DailyCounts:
        return DailyCounts()

    def observe(
        self, rule: RuleInfo, state: Any, event: AccessEvent, time: float, ctx: DetectionContext
    ) -> None:
        key = actor_key(event)
        if key is not None:
            state.add(key, int(time // DAY))

    def expire(self, state: Any, before: float) -> None:
        # Rules expire their windows at the lateness horizon; the baseline keeps DAYS days.
        state.expire(before)

    def size(self, state: Any) -> int:
        # Not in the rule's state size (what its kinds hold per window, which the engine's
        # bounded-state checks watch): it is bounded on its own, by MAX_ACTORS and DAYS.
        return 0


__all__ = ["DAYS", "MAX_ACTORS", "NAME", "ActorBaseline", "DailyCounts"]
