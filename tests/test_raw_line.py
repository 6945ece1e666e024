"""A raw archive line, joined from its values' JSON, is the bytes orjson wrote for the
line's dict (issue #18): the archived raw objects must not change by a byte."""

from __future__ import annotations

import base64

import orjson
from hypothesis import given
from hypothesis import strategies as st

from phiwatch.envelope import RawRecord
from phiwatch.pipeline import _raw_line


def _line_as_a_dict(record: RawRecord) -> bytes:
    entry = {"Stream": record.stream, "Position": record.position, "RecordHash": record.record_hash}
    try:
        entry["Raw"] = record.raw.decode("utf-8")
    except UnicodeDecodeError:
        entry["RawBase64"] = base64.b64encode(record.raw).decode("ascii")
    return orjson.dumps(entry)


_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)


@given(
    raw=st.binary(max_size=60) | _TEXT.map(str.encode),
    stream=st.sampled_from(["eventhub:diagnostics/3", 'file:/tmp/"odd"\\\u202e.jsonl']) | _TEXT,
    position=_TEXT,
)
def test_a_raw_line_is_the_dict_orjson_writes(raw: bytes, stream: str, position: str) -> None:
    record = RawRecord(raw, stream, position)
    assert _raw_line(record) == _line_as_a_dict(record)
    assert _raw_line(record) == _line_as_a_dict(record)  # the stream's head from the cache
