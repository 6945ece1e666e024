"""What a rule part is handed on every call: the context of the moment (`DetectionContext`)
and the rule it belongs to, as far as parts need it (`RuleInfo`).

A leaf below both the rule base (`detection.py`) and the kinds (`kinds/`), so neither
imports the other to name these types.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from phiwatch.detect.alert_book import AlertBook
from phiwatch.detect.grouping import Grouping
from phiwatch.model import Severity


@dataclass(slots=True)
class DetectionContext:
    book: AlertBook
    watermark: float
    # When the record that completed a pattern arrived: the Event Hub enqueued time in
    # Azure, the event time in a local replay. Deterministic, so replays are identical.
    arrival: datetime


class RuleInfo(Protocol):
    """The rule a part serves (a `Detection`): what keys, windows and alerts need of it."""

    @property
    def rule_id(self) -> str: ...

    @property
    def severity(self) -> Severity: ...

    @property
    def group_by(self) -> Grouping: ...

    @property
    def lateness(self) -> float: ...

    @property
    def params(self) -> Any: ...
