"""A partition snapshot written by the detect stage before issue #18 (format 1, encoded by
the previous code) restores with today's code, and the partition goes on to emit exactly
the alert versions, in the same order, that an uninterrupted run of the previous code did."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import orjson

from phiwatch.detect import snapshot
from tests.snapshot_stage_scenario import (
    ALERTS,
    CUT,
    PARTITION,
    SNAPSHOT,
    alert_versions,
    detector,
    messages,
)


def test_the_fixture_is_a_format_1_stage_snapshot() -> None:
    doc = orjson.loads(gzip.decompress(SNAPSHOT.read_bytes()))
    assert doc["format"] == 1
    assert doc["state"]["covered"] == CUT - 1
    assert doc["state"]["engine"]["buffer"]  # events wait in the reorder buffer


def test_a_previous_snapshot_restores_and_goes_on_as_before(tmp_path: Path) -> None:
    restored = detector(tmp_path)
    restored.state_store.save(restored._key(PARTITION), SNAPSHOT.read_bytes(), None)
    # A redelivery of the last batch before the cut is covered by the snapshot.
    stream = messages()
    assert restored.process(PARTITION, stream[CUT - 100 : CUT]).covered == 100
    assert alert_versions(restored, stream, CUT) == json.loads(ALERTS.read_text())


def test_todays_snapshot_of_the_restored_state_goes_on_the_same(tmp_path: Path) -> None:
    # Restore the old bytes, save with today's encoder, restore that: same alerts after.
    first = detector(tmp_path / "a")
    first.state_store.save(first._key(PARTITION), SNAPSHOT.read_bytes(), None)
    stream = messages()
    first.process(PARTITION, stream[CUT - 1 : CUT])  # restores; covered, so nothing is saved
    engine = first.engines()[PARTITION]
    again = detector(tmp_path / "b")
    data = snapshot.dumps(
        {"engine": engine.state(), "covered": CUT - 1, "covered_at": None, "seen": []}
    )
    again.state_store.save(again._key(PARTITION), data, None)
    assert alert_versions(again, stream, CUT) == json.loads(ALERTS.read_text())


def test_snapshot_bytes_decode_to_the_previous_document() -> None:
    # Today's encoder writes the same document the previous one did (format 1), so an
    # instance still on the previous version reads it during a rolling upgrade.
    old = orjson.loads(gzip.decompress(SNAPSHOT.read_bytes()))
    state = snapshot.loads(SNAPSHOT.read_bytes())
    assert orjson.loads(gzip.decompress(snapshot.dumps(state))) == old


def test_the_fast_encoder_tags_what_the_general_one_does() -> None:
    from collections import Counter

    value = {
        "floats": [1.5, float("inf"), -float("inf"), -0.0, True, None, "s", 3],
        "tuples": [(1.0, "uid", (None, "p", float("-inf"), None))],
        "keys": {"$odd": 1},
        "ints": {3: "a"},
        "counter": Counter({"x": 2}),
        "set": {"b", "a"},
        "nested": {"k": {"j": [float("inf")]}},
    }
    assert snapshot._encode(value) == {
        "floats": [1.5, {"$f": "inf"}, {"$f": "-inf"}, -0.0, True, None, "s", 3],
        "tuples": [{"$t": [1.0, "uid", {"$t": [None, "p", {"$f": "-inf"}, None]}]}],
        "keys": {"$map": [["$odd", 1]]},
        "ints": {"$map": [[3, "a"]]},
        "counter": {"$counter": [["x", 2]]},
        "set": {"$set": ["a", "b"]},
        "nested": {"k": {"j": [{"$f": "inf"}]}},
    }
    nan = snapshot._encode([float("nan")])[0]
    assert nan == {"$f": "nan"}


def test_the_memo_of_keyed_state_never_goes_stale(tmp_path: Path, monkeypatch) -> None:
    # After every batch the snapshot (written with the keys' memos) is the document an
    # encoding without memos writes of the same state.
    from phiwatch.detect.windows import KeyedState

    plain = snapshot._object_encoder("KeyedState", snapshot._FIELDS[KeyedState])
    memoised = snapshot._BY_TYPE[KeyedState]
    made = detector(tmp_path)
    stream = messages()
    checked = 0
    for at in range(0, len(stream), 100):
        made.process(PARTITION, stream[at : at + 100])
        state = made.engines()[PARTITION].state()
        with_memo = snapshot.dumps(state)
        monkeypatch.setitem(snapshot._BY_TYPE, KeyedState, plain)
        assert snapshot.dumps(state) == with_memo
        monkeypatch.setitem(snapshot._BY_TYPE, KeyedState, memoised)
        checked += 1
    assert checked >= 9
