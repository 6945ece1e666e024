"""The actor baseline every actor rule carries: bounded in days and in actors."""

from __future__ import annotations

from phiwatch.detect import snapshot
from phiwatch.detect.kinds import baseline
from phiwatch.detect.kinds.baseline import DAYS, DailyCounts


def test_days_beyond_the_baseline_are_let_go():
    counts = DailyCounts()
    for day in range(40):
        counts.add("oid:a", day)
    assert len(counts.days["oid:a"]) == DAYS + 1
    assert counts.usual("oid:a", 40) == (1.0, DAYS)
    assert counts.usual("oid:b", 40) == (None, 0)


def test_the_actor_seen_least_recently_goes_first(monkeypatch):
    monkeypatch.setattr(baseline, "MAX_ACTORS", 3)
    counts = DailyCounts()
    for day, key in enumerate(["oid:a", "oid:b", "oid:c", "oid:a", "oid:d"]):
        counts.add(key, day)
    assert sorted(counts.days) == ["oid:a", "oid:c", "oid:d"]


def test_it_expires_idle_actors_and_survives_a_snapshot():
    counts = DailyCounts()
    counts.add("oid:old", 0)
    counts.add("oid:new", 30)
    counts.expire(31 * 86400.0)
    assert list(counts.days) == ["oid:new"]
    restored = snapshot.loads(snapshot.dumps({"b": counts}))["b"]
    assert restored.days == counts.days and restored.last_day == counts.last_day


def test_a_restored_baseline_evicts_the_same_actor(monkeypatch):
    monkeypatch.setattr(baseline, "MAX_ACTORS", 3)
    counts = DailyCounts()
    for day, key in enumerate(["oid:c", "oid:a", "oid:b", "oid:c"]):
        counts.add(key, day)
    restored = snapshot.loads(snapshot.dumps({"b": counts}))["b"]
    for each in (counts, restored):
        each.add("oid:d", 9)
    # oid:a was seen least recently (oid:c came back), in the original and in the copy.
    assert sorted(counts.days) == sorted(restored.days) == ["oid:b", "oid:c", "oid:d"]
