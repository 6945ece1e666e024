"""The bytes of a `phi-events` message: an event copy tagged with its grouping, or a tick.

An event message is `{"ArrivedAt": ..., "Grouping": ..., "Event": {...}}`: the event, when
its raw record arrived (which stamps an alert's DetectedAt, the same however often the event
is republished) and the grouping whose key routed this copy (phievents.routing). Messages of
the previous version have no `Grouping`: they were routed by actor (data plane) or by
subscription (control plane), so they are read as copies of that grouping, and during an
upgrade they reach exactly the rules their key served.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import orjson

from phiwatch.detect.grouping import GROUPINGS, Grouping
from phiwatch.model import AccessEvent
from phiwatch.phievents.routing import legacy_grouping


class EventMessage(NamedTuple):
    event: AccessEvent
    arrival: datetime | None
    grouping: Grouping
    tagged: bool  # False: an untagged message of the previous version (grouping inferred)


@dataclass(frozen=True, slots=True)
class Tick:
    time: datetime
    stream: str


def encode_event(
    event: AccessEvent, arrival: datetime | None, grouping: Grouping | None = None
) -> bytes:
    """An event message; without `grouping`, the previous version's untagged message (what
    upgrade tests and old fixtures need; the forwarder always tags)."""
    arrived = orjson.dumps(arrival.isoformat() if arrival else None)
    tag = b',"Grouping":"' + grouping.encode() + b'"' if grouping is not None else b""
    return b'{"ArrivedAt":' + arrived + tag + b',"Event":' + event.to_json() + b"}"


def encode_tick(time: datetime, stream: str) -> bytes:
    """A watermark tick: normalize has forwarded the events of `stream` (a diagnostics-hub
    partition) up to about this event time."""
    return orjson.dumps({"Tick": time.isoformat(), "Stream": stream})


def decode_message(body: bytes) -> EventMessage | Tick:
    """An event copy or a Tick. Raises ValueError for a body that is not one of ours,
    whatever its bytes (ValidationError and RoutingError are ValueErrors): every time in it
    has a zone and converts to a timestamp, so nothing downstream meets a naive or
    overflowing time, and its grouping is one the engine knows."""
    doc = orjson.loads(body)
    if isinstance(doc, dict) and set(doc) == {"Tick", "Stream"}:
        tick = _aware(doc["Tick"], "Tick")
        if not isinstance(doc["Stream"], str):
            raise ValueError("a tick needs a time with a zone and a stream")
        return Tick(tick, doc["Stream"])
    if not isinstance(doc, dict) or "Event" not in doc:
        raise ValueError("not a phi-events message (no Event)")
    arrived = doc.get("ArrivedAt")
    grouping = doc.get("Grouping")
    if grouping is not None and grouping not in GROUPINGS:
        raise ValueError("not a phi-events message (unknown Grouping)")
    event = AccessEvent.model_validate(doc["Event"])
    _aware(event.time_generated, "Event.TimeGenerated")
    arrival = _aware(arrived, "ArrivedAt") if arrived is not None else None
    if grouping is None:
        return EventMessage(event, arrival, legacy_grouping(event), tagged=False)
    return EventMessage(event, arrival, grouping, tagged=True)


def _aware(value: Any, name: str) -> datetime:
    """An ISO time with a zone (or a datetime) whose timestamp exists: year 1 at +05:00
    parses but has no UTC equivalent, and a naive time cannot be compared with arrivals."""
    try:
        time = value if isinstance(value, datetime) else datetime.fromisoformat(value)
        time.timestamp()
    except (TypeError, ValueError, OverflowError, OSError):
        raise ValueError(f"{name} is not a time") from None
    if time.tzinfo is None or time.utcoffset() is None:
        raise ValueError(f"{name} has no time zone")
    return time
