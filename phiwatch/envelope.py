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

import functools
import gzip
import hashlib
import json
import math
import os
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from json.decoder import scanstring  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any

import msgspec
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


class RawRecord:
    """One record as received: exact bytes, where it came from, and what JSON gave.

    A record of the fast path (`decode_body`) holds only where its bytes lie in the body, and
    decodes its value the first time `value`, `error_code` or `error` is read; `release`
    drops the value once it has been normalised. So the records of a 90 MB body are never
    all parsed at once, nor are their bytes copied out of the body.
    """

    __slots__ = (
        "_buf",
        "_end",
        "_error",
        "_error_code",
        "_finite",
        "_hash",
        "_limit",
        "_start",
        "_uid",
        "_value",
        "enqueued_time",
        "position",
        "stream",
    )

    def __init__(
        self,
        raw: bytes,
        stream: str,
        position: str,
        value: Any = None,
        error_code: str | None = None,
        error: str | None = None,
        enqueued_time: datetime | None = None,
    ) -> None:
        self._buf = raw
        self._start = 0
        self._end = len(raw)
        self._limit: int | None = None  # the size limit while the value is still to decode
        self._value = value
        # Set when the bytes could not be decoded into a record; value is then None.
        self._error_code = error_code
        self._error = error
        self._hash: str | None = None
        self._uid: str | None = None
        # True once msgspec gave the value: it refuses NaN, Infinity and numbers beyond a
        # double, so the value holds no non-finite float and the uid needs no token search.
        self._finite = False
        self.stream = stream
        self.position = position
        self.enqueued_time = enqueued_time

    @classmethod
    def _span(
        cls, body: Body, start: int, end: int, position: str, max_record_bytes: int
    ) -> RawRecord:
        """A record of `body.data[start:end]`, which the fast path has shown to be one JSON
        value the careful walk would give the same bytes; its value is decoded on demand."""
        record = cls(body.data, body.stream, position, enqueued_time=body.enqueued_time)
        record._start = start
        record._end = end
        record._limit = max_record_bytes
        return record

    def __repr__(self) -> str:  # never the content: it may be PHI
        return f"RawRecord(position={self.position!r}, bytes={self._end - self._start})"

    @property
    def raw(self) -> bytes:
        buf = self._buf
        if self._start == 0 and self._end == len(buf):
            return buf
        return buf[self._start : self._end]

    @property
    def value(self) -> Any:
        if self._limit is not None:
            self._resolve()
        return self._value

    @value.setter
    def value(self, value: Any) -> None:
        self._resolve_if_pending()
        self._value = value
        self._finite = False  # a value set from outside may hold anything

    @property
    def error_code(self) -> str | None:
        if self._limit is not None:
            self._resolve()
        return self._error_code

    @error_code.setter
    def error_code(self, code: str | None) -> None:
        self._resolve_if_pending()
        self._error_code = code

    @property
    def error(self) -> str | None:
        if self._limit is not None:
            self._resolve()
        return self._error

    @error.setter
    def error(self, message: str | None) -> None:
        self._resolve_if_pending()
        self._error = message

    def release(self) -> None:
        """Forget the decoded value (once normalised): the bytes, hash and uid stay."""
        if self._limit is None:
            self._value = None

    @property
    def record_hash(self) -> str:
        """SHA-256 of the exact bytes: what the archive proves."""
        if self._hash is None:
            view = memoryview(self._buf)[self._start : self._end]
            self._hash = hashlib.sha256(view).hexdigest()
        return self._hash

    def content_uid(self) -> str:
        """Stable id of the record's content, independent of key order and whitespace.

        Azure may re-send a record re-serialised, so dedupe must not hinge on bytes.
        """
        if self._uid is None:
            value = self.value  # decoded first: that says whether the tokens can be there
            if self._finite:
                # `_content_uid` without the token case, inlined: this runs per record.
                try:
                    canonical = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
                except TypeError:  # integers beyond 64 bits, lone surrogates
                    canonical = _stdlib_canonical(value)
                self._uid = hashlib.sha256(canonical).hexdigest()[:32]
            else:
                buf, start, end = self._buf, self._start, self._end
                tokens = buf.find(b"NaN", start, end) >= 0 or buf.find(b"Infinity", start, end) >= 0
                self._uid = _content_uid(value, tokens)
        return self._uid

    def _resolve_if_pending(self) -> None:
        if self._limit is not None:
            self._resolve()

    def _resolve(self) -> None:
        """Decode the value and apply the record checks of the careful walk (`_check_shape`),
        with the same codes, messages and order."""
        limit = self._limit
        assert limit is not None
        self._limit = None
        buf, start, end = self._buf, self._start, self._end
        size = end - start
        if size > limit:
            self._error_code = "record-too-large"
            self._error = f"record is {size // 1024} KiB, over the {limit // 1024} KiB limit"
            return
        view = memoryview(buf)[start:end]
        try:
            value = _FAST_VALUE.decode(view)
            finite = True
        except msgspec.MsgspecError:
            finite = False
            # NaN, Infinity and numbers beyond a double (stdlib: inf) are JSON only to the
            # stdlib, which gives them the values the careful walk always gave.
            try:
                value = _decoder.decode(str(view, "utf-8"))
            except (ValueError, RecursionError):
                # Unreachable: `_fast_spans` leaves to the careful walk every record the
                # stdlib could refuse. Should it happen, one record is lost, not the batch.
                self._error_code = "body-malformed"
                self._error = "record is not valid JSON"
                return
        if not isinstance(value, dict):
            self._error_code = "record-not-object"
            self._error = f"record is a JSON {type(value).__name__}, not an object"
            return
        # Nesting beyond MAX_DEPTH never gets here: `_fast_spans` hands it to the careful walk.
        self._value = value
        self._finite = finite
        if SURROGATE_ESCAPE.search(buf, start, end):
            _repair_text(self)


def _content_uid(value: Any, non_finite_tokens: bool) -> str:
    # AlertIds derive from EventUids: the bytes hashed for a record must never change. orjson
    # writes NaN and Infinity as null, which made `NaN` and `null` one EventUid; those
    # records take the stdlib's form (which writes the bare tokens, so it equals no other
    # record's canonical JSON), as records with integers beyond 64 bits always did.
    if non_finite_tokens and _has_non_finite(value):
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
    """Split one body into raw records. Never raises for bad input.

    The usual body, `{"records": [...]}` and nothing else, is split by msgspec (C, no Python
    per byte) into the very spans the careful walk finds; every other body, and any body the
    fast path cannot vouch for, takes `decode_body_careful`. The two agree on every body
    (tests/test_envelope_fast.py holds them to it), the careful walk being the reference.
    """
    spans = _fast_spans(body.data)
    if spans is None:
        return decode_body_careful(body, max_record_bytes=max_record_bytes)
    prefix = body.position + "#"
    span = RawRecord._span
    return [
        span(body, start, end, f"{prefix}{index}", max_record_bytes)
        for index, (start, end) in enumerate(spans)
    ]


class _Envelope(msgspec.Struct, forbid_unknown_fields=True):
    records: list[msgspec.Raw]


_FAST_ENVELOPE = msgspec.json.Decoder(_Envelope)
_FAST_VALUE = msgspec.json.Decoder()
_BOM = b"\xef\xbb\xbf"
# The envelope's own syntax around the records, JSON whitespace only. A key spelt any other
# way (another casing, an escape) is left to the careful walk.
_WS = rb"[ \t\n\r]*"
_OPEN = re.compile(rb"(?:\xef\xbb\xbf)?%s\{%s\"records\"%s:%s\[%s" % ((_WS,) * 5))
_NEXT = re.compile(rb"%s,%s" % (_WS, _WS))
_CLOSE = re.compile(rb"%s\]%s\}%s\Z" % (_WS, _WS, _WS))


def _fast_spans(data: bytes) -> list[tuple[int, int]] | None:
    """Where each record lies in a body of exactly `{"records": [r0, r1, ...]}` (BOM and
    whitespace allowed), or None when the careful walk must decide.

    msgspec checks the whole body's JSON grammar and gives each record's bytes (`Raw`, a view
    into `data`); the spans are then found by walking the envelope's syntax between them and
    comparing bytes, so they are exactly the careful walk's. What msgspec does not check, or
    the stdlib refuses where msgspec does not, goes to the careful walk: invalid UTF-8
    (msgspec skips over the bytes inside strings), nesting beyond MAX_DEPTH (the stdlib's
    recursion limit breaks the body there), integers longer than Python converts. So every
    record of a fast body is one the stdlib decodes, and its value can wait until asked for.
    """
    opened = _OPEN.match(data)
    if opened is None:
        return None
    bom = len(_BOM) if data.startswith(_BOM) else 0
    try:
        records = _FAST_ENVELOPE.decode(memoryview(data)[bom:] if bom else data).records
    except (msgspec.MsgspecError, RecursionError, ValueError):
        return None
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    digits = sys.get_int_max_str_digits()
    long_int = _long_integer(digits) if digits else None
    spans: list[tuple[int, int]] = []
    pos = opened.end()
    count = data.count
    for index, record in enumerate(records):
        if index:
            sep = _NEXT.match(data, pos)
            if sep is None:
                return None
            pos = sep.end()
        end = pos + len(record)
        if not data.startswith(record, pos):  # a buffer: compared in place
            return None
        brackets = count(b"{", pos, end) + count(b"[", pos, end)
        if brackets > MAX_DEPTH and _depth(data[pos:end].decode("utf-8")) > MAX_DEPTH:
            return None
        if long_int is not None and end - pos > digits and long_int.search(data, pos, end):
            return None
        spans.append((pos, end))
        pos = end
    if _CLOSE.match(data, pos) is None:
        return None
    return spans


@functools.cache
def _long_integer(digits: int) -> re.Pattern[bytes]:
    # More digits than int() converts: the stdlib refuses the body there. Digits in a string
    # match too; such a record just takes the careful walk.
    return re.compile(rb"[0-9]{%d}" % (digits + 1))


def decode_body_careful(body: Body, *, max_record_bytes: int = MAX_RECORD_BYTES) -> list[RawRecord]:
    """Split one body into raw records with the stdlib's scanner, for any body at all (the
    reference `decode_body` is held to). Never raises for bad input."""

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
