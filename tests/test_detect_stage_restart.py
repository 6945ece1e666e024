"""detect after a restart: a redelivery is covered by the snapshot, but a recreated
phi-events hub (sequence numbers start again) must not be mistaken for one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from phiwatch.config import Settings
from phiwatch.detect.state_store import LocalStateStore
from phiwatch.phievents.message import encode_event
from phiwatch.wiring import build_detector
from tests.harness import batches_of, make_pipeline
from tests.records import fhir

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def messages(events, first_seq: int, enqueued: datetime):
    return [
        SimpleNamespace(
            body=encode_event(e, None),
            sequence_number=first_seq + i,
            enqueued_time=enqueued + timedelta(milliseconds=i),
        )
        for i, e in enumerate(events)
    ]


def detector(tmp_path):
    return build_detector(Settings(), tmp_path / "archive", LocalStateStore(tmp_path / "state"))


def reads(tmp_path, n: int, start: float = 0):
    pipeline, _ = make_pipeline(tmp_path)
    records = [fhir(start + i, path=f"Patient/q{start}-{i}") for i in range(n)]
    return [e for b in batches_of(records) for e in pipeline.process(b).events]


def test_a_redelivery_after_restart_is_covered(tmp_path):
    events = reads(tmp_path, 30)
    sent = messages(events, 0, T0)
    detector(tmp_path).process("0", sent)
    # A redelivery is the same messages: same sequence numbers, same enqueued times.
    again = detector(tmp_path).process("0", sent[10:])
    assert again.restored and not again.restarted
    assert (again.covered, again.events) == (20, 0)


def test_a_recreated_hub_starts_the_partition_afresh(tmp_path):
    events = reads(tmp_path, 30)
    detector(tmp_path).process("0", messages(events, 0, T0))
    # The hub was deleted and created again: sequence numbers restart, enqueued times do not.
    newer = reads(tmp_path, 5, start=3600)
    result = detector(tmp_path).process("0", messages(newer, 0, T0 + timedelta(hours=1)))
    assert result.restarted and (result.covered, result.events) == (0, 5)
