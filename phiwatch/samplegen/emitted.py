"""One generated record plus the delivery metadata the writer needs to batch it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

# The first five are the original scenario's; the rest are the sources added on top of it
# (added_sources.py), each drawn from its own random generator.
Source = Literal[
    "fhir",
    "keyvault",
    "activity",
    "other",
    "bad",
    "sql",
    "storage",
    "signin",
    "directory",
]


@dataclass(slots=True)
class Emitted:
    at: datetime  # event time; drives ordering even when the record has no usable time field
    stream: str  # lower-cased id of the monitored resource whose diagnostic setting ships it
    source: Source
    record: object  # usually a dict; bad records may be a bare string or number
    actor: str | None = None
    scenario: bool = False  # incident/look-alike records stay free of random quirks
    deliver: datetime | None = None  # when Azure Monitor ships it (late and duplicate records)
    line: str = ""  # the exact serialised bytes, shared by a duplicate and its original

    @property
    def delivered(self) -> datetime:
        return self.deliver or self.at
