"""event_count (Sigma correlation vocabulary): at least N of the rule's events per key
within a sliding window, e.g. repeated failed Key Vault operations by one caller."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from phiwatch.detect.kinds._threshold import Threshold
from phiwatch.detect.windows import Entry, SlidingWindow


@dataclass(frozen=True)
class EventCount(Threshold):
    kind: ClassVar[str] = "event_count"

    def crossing(self, window: SlidingWindow, time: float) -> list[Entry] | None:
        entries = window.span(time - self.window, time)
        return entries if len(entries) >= self.at_least else None
