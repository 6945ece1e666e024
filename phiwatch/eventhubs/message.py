"""One Event Hub event as every host hands it over (Functions trigger, `phiwatch consume`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(slots=True, frozen=True)
class EventHubMessage:
    """One Event Hub event, as any host sees it."""

    body: bytes
    sequence_number: int | None
    enqueued_time: datetime | None
    partition_id: str | None
