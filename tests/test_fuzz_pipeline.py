"""Property-based fuzz (issue #12): the decoder and every normaliser, through the real Pipeline
with a local archive, on random, mutated and hostile input.

For every body: no exception escapes, every record ends as exactly one of event, dead-letter
or counted skip (`Counts.accounted`), every output model serialises, and the raw archive holds
every byte of the body but the envelope's own syntax. The example budget comes from the
hypothesis profile in conftest.py (`--hypothesis-profile fuzz-long` for a longer run).
"""

from __future__ import annotations

import base64
import copy
import json
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from phiwatch.archive.archive import decode_lines
from phiwatch.batch import Batch
from phiwatch.config import Settings
from phiwatch.envelope import Body, decode_body
from phiwatch.pipeline import Pipeline
from phiwatch.wiring import build_pipeline
from tests import records
from tests.conftest import TEST_KEY_HEX, TEST_SIGNING_SEED_HEX

# What may be left of a body once every raw record's bytes are taken out: JSON whitespace,
# structure, a BOM, and the `records` keys themselves (any casing).
ENVELOPE_SYNTAX = re.compile(rb'(?:[ \t\n\r{}\[\],:]|\xef\xbb\xbf|"records")*', re.IGNORECASE)

SURROGATE_TEXTS = ["\ud800", "a\udfffb", "\udc00\ud800", "x\udbff", "\ud83d\ude00"]
HOSTILE_TIMES = [
    "0001-01-01T00:00:30Z",
    "0001-01-01T00:00:00+05:00",
    "9999-12-31T23:59:59-05:00",
    "9999-12-31T23:59:59.9999999Z",
    "1999-12-31T23:59:59Z",
    "2100-01-01T00:00:00Z",
    "2026-11-02T08:00:00Z",
    "2026-13-45T99:00:00Z",
    "11/02/2026 08:00:00 AM",
    "nan",
]
HUGE_NUMBERS = [10**400, -(10**400), 2**64, -(2**63) - 1, 10**19, 5e-324, 1e308, -0.0, 1e11 + 1]
ODD_TEXTS = [
    "",
    " ",
    "Patient/\ud800",
    "Patient/123/_history/\udc00",
    "::ffff:10.0.0.1",
    "[2001:db8::1]:443",
    "{'a': 1}",
    '{"x":"\\ud800"}',
    '{"claims":{"oid":"\\udc00"}}',
    "x" * 5000,
]

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(HUGE_NUMBERS),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(SURROGATE_TEXTS + HOSTILE_TIMES + ODD_TEXTS),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
# For a field of a real record: each kind of hostile value as likely as any JSON value.
hostile_values = st.one_of(
    st.sampled_from(SURROGATE_TEXTS),
    st.sampled_from(HOSTILE_TIMES),
    st.sampled_from([*HUGE_NUMBERS, float("nan"), float("inf"), float("-inf")]),
    st.sampled_from(ODD_TEXTS),
    json_values,
)


def dumps(value: Any) -> str:
    # ensure_ascii writes a lone surrogate as its escape, allow_nan the bare NaN token: both
    # as a hostile producer would.
    return json.dumps(value, ensure_ascii=True, allow_nan=True)


# ------------------------------------------------------------------ bodies


@st.composite
def envelopes(draw: st.DrawFn) -> bytes:
    """Bodies around valid-ish records: duplicate keys, extra members, concatenation,
    trailing data, deep nesting, huge integers, a BOM."""
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        members = []
        for _ in range(draw(st.integers(0, 3))):
            key = draw(st.sampled_from(["records", "Records", "RECORDS", "value", "x"]))
            if key.lower() == "records" and draw(st.booleans()):
                items = draw(st.lists(json_values, max_size=4))
                value = "[" + ",".join(dumps(i) for i in items) + "]"
            else:
                value = dumps(draw(json_values))
            members.append(f'"{key}":{value}')
        parts.append("{" + ",".join(members) + "}")
    text = draw(st.sampled_from(["", " ", "\n"])).join(parts)
    extra = draw(
        st.sampled_from(
            ["", " trailing", "[1,2]", "}", '"x"', "[" * 200 + "]" * 200, "9" * 5000, " \x00"]
        )
    )
    data = (text + extra).encode()
    if draw(st.booleans()):
        data = b"\xef\xbb\xbf" + data
    return data


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(0, 3))):
        if not data:
            break
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["truncate", "insert", "delete", "flip"]))
        if op == "truncate":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(
                st.sampled_from([b"\\ud800", b"NaN", b"}", b"{", b",", b'"', b"\xff", b"[" * 70])
            )
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        elif at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
    return bytes(data)


real_bodies = st.lists(
    st.sampled_from(
        [records.keyvault(), records.fhir(1), records.activity(2), records.fhir(3, status=403)]
    ),
    min_size=1,
    max_size=3,
).map(lambda rs: dumps({"records": rs}).encode())

bodies = st.one_of(
    st.binary(max_size=200),
    envelopes(),
    mutated(envelopes()),
    mutated(real_bodies),
)


# ------------------------------------------------------------------ records of every source


def paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path in a record (objects only), leaves and inner nodes."""
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            found.append((*prefix, key))
            found.extend(paths(item, (*prefix, key)))
    return found


def source_records() -> list[dict[str, Any]]:
    return [
        records.keyvault(),
        records.keyvault(1, status=403, long_claims=True, upn="bob@contoso-health.org"),
        records.fhir(2),
        records.fhir(3, path="Observation?patient=123", interaction="search"),
        records.fhir(3, path="Patient?identifier=urn:oid:1.2|4471992", interaction="search-type"),
        records.fhir_on_behalf(3),
        records.activity(4),
        records.activity(
            5,
            operation="MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/WRITE",
            request_body=json.dumps({"properties": {"logs": [{"enabled": False}]}}),
        ),
        records.signin(6),
        records.signin(7, category="NonInteractiveUserSignInLogs", result="50126"),
        records.workload_signin(8, category="ManagedIdentitySignInLogs"),
        records.entra_audit(9),
        records.sql(6),
        records.sql(7, statement="DELETE FROM dbo.notes WHERE mrn = 'MRN1'", affected_rows="3"),
        records.sql_failed_login(8),
        # A write's Start (its request body buffered for NewValue) and its terminal record.
        *(
            records.activity(
                6,
                operation="MICROSOFT.AUTHORIZATION/ROLEASSIGNMENTS/WRITE",
                result=result,
                request_body=json.dumps({"Properties": {"RoleDefinitionId": "r", "Scope": "/"}})
                if result == "Start"
                else None,
            )
            for result in ("Start", "Success")
        ),
        records.storage(6),
        records.storage(7, auth="SAS", status="403", status_text=None, response_bytes="0"),
        records.storage(8, operation="ListBlobs", auth="Anonymous", ip="<null>"),
        records.storage(9, operation="DeleteBlob", auth="AccountKey", ip="[2001:db8::5]:443"),
    ]


@st.composite
def hostile_records(draw: st.DrawFn) -> dict[str, Any]:
    record = copy.deepcopy(draw(st.sampled_from(source_records())))
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(paths(record) or [("time",)]))
        parent = record
        for key in path[:-1]:
            parent = parent[key]
        if not isinstance(parent, dict):
            continue
        op = draw(
            st.sampled_from(["set", "set", "surrogate", "time", "delete", "recase", "as-text"])
        )
        key = path[-1]
        if op == "surrogate" and isinstance(parent.get(key), str):
            # Keeps the field's meaning, so the record still reaches its event.
            text = parent[key]
            at = draw(st.integers(0, len(text)))
            parent[key] = text[:at] + draw(st.sampled_from(SURROGATE_TEXTS[:4])) + text[at:]
        elif op == "time":
            record[draw(st.sampled_from(["time", "Time"]))] = draw(
                st.sampled_from([*HOSTILE_TIMES, *HUGE_NUMBERS, float("nan")])
            )
        elif op == "delete":
            parent.pop(key, None)
        elif op == "recase" and key in parent:
            parent[key.upper()] = parent.pop(key)
        elif op == "as-text" and key in parent:
            parent[key] = dumps(parent[key])  # `properties` as JSON text, as Azure sends it
        else:
            parent[key] = draw(hostile_values)
    return record


record_bodies = st.lists(hostile_records(), min_size=1, max_size=4).map(
    lambda rs: dumps({"records": rs}).encode()
)


# ------------------------------------------------------------------ properties


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    home = tmp_path_factory.mktemp("fuzz-home")
    settings = Settings(
        pseudonym_key=TEST_KEY_HEX, archive_signing_key=TEST_SIGNING_SEED_HEX, home=home
    )
    return build_pipeline(settings, tmp_path_factory.mktemp("fuzz") / "archive")


class Positions:
    next = 0


def check_every_byte_archived(body: bytes, raws: list[bytes]) -> None:
    cursor = 0
    for raw in raws:
        at = body.find(raw, cursor)
        assert at >= 0, f"raw record {raw[:60]!r} is not a span of the body"
        assert ENVELOPE_SYNTAX.fullmatch(body[cursor:at]), body[cursor:at][:80]
        cursor = at + len(raw)
    assert ENVELOPE_SYNTAX.fullmatch(body[cursor:]), body[cursor:][:80]


def archived_raw(pipeline: Pipeline, batch: Batch) -> list[bytes]:
    root: Path = pipeline.archive.store.root  # type: ignore[attr-defined]
    (path,) = list((root / "raw").rglob(f"{batch.name}.jsonl.gz"))
    lines = [orjson.loads(line) for line in decode_lines(path.read_bytes())]
    return [
        line["Raw"].encode() if "Raw" in line else base64.b64decode(line["RawBase64"])
        for line in lines
    ]


def run_body(pipeline: Pipeline, data: bytes) -> None:
    Positions.next += 1
    batch = Batch("fuzz", Positions.next, Positions.next, [Body(data, "fuzz", "b")])
    decoded = decode_body(batch.bodies[0])
    result = pipeline.process(batch)  # nothing may escape

    counts = result.counts
    assert counts.records == len(decoded)
    assert counts.accounted, counts.as_dict()
    for model in [*result.events, *result.dead_letters, *result.alerts]:
        orjson.loads(model.to_json())
    assert result.health is not None
    result.health.to_json()
    orjson.dumps(counts.as_dict())

    raws = archived_raw(pipeline, batch)
    assert raws == [r.raw for r in decoded]
    check_every_byte_archived(data, raws)


@given(data=bodies)
def test_fuzz_decoder_and_pipeline_on_random_and_mutated_bodies(pipeline, data):
    run_body(pipeline, data)


@given(data=record_bodies)
def test_fuzz_every_normaliser_with_hostile_field_values(pipeline, data):
    run_body(pipeline, data)


@given(data=bodies)
def test_fuzz_decoder_alone_never_raises_and_covers_every_byte(data):
    decoded = decode_body(Body(data, "fuzz", "b"))
    check_every_byte_archived(data, [r.raw for r in decoded])
    for record in decoded:
        assert (record.value is None) == (record.error_code is not None)
        if record.value is not None:
            record.content_uid()
