"""Envelope decoding: byte-exact records, partial recovery, every quirk of local files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from phiwatch.envelope import Body, InputError, decode_body, discover, read_file_bodies


def body(data: bytes | str) -> Body:
    raw = data.encode() if isinstance(data, str) else data
    return Body(data=raw, stream="test", position="b0")


def test_records_keep_their_exact_bytes_including_whitespace_and_non_ascii():
    rec1 = '{ "time" : "2026-11-02T08:00:00Z",\n  "category": "AuditEvent" }'
    rec2 = '{"name":"Zoë Ångström","n":1.50}'
    raw = f'{{"records": [ {rec1} ,\n{rec2}], "extra": {{"x": [1,2]}}}}'.encode()
    *records, extra = decode_body(body(raw))
    assert [r.raw for r in records] == [rec1.encode(), rec2.encode()]
    assert records[1].value == {"name": "Zoë Ångström", "n": 1.5}
    assert [r.position for r in records] == ["b0#0", "b0#1"]
    assert all(r.error_code is None for r in records)
    # A member other than records is kept too, as an undecodable record with its bytes.
    assert (extra.raw, extra.error_code) == (b'"extra": {"x": [1,2]}', "body-extra-member")


def test_record_hash_is_of_bytes_and_content_uid_ignores_layout():
    a, b = decode_body(body('{"records":[{"a":1,"b":[2,3]},{ "b": [2, 3], "a": 1 }]}'))
    assert a.record_hash != b.record_hash
    assert a.content_uid() == b.content_uid()
    (c,) = decode_body(body('{"records":[{"a":2,"b":[2,3]}]}'))
    assert c.content_uid() != a.content_uid()


def test_truncated_body_keeps_complete_records_and_dead_letters_the_rest():
    raw = '{"records":[{"a":1},{"b":2},{"c":'
    records = decode_body(body(raw))
    assert [r.value for r in records[:2]] == [{"a": 1}, {"b": 2}]
    rest = records[2]
    assert rest.error_code == "body-malformed"
    assert "after the last complete record" in (rest.error or "")
    assert rest.raw == b',{"c":'
    assert raw.encode().endswith(rest.raw)


@pytest.mark.parametrize(
    ("raw", "code", "message"),
    [
        (b"", "body-empty", "body is empty"),
        (b"not json", "body-malformed", "body is not valid JSON"),
        (b"[1,2]", "body-not-object", "body is a JSON list, not an object with records"),
        (b'{"value": []}', "body-no-records", "body has no records array"),
        (b"\xff\xfe{", "body-not-utf8", "body is not valid UTF-8 (byte 0)"),
    ],
)
def test_bad_bodies_become_one_dead_record_with_a_reason(raw, code, message):
    (record,) = decode_body(body(raw))
    assert (record.error_code, record.error, record.raw) == (code, message, raw)


def test_bad_records_inside_a_good_body_are_flagged_not_fatal():
    big = {"pad": "x" * 3000}
    deep = json.loads("[" * 80 + "]" * 80)
    raw = json.dumps({"records": [{"ok": 1}, "text", 7, big, {"deep": deep}]})
    records = decode_body(body(raw), max_record_bytes=2048)
    assert [r.error_code for r in records] == [
        None,
        "record-not-object",
        "record-not-object",
        "record-too-large",
        "record-too-deep",
    ]
    assert records[1].error == "record is a JSON str, not an object"
    assert records[3].error == "record is 2 KiB, over the 2 KiB limit"
    assert "nested 81 levels deep" in (records[4].error or "")
    assert all(r.value is None for r in records[1:])


def test_recursion_beyond_the_decoder_stack_is_a_dead_letter():
    raw = '{"records":[{"ok":1},' + "[" * 100_000 + "]" * 100_000 + "]}"
    records = decode_body(body(raw))
    assert records[0].value == {"ok": 1}
    assert records[1].error_code == "record-too-deep"


def test_byte_order_mark_and_key_casing_are_tolerated():
    (record,) = decode_body(body('\ufeff{"Records":[{"a":1}]}'))
    assert record.value == {"a": 1}


def test_local_files_of_every_supported_shape(tmp_path: Path):
    one = '{"records":[{"a":1}]}'
    (tmp_path / "single.json").write_text(one)
    (tmp_path / "array.json").write_text(f"[{one},\n {one}]")
    (tmp_path / "lines.jsonl").write_text(f"{one}\n\n{one}\r\n")
    (tmp_path / "lines.ndjson.gz").write_bytes(gzip.compress(f"{one}\n".encode()))
    (tmp_path / "notes.txt").write_text("ignored")
    nested = tmp_path / "sub"
    nested.mkdir()
    (nested / "more.json").write_text(one)
    files = discover([tmp_path])
    assert [f.relative_to(tmp_path).as_posix() for f in files] == [
        "array.json",
        "lines.jsonl",
        "lines.ndjson.gz",
        "single.json",
        "sub/more.json",
    ]
    positions = [b.position for f in files for b in read_file_bodies(f)]
    assert positions == [
        "array.json[0]",
        "array.json[1]",
        "lines.jsonl:1",
        "lines.jsonl:3",
        "lines.ndjson.gz:1",
        "single.json",
        "more.json",
    ]
    bodies = [b for f in files for b in read_file_bodies(f)]
    assert all(b.data == one.encode() for b in bodies)


def test_missing_paths_and_empty_dirs_are_input_errors(tmp_path: Path):
    with pytest.raises(InputError, match="no such file or directory"):
        discover([tmp_path / "nope.json"])
    with pytest.raises(InputError, match="no input files found"):
        discover([tmp_path])


def test_corrupt_gzip_is_an_input_error(tmp_path: Path):
    bad = tmp_path / "bad.jsonl.gz"
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(InputError, match="cannot read"):
        list(read_file_bodies(bad))
