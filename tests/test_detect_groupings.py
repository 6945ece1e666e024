"""detect's side of the routing contract: a tagged copy reaches only the rules of its
grouping, an event that lands on one partition under two groupings is seen once by every
rule, an untagged message (the previous version's) is read with the previous routing, and
in-process runs (no tag) offer every event to every rule, as before."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest

from phiwatch.config import Settings
from phiwatch.detect.alert_book import AlertState
from phiwatch.detect.detection import Detection, DetectionParams
from phiwatch.detect.engine import DetectionEngine
from phiwatch.detect.grouping import Grouping
from phiwatch.detect.kinds import StatefulRule
from phiwatch.model import AccessEvent, Alert, Plane
from phiwatch.phievents.message import EventMessage, decode_message, encode_event
from phiwatch.wiring import build_detector
from tests.harness import batches_of, make_pipeline
from tests.records import activity, at, fhir
from tests.synthetic_rules import registered


class Seen(Detection):
    """Records every event offered to it (a stateful part the engine holds); never alerts."""

    rule_id = "seen"
    rule_name = "seen"
    severity = "Low"
    tactics = ()
    techniques = ()
    group_by = "actor"
    planes = frozenset({"data"})
    Params = DetectionParams

    def applies(self, event: AccessEvent) -> bool:
        return True

    def declare(self) -> StatefulRule:
        return StatefulRule(state=list, step=_record)

    @property
    def seen(self) -> list[str]:
        return self.state()["stateful"]  # type: ignore[return-value]

    def render(self, state: AlertState) -> Alert:
        raise AssertionError("never alerts")


def _record(rule: object, seen: list[str], event: AccessEvent, time: float, ctx: object) -> None:
    seen.append(event.event_uid)


def seen_rule(rule_id: str, group_by: Grouping, planes: frozenset[Plane]) -> Seen:
    cls = type(rule_id, (Seen,), {"rule_id": rule_id, "group_by": group_by, "planes": planes})
    return cls(DetectionParams(), 900)


DATA: frozenset[Plane] = frozenset({"data"})
BOTH: frozenset[Plane] = frozenset({"data", "control"})


def rules() -> dict[str, Seen]:
    return {
        "by-actor": seen_rule("by-actor", "actor", DATA),
        "by-patient": seen_rule("by-patient", "patient", DATA),
        "by-sub": seen_rule("by-sub", "subscription", BOTH),
    }


@pytest.fixture
def read_and_change(tmp_path) -> tuple[AccessEvent, AccessEvent]:
    pipeline, _ = make_pipeline(tmp_path)
    read, change = [
        e for b in batches_of([fhir(0), activity(5)]) for e in pipeline.process(b).events
    ]
    return read, change


@pytest.mark.parametrize("reorder", [0.0, 120.0])
def test_a_tagged_copy_reaches_only_its_groupings_rules(read_and_change, reorder):
    read, _ = read_and_change
    seen = rules()
    engine = DetectionEngine(seen.values(), 900, reorder)
    engine.process(read, None, grouping="patient")
    engine.finish()
    assert {r: s.seen for r, s in seen.items()} == {
        "by-actor": [],
        "by-patient": [read.event_uid],
        "by-sub": [],
    }


def test_without_a_tag_every_rule_of_the_plane_sees_the_event(read_and_change):
    read, change = read_and_change
    seen = rules()
    engine = DetectionEngine(seen.values(), 900)
    engine.process(read, None)
    engine.process(change, None)
    assert seen["by-actor"].seen == seen["by-patient"].seen == [read.event_uid]
    assert seen["by-sub"].seen == [read.event_uid, change.event_uid]


def test_two_copies_on_one_partition_are_seen_once_by_every_rule(read_and_change, tmp_path):
    read, _ = read_and_change
    seen = rules()
    detector = build_detector(Settings(), tmp_path / "archive", None)
    detector.engine_factory = lambda: DetectionEngine(seen.values(), 900, 120)
    arrival = read.time_generated + timedelta(seconds=30)
    bodies = [encode_event(read, arrival, g) for g in ("actor", "patient", "subscription")]
    messages = [
        SimpleNamespace(body=b, sequence_number=i, enqueued_time=arrival)
        for i, b in enumerate(bodies)
    ]
    result = detector.process("0", messages)
    detector.finish()
    assert result.events == 3  # three copies, one per grouping
    assert {r: s.seen for r, s in seen.items()} == {
        "by-actor": [read.event_uid],
        "by-patient": [read.event_uid],
        "by-sub": [read.event_uid],
    }


def test_an_untagged_message_is_read_with_the_previous_routing(read_and_change):
    read, change = read_and_change
    untagged = decode_message(encode_event(read, None))
    assert isinstance(untagged, EventMessage)
    assert (untagged.grouping, untagged.tagged) == ("actor", False)
    change_message = decode_message(encode_event(change, None))
    assert isinstance(change_message, EventMessage)
    assert (change_message.grouping, change_message.tagged) == ("subscription", False)
    tagged = decode_message(encode_event(read, at(30), "patient"))
    assert tagged == EventMessage(read, at(30), "patient", True)


def test_a_message_with_an_unknown_grouping_is_not_one_of_ours(read_and_change):
    read, _ = read_and_change
    body = encode_event(read, None, "actor").replace(b'"actor"', b'"session"', 1)
    with pytest.raises(ValueError, match="unknown Grouping"):
        decode_message(body)


def test_a_snapshot_buffered_before_tags_releases_to_every_rule(read_and_change):
    read, _ = read_and_change
    seen = rules()
    old = DetectionEngine(seen.values(), 900, 120)
    old.process(read, None)  # buffered: the reorder delay has not passed
    state = old.state()
    state["buffer"] = [b[:5] for b in state["buffer"]]  # what an older version saved
    fresh = rules()
    restored = DetectionEngine(fresh.values(), 900, 120)
    restored.load_state(state)
    restored.finish()
    assert fresh["by-actor"].seen == fresh["by-patient"].seen == [read.event_uid]


def test_late_counts_each_copy_that_came_too_late_for_its_rules(read_and_change):
    # Documented (docs/routing.md): on a partition the counters count (event, grouping)
    # deliveries; in-process they count events.
    read, _ = read_and_change
    engine = DetectionEngine(rules().values(), 900)
    later = read.model_copy(update={"time_generated": read.time_generated + timedelta(hours=2)})
    for n in range(31):
        engine.process(later.model_copy(update={"event_uid": f"u{n}"}), None)
    engine.process(read, None, grouping="actor")
    engine.process(read, None, grouping="patient")
    assert engine.late == 2


def test_synthetic_rules_register_next_to_the_shipped_ones():
    import detections

    with pytest.MonkeyPatch.context() as env, registered(env):
        loaded = {d.rule_id: d.group_by for d in detections.load_detections()}
    assert loaded["test-patient-readers"] == "patient"
    assert set(loaded.values()) == {
        "actor",
        "patient",
        "source_address",
        "credential",
        "resource_category",
        "subscription",
    }
