"""Event Hub bodies and local files → raw records, keeping each record's exact bytes.

A diagnostic-settings body is `{"records": [record, ...]}` (DESIGN.md §3). We walk that array
with the stdlib's C JSON scanner (`raw_decode`), which parses each element *and* reports where
it ends, so every record gets its byte-exact span without a second parse. A body that breaks
half way (truncated, not JSON, nested too deep) still yields the records before the break;
the rest becomes one undecodable record, so nothing read is ever dropped.

Every byte of a body that is not the envelope's own syntax ends in a raw record, so it is
archived and counted (issue #12, item 4):
- every `records` array (any casing, however often the key repeats) gives records: a JSON
  parser that keeps only the last duplicate key would see other records than we do, so we
  keep them all rather than pick one;
- any other top-level member becomes an undecodable record (`body-extra-member`) holding
  its bytes (Azure sends none);
- after the closing brace, another object is read as a further body of the same event
  (`{..}{..}`), and anything else is an undecodable record (`body-trailing-data`).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from json.decoder import scanstring  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any

import orjson

from phiwatch.surrogates import SURROGATE_ESCAPE, without_surrogates

MAX_RECORD_BYTES = 1024 * 1024
MAX_DEPTH = 64
LOCAL_SUFFIXES = (".json", ".jsonl", ".ndjson")

_decoder = json.JSONDecoder()
_WHITESPACE = " \t\n\r"


@dataclass(slots=True, frozen=True)
class Body:
    """One Event Hub event body (or one body read from a local file)."""

    data: bytes
    stream: str  # "eventhub:<hub>/<partition>" or "file:<path>"
    position: str  # human pointer: "seq 42" or "logs.jsonl.gz:17"
    sequence_number: int | None = None
    enqueued_time: datetime | None = None


@dataclass(slots=True)
class RawRecord:
    """One record as received: exact bytes, where it came from, and what JSON gave."""

    raw: bytes
    stream: str
    position: str
    value: Any = None
    # Set when the bytes could not be decoded into a record; value is then None.
    error_code: str | None = None
    error: str | None = None
    enqueued_time: datetime | None = None
    _hash: str | None = field(default=None, repr=False)
    _uid: str | None = field(default=None, repr=False)

    @property
    def record_hash(self) -> str:
        """SHA-256 of the exact bytes: what the archive proves."""
        if self._hash is None:
            self._hash = hashlib.sha256(self.raw).hexdigest()
        return self._hash

    def content_uid(self) -> str:
        """Stable id of the record's content, independent of key order and whitespace.

        Azure may re-send a record re-serialised, so dedupe must not hinge on bytes.
        """
        if self._uid is None:
            self._uid = _content_uid(self.value, self.raw)
        return self._uid


def _content_uid(value: Any, raw: bytes) -> str:
    # AlertIds derive from EventUids: the bytes hashed for a record must never change. orjson
    # writes NaN and Infinity as null, which made `NaN` and `null` one EventUid; those
    # records take the stdlib's form (which writes the bare tokens, so it equals no other
    # record's canonical JSON), as records with integers beyond 64 bits always did.
    if (b"NaN" in raw or b"Infinity" in raw) and _has_non_finite(value):
        return _digest(_stdlib_canonical(value))
    try:
        canonical = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # integers beyond 64 bits, lone surrogates: orjson refuses, stdlib copes
        canonical = _stdlib_canonical(value)
    return _digest(canonical)


def _stdlib_canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _digest(canonical: bytes) -> str:
    return hashlib.sha256(canonical).hexdigest()[:32]


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_non_finite(v) for v in value)
    return False


def _skip_ws(text: str, idx: int) -> int:
    n = len(text)
    while idx < n and text[idx] in _WHITESPACE:
        idx += 1
    return idx


def _depth(text: str) -> int:
    """Deepest nesting of objects/arrays, ignoring brackets inside strings."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


class _Slicer:
    """Maps str offsets back to bytes; free when the body is ASCII (the usual case)."""

    def __init__(self, data: bytes, text: str) -> None:
        self.data = data
        self.text = text
        self.ascii = len(data) == len(text)

    def raw(self, start: int, end: int) -> bytes:
        if self.ascii:
            return self.data[start:end]
        return self.text[start:end].encode("utf-8")


def decode_body(body: Body, *, max_record_bytes: int = MAX_RECORD_BYTES) -> list[RawRecord]:
    """Split one body into raw records. Never raises for bad input."""

    def bad(raw: bytes, code: str, message: str, suffix: str = "") -> RawRecord:
        return RawRecord(
            raw=raw,
            stream=body.stream,
            position=body.position + suffix,
            error_code=code,
            error=message,
            enqueued_time=body.enqueued_time,
        )

    data = body.data
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [bad(data, "body-not-utf8", f"body is not valid UTF-8 (byte {exc.start})")]
    slicer = _Slicer(data, text)
    start = 1 if text.startswith("\ufeff") else 0
    idx = _skip_ws(text, start)
    if idx >= len(text):
        return [bad(data, "body-empty", "body is empty")]
    if text[idx] != "{":
        try:
            kind = type(json.loads(text)).__name__
        except (ValueError, RecursionError):
            return [bad(data, "body-malformed", "body is not valid JSON")]
        return [bad(data, "body-not-object", f"body is a JSON {kind}, not an object with records")]
    walk = _Walk(body, slicer, max_record_bytes)
    try:
        walk.objects(idx)
    except (ValueError, IndexError, RecursionError) as exc:
        code, message = _break_reason(exc, bool(walk.records))
        if not walk.found or not walk.out:
            return [bad(data, code, message)]
        walk.out.append(bad(slicer.raw(walk.good_until, len(text)), code, message, "#rest"))
        return walk.out
    if not walk.found:
        return [bad(data, "body-no-records", "body has no records array")]
    return walk.out


class _Walk:
    """One pass over a body's top-level objects, collecting raw records in body order."""

    def __init__(self, body: Body, slicer: _Slicer, max_record_bytes: int) -> None:
        self.body = body
        self.slicer = slicer
        self.text = slicer.text
        self.max_record_bytes = max_record_bytes
        self.out: list[RawRecord] = []
        self.records = 0  # of `out`, those from a records array
        self.members = 0  # of `out`, the other top-level members
        self.found = False  # a records array was seen
        self.good_until = 0  # str offset just past the last byte a raw record holds

    def objects(self, idx: int) -> None:
        """`idx` is at a `{`. Reads it and any objects after it; other trailing bytes are
        one undecodable record."""
        text = self.text
        while True:
            self.good_until = self.object(idx)
            idx = _skip_ws(text, self.good_until)
            if idx >= len(text):
                return
            if text[idx] != "{":
                self.out.append(
                    self.undecodable(
                        idx,
                        len(text),
                        "body-trailing-data",
                        "body has data after its closing brace",
                        "#trailing",
                    )
                )
                return

    def object(self, idx: int) -> int:
        text = self.text
        idx = _skip_ws(text, idx + 1)
        while idx < len(text) and text[idx] != "}":
            if text[idx] != '"':
                raise ValueError("expected a key")
            member_start = idx
            key, idx = scanstring(text, idx + 1)
            idx = _skip_ws(text, idx)
            if text[idx] != ":":
                raise ValueError("expected ':'")
            idx = _skip_ws(text, idx + 1)
            if key.lower() == "records" and text[idx] == "[":
                self.found = True
                idx = self.records_array(idx)
            else:
                _, idx = _decoder.raw_decode(text, idx)
                self.out.append(
                    self.undecodable(
                        member_start,
                        idx,
                        "body-extra-member",
                        "body has a top-level member other than records",
                        f"#member{self.members}",
                    )
                )
                self.members += 1
            idx = _skip_ws(text, idx)
            if text[idx] == ",":
                idx = _skip_ws(text, idx + 1)
            elif text[idx] != "}":
                raise ValueError("expected ',' or '}'")
        if idx >= len(text):
            raise ValueError("expected '}'")
        return idx + 1

    def undecodable(self, start: int, end: int, code: str, message: str, suffix: str) -> RawRecord:
        self.good_until = end
        body = self.body
        return RawRecord(
            raw=self.slicer.raw(start, end),
            stream=body.stream,
            position=body.position + suffix,
            error_code=code,
            error=message,
            enqueued_time=body.enqueued_time,
        )

    def records_array(self, idx: int) -> int:
        text = self.text
        body = self.body
        idx = _skip_ws(text, idx + 1)
        while text[idx] != "]":
            start = idx
            value, idx = _decoder.raw_decode(text, idx)
            record = RawRecord(
                raw=self.slicer.raw(start, idx),
                stream=body.stream,
                position=f"{body.position}#{self.records}",
                value=value,
                enqueued_time=body.enqueued_time,
            )
            _check_shape(record, self.max_record_bytes)
            self.out.append(record)
            self.records += 1
            self.good_until = idx
            idx = _skip_ws(text, idx)
            if text[idx] == ",":
                idx = _skip_ws(text, idx + 1)
            elif text[idx] != "]":
                raise ValueError("expected ',' or ']' in records")
        return idx + 1


def _break_reason(exc: BaseException, after_records: bool) -> tuple[str, str]:
    if isinstance(exc, RecursionError):
        return "record-too-deep", "record is nested too deeply to decode"
    where = "after the last complete record" if after_records else "before any record"
    if isinstance(exc, json.JSONDecodeError):
        return "body-malformed", f"body is not valid JSON {where} ({exc.msg})"
    return "body-malformed", f"body is not valid JSON {where} ({exc})"


def _check_shape(record: RawRecord, max_record_bytes: int) -> None:
    size = len(record.raw)
    if size > max_record_bytes:
        record.error_code = "record-too-large"
        record.error = (
            f"record is {size // 1024} KiB, over the {max_record_bytes // 1024} KiB limit"
        )
    elif not isinstance(record.value, dict):
        record.error_code = "record-not-object"
        record.error = f"record is a JSON {type(record.value).__name__}, not an object"
    elif record.raw.count(b"{") + record.raw.count(b"[") > MAX_DEPTH:
        depth = _depth(record.raw.decode("utf-8"))
        if depth > MAX_DEPTH:
            record.error_code = "record-too-deep"
            record.error = f"record is nested {depth} levels deep, over the limit of {MAX_DEPTH}"
    if record.error_code is not None:
        record.value = None
    elif SURROGATE_ESCAPE.search(record.raw):
        _repair_text(record)


def _repair_text(record: RawRecord) -> None:
    """Lone surrogates become U+FFFD in what the normalisers read (phiwatch.surrogates);
    the EventUid is taken from the record as received first, so it stays distinct."""
    repaired = without_surrogates(record.value)
    if repaired is not record.value:
        record.content_uid()
        record.value = repaired


# ---------------------------------------------------------------- local files


class InputError(Exception):
    """A local input path that cannot be read; the message is meant for the user."""


def discover(paths: Iterable[Path]) -> list[Path]:
    """Expand directories (sorted, recursive) into the input files they hold."""
    files: list[Path] = []
    for path in paths:
        if not path.exists():
            raise InputError(f"{path}: no such file or directory")
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.is_file() and _is_input_name(p.name.lower())
            )
            files.extend(found)
        elif os.access(path, os.R_OK):
            files.append(path)
        else:
            raise InputError(f"{path}: permission denied")
    if not files:
        raise InputError("no input files found (expected .json, .jsonl, .ndjson, optionally .gz)")
    return files


def _is_input_name(name: str) -> bool:
    name = name.removesuffix(".gz")
    return name.endswith(LOCAL_SUFFIXES)


def read_file_bodies(path: Path) -> Iterator[Body]:
    """Bodies from one local file: `.json` (a body or an array of them) or JSON lines."""
    # A name that is not UTF-8 (surrogate escapes) could not be written in any archive line.
    shown = without_surrogates(path.name)
    stream = f"file:{shown}"
    try:
        data = path.read_bytes()
        if path.name.lower().endswith(".gz"):
            data = gzip.decompress(data)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from exc
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".json"):
        yield from _json_file_bodies(shown, stream, data)
        return
    for lineno, line in enumerate(data.split(b"\n"), start=1):
        if line.strip():
            yield Body(data=line.rstrip(b"\r"), stream=stream, position=f"{shown}:{lineno}")


def _json_file_bodies(name: str, stream: str, data: bytes) -> Iterator[Body]:
    stripped = data.lstrip()
    if not stripped.startswith(b"["):
        yield Body(data=data, stream=stream, position=name)
        return
    # A dump of several bodies: `[body, body, ...]`. Split it the same byte-exact way.
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        yield Body(data=data, stream=stream, position=name)
        return
    slicer = _Slicer(data, text)
    idx = _skip_ws(text, text.index("[") + 1)
    n = 0
    try:
        while text[idx] != "]":
            start = idx
            _, idx = _decoder.raw_decode(text, idx)
            yield Body(data=slicer.raw(start, idx), stream=stream, position=f"{name}[{n}]")
            n += 1
            idx = _skip_ws(text, idx)
            if text[idx] == ",":
                idx = _skip_ws(text, idx + 1)
    except (ValueError, IndexError, RecursionError):
        yield Body(data=slicer.raw(start, len(text)), stream=stream, position=f"{name}[{n}]")
