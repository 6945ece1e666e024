"""Alerts raised outside a normalize batch (the detect stage, scheduled rules, the outbox
backlog, the end of a local replay): one archive call and one naming scheme.

Each call is one create-only `alerts` object, sealed into the chain of the stream that raised
them. Its batch name is `<base>-<first>-<last>` (12-digit positions) when it covers a span of
a stream, `<base>[-<last>]-settle` for what the end of a local run settles, and `<base>`
otherwise (a base that already names its moment, like the backlog's hour and count). The same
input gives the same name, so a retried call meets its own earlier object.
"""

from __future__ import annotations

from collections.abc import Sequence

from phiwatch.archive.archive import Archive, object_name
from phiwatch.model import Alert


def alerts_batch_name(
    base: str, first: int | None = None, last: int | None = None, *, settle: bool = False
) -> str:
    if settle:
        return f"{base}-{last:012d}-settle" if last is not None else f"{base}-settle"
    if first is not None and last is not None:
        return f"{base}-{first:012d}-{last:012d}"
    return base


def archive_alerts(
    archive: Archive,
    *,
    stream: str,
    base: str,
    alerts: Sequence[Alert],
    first: int | None = None,
    last: int | None = None,
    settle: bool = False,
) -> str:
    """Archive and seal `alerts` (not empty); returns the batch name they went under."""
    batch = alerts_batch_name(base, first, last, settle=settle)
    hour = max(a.last_event_time for a in alerts)
    entry = archive.put(
        object_name("alerts", hour, batch), [a.to_json() for a in alerts], derived=True
    )
    archive.seal(
        stream=stream,
        batch=batch,
        first=None if settle else first,
        last=last,
        hour=hour,
        objects=[entry],
        kind="settle" if settle else "detect",
    )
    return batch
