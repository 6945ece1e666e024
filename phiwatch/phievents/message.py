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
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, NamedTuple, Union, get_args, get_origin

import msgspec
import orjson
from pydantic import AwareDatetime, TypeAdapter

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
    overflowing time, and its grouping is one the engine knows.

    A message as normalize writes it (every event field, each of its exact JSON type) is
    decoded by a typed decoder and its event built without validating it again; anything
    else takes the general path below, which decides what it always decided."""
    try:
        message = _DECODER.decode(body)
    except (msgspec.DecodeError, ValueError):  # invalid UTF-8 is a ValueError
        return decode_message_checked(body)
    event = _event(message.Event)
    _aware(event.time_generated, "Event.TimeGenerated")
    arrived = message.ArrivedAt
    arrival = _aware(arrived, "ArrivedAt") if arrived is not None else None
    grouping = message.Grouping
    if grouping is None:
        return EventMessage(event, arrival, legacy_grouping(event), tagged=False)
    return EventMessage(event, arrival, grouping, tagged=True)


def decode_message_checked(body: bytes) -> EventMessage | Tick:
    """`decode_message` by the general path: any JSON, the event validated by its model.
    The reference the typed decoder is held to, and what it hands every other body."""
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


# ------------------------------------------------------------------ the typed decoder

# What the typed decoder takes of an event field: its exact JSON type, and only values the
# model's validation keeps as they are. A number that needs converting (1.0 for an int, an
# int past 64 bits, which the general path reads as a float), a time in any shape, a field
# written in snake case, a field missing or unknown: none of it decodes here, so the
# general path validates it, accepting or refusing as it always did.
_INT = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


def _typed(annotation: Any, metadata: list[Any]) -> Any:
    if annotation is AwareDatetime:
        return str  # parsed by the model's own validator of the field (_EVENT_TIME)
    if annotation in (int | None, float | None, bool | None, str | None, str, list[str] | None):
        if annotation == int | None:
            if [repr(m) for m in metadata] != ["Ge(ge=0)"]:
                raise TypeError("an int field of AccessEvent without the bound the decoder knows")
            return _INT | None
        return annotation
    if get_origin(annotation) is Literal:
        return annotation
    args = get_args(annotation)
    optional = get_origin(annotation) in (Union, UnionType) and len(args) == 2
    if optional and args[1] is NoneType and get_origin(args[0]) is Literal:
        return annotation
    raise TypeError(
        f"AccessEvent has a field type the phi-events decoder does not know: {annotation}"
    )


_FIELDS = AccessEvent.model_fields
_EVENT_NAMES = tuple(_FIELDS)
for _name, _info in _FIELDS.items():
    if _info.metadata and _info.annotation != int | None:
        raise TypeError(f"AccessEvent.{_name}: a constraint the phi-events decoder does not check")
_EventStruct = msgspec.defstruct(
    "_EventStruct",
    [(name, _typed(info.annotation, info.metadata)) for name, info in _FIELDS.items()],
    forbid_unknown_fields=True,
    rename={name: info.alias or name for name, info in _FIELDS.items()},
)
# The model's validator of TimeGenerated: the same datetime (and zone object) validation
# gives the field.
_EVENT_TIME = TypeAdapter(AwareDatetime).validate_python
_Grouping = Grouping  # the field below is named Grouping too


# Every field was given (the decoder requires each): one set for every event built here,
# as validation would give each (events are frozen: nothing adds to it).
_ALL_SET = set(_EVENT_NAMES)
_set = object.__setattr__


def _event(decoded: Any) -> AccessEvent:
    """The event validation gives for the decoded fields (as model.build_event builds one):
    every field is there, in the model's order (the struct's), each of the type the model
    keeps; TimeGenerated is validated by the field's own validator."""
    values = msgspec.structs.asdict(decoded)
    values["time_generated"] = _EVENT_TIME(values["time_generated"])
    event = object.__new__(AccessEvent)
    _set(event, "__dict__", values)
    _set(event, "__pydantic_fields_set__", _ALL_SET)
    _set(event, "__pydantic_extra__", None)
    _set(event, "__pydantic_private__", None)
    return event


class _Message(msgspec.Struct, forbid_unknown_fields=True):
    Event: _EventStruct  # type: ignore[valid-type]
    ArrivedAt: str | None = None
    Grouping: _Grouping | None = None


_DECODER = msgspec.json.Decoder(_Message)
