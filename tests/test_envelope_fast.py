"""The fast envelope split (msgspec) against the careful walk it replaces (issue #18).

`decode_body_careful` is the reference: on any body, valid or not, `decode_body` must give
the same records (bytes, positions, dead-letter codes and messages, values, hashes and
EventUids). Bodies are drawn as text so that every spelling JSON allows is met: whitespace,
escapes, number forms, duplicate keys, non-ASCII, BOM, and the hostile ones (NaN, lone
surrogates, nesting, truncation, stray bytes, invalid UTF-8).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from phiwatch.envelope import (
    MAX_DEPTH,
    Body,
    RawRecord,
    _fast_spans,
    decode_body,
    decode_body_careful,
)
from tests import records

WHEN = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)

JSON_WS = st.text(alphabet=" \t\n\r", max_size=3)
ODD_WS = JSON_WS | st.sampled_from(["\x0c", "\xa0", "\x0b", ""])
VALID_NUMBER = st.from_regex(
    r"-?(0|[1-9][0-9]{0,24})(\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?", fullmatch=True
)
# Numbers msgspec's grammar takes but not its decoder (the stdlib's values apply).
ODD_NUMBER = st.sampled_from(["1e400", "-1e400", "-0", "-0.0", "123456789012345678901234567890"])
BAD_NUMBER = st.sampled_from(["NaN", "Infinity", "-Infinity", "01", "1.", ".5", "-", "+1", "1e"])
SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "/": "\\/"}
ODD_ESCAPES = ["\\ud800", "\\udfff", "\\ud83d\\ude00", "\\q", "\\u12G4", "\\ud800\\u0041"]


def _utf16(ch: str) -> list[int]:
    data = ch.encode("utf-16-be", "surrogatepass")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


class Gen:
    """Draws JSON text; `clean` keeps to RFC 8259 (what the fast path should take),
    otherwise anything the stdlib or msgspec might read differently turns up."""

    def __init__(self, draw: st.DrawFn, clean: bool) -> None:
        self.draw = draw
        self.clean = clean

    def ws(self) -> str:
        return self.draw(JSON_WS if self.clean else ODD_WS)

    def rare(self, one_in: int) -> bool:
        return self.draw(st.integers(0, one_in - 1)) == 0

    def number(self) -> str:
        if self.rare(8):
            return self.draw(ODD_NUMBER if self.clean else BAD_NUMBER | ODD_NUMBER)
        return self.draw(VALID_NUMBER)

    def string(self) -> str:
        out = ['"']
        for ch in self.draw(st.text(max_size=12)):
            how = self.draw(st.integers(0, 9))
            if ch in SHORT_ESCAPES and (how < 9 or self.clean):
                out.append(SHORT_ESCAPES[ch])
            elif how == 9 or (ord(ch) < 0x20 and (how > 1 or self.clean)):
                out.append("".join(f"\\u{u:04x}" for u in _utf16(ch)))
            else:
                out.append(ch)  # a raw control character now and then: invalid JSON
        if self.rare(10 if not self.clean else 40):
            out.append(self.draw(st.sampled_from(ODD_ESCAPES)))
        out.append('"')
        return "".join(out)

    def value(self, depth: int = 0) -> str:
        kind = self.draw(st.integers(0, 7 if depth < 4 else 3))
        if kind == 0:
            return self.number()
        if kind == 1:
            return self.draw(
                st.sampled_from(["null", "true", "false"] + ([] if self.clean else ["tru"]))
            )
        if kind in (2, 3):
            return self.string()
        if kind in (4, 5):
            return self.record(depth)
        if kind == 6:
            items = [self.value(depth + 1) for _ in range(self.draw(st.integers(0, 4)))]
            return "[" + ",".join(self.ws() + i + self.ws() for i in items) + "]"
        if not self.rare(4):
            return self.string()
        deep = self.draw(st.integers(MAX_DEPTH - 3, MAX_DEPTH + 40))
        return "[" * deep + self.value(depth + 1) + "]" * deep

    def record(self, depth: int = 0) -> str:
        keys = self.draw(
            st.lists(st.sampled_from(["a", "time", "category", "Zoë", "a"]), max_size=4)
        )
        members = []
        for key in keys:
            name = (
                self.string()
                if self.rare(5)
                else json.dumps(key, ensure_ascii=self.draw(st.booleans()))
            )
            members.append(
                self.ws() + name + self.ws() + ":" + self.ws() + self.value(depth + 1) + self.ws()
            )
        return "{" + ",".join(members) + "}"

    def body(self) -> str:
        keys = ['"records"'] * 6 + (
            [] if self.clean else ['"Records"', '"r\\u0065cords"', '"value"']
        )
        key = self.draw(st.sampled_from(keys))
        count = self.draw(st.integers(0, 6))
        texts = [self.record() if not self.rare(5) else self.value() for _ in range(count)]
        array = "[" + self.ws() + ("," + self.ws()).join(t + self.ws() for t in texts) + "]"
        members = [self.ws() + key + self.ws() + ":" + self.ws() + array + self.ws()]
        if not self.clean and self.rare(6):
            other = self.draw(st.sampled_from(['"records"', '"extra"']))
            members.append(self.ws() + other + ":" + self.value())
        text = (
            self.draw(st.sampled_from(["", "", "\ufeff"]))
            + self.ws()
            + "{"
            + ",".join(members)
            + "}"
        )
        if not self.clean:
            text += self.draw(
                st.sampled_from(["", "", " ", "\n", '{"records":[{}]}', " trailing", ","])
            )
        return text + self.ws()


@st.composite
def body_bytes(draw: st.DrawFn) -> bytes:
    clean = draw(st.booleans())
    data = Gen(draw, clean).body().encode("utf-8", "surrogatepass")
    for _ in range(0 if clean else draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(data)))
        how = draw(st.integers(0, 3))
        if how == 0:
            data = data[:at]  # truncated
        elif how == 1:
            data = data[:at] + data[at + 1 :]
        else:
            stray = draw(
                st.sampled_from(
                    [b"\xff", b"\xc3", b"\xed\xa0\x80", b"}", b"]", b'"', b",", b"\x00"]
                )
            )
            data = data[:at] + stray + data[at:]
    return data


def outcome(decoded: list[RawRecord]) -> list[tuple[Any, ...]]:
    out = []
    for r in decoded:
        uid = r.content_uid() if r.error_code is None else None
        out.append(
            (
                r.raw,
                r.stream,
                r.position,
                r.error_code,
                r.error,
                repr(r.value),
                r.record_hash,
                uid,
                r.enqueued_time,
            )
        )
    return out


def agree(data: bytes, max_record_bytes: int = 1024 * 1024) -> list[tuple[Any, ...]]:
    body = Body(
        data=data, stream="eventhub:h/0", position="seq 7", sequence_number=7, enqueued_time=WHEN
    )
    careful = outcome(decode_body_careful(body, max_record_bytes=max_record_bytes))
    fast = outcome(decode_body(body, max_record_bytes=max_record_bytes))
    assert fast == careful
    return fast


@settings(
    max_examples=400, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(body_bytes(), st.sampled_from([1024 * 1024, 64]))
@example(b'{"records":[{"a":1}],"records":[{"b":2}]}', 1024 * 1024)
@example(b'{"records":[{"a":1}]}{"records":[{"b":2}]}', 1024 * 1024)
@example(b'\xef\xbb\xbf {"records" :[ {"a":"Zo\xc3\xab"} ]}\n', 1024 * 1024)
@example(b'{"records":[{"v":NaN},{"v":1e400},{"v":"\\ud800"}]}', 1024 * 1024)
@example(b'{"records":[{"v":"\xff"}]}', 1024 * 1024)
@example(b'{"records":[{"v":"\xed\xa0\x80"}]}', 1024 * 1024)
@example(b'{"records":[], "x": 1}', 1024 * 1024)
@example(b'{"records":[]}', 1024 * 1024)
@example(b'{"records":[{"a":1,"b":2,"a":3}]}', 1024 * 1024)
def test_fast_split_agrees_with_the_careful_walk(data: bytes, limit: int) -> None:
    agree(data, limit)


@pytest.mark.parametrize(
    "data",
    [
        b'{"records":[' + b"[" * 80 + b"]" * 80 + b"]}",  # too deep: the careful walk's code
        b'{"records":[{"a":' + b"[" * 5000 + b"]" * 5000 + b"}]}",  # beyond recursion
        b'{"records":[{"n":' + b"7" * 5000 + b'},{"ok":1}]}',  # more digits than int() takes
        b'{"records":[{"s":"' + b"7" * 5000 + b'"},{"ok":1}]}',  # digits in a string are fine
        b'{"records":[{"n":-' + b"7" * 4300 + b"}]}",
    ],
)
def test_hostile_records_get_the_careful_walks_answer(data: bytes) -> None:
    agree(data)


def test_the_usual_body_takes_the_fast_path_and_decodes_values_on_demand() -> None:
    recs = [records.keyvault(0), records.fhir(1), records.activity()]
    data = json.dumps({"records": recs}).encode()
    assert _fast_spans(data) is not None
    decoded = decode_body(Body(data, "s", "p"))
    assert all(r._limit is not None for r in decoded)  # nothing parsed yet
    assert [r.value for r in decoded] == recs
    assert decoded[0].raw == json.dumps(recs[0]).encode()
    uid = decoded[0].content_uid()
    decoded[0].release()
    assert decoded[0].value is None
    assert (decoded[0].content_uid(), decoded[0].error_code) == (uid, None)
    agree(data)


def test_non_ascii_bodies_take_the_fast_path_too() -> None:
    data = '{"records":[{"name":"Zoë Ångström","e":"😀"}]}'.encode()
    assert _fast_spans(data) is not None
    agree(data)


def test_the_int_digit_limit_in_force_is_the_one_checked() -> None:
    old = sys.get_int_max_str_digits()
    try:
        sys.set_int_max_str_digits(640)
        agree(b'{"records":[{"n":' + b"7" * 700 + b"}]}")
    finally:
        sys.set_int_max_str_digits(old)
