"""The Start buffer of Activity Log changes: bounded by count and age, and following the
pipeline's commit/rollback rule, so a retried batch derives the same events."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phiwatch.sources.activity_changes import StartBuffer, change_key
from tests.harness import batches_of, make_pipeline
from tests.records import STORAGE_ID, activity

OP = "MICROSOFT.STORAGE/STORAGEACCOUNTS/WRITE"


def key(i: int):
    return change_key(f"corr-{i}", OP, STORAGE_ID)


def test_keys_need_a_correlation_id_and_ignore_case():
    assert change_key(None, OP, STORAGE_ID) is None
    assert change_key("", OP, STORAGE_ID) is None
    assert change_key("ABC", OP.lower(), STORAGE_ID) == change_key("abc", OP, STORAGE_ID.lower())


def test_the_count_cap_lets_the_oldest_go():
    buffer = StartBuffer(max_entries=3)
    for i in range(5):
        buffer.put(key(i), {"n": i}, float(i))
        buffer.commit(float(i))
    assert len(buffer) == 3
    assert buffer.take(key(0)) is None and buffer.take(key(1)) is None
    assert buffer.take(key(4)) == ({"n": 4}, ())


def test_entries_older_than_the_horizon_go_at_commit():
    buffer = StartBuffer(horizon=100.0)
    buffer.put(key(1), {"n": 1}, 1000.0)
    buffer.put(key(2), {"n": 2}, 1050.0)
    buffer.commit(1000.0)
    assert len(buffer) == 2
    buffer.commit(1120.0)  # 1000 is past the horizon, 1050 is not
    assert len(buffer) == 1
    assert buffer.take(key(2)) == ({"n": 2}, ())


def test_an_empty_clock_expires_nothing():
    buffer = StartBuffer(horizon=1.0)
    buffer.put(key(1), {"n": 1}, 5.0)
    buffer.commit(float("-inf"))
    assert len(buffer) == 1


def test_rollback_forgets_the_batch_puts_and_takes():
    buffer = StartBuffer()
    buffer.put(key(1), {"n": 1}, 1.0)
    buffer.commit(1.0)
    # A failed batch: takes the committed entry, puts another, then rolls back.
    assert buffer.take(key(1)) == ({"n": 1}, ())
    assert buffer.take(key(1)) is None  # taken within the batch
    buffer.put(key(2), {"n": 2}, 2.0)
    buffer.rollback()
    assert len(buffer) == 1
    assert buffer.take(key(2)) is None
    assert buffer.take(key(1)) == ({"n": 1}, ())  # its retry sees it again
    buffer.commit(2.0)
    assert len(buffer) == 0


def test_a_later_put_merges_over_the_earlier_one():
    buffer = StartBuffer()
    buffer.put(key(1), {"a": 1, "b": 1}, 5.0)
    buffer.commit(5.0)
    buffer.put(key(1), {"b": 2}, 6.0)
    assert buffer.take(key(1)) == ({"a": 1, "b": 2}, ())
    buffer.commit(6.0)
    assert len(buffer) == 0


def test_a_put_replacing_a_committed_entry_keeps_one_entry():
    buffer = StartBuffer()
    buffer.put(key(1), {"a": 1}, 5.0)
    buffer.commit(5.0)
    buffer.put(key(1), {"a": 2}, 6.0)
    buffer.commit(6.0)
    assert len(buffer) == 1
    assert buffer.take(key(1)) == ({"a": 2}, ())


def test_max_entries_must_be_positive():
    with pytest.raises(ValueError):
        StartBuffer(max_entries=0)


_ops = st.lists(
    st.tuples(
        st.sampled_from(["put", "take", "commit", "rollback"]),
        st.integers(0, 6),
        st.integers(0, 400),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(ops=_ops, cap=st.integers(1, 5))
def test_bounded_and_a_rollback_restores_the_committed_state(ops, cap):
    """After any sequence: at most `cap` entries held after a commit, and a rollback leaves
    exactly what the last commit left."""
    buffer = StartBuffer(max_entries=cap, horizon=100.0)
    committed: dict = {}
    clock = 0.0
    for op, i, t in ops:
        if op == "put":
            buffer.put(key(i), {"i": i, "t": t}, float(t))
        elif op == "take":
            buffer.take(key(i))
        elif op == "commit":
            clock = max(clock, float(t))
            buffer.commit(clock)
            assert len(buffer) <= cap
            committed = {k: (v.stamp, v.change) for k, v in buffer._held.items()}
        else:
            buffer.rollback()
            assert {k: (v.stamp, v.change) for k, v in buffer._held.items()} == committed
            assert not buffer._added and not buffer._taken


# ---------------------------------------------------------------- through the pipeline


def _write(result: str, seconds: float = 30) -> dict:
    body = json.dumps({"properties": {"allowBlobPublicAccess": True}})
    return activity(
        seconds,
        operation=OP,
        resource_id=STORAGE_ID,
        result=result,
        request_body=body if result == "Start" else None,
    )


def test_a_start_in_one_batch_reaches_its_success_in_the_next(tmp_path):
    pipeline, sink = make_pipeline(tmp_path)
    first, second = batches_of([_write("Start"), _write("Success")], per_body=1, bodies_per_batch=1)
    result = pipeline.process(first)
    assert (result.counts.events, dict(result.counts.skipped)) == (0, {"non-terminal": 1})
    assert len(pipeline.changes) == 1
    pipeline.process(second)
    (event,) = sink.events
    assert json.loads(event.new_value) == {"allowBlobPublicAccess": True}
    assert len(pipeline.changes) == 0


def test_a_retried_batch_derives_the_same_new_value(tmp_path, monkeypatch):
    pipeline, _ = make_pipeline(tmp_path)
    first, second = batches_of([_write("Start"), _write("Success")], per_body=1, bodies_per_batch=1)
    pipeline.process(first)
    seal = pipeline.archive.seal
    calls = {"n": 0}

    def failing_once(**kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("archive unavailable")
        return seal(**kwargs)

    monkeypatch.setattr(pipeline.archive, "seal", failing_once)
    with pytest.raises(OSError):
        pipeline.process(second)  # took the Start, then failed: rolled back
    assert len(pipeline.changes) == 1
    result = pipeline.process(second)
    (event,) = result.events
    assert json.loads(event.new_value) == {"allowBlobPublicAccess": True}


def test_a_failed_batch_that_held_the_start_leaves_nothing(tmp_path, monkeypatch):
    pipeline, _ = make_pipeline(tmp_path)
    (only,) = batches_of([_write("Start")], per_body=1, bodies_per_batch=1)

    def failing(**kwargs):
        raise OSError("archive unavailable")

    monkeypatch.setattr(pipeline.archive, "seal", failing)
    with pytest.raises(OSError):
        pipeline.process(only)
    assert len(pipeline.changes) == 0 and len(pipeline.changes._added) == 0
