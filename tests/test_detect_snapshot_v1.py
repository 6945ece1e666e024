"""A snapshot written by the v1 rule layout (before rules were declarations) restores: the
partition goes on and raises exactly the alerts an uninterrupted v1 run raised."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime

import orjson
import pytest
from structlog.testing import capture_logs

import detections
from phiwatch.detect import legacy_v1, snapshot
from phiwatch.detect.alert_book import AlertBook
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


V1_EVIDENCE = 50  # v1 kept the earliest 50 EventUids; today's alert keeps every one


def as_v1(alert: dict) -> dict:
    """What a v1 alert said of the same alert: its fields, its first 50 evidence ids (today's
    alerts add the complete lists and their completeness, fields v1 did not have)."""
    keys = next(iter(json.loads(ALERTS.read_text()).values())).keys()
    v1 = {k: v for k, v in alert.items() if k in keys}
    v1["EvidenceEventUids"] = v1["EvidenceEventUids"][:V1_EVIDENCE]
    # Key Vault alerts now also name the secrets tried, the application and what succeeded.
    added = ("Secrets and keys tried: ", "Through application: ", "The successful read was of ")
    v1["Reasons"] = [r for r in v1["Reasons"] if not r.startswith(added)]
    return v1


def finish(eng: DetectionEngine, stream) -> dict[str, dict]:
    for event in stream:
        eng.process(event, None)
    eng.advance()
    eng.finish()
    return {a.alert_id: as_v1(json.loads(a.to_json())) for a in eng.changed_alerts()}


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
    emitted = {a.alert_id: as_v1(json.loads(a.to_json())) for a in before.changed_alerts()}
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


def test_an_alert_restored_from_before_complete_lists_says_what_it_lost():
    # Snapshots before the lists were complete kept the earliest 50 EventUids of an open
    # alert: restored, it counts the rest as dropped instead of claiming a complete list.
    book = AlertBook()
    state = book.open(
        "mass-record-access",
        "oid:x",
        anchor="a",
        severity="High",
        detected_at=datetime(2026, 1, 1, tzinfo=UTC),
        window=(0.0, 1.0),
    )
    for i in range(120):
        state.add_entry(float(i), f"uid{i:03d}", patient=f"p{i}")
    document = json.loads(gzip.decompress(snapshot.dumps({"book": book})))

    def as_older(node: object) -> None:
        # As an older phiwatch wrote it: no dropped counters, the earliest 50 entries.
        if isinstance(node, dict):
            if node.get("$obj") == "AlertState":
                fields = node["fields"]
                del fields["evidence_dropped"], fields["patients_dropped"]
                fields["evidence"] = fields["evidence"][:50]
            for value in node.values():
                as_older(value)
        elif isinstance(node, list):
            for value in node:
                as_older(value)

    as_older(document)
    older = gzip.compress(json.dumps(document).encode())
    (restored,) = snapshot.loads(older)["book"].open_alerts()
    assert len(restored.evidence) == 50
    assert (restored.evidence_dropped, restored.patients_dropped) == (70, 0)


def test_alerts_archived_before_the_complete_lists_still_validate():
    # The contract only gains optional fields: an alert line written by an older phiwatch
    # (50 EvidenceEventUids, no PatientRefs or baseline) reads back as it was.
    from phiwatch.model import Alert

    for wire in json.loads(ALERTS.read_text()).values():
        alert = Alert.model_validate(wire)
        assert alert.patient_refs is None and alert.actor_baseline_days is None
        assert {k: v for k, v in alert.to_wire().items() if k in wire} == wire
