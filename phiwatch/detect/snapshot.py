"""Detection state ⇄ bytes, for the per-partition snapshots of the `detect` stage.

A snapshot is read back from Blob storage, so decoding must never run code chosen by
whoever can write that blob (pickle would): it is JSON, and the only objects it can build
are the state classes listed in `_CLASSES`, filled field by field. Tags keep the Python
types the detections rely on (tuples for bisect, sets, counters, infinities, datetimes,
events); plain JSON values stay plain.
"""

from __future__ import annotations

import dataclasses
import gzip
import math
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import orjson
from isal import igzip

from phiwatch.model import AccessEvent

FORMAT = 1
C = TypeVar("C", bound=type)


class SnapshotError(ValueError):
    """The bytes are not a snapshot this version can read."""


_CLASSES: dict[str, type] = {}
# A __slots__ class may keep a memo of its own encoded parts in a slot of this name: never
# in a snapshot (the document is what it was without it), None after a restore. Its
# `snapshot_fields(encode)` method then gives its encoded fields (see windows.KeyedState).
MEMO = "_memo"
# Per class: turns the decoded fields of an older layout of it into the current fields.
_UPGRADES: dict[type, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def snapshot_class(cls: C) -> C:
    """Allow instances of `cls` (a dataclass or a class with __slots__) in snapshots."""
    if not _field_names(cls):
        raise TypeError(f"{cls.__name__}: only dataclasses and __slots__ classes can be restored")
    known = _CLASSES.get(cls.__name__)
    # A snapshot names a class by its bare name, so two state classes may not share one
    # (e.g. two rules' `Facts`): refused on import, before any snapshot is written.
    if known is not None and (known.__module__, known.__qualname__) != (
        cls.__module__,
        cls.__qualname__,
    ):
        raise TypeError(
            f"{cls.__module__}.{cls.__qualname__}: the snapshot class name "
            f"'{cls.__name__}' is taken by {known.__module__}.{known.__qualname__}"
        )
    _CLASSES[cls.__name__] = cls
    _FIELDS[cls] = _field_names(cls)
    custom = getattr(cls, "snapshot_fields", None)
    if custom is not None:
        _BY_TYPE[cls] = _custom_encoder(cls.__name__, custom)
    else:
        _BY_TYPE[cls] = _object_encoder(cls.__name__, _FIELDS[cls])
    return cls


def upgrades(cls: type) -> Callable[[Callable[[dict[str, Any]], dict[str, Any]]], Any]:
    """Register how fields a snapshot holds for an older layout of `cls` become today's: a
    snapshot in Blob outlives the code that wrote it. Called only when the stored field
    names differ from the current ones; the result must then match them exactly."""

    def register(upgrade: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
        _UPGRADES[cls] = upgrade
        return upgrade

    return register


def _field_names(cls: type) -> tuple[str, ...]:
    if dataclasses.is_dataclass(cls):
        return tuple(f.name for f in dataclasses.fields(cls))
    slots = (s for c in cls.__mro__ for s in getattr(c, "__slots__", ()))
    return tuple(s for s in slots if s != MEMO)


def dumps(state: dict[str, Any]) -> bytes:
    body = orjson.dumps({"format": FORMAT, "state": _encode(state)})
    # ISA-L at level 1: a snapshot is written after every batch, and this is about 5x
    # faster than zlib at level 3 and smaller; any gzip reader (the previous version's
    # included) decompresses it. mtime=0: the same state gives the same bytes.
    return igzip.compress(body, compresslevel=1, mtime=0)


def loads(data: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(gzip.decompress(data))
    except (OSError, EOFError, orjson.JSONDecodeError) as exc:
        raise SnapshotError(f"snapshot is not gzip'd JSON ({type(exc).__name__})") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise SnapshotError(f"unsupported snapshot format {doc.get('format')!r}")
    state = _decode(doc.get("state"))
    if not isinstance(state, dict):
        raise SnapshotError("snapshot state is not an object")
    return state


def _fields(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in _field_names(type(obj))}


# The encoder runs over the whole state after every batch (a snapshot per batch), so it
# dispatches on the exact type of a value with one dict lookup instead of a chain of
# isinstance checks, and passes scalars in containers through without a call. It writes
# exactly the document `_encode_any` (the general case) does: snapshots stay format 1, and
# an instance of the previous version reads them during a rolling upgrade.
_SCALARS: frozenset[type] = frozenset({str, int, bool, type(None)})


def _finite(value: float) -> bool:
    return value - value == 0.0  # inf - inf and nan - nan are nan


def _encode(value: Any) -> Any:
    encode = _BY_TYPE.get(type(value))
    if encode is not None:
        return encode(value)
    return _encode_any(value)


def _encode_items(values: Any) -> list[Any]:
    scalars = _SCALARS
    return [
        v if (t := type(v)) in scalars or (t is float and v - v == 0.0) else _encode(v)
        for v in values
    ]


def _encode_float(value: float) -> Any:
    return value if _finite(value) else {"$f": repr(value)}


def _encode_dict(value: dict[Any, Any]) -> Any:
    for k in value:
        if type(k) is not str or k[:1] == "$":
            if all(isinstance(k, str) and not k.startswith("$") for k in value):
                return {k: _encode(v) for k, v in value.items()}  # str subclasses
            # Keys to tag (day numbers, a key starting with "$"): what the general case writes.
            return {"$map": [[_encode(k), _encode(v)] for k, v in value.items()]}
    scalars = _SCALARS
    return {
        k: v if (t := type(v)) in scalars or (t is float and v - v == 0.0) else _encode(v)
        for k, v in value.items()
    }


def _custom_encoder(name: str, fields: Callable[[Any, Any], Any]) -> Callable[[Any], Any]:
    def encode(obj: Any) -> Any:
        return {"$obj": name, "fields": fields(obj, _encode)}

    return encode


def _object_encoder(name: str, names: tuple[str, ...]) -> Callable[[Any], Any]:
    def encode(obj: Any) -> Any:
        return {"$obj": name, "fields": {n: _encode(getattr(obj, n)) for n in names}}

    return encode


_BY_TYPE: dict[type, Callable[[Any], Any]] = {
    str: lambda v: v,
    int: lambda v: v,
    bool: lambda v: v,
    type(None): lambda v: v,
    float: _encode_float,
    list: _encode_items,
    tuple: lambda v: {"$t": _encode_items(v)},
    dict: _encode_dict,
    # The event's own JSON, serialised once per event (models are frozen): the reorder
    # buffer and pending triggers hold the same events batch after batch.
    AccessEvent: lambda v: {"$event": orjson.Fragment(v.to_json())},
}
_FIELDS: dict[type, tuple[str, ...]] = {}


def _encode_any(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return {"$f": repr(value)}
        return value
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, tuple):
        return {"$t": [_encode(v) for v in value]}
    if isinstance(value, Counter):
        return {"$counter": [[_encode(k), v] for k, v in value.items()]}
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in value):
            return {k: _encode(v) for k, v in value.items()}
        return {"$map": [[_encode(k), _encode(v)] for k, v in value.items()]}
    if isinstance(value, (set, frozenset)):
        return {"$set": sorted((_encode(v) for v in value), key=orjson.dumps)}
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, AccessEvent):
        return {"$event": value.to_wire()}
    if isinstance(value, type) and _CLASSES.get(value.__name__) is value:
        return {"$class": value.__name__}
    cls = _CLASSES.get(type(value).__name__)
    if cls is type(value):
        return {"$obj": cls.__name__, "fields": {k: _encode(v) for k, v in _fields(value).items()}}
    raise SnapshotError(f"cannot snapshot a {type(value).__name__}")


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((tag, inner),) = value.items()
        if tag == "$f":
            return float(inner)
        if tag == "$t":
            return tuple(_decode(v) for v in inner)
        if tag == "$counter":
            return Counter({_decode(k): v for k, v in inner})
        if tag == "$map":
            return {_decode(k): _decode(v) for k, v in inner}
        if tag == "$set":
            return {_decode(v) for v in inner}
        if tag == "$dt":
            return datetime.fromisoformat(inner)
        if tag == "$event":
            return AccessEvent.model_validate(inner)
        if tag == "$class":
            return _known(inner)
    if set(value) == {"$obj", "fields"}:
        cls = _known(value["$obj"])
        fields = value["fields"]
        names = _FIELDS.get(cls) or _field_names(cls)
        if not isinstance(fields, dict):
            raise SnapshotError(f"snapshot of {cls.__name__} does not hold exactly {names}")
        decoded = {k: _decode(v) for k, v in fields.items()}
        if set(decoded) != set(names) and cls in _UPGRADES:
            decoded = _UPGRADES[cls](decoded)
        if set(decoded) != set(names):
            raise SnapshotError(f"snapshot of {cls.__name__} does not hold exactly {names}")
        obj: Any = object.__new__(cls)  # fields are set one by one below, __init__ never runs
        for name in names:
            object.__setattr__(obj, name, decoded[name])
        if MEMO in getattr(cls, "__slots__", ()):
            object.__setattr__(obj, MEMO, None)
        return obj
    return {k: _decode(v) for k, v in value.items()}


def _known(name: Any) -> type:
    cls = _CLASSES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise SnapshotError(f"snapshot names a class this version does not allow: {name!r}")
    return cls
