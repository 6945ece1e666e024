"""The dedupe set (phiwatch/dedupe.py): its semantics, and the mechanism that keeps a commit
at the count cap as cheap as one far below it (issue #12 item 2: the old dict trimmed from
the front with next(iter(...)) rescanned its dead slots, 0.4 → 442 ms per commit at 500,000).

No timings: the work a trim does is counted (`trim_steps`), and memory is traced."""

from __future__ import annotations

import hashlib
import tracemalloc

import pytest

from phiwatch.dedupe import DEDUPE_HORIZON_SECONDS, DEDUPE_MAX_ENTRIES, SeenUids
from tests.harness import batches_of, make_pipeline
from tests.records import fhir


def uid(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()[:32]


def fill(seen: SeenUids, start: int, count: int, now: float, expire_before: float) -> None:
    for i in range(start, start + count):
        assert not seen.check_and_add(uid(i))
    seen.commit(now, expire_before)


# ------------------------------------------------------------------------------ semantics


def test_a_uid_is_a_duplicate_while_pending_and_after_commit():
    seen = SeenUids()
    assert not seen.check_and_add(uid(1))
    assert seen.check_and_add(uid(1))  # twice in one batch
    seen.commit(100.0, 0.0)
    assert seen.check_and_add(uid(1))
    assert len(seen) == 1


def test_rollback_forgets_only_the_failed_batch():
    seen = SeenUids()
    fill(seen, 0, 3, 100.0, 0.0)
    assert not seen.check_and_add(uid(10))
    seen.rollback()
    assert not seen.check_and_add(uid(10))  # the retry is not its own duplicate
    assert seen.check_and_add(uid(0))  # committed ones stay
    seen.rollback()
    assert len(seen) == 3


def test_expiry_by_event_time_horizon():
    seen = SeenUids()
    fill(seen, 0, 5, 100.0, 0.0)
    fill(seen, 5, 5, 200.0, 0.0)
    seen.commit(300.0, 100.0)  # stamped 100 is not before 100: kept
    assert len(seen) == 10
    seen.commit(300.0, 150.0)
    assert len(seen) == 5
    assert not seen.check_and_add(uid(0))  # let go: seen as new again
    assert seen.check_and_add(uid(5))


def test_the_cap_lets_the_oldest_go_first():
    seen = SeenUids(max_entries=10)
    fill(seen, 0, 6, 1.0, 0.0)
    fill(seen, 6, 6, 2.0, 0.0)
    assert len(seen) == 10
    assert not seen.check_and_add(uid(0)) and not seen.check_and_add(uid(1))
    seen.rollback()
    assert all(seen.check_and_add(uid(i)) for i in range(2, 12))


def test_uids_that_are_not_hex_digests_still_dedupe():
    seen = SeenUids()
    for value in ("x" * 32, "short", uid(1).upper()):
        assert not seen.check_and_add(value)
        assert seen.check_and_add(value)


def test_the_pipeline_drops_a_redelivered_batch(tmp_path):
    pipeline, _ = make_pipeline(tmp_path)
    records = [fhir(i, path=f"Patient/{i}") for i in range(20)]
    (batch,) = batches_of(records, per_body=10, bodies_per_batch=2)
    first = pipeline.process(batch)
    assert first.counts.skipped.get("duplicate", 0) == 0 and first.counts.event_records == 20
    again = pipeline.process(batch)
    assert again.counts.skipped["duplicate"] == 20


# ------------------------------------------------------------------------------ the mechanism


def test_trim_work_per_commit_is_constant_at_and_beyond_the_cap():
    """At the production cap, with event time inside the horizon (a busy hour), each commit
    of 1,000 new ids lets 1,000 old ones go: the trim looks at those ids and at most a couple
    of stamps, however many ids went before."""
    seen = SeenUids()
    now = 1_000_000.0
    fill(seen, 0, DEDUPE_MAX_ENTRIES, now, now - DEDUPE_HORIZON_SECONDS)
    assert len(seen) == DEDUPE_MAX_ENTRIES
    steps = []
    for k in range(30):
        before = seen.trim_steps
        now += 1.0
        fill(seen, DEDUPE_MAX_ENTRIES + 1000 * k, 1000, now, now - DEDUPE_HORIZON_SECONDS)
        steps.append(seen.trim_steps - before)
        assert len(seen) == DEDUPE_MAX_ENTRIES
    assert max(steps) <= 1000 + 3
    assert steps[-1] == steps[1]  # the same at the 30th commit beyond the cap as at the 2nd


def test_an_expired_commit_costs_its_ids_not_the_whole_set():
    seen = SeenUids()
    for k in range(200):
        fill(seen, 100 * k, 100, float(k), -1.0)
    before = seen.trim_steps
    seen.commit(200.0, 10.0)  # commits stamped 0..9 expire
    assert len(seen) == 190 * 100
    assert seen.trim_steps - before == 10 * 100 + 11  # 10 commits let go, 11 stamps looked at


def test_memory_is_bounded_by_the_cap():
    """Push six caps' worth of ids through: what the set holds stays what it held at the
    cap (the deleted entries of the old dict were kept until a resize), about 100 bytes an
    id (16-byte digests, not 32-character strings)."""
    cap = 50_000
    uids = [uid(i) for i in range(6 * cap)]
    tracemalloc.start()
    try:
        seen = SeenUids(max_entries=cap)
        base = tracemalloc.get_traced_memory()[0]
        for k in range(0, cap, 1000):
            for u in uids[k : k + 1000]:
                seen.check_and_add(u)
            seen.commit(float(k), -1.0)
        at_cap = tracemalloc.get_traced_memory()[0] - base
        for k in range(cap, 6 * cap, 1000):
            for u in uids[k : k + 1000]:
                seen.check_and_add(u)
            seen.commit(float(k), -1.0)
        after = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert len(seen) == cap
    assert after <= at_cap * 1.1
    # A 32-character str alone is 81 bytes; a held id costs less than that plus its slots.
    assert at_cap / cap < 120


@pytest.mark.parametrize("cap", [0, -1])
def test_a_cap_below_one_is_refused(cap):
    with pytest.raises(ValueError):
        SeenUids(max_entries=cap)


def test_pipeline_uses_the_bounded_set(tmp_path):
    pipeline, _ = make_pipeline(tmp_path)
    assert isinstance(pipeline.seen, SeenUids)
    assert pipeline.seen.max_entries == DEDUPE_MAX_ENTRIES
