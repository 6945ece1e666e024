"""Issue #12 item 4: every byte of a body is a raw record, and EventUids tell NaN from null."""

from __future__ import annotations

import json

import pytest

from phiwatch.envelope import Body, decode_body
from tests import records
from tests.harness import make_pipeline

A = '{"category":"A","n":1}'
B = '{"category":"B","n":2}'


def decode(data: str | bytes) -> list:
    raw = data.encode() if isinstance(data, str) else data
    return decode_body(Body(data=raw, stream="test", position="b0"))


@pytest.mark.parametrize(
    "data",
    [
        f'{{"records":[{A}],"records":[{B}]}}',
        f'{{"records":[{A}],"Records":[{B}]}}',
        f'{{"records":[{A}]}}{{"records":[{B}]}}',
        f'{{"records":[{A}]}}\n  {{"records":[{B}]}}',
    ],
)
def test_a_second_records_array_or_body_gives_records_too(data):
    decoded = decode(data)
    assert [r.raw for r in decoded] == [A.encode(), B.encode()]
    assert [r.error_code for r in decoded] == [None, None]
    assert [r.position for r in decoded] == ["b0#0", "b0#1"]


def test_trailing_data_after_the_body_is_a_dead_record_holding_those_bytes():
    decoded = decode(f'{{"records":[{A}]}} trailing [1,2] ')
    assert [r.raw for r in decoded] == [A.encode(), b"trailing [1,2] "]
    assert decoded[1].error_code == "body-trailing-data"
    assert decoded[1].position == "b0#trailing"


def test_a_truncated_second_body_keeps_the_first_and_the_rest_is_dead():
    decoded = decode(f'{{"records":[{A}]}}{{"records":[{B[:9]}')
    assert decoded[0].raw == A.encode()
    assert decoded[1].error_code == "body-malformed"
    assert decoded[1].raw == f'{{"records":[{B[:9]}'.encode()


def test_records_not_an_array_next_to_a_records_array_is_kept_as_a_member():
    decoded = decode(f'{{"records":"x","Records":[{A}]}}')
    assert [(r.raw, r.error_code) for r in decoded] == [
        (b'"records":"x"', "body-extra-member"),
        (A.encode(), None),
    ]


def test_the_pipeline_counts_and_archives_every_record_of_such_bodies(tmp_path):
    from phiwatch.archive.archive import decode_lines
    from phiwatch.batch import Batch

    kv1, kv2 = records.keyvault(0), records.keyvault(5, operation="SecretList")
    body = (
        json.dumps({"records": [kv1], "Records": [kv2]})
        + json.dumps({"records": [records.fhir(1)]})
        + "garbage"
    )
    pipeline, _ = make_pipeline(tmp_path)
    result = pipeline.process(Batch("t", 0, 0, [Body(body.encode(), "t", "b0")]))
    counts = result.counts
    assert (counts.records, counts.event_records) == (4, 3)
    assert dict(counts.dead_letters) == {"body-trailing-data": 1}
    assert counts.accounted
    (raw_name,) = [p for p in (pipeline.archive.store.root / "raw").rglob("*.jsonl.gz")]
    lines = [json.loads(line) for line in decode_lines(raw_name.read_bytes())]
    archived = "".join(line["Raw"] for line in lines)
    assert archived == json.dumps(kv1) + json.dumps(kv2) + json.dumps(records.fhir(1)) + "garbage"


# EventUids computed on the code from before issue #12 (AlertIds derive from them): the
# canonical form of every record without NaN/Infinity must not change.
PINNED_UIDS = [
    (json.dumps(records.keyvault()), "63bb3340ea9a9c73ad15580c5e95e2f7"),
    (json.dumps(records.fhir()), "e86bb210b2d540d46ceb943676fc650b"),
    (json.dumps(records.activity()), "6bbc14b3a26d8ad6648a1023d4ea0a17"),
    (
        '{"a":1,"b":[2,3],"s":"Zo\u00eb \\u00c5ngstr\\u00f6m","f":1.5e3,"n":null,"t":true}',
        "d610561effd0f8e2406d0a62c89a0012",
    ),
    (
        '{"big":123456789012345678901234567890,"x":"NaN","y":"Infinity"}',
        "ac2a15d8540e14befc2e523bec015de5",
    ),
    ('{"emoji":"\\ud83d\\ude00","k":[{},[],""]}', "003fe4161684ba8cd11152e9247db9f5"),
    # Beyond 64 bits the stdlib form was used already, NaN included: unchanged too.
    ('{"big":1234567890123456789012345,"v":NaN}', "0b0ae03cf4c1f66631cd36d9ebc8ef82"),
    ('{"v":null}', "aae9e223dcdc02dfd8149da8c25b9536"),
]


@pytest.mark.parametrize(("record", "uid"), PINNED_UIDS)
def test_event_uids_of_records_without_nan_are_what_they_were(record, uid):
    (decoded,) = decode(f'{{"records":[{record}]}}')
    assert decoded.content_uid() == uid


def test_nan_infinities_and_null_give_four_event_uids():
    uids = {
        decode(f'{{"records":[{{"v":{token}}}]}}')[0].content_uid()
        for token in ("NaN", "null", "Infinity", "-Infinity")
    }
    assert len(uids) == 4


def test_nan_inside_text_is_not_a_nan():
    (text,) = decode('{"records":[{"v":"NaN"}]}')
    (number,) = decode('{"records":[{"v":NaN}]}')
    assert text.content_uid() != number.content_uid()
