"""A snapshot written by the v1 rule layout (before rules were declarations) restores: the
partition goes on and raises exactly the alerts an uninterrupted v1 run raised."""

from __future__ import annotations

import json

import orjson
import pytest
from structlog.testing import capture_logs

import detections
from phiwatch.detect import legacy_v1, snapshot
from phiwatch.detect.engine import DetectionEngine
from tests.snapshot_v1_scenario import (
    ALERTS,
    CUT,
    LATENESS,
    REORDER,
    SNAPSHOT,
    after_cut,
    events,
)


def engine() -> DetectionEngine:
    return DetectionEngine(detections.load_detections(lateness=LATENESS), LATENESS, REORDER)


def finish(eng: DetectionEngine, stream) -> dict[str, dict]:
    for event in stream:
        eng.process(event, None)
    eng.advance()
    eng.finish()
    return {a.alert_id: json.loads(a.to_json()) for a in eng.changed_alerts()}


@pytest.fixture(scope="module")
def stream():
    return events()


def test_the_fixture_is_a_v1_snapshot():
    state = orjson.loads(__import__("gzip").decompress(SNAPSHOT.read_bytes()))["state"]
    assert "rules_layout" not in state
    assert set(state["detections"]["diagnostics-disabled"]) == {"pending", "deleted"}
    assert set(state["detections"]["keyvault-failed-operations"]) == {"failures"}


def test_a_v1_snapshot_restores_and_goes_on_as_v1_would_have(stream):
    expected = json.loads(ALERTS.read_text())
    restored = engine()
    restored.load_state(snapshot.loads(SNAPSHOT.read_bytes()))
    after = finish(restored, after_cut(stream))
    # The alerts open in the snapshot grow under their v1 ids (the burst goes on, the secret
    # read raises the Key Vault alert to High, the setting is turned off again), the pending
    # delete fires, and the events delivered again after the restore count once.
    assert sorted(a["RuleId"] for a in after.values()) == [
        "diagnostics-disabled",
        "diagnostics-disabled",
        "keyvault-failed-operations",
        "mass-record-access",
    ]
    for alert_id, alert in after.items():
        assert alert == expected[alert_id]
    # What the restored engine did not re-emit was emitted before the snapshot, unchanged.
    before = engine()
    for event in stream[:CUT]:
        before.process(event, None)
    before.advance()
    emitted = {a.alert_id: json.loads(a.to_json()) for a in before.changed_alerts()}
    assert {**emitted, **after} == expected


def test_todays_engine_raises_the_v1_alerts_uninterrupted(stream):
    assert finish(engine(), stream) == json.loads(ALERTS.read_text())


def test_a_restored_v1_snapshot_is_saved_in_todays_layout(stream):
    restored = engine()
    restored.load_state(snapshot.loads(SNAPSHOT.read_bytes()))
    state = snapshot.loads(snapshot.dumps(restored.state()))
    assert state["rules_layout"] == legacy_v1.LAYOUT
    assert set(state["detections"]["diagnostics-disabled"]) == {"absence", "single_event"}
    again = engine()
    again.load_state(state)
    assert finish(again, after_cut(stream)) == finish(restored, after_cut(stream))


def test_v1_state_of_a_rule_without_an_upgrade_is_dropped_with_one_warning():
    state = snapshot.loads(SNAPSHOT.read_bytes())
    rules = {d.rule_id: d for d in detections.load_detections(lateness=LATENESS)}
    state["detections"]["mass-record-access"] = {"windows": "not a window"}
    with capture_logs() as logs:
        legacy_v1.upgrade(state, rules)
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert [(e["event"], e["rule"]) for e in warnings] == [
        ("detect snapshot of layout v1: rule state dropped", "mass-record-access")
    ]
    assert "mass-record-access" not in state["detections"]
    assert set(state["detections"]) == {"diagnostics-disabled", "keyvault-failed-operations"}
    eng = engine()
    eng.load_state(state)  # the rule starts empty; the others go on
    assert eng.state_size() > 0
