"""value_count (Sigma correlation vocabulary): at least N distinct values of a field per
key within a sliding window, e.g. one actor opening many patients' records."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from phiwatch.detect.kinds._threshold import Threshold
from phiwatch.detect.windows import Entry, SlidingWindow
from phiwatch.model import AccessEvent


def _required(event: AccessEvent) -> Any:
    raise TypeError("value_count needs `distinct`: the field whose values it counts")


@dataclass(frozen=True)
class ValueCount(Threshold):
    kind: ClassVar[str] = "value_count"
    distinct: Callable[[AccessEvent], Any] = field(default=_required)

    def value(self, event: AccessEvent) -> Any:
        return self.distinct(event)

    def crossing(self, window: SlidingWindow, time: float) -> list[Entry] | None:
        # In-order arrival only needs the window ending now; a late event may instead
        # complete the window that starts with it.
        for start, end in ((time - self.window, time), (time - 1e-6, time + self.window)):
            if window.count(start, end) < self.at_least:
                continue  # fewer events than the threshold cannot be more distinct values
            entries = window.span(start, end)
            if len({kept[0] for _, _, kept in entries}) >= self.at_least:
                return entries
        return None
