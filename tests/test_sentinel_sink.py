"""SentinelSink and its outbox against the REAL LogsIngestionClient, through a local HTTPS
stand-in of the Logs Ingestion API (tests/logs_ingestion_standin.py)."""

from __future__ import annotations

import gzip
import io
import json
import re
import ssl
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.monitor.ingestion import LogsIngestionClient

from phiwatch.batch import BatchResult, Counts
from phiwatch.config import Settings
from phiwatch.hosts.replay import _batches
from phiwatch.logs import configure_logging
from phiwatch.model import AccessEvent, Alert, BatchHealth
from phiwatch.samplegen import generate
from phiwatch.schema.tables import (
    TABLES,
    full_wire_row,
    plan_for,
    spec_for,
    stream_columns,
    wire_row,
)
from phiwatch.sinks.outbox import BlobOutbox, LocalOutbox, Outbox, OutboxError, stream_of
from phiwatch.sinks.sentinel import (
    DEFAULT_STREAMS,
    MAX_REQUEST_BYTES,
    IngestionRetryPolicy,
    SentinelSink,
    sentinel_alert,
    sentinel_sink_from,
)
from phiwatch.wiring import build_pipeline
from tests.harness import CollectingSink
from tests.logs_ingestion_standin import LogsIngestionStandIn, logs_ingestion

__all__ = ["logs_ingestion"]  # the stand-in's fixture, used by name below

EVENTS, ALERTS, HEALTH = (DEFAULT_STREAMS[k] for k in ("events", "alerts", "health"))
T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
PATIENT_ID = "MRN-4471-ZZ"
FHIR_URI = f"https://fhir-prod.fhir.azurehealthcareapis.com/Patient/{PATIENT_ID}"


class StaticCredential:
    """A TokenCredential that records the scopes it was asked for."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken("test-token", int(time.time()) + 3600)

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        self.scopes.append(scopes)
        return AccessTokenInfo("test-token", int(time.time()) + 3600)


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture
def credential() -> StaticCredential:
    return StaticCredential()


@pytest.fixture
def log_stream():
    """Everything logged (structlog and stdlib, azure SDK included) at DEBUG."""
    stream = io.StringIO()
    configure_logging("DEBUG", stream=stream)
    yield stream
    configure_logging("WARNING", stream=io.StringIO())


@pytest.fixture(params=["local", "blob"])
def outbox(request: pytest.FixtureRequest, tmp_path: Path) -> Outbox:
    if request.param == "local":
        return LocalOutbox(tmp_path / "outbox")
    return BlobOutbox(request.getfixturevalue("blob_container"))


def make_sink(
    standin: LogsIngestionStandIn,
    outbox: Outbox,
    credential: StaticCredential,
    **kwargs: Any,
) -> SentinelSink:
    """The production factory, with a small, fast retry budget (3 attempts, 0/0.1 s)."""
    kwargs.setdefault("retry_total", 2)
    kwargs.setdefault("retry_backoff_factor", 0.05)
    return sentinel_sink_from(
        standin.endpoint,
        standin.dcr_id,
        outbox,
        credential=credential,
        connection_verify=standin.ca_file,
        **kwargs,
    )


def event(i: int, **overrides: Any) -> AccessEvent:
    values: dict[str, Any] = {
        "time_generated": T0 + timedelta(seconds=i),
        "event_uid": f"uid-{i:07d}",
        "event_type": "Read",
        "event_result": "Success",
        "event_product": "Azure Health Data Services",
        "operation": "read",
        "object": f"{FHIR_URI}/Observation",
        "object_type": "Patient",
        "actor_user_id": "11111111-aaaa-4bbb-8ccc-000000000001",
        "src_ip_addr": "10.1.2.3",
        "src_geo_latitude": 47.6,
        "patient_ref": "p-3f9a",
        "record_count": 1,
        "phi_category": "clinical",
        "source_category": "AuditLogs",
        "raw_record_ref": f"raw/2026/11/02/08/b.jsonl.gz#{i}",
    }
    return AccessEvent(**{**values, **overrides})


def alert(i: int = 0, **overrides: Any) -> Alert:
    values: dict[str, Any] = {
        "alert_id": f"00000000-0000-4000-8000-{i:012d}",
        "rule_id": "mass-record-access",
        "rule_name": "Mass record access",
        "severity": "High",
        "tactics": ["Collection"],
        "techniques": ["T1530"],
        "title": "Mass record access",
        "description": "one user read many patients",
        "reasons": ["250 distinct patients in 10 minutes"],
        "window_start": T0,
        "window_end": T0 + timedelta(minutes=10),
        "first_event_time": T0,
        "last_event_time": T0 + timedelta(minutes=9),
        "event_count": 250,
        "distinct_patient_count": 250,
        "evidence_event_uids": ["uid-0000001", "uid-0000002"],
        "detected_at": T0 + timedelta(minutes=9, seconds=5),
    }
    return Alert(**{**values, **overrides})


def health(name: str = "p0-000000000001-000000000010") -> BatchHealth:
    return BatchHealth(
        time_generated=T0,
        batch=name,
        stream="p0",
        records=10,
        events=9,
        dead_letters=1,
        skipped=0,
        late=0,
        alerts=1,
        dead_letter_reasons={"invalid-json": 1},
        skip_reasons={},
        source_last_seen={"AuditLogs": T0},
    )


def result(
    events: list[AccessEvent] = (),  # type: ignore[assignment]
    alerts: list[Alert] = (),  # type: ignore[assignment]
    batch_health: BatchHealth | None = None,
) -> BatchResult:
    return BatchResult(Counts(), list(events), list(alerts), [], 0, batch_health)


def as_json(model: Any) -> Any:
    """What a row looks like after a JSON round trip, in its full wire form (the stand-in's
    `rows()` expands the compact rows it receives)."""
    return json.loads(json.dumps(full_wire_row(spec_for(model), model)))


def expand(stream: str, row: dict[str, Any]) -> dict[str, Any]:
    """An outbox row (compact) in its full wire form."""
    return plan_for(next(s for s in TABLES if s.stream == stream)).expand(row)


def as_sent(model: Any) -> Any:
    """The compact row the sink posts, after a JSON round trip."""
    return json.loads(json.dumps(wire_row(spec_for(model), model)))


def assert_no_phi(text: str, secrets: set[str]) -> None:
    # Whole values only: a legacy numeric patient id ("125439") is also part of some port,
    # date or request id by chance, which is no leak.
    leaked = sorted(
        s
        for s in secrets
        if s in text and re.search(rf"(?<![A-Za-z0-9]){re.escape(s)}(?![A-Za-z0-9])", text)
    )
    assert leaked == [], f"PHI in logs: {leaked[:5]}"


# ------------------------------------------------------------------------------ request shape


def test_request_shape_and_round_trip(logs_ingestion, credential, tmp_path, log_stream):
    outbox = LocalOutbox(tmp_path / "outbox")
    sink = make_sink(logs_ingestion, outbox, credential)
    events = [event(i) for i in range(3)] + [event(3, object=None, src_geo_latitude=None)]
    alerts = [alert(1), alert(2, severity="Low")]
    batch_health = health()

    sink.emit(result(events, alerts, batch_health))

    requests = logs_ingestion.ingest_requests()
    assert [r.stream for r in requests] == [EVENTS, ALERTS, HEALTH]
    for r in requests:
        assert r.status == 204
        assert r.path == f"/dataCollectionRules/{logs_ingestion.dcr_id}/streams/{r.stream}"
        assert r.query == {"api-version": ["2023-01-01"]}
        assert r.headers["authorization"] == "Bearer test-token"
        assert r.headers["content-encoding"] == "gzip"
        assert r.headers["content-type"] == "application/json"
        assert r.body_bytes < r.raw_bytes  # gzip really was applied
    assert set(credential.scopes) == {("https://monitor.azure.com/.default",)}
    assert [r.rows for r in requests] == [4, 2, 1]

    # Rows are the models' compact wire form (phiwatch.schema.wire): columns of the declared
    # stream, in order, without nulls (a missing column is null in Log Analytics) and without
    # the constants the DCR transform adds.
    assert logs_ingestion.rows(EVENTS) == [as_json(e) for e in events]
    assert logs_ingestion.rows(ALERTS) == [as_json(a) for a in alerts]
    assert logs_ingestion.rows(HEALTH) == [as_json(batch_health)]
    assert logs_ingestion.wire_rows(EVENTS) == [as_sent(e) for e in events]
    for spec in TABLES:
        declared = [c["name"] for c in stream_columns(spec)]
        for row in logs_ingestion.wire_rows(spec.stream):
            assert list(row) == [name for name in declared if name in row]
            assert None not in row.values()
            assert not set(row) & {name for name, _ in spec.constants}
    assert logs_ingestion.wire_rows(EVENTS)[0]["t"] == "2026-11-02T08:00:00Z"  # TimeGenerated

    assert sum(sink.delivered_rows.values()) == 7
    assert dict(sink.delivered_rows) == {EVENTS: 4, ALERTS: 2, HEALTH: 1}
    assert not sink.queued_rows and not sink.rejected_rows
    assert outbox.pending_count() == 0
    assert_no_phi(log_stream.getvalue(), {PATIENT_ID, FHIR_URI})


def test_a_complete_alert_goes_to_sentinel_capped_with_its_counts(
    logs_ingestion, credential, tmp_path
):
    # The archived alert names all 250 patients and cites 250 reads; Sentinel's row carries
    # the first 50 of each, how many there are and where the rest are (the AlertId).
    uids = [f"uid-{i:07d}" for i in range(250)]
    patients = [f"p-{i:04x}" for i in range(250)]
    full = alert(7, evidence_event_uids=uids, patient_refs=patients)
    sink = make_sink(logs_ingestion, LocalOutbox(tmp_path / "outbox"), credential)
    sink.emit(result([], [full]))
    (row,) = logs_ingestion.rows(ALERTS)
    assert row["EvidenceEventUids"] == uids[:50] and row["PatientRefs"] == patients[:50]
    assert (row["EvidenceEventCount"], row["DistinctPatientCount"]) == (250, 250)
    assert full.alert_id in row["EvidenceRef"]
    assert row["AlertId"] == full.alert_id
    # A small alert goes as it is.
    small = alert(8, patient_refs=["p-1"])
    assert sentinel_alert(small) is small


def test_empty_batch_sends_nothing(logs_ingestion, credential, tmp_path):
    sink = make_sink(logs_ingestion, LocalOutbox(tmp_path / "outbox"), credential)
    sink.emit(result())
    assert logs_ingestion.requests == []


def test_batch_over_1_mib_is_split_and_every_row_arrives_once(logs_ingestion, credential, tmp_path):
    sink = make_sink(logs_ingestion, LocalOutbox(tmp_path / "outbox"), credential)
    events = [event(i, http_user_agent=f"agent-{i:07d}-" + "x" * 700) for i in range(3000)]
    assert sum(len(json.dumps(e.to_wire())) for e in events) > 2 * 1024 * 1024

    sink.emit(result(events))

    requests = logs_ingestion.ingest_requests()
    assert len(requests) >= 3
    assert all(r.status == 204 for r in requests)
    assert all(r.raw_bytes <= MAX_REQUEST_BYTES for r in requests)
    assert sum(r.rows for r in requests) == 3000
    uids = Counter(row["EventUid"] for row in logs_ingestion.rows(EVENTS))
    assert set(uids) == {e.event_uid for e in events}
    assert max(uids.values()) == 1
    assert sink.delivered_rows[EVENTS] == 3000


def test_bare_client_chunks_can_exceed_the_1_mib_limit(logs_ingestion, credential):
    """Why the sink groups rows itself: the client sums json.dumps(row) sizes up to 1 MiB but
    sends them joined with ", ", so a chunk of small rows goes over 1,048,576 bytes, which
    the service answers with 413 ContentLengthLimitExceeded."""
    client = LogsIngestionClient(
        logs_ingestion.endpoint,
        credential,
        connection_verify=logs_ingestion.ca_file,
        retry_policy=IngestionRetryPolicy(retry_total=0),
    )
    rows = [as_json(event(i, http_user_agent="x" * 700)) for i in range(3000)]
    errors: list[Any] = []
    client.upload(logs_ingestion.dcr_id, EVENTS, rows, on_error=errors.append)
    statuses = [(r.status, r.raw_bytes) for r in logs_ingestion.ingest_requests()]
    assert any(status == 413 and size > 1024 * 1024 for status, size in statuses), statuses
    assert errors and all(e.error.status_code == 413 for e in errors)


def test_413_for_several_rows_splits_the_group(credential, tmp_path):
    standin = LogsIngestionStandIn(tmp_path, max_body_bytes=300_000).start()
    try:
        sink = make_sink(standin, LocalOutbox(tmp_path / "outbox"), credential)
        events = [event(i, http_user_agent="y" * 900) for i in range(800)]
        sink.emit(result(events))
        statuses = Counter(r.status for r in standin.ingest_requests())
        assert statuses[413] >= 1 and statuses[204] >= 2
        assert sorted(r["EventUid"] for r in standin.rows(EVENTS)) == [e.event_uid for e in events]
        assert not sink.rejected_rows and not sink.queued_rows
    finally:
        standin.stop()


# ------------------------------------------------------------------------------ failures


@pytest.mark.parametrize(("status", "attempts"), [(502, 1), (408, 1), (429, 1), (503, 3)])
def test_stock_retry_policy_barely_retries_a_post(logs_ingestion, credential, status, attempts):
    """Why the sink builds its client with IngestionRetryPolicy: azure-core's default policy
    retries a POST only on 500/503/504 or when Retry-After is present; 408, 502 and a 429
    without Retry-After fail on the first attempt."""
    client = LogsIngestionClient(
        logs_ingestion.endpoint,
        credential,
        connection_verify=logs_ingestion.ca_file,
        retry_total=2,
        retry_backoff_factor=0.01,
    )
    logs_ingestion.fail_next(status, count=3)
    errors: list[Any] = []
    client.upload(logs_ingestion.dcr_id, EVENTS, [as_json(event(1))], on_error=errors.append)
    assert len(logs_ingestion.ingest_requests()) == attempts
    assert errors[0].error.status_code == status


def test_stand_in_refuses_what_the_service_refuses(logs_ingestion):
    context = ssl.create_default_context(cafile=logs_ingestion.ca_file)
    rows = [as_json(event(1))]

    def post(path: str, body: Any, headers: dict[str, str]) -> int:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(
            logs_ingestion.endpoint + path,
            data=data,
            method="POST",
            headers={"Content-Type": "application/json", **headers},
        )
        try:
            with urllib.request.urlopen(request, context=context) as response:
                return response.status
        except urllib.error.HTTPError as err:
            return err.code

    path = f"/dataCollectionRules/{logs_ingestion.dcr_id}/streams/{EVENTS}?api-version=2023-01-01"
    bearer = {"Authorization": "Bearer t"}
    assert post(path, rows, {}) == 401
    assert post(path.replace(logs_ingestion.dcr_id, "dcr-other"), rows, bearer) == 404
    assert post(path.replace(EVENTS, "Custom-Other"), rows, bearer) == 404
    assert post(path.replace("2023-01-01", "2021-11-01-preview"), rows, bearer) == 400
    assert post(path, [{**rows[0], "RecordCount": "1"}], bearer) == 400  # long as a string
    assert post(path, [{**rows[0], "TimeGenerated": "yesterday"}], bearer) == 400
    assert post(path, [{**rows[0], "Extra": 1}], bearer) == 400
    assert post(path, {"EventUid": "x"}, bearer) == 400  # not an array
    big = gzip.compress(json.dumps([{"EventUid": "a" * 1_100_000}]).encode())
    assert len(big) < 1024 * 1024  # small when compressed, too large when not
    assert post(path, big, {**bearer, "Content-Encoding": "gzip"}) == 413
    assert post(path, [{"EventUid": "u", "RecordCount": None}], bearer) == 204
    assert logs_ingestion.rows(EVENTS) == [{"EventUid": "u", "RecordCount": None}]
    codes = [r.status for r in logs_ingestion.requests]
    assert codes == [401, 404, 404, 400, 400, 400, 400, 400, 413, 204]


def test_an_outbox_that_cannot_be_written_costs_counts_not_an_exception(
    logs_ingestion, credential, tmp_path
):
    class BrokenOutbox(LocalOutbox):
        def _write(self, name: str, data: bytes) -> None:
            raise OSError("disk full")

    sink = make_sink(logs_ingestion, BrokenOutbox(tmp_path / "outbox"), credential)
    logs_ingestion.outage(True)
    sink.emit(result([event(1), event(2)], [alert(1)]))  # nothing raised
    assert dict(sink.lost_rows) == {EVENTS: 2, ALERTS: 1}
    assert not sink.queued_rows


def test_429_with_retry_after_is_retried_and_succeeds(logs_ingestion, credential, tmp_path):
    outbox = LocalOutbox(tmp_path / "outbox")
    sink = make_sink(logs_ingestion, outbox, credential)
    logs_ingestion.fail_next(429, headers={"Retry-After": "1"})

    started = time.monotonic()
    sink.emit(result([event(1)]))
    elapsed = time.monotonic() - started

    first, second = logs_ingestion.ingest_requests()
    assert (first.status, second.status) == (429, 204)
    assert second.at - first.at >= 0.95  # Retry-After honoured, not the 0 s first back-off
    assert elapsed < 5
    assert [r["EventUid"] for r in logs_ingestion.rows(EVENTS)] == ["uid-0000001"]
    assert outbox.pending_count() == 0 and not sink.queued_rows


def test_retry_after_beyond_the_cap_is_not_waited_for(logs_ingestion, credential, tmp_path):
    outbox = LocalOutbox(tmp_path / "outbox")
    sink = make_sink(logs_ingestion, outbox, credential)
    logs_ingestion.fail_next(429, headers={"Retry-After": "3600"})

    started = time.monotonic()
    sink.emit(result([event(1)], [alert(1)]))
    assert time.monotonic() - started < 5

    assert [r.status for r in logs_ingestion.ingest_requests()] == [429]  # alerts: not tried
    assert dict(sink.queued_rows) == {EVENTS: 1, ALERTS: 1}
    (blocked_entry, _) = list(outbox.pending())
    assert blocked_entry.last_error == "HTTP 429 TooManyRequests"


@pytest.mark.parametrize("status", [503, 500, 502, 504, 408])
def test_repeated_5xx_beyond_the_retry_budget_goes_to_the_outbox(
    logs_ingestion, credential, tmp_path, log_stream, status
):
    outbox = LocalOutbox(tmp_path / "outbox")
    sink = make_sink(logs_ingestion, outbox, credential)
    logs_ingestion.fail_next(status, count=10)
    events, alerts, batch_health = [event(i) for i in range(5)], [alert(1)], health()

    sink.emit(result(events, alerts, batch_health))  # nothing raised

    # retry_total=2: three attempts for the events, then the service counts as down and the
    # alerts and health rows go straight to the outbox.
    assert [r.status for r in logs_ingestion.ingest_requests()] == [status] * 3
    assert dict(sink.queued_rows) == {EVENTS: 5, ALERTS: 1, HEALTH: 1}
    pending = list(outbox.pending())
    assert [e.stream for e in pending] == [EVENTS, ALERTS, HEALTH]
    assert pending[0].rows == [as_sent(e) for e in events]  # the outbox keeps what was sent
    assert pending[0].attempts == 0

    logs_ingestion.clear_faults()
    report = sink.deliver_outbox()
    assert report.entries_delivered == 3 and report.remaining == 0
    assert [r["EventUid"] for r in logs_ingestion.rows(EVENTS)] == [e.event_uid for e in events]
    assert logs_ingestion.rows(ALERTS) == [as_json(alerts[0])]
    assert logs_ingestion.rows(HEALTH) == [as_json(batch_health)]
    assert outbox.pending_count() == 0
    assert f"HTTP {status}" in log_stream.getvalue()
    assert_no_phi(log_stream.getvalue(), {PATIENT_ID, FHIR_URI})


def test_a_failing_outbox_entry_is_kept_with_its_attempt_count(
    logs_ingestion, credential, tmp_path
):
    outbox = LocalOutbox(tmp_path / "outbox")
    sink = make_sink(logs_ingestion, outbox, credential)
    logs_ingestion.outage(True)
    sink.emit(result([event(1)]))
    report = sink.deliver_outbox()
    assert report.entries_kept == 1 and report.remaining == 1
    assert report.blocked == {"*": "HTTP 503 ServiceUnavailable"}
    (entry,) = outbox.pending()
    assert entry.attempts == 1 and entry.last_error == "HTTP 503 ServiceUnavailable"
    logs_ingestion.outage(False)
    assert sink.deliver_outbox().remaining == 0
    assert len(logs_ingestion.rows(EVENTS)) == 1


def test_connection_error_is_transient(credential, tmp_path):
    standin = LogsIngestionStandIn(tmp_path).start()
    endpoint, ca_file, dcr_id = standin.endpoint, standin.ca_file, standin.dcr_id
    standin.stop()  # nothing listens there any more
    outbox = LocalOutbox(tmp_path / "outbox")
    sink = sentinel_sink_from(
        endpoint,
        dcr_id,
        outbox,
        credential=credential,
        connection_verify=ca_file,
        retry_total=1,
        retry_backoff_factor=0.01,
    )
    sink.emit(result([event(1)], [alert(1)]))
    assert dict(sink.queued_rows) == {EVENTS: 1, ALERTS: 1}
    assert outbox.pending_count() == 2


def test_400_is_rejected_not_retried(logs_ingestion, credential, tmp_path, log_stream):
    outbox = LocalOutbox(tmp_path / "outbox")
    sink = make_sink(logs_ingestion, outbox, credential)
    logs_ingestion.fail_next(400)
    sink.emit(result([event(1), event(2)], [alert(1)]))

    assert [r.status for r in logs_ingestion.ingest_requests()] == [400, 204]  # alerts went on
    assert dict(sink.rejected_rows) == {EVENTS: 2}
    assert outbox.pending_count() == 0
    (rejected,) = outbox.rejected()
    assert rejected.stream == EVENTS and len(rejected.rows) == 2
    assert rejected.reason.startswith("HTTP 400 InvalidStream")
    assert sink.deliver_outbox().remaining == 0
    assert len(logs_ingestion.ingest_requests()) == 2  # never sent again
    assert "HTTP 400 InvalidStream" in log_stream.getvalue()


def test_schema_mismatch_from_the_stand_in_is_rejected(logs_ingestion, credential, tmp_path):
    """A real 400 from validation: alert rows posted to the events stream."""
    outbox = LocalOutbox(tmp_path / "outbox")
    sink = make_sink(logs_ingestion, outbox, credential, streams={"alerts": EVENTS})
    sink.emit(result([event(1)], [alert(1)]))
    assert [r.status for r in logs_ingestion.ingest_requests()] == [204, 400]
    (rejected,) = outbox.rejected()
    assert rejected.reason == "HTTP 400 InvalidStream"  # the service's text is not kept
    assert rejected.rows == [as_sent(alert(1))]


def test_rejected_keeps_status_and_code_never_the_service_text(
    logs_ingestion, credential, tmp_path
):
    """A 400's message can quote row content (PHI): rejected/ keeps status and error code."""
    outbox = LocalOutbox(tmp_path / "outbox")
    sink = make_sink(logs_ingestion, outbox, credential)
    echo = "row 0: 'ECHOED-MRN-99812' is not valid for column Object"
    logs_ingestion.fail_next(400, body={"error": {"code": "InvalidStream", "message": echo}})
    sink.emit(result([event(1)]))
    (rejected,) = outbox.rejected()
    assert rejected.reason == "HTTP 400 InvalidStream"
    stored = b"".join(gzip.decompress(p.read_bytes()) for p in (tmp_path / "outbox").rglob("*.gz"))
    assert b"ECHOED-MRN-99812" not in stored and b"is not valid" not in stored


def test_a_row_over_the_limit_is_rejected_without_being_sent(logs_ingestion, credential, tmp_path):
    outbox = LocalOutbox(tmp_path / "outbox")
    sink = make_sink(logs_ingestion, outbox, credential)
    huge = event(2, http_user_agent="z" * 1_100_000)
    sink.emit(result([event(1), huge, event(3)]))

    (request,) = logs_ingestion.ingest_requests()
    assert request.rows == 2 and request.raw_bytes < 10_000
    assert [r["EventUid"] for r in logs_ingestion.rows(EVENTS)] == ["uid-0000001", "uid-0000003"]
    assert dict(sink.rejected_rows) == {EVENTS: 1}
    (rejected,) = outbox.rejected()
    assert expand(EVENTS, rejected.rows[0])["EventUid"] == "uid-0000002"
    assert "can never be sent" in rejected.reason
    assert outbox.pending_count() == 0


def test_alert_versions_can_arrive_out_of_order(logs_ingestion, credential, tmp_path):
    """At-least-once through an outbox is not ordered: a stale alert version can be ingested
    after the final one. Here the versions differ only in Severity/Title/Reasons (a Key Vault
    alert raised to High by a later successful read adds evidence, not events), so neither
    ingestion order nor EventCount/LastEventTime tells a consumer which is the latest."""
    outbox = LocalOutbox(tmp_path / "outbox")
    sink = make_sink(logs_ingestion, outbox, credential, max_outbox_entries_per_emit=0)
    stale = alert(1, severity="Medium", title="Repeated failed Key Vault operations")
    final = alert(1, severity="High", title="Repeated failed ..., then a successful secret read")
    logs_ingestion.outage(True)
    sink.emit(result(alerts=[stale]))
    logs_ingestion.outage(False)
    sink.emit(result(alerts=[final]))
    sink.deliver_outbox()
    assert logs_ingestion.rows(ALERTS) == [as_json(final), as_json(stale)]
    tie = {(r["EventCount"], r["LastEventTime"]) for r in logs_ingestion.rows(ALERTS)}
    assert len(tie) == 1


def test_outbox_budget_per_emit(logs_ingestion, credential, tmp_path):
    outbox = LocalOutbox(tmp_path / "outbox")
    for i in range(5):
        outbox.add(EVENTS, [as_json(event(i))])
    sink = make_sink(logs_ingestion, outbox, credential, max_outbox_entries_per_emit=2)
    sink.emit(result([event(100)]))
    assert outbox.pending_count() == 3
    # Oldest first.
    assert [r["EventUid"] for r in logs_ingestion.rows(EVENTS)] == [
        "uid-0000000",
        "uid-0000001",
        "uid-0000100",
    ]
    assert sink.deliver_outbox(max_entries=1).remaining == 2
    assert sink.deliver_outbox().remaining == 0


def test_unknown_stream_blocks_only_that_stream(logs_ingestion, credential, tmp_path):
    outbox = LocalOutbox(tmp_path / "outbox")
    sink = make_sink(logs_ingestion, outbox, credential, streams={"alerts": "Custom-Missing"})
    sink.emit(result([event(1)], [alert(1)], health()))
    assert [(r.stream, r.status) for r in logs_ingestion.ingest_requests()] == [
        (EVENTS, 204),
        ("Custom-Missing", 404),
        (HEALTH, 204),
    ]
    (entry,) = outbox.pending()
    assert entry.stream == "Custom-Missing" and entry.last_error == "HTTP 404 NotFound"


# ------------------------------------------------------------------------------ the outbox


def test_outbox_contract(outbox):
    assert outbox.pending_count() == 0
    outbox.add(EVENTS, [{"EventUid": "a"}])
    outbox.add(ALERTS, [{"AlertId": "b"}], attempts=2)
    outbox.add(EVENTS, [])  # nothing
    first, second = outbox.pending()
    assert (first.stream, first.rows, first.attempts) == (EVENTS, [{"EventUid": "a"}], 0)
    assert (second.stream, second.attempts) == (ALERTS, 2)
    assert first.name < second.name and stream_of(first.name) == EVENTS
    assert [e.stream for e in outbox.pending(skip_streams={EVENTS})] == [ALERTS]

    outbox.retry_later(first, 1, "HTTP 503")
    again = next(iter(outbox.pending()))
    assert (again.name, again.attempts, again.last_error) == (first.name, 1, "HTTP 503")

    outbox.reject(second, "HTTP 400 InvalidStream: no")
    outbox.reject([{"EventUid": "c"}], "too big", stream=EVENTS)
    assert [e.name for e in outbox.pending()] == [first.name]
    reasons = sorted(e.reason for e in outbox.rejected())
    assert reasons == ["HTTP 400 InvalidStream: no", "too big"]

    outbox.done(again)
    outbox.done(again)  # already gone: fine
    assert outbox.pending_count() == 0


def test_older_entries_come_first_even_when_added_later(tmp_path):
    outbox = LocalOutbox(tmp_path / "outbox")
    outbox.add(EVENTS, [{"EventUid": "new"}])
    outbox.add(EVENTS, [{"EventUid": "old"}], first_failed=T0)
    assert [e.rows[0]["EventUid"] for e in outbox.pending()] == ["old", "new"]


def test_blob_outbox_from_connection_string_and_a_missing_container(azurite, blob_container):
    outbox = BlobOutbox.from_connection_string(
        azurite.connection_string, blob_container.container_name, retry_total=0
    )
    outbox.add(EVENTS, [{"EventUid": "a"}])
    assert [n.split("/")[0] for n in blob_container.list_blob_names()] == ["pending"]
    assert outbox.location.endswith(blob_container.container_name)
    with pytest.raises(OutboxError, match="does not exist"):
        BlobOutbox(azurite.blob_service().get_container_client("does-not-exist"))


# ------------------------------------------------------------------------------ the outage


def _phi_in(logs_dir: Path) -> set[str]:
    """Patient ids, FHIR URIs with an id and UPNs that occur in the generated input."""
    text = "".join(gzip.decompress(p.read_bytes()).decode() for p in logs_dir.glob("*.gz"))
    ids = set(re.findall(r"Patient/([A-Za-z0-9\-.]{6,64})", text))
    uris = set(re.findall(r"https://[^\"\s]+/Patient/[A-Za-z0-9\-.]+", text))
    upns = set(re.findall(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+", text))
    assert ids and uris and upns
    return ids | uris | upns


def test_outage_loses_nothing(outbox, logs_ingestion, credential, tmp_path, log_stream):
    generate(tmp_path / "gen", seed=11, records=3000)
    files = sorted((tmp_path / "gen" / "logs").glob("*.jsonl.gz"))
    batches = [b for f in files for b in _batches(f, 10)]
    assert len(batches) > 40
    # A small per-batch outbox budget, so a backlog is left for the timer.
    sink = make_sink(logs_ingestion, outbox, credential, max_outbox_entries_per_emit=1)
    emitted = CollectingSink()
    pipeline = build_pipeline(Settings(), tmp_path / "archive", [emitted, sink])

    half = len(batches) // 2
    logs_ingestion.outage(True)
    for index, batch in enumerate(batches):
        if index == half:
            logs_ingestion.outage(False)
        pipeline.process(batch)
    pipeline.finish()
    assert pipeline.sink_failures == 0
    assert sum(sink.queued_rows.values()) > 0
    backlog = outbox.pending_count()
    assert backlog > 0

    report = sink.deliver_outbox()  # the timer
    assert report.entries_delivered == backlog and report.remaining == 0
    assert outbox.pending_count() == 0
    assert list(outbox.rejected()) == []
    assert not sink.rejected_rows and not sink.lost_rows
    statuses = Counter(r.status for r in logs_ingestion.ingest_requests())
    assert statuses[503] > 0 and set(statuses) == {204, 503}

    # Events: every EventUid arrived, each row as emitted.
    wire = {e.event_uid: as_json(e) for e in emitted.events}
    stored = logs_ingestion.rows(EVENTS)
    assert {r["EventUid"] for r in stored} == set(wire)
    assert all(r == wire[r["EventUid"]] for r in stored)
    # Health: one row per processed batch.
    assert sorted({r["Batch"] for r in logs_ingestion.rows(HEALTH)}) == sorted(
        h.batch for h in emitted.health
    )
    assert len(emitted.health) == len(batches)
    # Alerts: at-least-once, several versions per AlertId. Every id arrived, every stored
    # row is a version the pipeline emitted (as Sentinel gets it: its lists capped), and
    # after deduping each AlertId's rows the final version is there exactly once.
    versions: dict[str, list[Any]] = defaultdict(list)
    for a in emitted.alert_versions:
        versions[a.alert_id].append(as_json(sentinel_alert(a)))
    stored_alerts: dict[str, list[Any]] = defaultdict(list)
    for row in logs_ingestion.rows(ALERTS):
        stored_alerts[row["AlertId"]].append(row)
    assert set(stored_alerts) == set(emitted.alerts) and emitted.alerts
    for alert_id, rows in stored_alerts.items():
        assert all(r in versions[alert_id] for r in rows)
        distinct = {json.dumps(r, sort_keys=True) for r in rows}
        final = json.dumps(as_json(sentinel_alert(emitted.alerts[alert_id])), sort_keys=True)
        assert final in distinct

    assert_no_phi(log_stream.getvalue(), _phi_in(tmp_path / "gen" / "logs"))
    assert "sentinel ingestion failed" in log_stream.getvalue()


# ------------------------------------------------------------------------------ RowId


class CrashingDone:
    """An outbox whose first `done` dies, as a kill between an accepted upload and the
    delete would: the entry stays pending and is sent again."""

    def __init__(self, outbox: Outbox) -> None:
        self.inner = outbox
        self.crashes = 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def done(self, entry: Any) -> None:
        if self.crashes:
            self.crashes -= 1
            raise KeyboardInterrupt("killed after the upload was accepted")
        self.inner.done(entry)


def test_a_row_sent_twice_keeps_its_row_id(logs_ingestion, credential, tmp_path):
    outbox = CrashingDone(LocalOutbox(tmp_path / "outbox"))
    sink = make_sink(logs_ingestion, outbox, credential, max_outbox_entries_per_emit=0)
    final = alert(1, severity="High", event_count=300)
    models = [event(1), event(2), alert(1), final]
    logs_ingestion.outage(True)
    sink.emit(result(models[:2], models[2:3]))
    sink.emit(result(alerts=[final]))
    logs_ingestion.outage(False)
    with pytest.raises(KeyboardInterrupt):
        sink.deliver_outbox()  # the first entry is accepted, then the process dies
    sink.deliver_outbox()  # after the restart: that entry is sent again

    events, alerts = logs_ingestion.rows(EVENTS), logs_ingestion.rows(ALERTS)
    assert len(events) == 4  # the duplicates the kill causes
    ids = Counter(r["RowId"] for r in events + alerts)
    assert sorted(ids.values()) == [1, 1, 2, 2]
    deduped = {r["RowId"]: r for r in events + alerts}
    assert sorted(deduped.values(), key=json.dumps) == sorted(map(as_json, models), key=json.dumps)
    # Two versions of one alert are two rows; so are two events of one record.
    assert len({r["RowId"] for r in alerts}) == 2
    twins = [event(7, object=f"{FHIR_URI}/{kind}") for kind in ("Observation", "Condition")]
    assert len({as_json(t)["RowId"] for t in twins}) == 2


def test_a_row_queued_before_row_id_gets_the_same_row_id(logs_ingestion, credential, tmp_path):
    outbox = LocalOutbox(tmp_path / "outbox")
    legacy = {k: v for k, v in as_json(event(1)).items() if k != "RowId"}
    outbox.add(EVENTS, [legacy])
    make_sink(logs_ingestion, outbox, credential).deliver_outbox()
    assert logs_ingestion.rows(EVENTS) == [as_json(event(1))]
