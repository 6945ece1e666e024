"""Forged or impossible times on phi-events: a tick or event beyond the message's arrival plus
the allowed clock skew, a time outside any plausible range, or a snapshot holding one, moves
no watermark and raises one `event-time-anomaly` alert instead of blinding detection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from phiwatch.config import Settings
from phiwatch.detect import snapshot
from phiwatch.detect.engine import DetectionEngine
from phiwatch.detect.stage import DetectProcessor
from phiwatch.detect.state_store import LocalStateStore, state_key
from phiwatch.eventhubs.message import EventHubMessage
from phiwatch.model import AccessEvent
from phiwatch.phievents.message import encode_event, encode_tick
from phiwatch.wiring import build_detector, build_engine
from tests.harness import CollectingSink, batches_of, make_pipeline
from tests.records import at, fhir

FORGED_TICK = b'{"Tick":"9999-12-31T23:00:00+00:00","Stream":"raw/0"}'


def burst(tmp_path: Path, n: int = 60) -> list[AccessEvent]:
    """One clinician opening n patients' records, 3 s apart from 08:00:00."""
    pipeline, _ = make_pipeline(tmp_path)
    records = [fhir(3 * i, path=f"Patient/b{i}") for i in range(n)]
    return [e for b in batches_of(records) for e in pipeline.process(b).events]


def message(body: bytes, seq: int, enqueued: datetime | None) -> EventHubMessage:
    return EventHubMessage(body, seq, enqueued, "0")


def retimed(event: AccessEvent, time: str, arrived: str | None = None) -> bytes:
    """The event's phi-events body with another TimeGenerated (and ArrivedAt)."""
    body = orjson.loads(encode_event(event, None))
    body["Event"]["TimeGenerated"], body["ArrivedAt"] = time, arrived
    return orjson.dumps(body)


def events_then_ticks(events: list[AccessEvent], first_seq: int) -> list[EventHubMessage]:
    """Each event as normalize forwards it (a minute after it happened), then the ticks that
    let the reorder buffer go."""
    out = [
        message(encode_event(e, e.time_generated + timedelta(seconds=30)), first_seq + i, arrived)
        for i, e in enumerate(events)
        for arrived in [e.time_generated + timedelta(seconds=60)]
    ]
    seq = first_seq + len(events)
    out += [
        message(encode_tick(at(180 + 60 * n), "raw/0"), seq + n, at(240 + 60 * n)) for n in range(4)
    ]
    return out


def detector(tmp_path: Path, store: LocalStateStore | None = None, **kwargs):
    sink = CollectingSink()
    settings = Settings()
    build_engine(settings)
    processor = DetectProcessor(
        engine_factory=lambda: build_engine(settings),
        archive=build_detector(settings, tmp_path / "archive", None).archive,
        state_store=store,
        sinks=[sink],
        **kwargs,
    )
    return processor, sink


def rules(alerts) -> list[str]:
    return sorted(a.rule_id for a in alerts)


def test_a_forged_tick_from_9999_does_not_blind_the_partition(tmp_path):
    processor, sink = detector(tmp_path)
    forged = processor.process("0", [message(FORGED_TICK, 0, at(-60))])
    assert processor.engines()["0"].watermark == float("-inf")  # it moved nothing
    assert (forged.ticks, forged.refused, forged.invalid) == (1, 1, 1)

    result = processor.process("0", events_then_ticks(burst(tmp_path), 1))
    (mass,) = [a for a in result.alerts if a.rule_id == "mass-record-access"]
    assert mass.distinct_patient_count == 60 and result.late == 0

    (anomaly,) = [a for a in sink.alert_versions if a.rule_id == "event-time-anomaly"]
    assert anomaly.event_count == 1 and anomaly.severity == "High"
    assert any("watermark tick" in r for r in anomaly.reasons)
    assert any("sequence number 0" in r and "9999-12-31T23:00:00" in r for r in anomaly.reasons)
    assert anomaly.first_event_time == at(-60)  # filed under the message's own arrival


def test_a_flood_of_forged_messages_is_one_alert_per_partition_and_hour(tmp_path):
    processor, sink = detector(tmp_path)
    for batch in range(5):
        processor.process(
            "0", [message(FORGED_TICK, 10 * batch + i, at(60 * batch + i)) for i in range(10)]
        )
    versions = [a for a in sink.alert_versions if a.rule_id == "event-time-anomaly"]
    assert len({a.alert_id for a in versions}) == 1
    assert versions[-1].event_count == 50
    assert any("sequence number 49" in r for r in versions[-1].reasons)
    # Another partition, or another hour, is another alert.
    processor.process("1", [message(FORGED_TICK, 0, at(60))])
    processor.process("0", [message(FORGED_TICK, 50, at(3600))])
    ids = {a.alert_id for a in sink.alert_versions}
    assert len(ids) == 3


def test_events_from_the_future_do_not_move_the_watermark(tmp_path):
    processor, _ = detector(tmp_path)
    honest = burst(tmp_path)
    # ArrivedAt is in the body, so it is forged as well: only the enqueued time bounds them.
    forged = [
        message(retimed(e, "9999-12-31T23:00:00+00:00", arrived="9999-12-31T23:00:00Z"), i, at(-30))
        for i, e in enumerate(burst(tmp_path / "f", 20))
    ]
    first = processor.process("0", forged)
    result = processor.process("0", events_then_ticks(honest, 20))
    assert "mass-record-access" in rules(result.alerts) and result.late == 0
    assert (first.events, first.refused) == (0, 20)


def test_an_arrival_claimed_after_the_hub_received_the_message_is_refused(tmp_path):
    processor, _ = detector(tmp_path)
    (event,) = burst(tmp_path, 1)
    forged = encode_event(event, datetime(9999, 1, 1, tzinfo=UTC))
    result = processor.process("0", [message(forged, 0, at(60))])
    (anomaly,) = result.alerts
    assert any("ArrivedAt" in r for r in anomaly.reasons)
    assert (result.events, result.refused) == (0, 1)


def test_an_event_from_year_one_is_refused_and_the_partition_goes_on(tmp_path):
    processor, _ = detector(tmp_path)
    honest = burst(tmp_path)
    year_one = retimed(honest[0], "0001-01-01T00:00:30Z")
    # Alone in its batch it once became the watermark, and the batch's end raised
    # "year 0 is out of range" on every retry.
    first = processor.process("0", [message(year_one, 0, at(60))])
    assert (first.invalid, first.refused, rules(first.alerts)) == (1, 1, ["event-time-anomaly"])
    result = processor.process("0", events_then_ticks(honest, 1))
    assert (result.invalid, result.events) == (0, 60)
    assert rules(result.alerts) == ["mass-record-access"]


def test_without_an_enqueued_time_the_clock_bounds_a_tick(tmp_path):
    processor, _ = detector(tmp_path, clock=lambda: at(600))
    ahead = encode_tick(at(600 + 301), "raw/0")
    near = encode_tick(at(600 + 299), "raw/0")
    result = processor.process("0", [message(ahead, 0, None), message(near, 1, None)])
    assert (result.ticks, result.refused) == (2, 1)
    assert processor.engines()["0"].watermark == at(899).timestamp()


def poisoned_snapshot(tmp_path: Path, store: LocalStateStore) -> None:
    """What an engine from before times were bounded saved after one forged tick."""
    engine = build_engine(Settings())
    engine.watermark = datetime(9999, 12, 31, 23, tzinfo=UTC).timestamp()
    engine._ticks = {"raw/0": engine.watermark}
    doc = {"engine": engine.state(), "covered": 0, "covered_at": at(-60).isoformat()}
    store.save(state_key("phiwatch", "phi-events", "0"), snapshot.dumps(doc), None)


def test_a_snapshot_with_an_impossible_watermark_is_refused(tmp_path):
    store = LocalStateStore(tmp_path / "state")
    poisoned_snapshot(tmp_path, store)
    processor, _ = detector(tmp_path, store)
    result = processor.process("0", events_then_ticks(burst(tmp_path), 1))
    assert result.restored and result.covered == 0  # what it covered stays covered
    assert rules(result.alerts) == ["event-time-anomaly", "mass-record-access"]
    (anomaly,) = [a for a in result.alerts if a.rule_id == "event-time-anomaly"]
    assert any("saved detection state" in r for r in anomaly.reasons)
    assert any("watermark 9999-12-31T23:00:00" in r for r in anomaly.reasons)
    # The refusal was saved over the poison: a restart does not meet it again.
    again, _ = detector(tmp_path, store)
    later = again.process("0", [message(encode_tick(at(500), "raw/0"), 65, at(560))])
    assert later.restored and later.alerts == []


def test_an_honest_snapshot_is_restored_as_it_was(tmp_path):
    store = LocalStateStore(tmp_path / "state")
    messages = events_then_ticks(burst(tmp_path), 0)
    first, _ = detector(tmp_path, store)
    first.process("0", messages[:30])
    second, _ = detector(tmp_path, store)
    result = second.process("0", messages[30:])
    assert result.restored and rules(result.alerts) == ["mass-record-access"]
    assert result.alerts[0].distinct_patient_count == 60


def test_the_engine_bounds_events_by_their_trusted_arrival():
    engine = DetectionEngine([], 900, 120)
    assert not engine.tick(at(3600), "raw/0", now=at(0))
    assert engine.tick(at(300), "raw/0", now=at(0))
    assert engine.watermark == at(300).timestamp() and engine.refused == 1
    (alert,) = engine.changed_alerts()
    engine.commit()
    assert engine.changed_alerts() == []  # reported once, until the next refusal
    state = snapshot.loads(snapshot.dumps(engine.state()))
    restored = DetectionEngine([], 900, 120)
    restored.load_state(state)
    restored.scope = engine.scope
    restored.tick(at(7200), "raw/0", now=at(1))
    (again,) = restored.changed_alerts()
    assert again.alert_id == alert.alert_id and again.event_count == 2
