"""A `detect` partition moving between instances and back: the instance that gets it back must
go on from the snapshot the other one saved, not from what it still holds in memory, and at
the end of a local run only the current owner settles it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from phiwatch.config import Settings
from phiwatch.detect.stage import DetectProcessor
from phiwatch.detect.state_store import LocalStateStore
from phiwatch.eventhubs.message import EventHubMessage
from phiwatch.model import AccessEvent
from phiwatch.phievents.message import encode_event
from phiwatch.wiring import build_detector
from tests.harness import CollectingSink, batches_of, make_pipeline
from tests.records import fhir


def burst_events(tmp_path: Path) -> list[AccessEvent]:
    # 121 patients read from 08:09:00, one a second: the 51st read (08:09:50) crosses the
    # threshold in the 08:00 window bucket. An instance that misses reads 20..59 only gets
    # past 50 patients at the 91st read (08:10:30), in the 08:10 bucket: another AlertId.
    # Then an hour of other traffic, so that the watermark moves far past the burst.
    burst = [fhir(540 + i, path=f"Patient/p{i}") for i in range(121)]
    after = [fhir(700 + 60 * i, path="metadata", interaction="capabilities") for i in range(60)]
    pipeline, _ = make_pipeline(tmp_path)
    events = [e for b in batches_of(burst + after) for e in pipeline.process(b).events]
    return sorted(events, key=lambda e: e.time_generated)


def messages_of(events: list[AccessEvent]) -> list[EventHubMessage]:
    return [
        EventHubMessage(encode_event(e, arrival), seq, arrival, "0")
        for seq, e in enumerate(events)
        for arrival in [e.time_generated + timedelta(seconds=60)]
    ]


def detector(
    settings: Settings, tmp_path: Path, name: str
) -> tuple[DetectProcessor, CollectingSink]:
    sink = CollectingSink()
    store = LocalStateStore(tmp_path / "state")
    return build_detector(settings, tmp_path / f"archive-{name}", store, [sink]), sink


def test_a_partition_that_comes_back_is_restored_not_continued_from_memory(tmp_path, settings):
    messages = messages_of(burst_events(tmp_path))
    alone, alone_sink = detector(settings, tmp_path / "alone", "alone")
    alone.process("0", messages)
    (expected,) = alone_sink.alerts.values()

    a, a_sink = detector(settings, tmp_path, "a")
    b, b_sink = detector(settings, tmp_path, "b")
    a.process("0", messages[:20])
    b.process("0", messages[20:60])  # the partition moved to b, which saved its state
    back = a.process("0", messages[60:])  # and back to a, which still holds reads 0..19

    assert back.restored  # from b's snapshot, not from a's memory
    versions = a_sink.alert_versions + b_sink.alert_versions
    assert {v.alert_id for v in versions} == {expected.alert_id}
    assert a_sink.alerts[expected.alert_id].model_dump(exclude={"detected_at"}) == (
        expected.model_dump(exclude={"detected_at"})
    )


def test_only_the_current_owner_settles_a_partition_at_the_end(tmp_path, settings):
    messages = messages_of(burst_events(tmp_path))
    a, a_sink = detector(settings, tmp_path, "a")
    b, _ = detector(settings, tmp_path, "b")
    a.process("0", messages[:100])
    b.process("0", messages[100:])  # b took the partition over; a never heard of it
    emitted_by_a = len(a_sink.alert_versions)

    assert a.finish() == []  # a's copy is stale: dropped, not settled, and no StateConflict
    assert a.engines() == {}
    assert len(a_sink.alert_versions) == emitted_by_a
    b.finish()
    assert set(b.engines()) == {"0"}
