"""Watermark ticks: normalize tells every phi-events partition how far event time has got,
so a partition without events of its own still releases its alerts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import detections
from phiwatch.config import Settings
from phiwatch.detect.engine import DetectionEngine
from phiwatch.eventhubs.publisher import PublishReport
from phiwatch.phievents.forwarder import PublishingForwarder
from phiwatch.phievents.message import Tick, decode_message, encode_event, encode_tick
from phiwatch.wiring import build_detector
from tests.harness import batches_of, make_pipeline
from tests.records import at, fhir


class Recorder:
    def __init__(self) -> None:
        self.published: list = []
        self.ticks: list = []

    def publish(self, messages):
        self.published.extend(messages)
        return PublishReport(messages=len(messages))

    def broadcast(self, body: bytes) -> int:
        self.ticks.append(decode_message(body))
        return 4

    def close(self) -> None:
        pass


def events_at(tmp_path, seconds: list[float]):
    pipeline, _ = make_pipeline(tmp_path)
    records = [fhir(s, path=f"Patient/t{i}") for i, s in enumerate(seconds)]
    return [e for b in batches_of(records) for e in pipeline.process(b).events]


def test_a_tick_per_stream_once_event_time_has_moved_a_minute(tmp_path):
    events = events_at(tmp_path, [0, 10, 20, 50, 90, 200])
    arrival = {e.event_uid: e.time_generated + timedelta(seconds=30) for e in events}
    recorder = Recorder()
    forwarder = PublishingForwarder(recorder, detections.load_detections())
    for chunk in ([0, 1, 2], [3], [4], [5]):
        forwarder.forward([(events[i], arrival[events[i].event_uid]) for i in chunk], "raw/0")
    forwarder.forward([(events[3], arrival[events[3].event_uid])], "raw/1")
    # Seven by actor (mass-record-access, one redelivered), seven by patient (curious-access),
    # and per batch one copy per service minute for log-source-silent (five batches, each
    # within one minute).
    assert len(recorder.published) == 2 * 7 + 5
    assert recorder.ticks == [
        Tick(at(20), "raw/0"),  # the newest of the first batch
        Tick(at(90), "raw/0"),  # 50 s was less than a minute on; 90 s is not
        Tick(at(200), "raw/0"),
        Tick(at(50), "raw/1"),  # every stream keeps its own pace
    ]


def test_a_record_with_a_wrong_clock_cannot_push_a_tick_ahead(tmp_path):
    honest, wrong = events_at(tmp_path, [0, 5 * 3600])
    recorder = Recorder()
    PublishingForwarder(recorder, detections.load_detections()).forward(
        [(honest, at(30)), (wrong, at(31))], "raw/0"
    )
    # Capped at its arrival plus the five minutes of clock skew the engine allows.
    assert recorder.ticks == [Tick(at(31 + 300), "raw/0")]


def test_the_slowest_active_stream_holds_the_watermark_and_a_silent_one_does_not():
    engine = DetectionEngine(detections.load_detections(), 900, 120)
    engine.tick(at(300), "raw/0")
    engine.tick(at(300), "raw/1")
    engine.tick(at(600), "raw/0")
    assert engine.watermark == at(300).timestamp()  # raw/1 may still send events from 300 s
    engine.tick(at(1500), "raw/0")
    # raw/1 is now more than the lateness (900 s) behind: gone quiet, it holds nothing back.
    assert engine.watermark == at(1500).timestamp()


def test_a_partition_with_only_ticks_after_a_burst_releases_its_alert(tmp_path):
    burst = events_at(tmp_path, [i * 3 for i in range(60)])
    detector = build_detector(Settings(), tmp_path / "archive", None)
    enqueued = datetime(2026, 11, 2, 8, 5, tzinfo=UTC)
    messages = [
        SimpleNamespace(body=encode_event(e, None), sequence_number=i, enqueued_time=enqueued)
        for i, e in enumerate(burst)
    ]
    assert detector.process("0", messages).alerts == []  # held in the reorder buffer
    ticks = [
        SimpleNamespace(
            body=encode_tick(at(180 + 60 * n), "raw/0"),
            sequence_number=100 + n,
            enqueued_time=enqueued,
        )
        for n in range(4)
    ]
    result = detector.process("0", ticks)
    (alert,) = result.alerts
    assert result.ticks == 4 and result.events == 0
    assert (alert.rule_id, alert.distinct_patient_count) == ("mass-record-access", 60)
