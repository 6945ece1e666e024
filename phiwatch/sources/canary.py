"""The deployment canary: one record `phiwatch send --canary` puts in a hub to prove the path.

A canary is a tiny, valid diagnostic record of category `PhiwatchCanary` (a time, an id). It
goes the whole way a real record goes (hub, trigger, archive of the raw record) and is then
counted as the skip `canary`: never normalised, so no event, no Sentinel row and no rule ever
sees it. The Event Hubs host remembers when it last saw one, and health reports that time.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from phiwatch.sources.record import Record, RecordSkipped

CATEGORY = "PhiwatchCanary"
SKIP_REASON = "canary"
_CATEGORY_LOWER = CATEGORY.lower()


def skip_if_canary(record: Record) -> None:
    """Raise the `canary` skip for a canary record; do nothing for any other."""
    if record.category_lower == _CATEGORY_LOWER:
        raise RecordSkipped(SKIP_REASON, "phiwatch canary (deployment check), not an access")


def canary_record(now: datetime | None = None, canary_id: str | None = None) -> dict[str, Any]:
    """The canary, as a diagnostic record: `{"records": [canary_record()]}` is one body."""
    at = (now or datetime.now(UTC)).astimezone(UTC)
    return {
        "time": at.isoformat().replace("+00:00", "Z"),
        "category": CATEGORY,
        "operationName": "phiwatch/canary",
        "properties": {"canaryId": canary_id or str(uuid.uuid4())},
    }
