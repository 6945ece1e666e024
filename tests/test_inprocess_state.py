"""Detections inside normalize (no phi-events hub) keep their state across a restart, and
name a second diagnostics partition as one the mode is not correct for."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from phiwatch.config import Settings
from phiwatch.eventhubs.message import EventHubMessage
from phiwatch.hosts.functions import EventHubBatchProcessor
from tests.records import at, fhir

PATIENTS = 160
PER_BODY = 4
BODIES_PER_CALL = 5


def burst() -> list[EventHubMessage]:
    """One clinician opening 160 patients' records in 8 minutes, as Event Hub messages."""
    records = [fhir(i * 3.0, path=f"Patient/burst-{i}") for i in range(PATIENTS)]
    out = []
    for n, start in enumerate(range(0, PATIENTS, PER_BODY)):
        chunk = records[start : start + PER_BODY]
        out.append(
            EventHubMessage(
                body=json.dumps({"records": chunk}).encode(),
                sequence_number=n,
                enqueued_time=at(start * 3.0 + 20) + timedelta(milliseconds=n),
                partition_id="0",
            )
        )
    return out


def run(processor: EventHubBatchProcessor, messages: list[EventHubMessage], alerts: dict) -> None:
    for i in range(0, len(messages), BODIES_PER_CALL):
        result = processor.process("diagnostics", messages[i : i + BODIES_PER_CALL])
        for alert in result.alerts:
            alerts[alert.alert_id] = alert


def final(alerts: dict) -> dict[str, int]:
    return {a: alert.distinct_patient_count for a, alert in alerts.items()}


def settings(tmp_path: Path, name: str, *, state: bool = True) -> Settings:
    return Settings(
        archive_dir=tmp_path / name / "archive",
        state_dir=(tmp_path / name / "state") if state else None,
    )


def uninterrupted(tmp_path: Path) -> dict[str, int]:
    alerts: dict = {}
    run(EventHubBatchProcessor(settings(tmp_path, "whole")), burst(), alerts)
    return final(alerts)


def crashed(tmp_path: Path, *, state: bool) -> dict[str, int]:
    """The host dies after 20 of 40 messages; a new process gets the partition, and the
    last call before the crash is delivered again (it was never checkpointed)."""
    messages = burst()
    alerts: dict = {}
    config = settings(tmp_path, f"crash-{state}", state=state)
    run(EventHubBatchProcessor(config), messages[:20], alerts)
    run(EventHubBatchProcessor(config), messages[15:], alerts)
    return final(alerts)


def test_a_restart_mid_burst_gives_the_same_alert_and_patient_count(tmp_path):
    whole = uninterrupted(tmp_path)
    (patients,) = whole.values()  # one alert, enriched as the burst goes on
    assert patients > 100
    assert crashed(tmp_path, state=True) == whole


def test_without_a_state_store_the_restart_splits_the_burst(tmp_path):
    # What the snapshot prevents: the restarted engine sees only the second half.
    whole = uninterrupted(tmp_path)
    assert crashed(tmp_path, state=False) != whole


def test_a_second_partition_is_named_as_one_too_many(tmp_path):
    processor = EventHubBatchProcessor(settings(tmp_path, "two"))
    first, second = burst()[:2]
    processor.process("diagnostics", [first])
    other = EventHubMessage(second.body, 0, second.enqueued_time, "1")
    processor.process("diagnostics", [other])
    state = processor._inprocess
    assert state is not None and state.partitions == ["0", "1"]
    assert not state.check_partition("diagnostics", "0")
    assert state.check_partition("diagnostics", "1")
    # Each partition keeps a snapshot of its own.
    assert sorted(p.name for p in (tmp_path / "two" / "state").rglob("*.json.gz")) == [
        "0.json.gz",
        "1.json.gz",
    ]
