"""The engine's reorder buffer (arrival order within the delay does not change alerts or
their ids) and its snapshots (a restored engine goes on exactly as one that never stopped)."""

from __future__ import annotations

import random

import orjson
import pytest

import detections
from phiwatch.detect import snapshot
from phiwatch.detect.engine import DetectionEngine
from phiwatch.detect.snapshot import SnapshotError
from tests.harness import batches_of, make_pipeline
from tests.records import activity, at, fhir, keyvault

LATENESS = 900.0
REORDER = 120.0


def events_of(records, tmp_path):
    pipeline, _ = make_pipeline(tmp_path)
    return [e for b in batches_of(records) for e in pipeline.process(b).events]


def scenario(tmp_path):
    # 61 patients read from 08:09:30, one a second: the 51st read (08:10:20) crosses the
    # threshold just after a window-aligned boundary, so an arrival order that completes the
    # burst with an earlier read would anchor (and name) the alert in the 08:00 bucket.
    burst = [fhir(570 + i, path=f"Patient/p{i}") for i in range(61)]
    probing = [keyvault(700 + 7 * i, status=403, secret=f"s{i}") for i in range(6)]
    traffic = [fhir(500 + 10 * i, path="metadata", interaction="capabilities") for i in range(100)]
    return sorted(
        events_of(burst + probing + traffic + [activity(650)], tmp_path),
        key=lambda e: e.time_generated,
    )


def engine(reorder: float = REORDER) -> DetectionEngine:
    return DetectionEngine(detections.load_detections(lateness=LATENESS), LATENESS, reorder)


def run(engine_, events, *, finish=True):
    alerts = {}
    for event in events:
        engine_.process(event, None)
    engine_.advance()
    if finish:
        engine_.finish()
    for alert in engine_.changed_alerts():
        alerts[alert.alert_id] = alert
    engine_.commit()
    return alerts


def shuffled_within(events, seconds: float, seed: int):
    """Arrival order: each event delayed by up to `seconds`, as partitions merge."""
    rng = random.Random(seed)
    return [
        e
        for _, e in sorted(
            (e.time_generated.timestamp() + rng.uniform(0, seconds), e) for e in events
        )
    ]


def test_arrival_order_within_the_reorder_delay_changes_nothing(tmp_path):
    events = scenario(tmp_path)
    expected = run(engine(), events)
    assert {a.rule_id for a in expected.values()} == {
        "mass-record-access",
        "keyvault-failed-operations",
        "diagnostics-disabled",
    }
    for seed in range(5):
        reordered = shuffled_within(events, REORDER * 0.9, seed)
        assert reordered != events
        assert run(engine(), reordered) == expected


def test_without_the_buffer_arrival_order_can_rename_an_alert(tmp_path):
    # What the buffer is for: the same reads in reverse order cross the threshold at an
    # earlier read and the alert gets another id.
    events = scenario(tmp_path)
    burst = [i for i, e in enumerate(events) if e.patient_ref]
    reordered = list(events)
    reordered[burst[0] : burst[-1] + 1] = events[burst[0] : burst[-1] + 1][::-1]
    in_order = {a.rule_id: a.alert_id for a in run(engine(0), events).values()}
    reversed_ = {a.rule_id: a.alert_id for a in run(engine(0), reordered).values()}
    assert in_order["mass-record-access"] != reversed_["mass-record-access"]
    buffered = {a.rule_id: a.alert_id for a in run(engine(), reordered).values()}
    assert buffered == in_order


def test_events_later_than_the_delay_but_in_time_are_still_counted(tmp_path):
    events = scenario(tmp_path)
    burst = [e for e in events if e.patient_ref]
    held_back = burst[:20]  # the start of the burst arrives five minutes late
    rest = [e for e in events if e not in held_back]
    cut = next(i for i, e in enumerate(rest) if e.time_generated >= at(570 + 300))
    eng = engine()
    alerts = run(eng, rest[:cut] + held_back + rest[cut:])
    (mass,) = [a for a in alerts.values() if a.rule_id == "mass-record-access"]
    assert mass.distinct_patient_count == 61 and eng.late == 0 and eng.out_of_order > 0


def test_a_restored_snapshot_goes_on_as_if_never_stopped(tmp_path):
    events = scenario(tmp_path)
    expected = run(engine(), events)
    for cut in (40, 90, 150):
        first = engine()
        alerts = run(first, events[:cut], finish=False)
        data = snapshot.dumps(first.state())
        assert data == snapshot.dumps(first.state())  # the same state, the same bytes
        second = engine()
        second.load_state(snapshot.loads(data))
        alerts.update(run(second, events[cut:]))
        assert alerts == expected, cut


def test_a_restored_engine_ignores_events_it_already_holds(tmp_path):
    events = scenario(tmp_path)
    expected = run(engine(), events)
    first = engine()
    alerts = run(first, events[:100], finish=False)
    second = engine()
    second.load_state(snapshot.loads(snapshot.dumps(first.state())))
    alerts.update(run(second, events[60:]))  # 40 events delivered again after the restore
    assert alerts == expected


def test_snapshot_state_is_bounded_after_expiry(tmp_path):
    events = scenario(tmp_path)
    eng = engine()
    run(eng, events, finish=False)
    later = [
        e.model_copy(
            update={"time_generated": e.time_generated.replace(hour=12), "event_uid": f"later-{i}"}
        )
        for i, e in enumerate(events[-60:])
    ]
    run(eng, later, finish=False)
    state = snapshot.loads(snapshot.dumps(eng.state()))
    # Each rule's state is what its parts declared, by part name.
    assert len(state["detections"]["mass-record-access"]["value_count"]) <= 1
    assert state["detections"]["diagnostics-disabled"]["absence"].pending == {}


@pytest.mark.parametrize(
    "state",
    [
        {"$obj": "Popen", "fields": {"args": ["sh"]}},
        {"$class": "system"},
        {"$obj": "AlertBook", "fields": {"_open": {}, "_changed": {}, "raised": {}, "x": 1}},
    ],
)
def test_a_snapshot_cannot_build_anything_but_state_classes(state):
    import gzip

    data = gzip.compress(orjson.dumps({"format": 1, "state": {"x": state}}))
    with pytest.raises(SnapshotError):
        snapshot.loads(data)


def test_a_snapshot_of_another_format_is_refused():
    import gzip

    with pytest.raises(SnapshotError, match="unsupported snapshot format 2"):
        snapshot.loads(gzip.compress(orjson.dumps({"format": 2, "state": {}})))
    with pytest.raises(SnapshotError, match="not gzip"):
        snapshot.loads(b"{}")
