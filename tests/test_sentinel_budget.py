"""A slow Sentinel never slows the archive path (issue #12 item 5), with the REAL
LogsIngestionClient against the stand-in (tests/logs_ingestion_standin.py) made to hang.

Mechanisms, not timings, wherever one can be named: a fake clock that moves 10 s per request,
the number of requests sent, the outbox listed once rather than per emit, a batch that
completes while the timer's delivery is still stuck. Where an emit meets a hanging endpoint
the only bound is time, so those tests give a 1 s budget and allow ten times that (the old
code waited 60 s per attempt)."""

from __future__ import annotations

import gzip
import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from phiwatch import wiring
from phiwatch.config import Settings
from phiwatch.eventhubs.message import EventHubMessage
from phiwatch.hosts.functions import EventHubBatchProcessor
from phiwatch.sinks.backlog_alert import RULE_ID, backlog_alert
from phiwatch.sinks.outbox import LocalOutbox
from tests.logs_ingestion_standin import logs_ingestion
from tests.records import fhir
from tests.test_sentinel_sink import (
    ALERTS,
    EVENTS,
    HEALTH,
    StaticCredential,
    alert,
    as_json,
    event,
    health,
    make_sink,
    result,
)

__all__ = ["logs_ingestion"]

BUDGET = 1.0
SLACK = 10.0  # the emit returns within its budget; a loaded CI machine gets this much more


@pytest.fixture
def credential() -> StaticCredential:
    return StaticCredential()


def pending_rows(outbox: LocalOutbox) -> dict[str, int]:
    rows: dict[str, int] = {}
    for entry in outbox.pending():
        rows[entry.stream] = rows.get(entry.stream, 0) + len(entry.rows)
    return rows


def test_a_hanging_endpoint_costs_an_emit_its_budget_and_loses_nothing(
    logs_ingestion, credential, tmp_path
):
    outbox = LocalOutbox(tmp_path / "outbox")
    sink = make_sink(logs_ingestion, outbox, credential, max_seconds_per_emit=BUDGET)
    models = result([event(1), event(2)], [alert(1)], health())
    logs_ingestion.hang(True)
    started = time.monotonic()
    sink.emit(models)
    elapsed = time.monotonic() - started
    assert elapsed < BUDGET + SLACK
    assert pending_rows(outbox) == {EVENTS: 2, ALERTS: 1, HEALTH: 1}
    assert dict(sink.queued_rows) == {EVENTS: 2, ALERTS: 1, HEALTH: 1}
    assert not sink.lost_rows and not sink.refused_rows
    assert logs_ingestion.arrivals == 1  # the first request hung; no other was tried

    logs_ingestion.hang(False)
    report = sink.deliver_outbox()
    assert report.remaining == 0
    assert [r["EventUid"] for r in logs_ingestion.rows(EVENTS)] == ["uid-0000001", "uid-0000002"]
    assert logs_ingestion.rows(HEALTH) == [as_json(health())]


def test_what_does_not_go_out_within_the_budget_waits_in_the_outbox(
    logs_ingestion, credential, tmp_path
):
    """A fake clock on which each request takes 10 s: with 15 s, events and alerts are sent,
    health is not even tried."""
    outbox = LocalOutbox(tmp_path / "outbox")
    sink = make_sink(
        logs_ingestion,
        outbox,
        credential,
        max_seconds_per_emit=15.0,
        clock=lambda: 10.0 * logs_ingestion.arrivals,
    )
    sink.emit(result([event(1)], [alert(1)], health()))
    assert logs_ingestion.arrivals == 2
    assert [r.stream for r in logs_ingestion.ingest_requests()] == [EVENTS, ALERTS]
    assert pending_rows(outbox) == {HEALTH: 1}
    (entry,) = outbox.pending()
    assert entry.last_error == "time budget"


def test_a_retry_after_longer_than_the_budget_is_not_waited_for(
    logs_ingestion, credential, tmp_path
):
    outbox = LocalOutbox(tmp_path / "outbox")
    sink = make_sink(logs_ingestion, outbox, credential, max_seconds_per_emit=BUDGET)
    logs_ingestion.fail_next(429, headers={"Retry-After": "20"})  # within max_retry_after
    started = time.monotonic()
    sink.emit(result([event(1)]))
    assert time.monotonic() - started < BUDGET + SLACK
    assert [r.status for r in logs_ingestion.ingest_requests()] == [429]  # no retry started
    assert pending_rows(outbox) == {EVENTS: 1}


class CountingOutbox(LocalOutbox):
    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.listings = 0

    def _names(self, prefix: str) -> list[str]:
        self.listings += prefix == "pending/"
        return super()._names(prefix)


def test_the_outbox_is_bounded_and_not_listed_per_emit(logs_ingestion, credential, tmp_path):
    outbox = CountingOutbox(tmp_path / "outbox")
    sink = make_sink(
        logs_ingestion,
        outbox,
        credential,
        max_outbox_entries=3,
        max_outbox_entries_per_emit=0,  # the backlog is the timer's
    )
    logs_ingestion.outage(True)
    for i in range(5):
        sink.emit(result([event(i)]))
    assert outbox.listings == 1  # one count, then kept up to date
    assert outbox.pending_count() == 3
    assert dict(sink.queued_rows) == {EVENTS: 3}
    assert dict(sink.refused_rows) == {EVENTS: 2}  # counted, and logged
    assert not sink.lost_rows


def bodies(n: int) -> list[bytes]:
    return [json.dumps({"records": [fhir(i, path=f"Patient/p{i}")]}).encode() for i in range(n)]


def processor_with(sink: Any, settings: Settings, monkeypatch) -> EventHubBatchProcessor:
    monkeypatch.setattr(wiring, "sentinel_sink", lambda _settings: sink)
    return EventHubBatchProcessor(settings)


def hub_messages(first_seq: int, n: int) -> list[EventHubMessage]:
    when = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    return [EventHubMessage(body, first_seq + i, when, "0") for i, body in enumerate(bodies(n))]


def test_a_batch_is_processed_while_the_timer_delivery_is_stuck(
    logs_ingestion, credential, tmp_path, monkeypatch
):
    outbox = LocalOutbox(tmp_path / "outbox")
    for i in range(3):
        outbox.add(EVENTS, [as_json(event(100 + i))])
    sink = make_sink(logs_ingestion, outbox, credential, max_seconds_per_emit=BUDGET)
    processor = processor_with(sink, Settings(archive_dir=tmp_path / "archive"), monkeypatch)
    logs_ingestion.hang(True)
    delivery = threading.Thread(target=processor.deliver_outbox, daemon=True)
    delivery.start()
    deadline = time.monotonic() + 30
    while logs_ingestion.arrivals == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert logs_ingestion.arrivals == 1  # the timer's first request hangs
    results: list[Any] = []
    batch = threading.Thread(
        target=lambda: results.append(processor.process("diagnostics", hub_messages(10, 5))),
        daemon=True,
    )
    try:
        batch.start()
        batch.join(timeout=BUDGET + SLACK)
        assert not batch.is_alive(), "the batch waited for the outbox delivery"
        assert delivery.is_alive()  # still stuck: the batch did not wait for it
        (done,) = results
        assert done.counts.records == 5 and done.counts.accounted
    finally:
        logs_ingestion.hang(False)
        delivery.join(timeout=60)
        batch.join(timeout=60)
    assert (tmp_path / "archive" / "raw").is_dir()


def test_a_backlog_past_the_threshold_raises_an_archived_alert(
    logs_ingestion, credential, tmp_path, monkeypatch
):
    outbox = LocalOutbox(tmp_path / "outbox")
    for i in range(3):
        outbox.add(EVENTS, [as_json(event(i))])
    sink = make_sink(logs_ingestion, outbox, credential)
    settings = Settings(archive_dir=tmp_path / "archive", outbox_backlog_alert_entries=3)
    processor = processor_with(sink, settings, monkeypatch)
    logs_ingestion.outage(True)
    report = processor.deliver_outbox()
    assert report.remaining == 3

    archived = [
        json.loads(line)
        for path in (tmp_path / "archive" / "alerts").rglob("*.jsonl.gz")
        for line in gzip.decompress(path.read_bytes()).splitlines()
    ]
    (row,) = archived
    assert row["RuleId"] == RULE_ID and "3 pending outbox entries" in row["Reasons"][0]
    # Sent like any alert: Sentinel is down, so it waits in the outbox with the backlog.
    assert pending_rows(outbox) == {EVENTS: 3, ALERTS: 1}

    logs_ingestion.outage(False)
    processor.deliver_outbox()  # below the threshold now: no new alert
    assert len(list((tmp_path / "archive" / "alerts").rglob("*.jsonl.gz"))) == 1
    assert [r["RuleId"] for r in logs_ingestion.rows(ALERTS)] == [RULE_ID]


def test_the_backlog_alert_id_is_one_per_outbox_and_hour():
    at = datetime(2026, 11, 2, 9, 5, tzinfo=UTC)
    later = datetime(2026, 11, 2, 9, 55, tzinfo=UTC)
    next_hour = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
    one = backlog_alert("https://acct.blob.core.windows.net/outbox", 1200, 1000, at)
    same = backlog_alert("https://acct.blob.core.windows.net/outbox", 5000, 1000, later)
    other = backlog_alert("https://acct.blob.core.windows.net/outbox", 5000, 1000, next_hour)
    assert one.alert_id == same.alert_id != other.alert_id
    assert one.alert_id == "93024f7f-d62b-5cf6-b2f2-7978e9537fac"
