"""Events, alerts and batch health to Microsoft Sentinel through the Logs Ingestion API.

`SentinelSink.emit` runs after the pipeline has archived a batch, so it never raises for a
delivery problem: every row ends up delivered, in the outbox (transient failure: delivered
later), or rejected into the outbox's `rejected/` with a reason (it can never be delivered),
and each of those is counted per stream.

Requests: rows are `phiwatch.schema.tables.wire_row()` dicts (the compact wire form of
`phiwatch.schema.wire`: short keys, packed codes, derived columns the DCR transform rebuilds;
no nulls, no constants) posted to the DCR input streams of `phiwatch.schema.tables.TABLES`.
The sink groups rows itself so that each request's JSON array is at most
`max_request_bytes` (1,000,000 by default) *including* separators, and hands one group per
`LogsIngestionClient.upload` call.
The client's own chunking (1 MiB summed over `json.dumps(row)` without the ", " separators)
can produce bodies slightly over 1 MiB, which the service refuses with 413
ContentLengthLimitExceeded ("Maximum allowed content length: 1048576 bytes"); with the
sink's grouping the client never splits a group. A row that alone exceeds the limit is never
sent: it is rejected. Should the service still answer 413 for a group, the group is halved
and resent.

Failures (per group; `on_error` collects them, so one failed group never stops the others):
* 400 (InvalidStream: the rows do not match the DCR stream) is permanent: rejected.
* 413 for a single row: rejected.  413 for several rows: split and resent.
* 404 (unknown DCR or stream: a deployment problem): the rows are kept in the outbox, and
  that stream is not tried again in this call.
* 401, 403, 408, 429, 5xx, connection and credential errors are transient: the rows are kept
  in the outbox, and no stream is tried again in this call (the service or our identity is
  unwell; later rows of the call go straight to the outbox instead of waiting on retries).

Retries inside a request come from azure-core, configured by `IngestionRetryPolicy` (see
there): azure-core's stock policy does not retry a POST on 408/502, on 429 without
Retry-After, or on a connection error, and it sleeps whatever Retry-After says.

Delivery is at-least-once and not ordered: an older version of an alert can arrive after a
newer one (it waited in the outbox). Every row carries a `RowId` (phiwatch.schema.row_id, a
digest of its full form's content, the same in the compact form it travels in and in the
previous version's full rows): a row sent twice has one RowId, so consumers dedupe on it
(`summarize arg_max(_TimeReceived, *) by RowId`), and on AlertId for an alert's latest version.

Logs carry counts, stream names and status codes only: never row content (PHI), never the
service's error message (it can quote the rows).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from azure.monitor.ingestion import LogsIngestionClient

from phiwatch.batch import BatchResult
from phiwatch.model import MAX_EVIDENCE, AccessEvent, Alert, BatchHealth
from phiwatch.schema.tables import (
    ROW_ID,
    TABLES,
    full_wire_row,
    is_compact,
    row_id,
    spec_for,
    wire_row,
)
from phiwatch.sinks.ingestion import (
    CLIENT_CHUNK_BYTES,
    MAX_REQUEST_BYTES,
    RETRY_DEFAULTS,
    RETRY_KEYS,
    IngestionRetryPolicy,
    classify,
    json_size,
    request_groups,
)
from phiwatch.sinks.outbox import Outbox, OutboxEntry

log = structlog.get_logger("phiwatch.sinks.sentinel")

DEFAULT_STREAMS: dict[str, str] = {
    kind: next(spec.stream for spec in TABLES if spec.model is model)
    for kind, model in (("events", AccessEvent), ("alerts", Alert), ("health", BatchHealth))
}

# A slow Sentinel must never hold up the archive path: one emit() (a batch) takes at most
# this long, outbox backlog and new rows together. Every request gets what is left of it as
# its timeout, and what has not gone out when it is spent goes to the outbox (nothing is lost,
# the timer sends it). With azure-core's stock settings a hanging endpoint held each
# invocation for 60 s (the read timeout) per attempt.
DEFAULT_SECONDS_PER_EMIT = 5.0

# Of that, outbox entries delivered per emit(), so a batch is not held up by hours of
# backlog; the timer function drains the rest with deliver_outbox(), which has its own budget.
DEFAULT_OUTBOX_ENTRIES_PER_EMIT = 10

DEFAULT_OUTBOX_SECONDS_PER_EMIT = 2.0

DEFAULT_DELIVER_ENTRIES = 500

DEFAULT_DELIVER_SECONDS = 120.0  # the timer fires every 5 minutes

# Pending entries the outbox may hold. Beyond, new rows are refused (counted, logged, and
# the `outbox-backlog` alert is up): refusing the newest keeps what waited longest, and the
# archive holds every row anyway (Sentinel's rows can be re-derived from it).
DEFAULT_MAX_OUTBOX_ENTRIES = 20_000

TIME_BUDGET = "time budget"

_TIMEOUT_KEYS = ("timeout", "read_timeout", "connection_timeout")

_BLOCK_ALL = "*"


@dataclass
class DeliveryReport:
    """What one emit() or deliver_outbox() did. Counts only (no row content)."""

    rows_delivered: Counter[str] = field(default_factory=Counter)  # per stream
    rows_queued: Counter[str] = field(default_factory=Counter)  # newly put in the outbox
    rows_rejected: Counter[str] = field(default_factory=Counter)
    rows_lost: Counter[str] = field(default_factory=Counter)  # the outbox write failed too
    rows_refused: Counter[str] = field(default_factory=Counter)  # the outbox was full
    entries_delivered: int = 0
    entries_kept: int = 0  # tried, failed transiently, still pending
    entries_rejected: int = 0
    # Why delivery stopped early: stream (or "*" for all) → status, e.g. "HTTP 503".
    blocked: dict[str, str] = field(default_factory=dict)
    remaining: int | None = None  # pending entries afterwards (deliver_outbox only)
    error: str | None = None  # an unexpected failure (exception type name)
    budget_spent: bool = False  # the time budget ran out: the rest waits in the outbox

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows_delivered": dict(self.rows_delivered),
            "rows_queued": dict(self.rows_queued),
            "rows_rejected": dict(self.rows_rejected),
            "rows_lost": dict(self.rows_lost),
            "rows_refused": dict(self.rows_refused),
            "entries_delivered": self.entries_delivered,
            "entries_kept": self.entries_kept,
            "entries_rejected": self.entries_rejected,
            "blocked": dict(self.blocked),
            "remaining": self.remaining,
            "error": self.error,
            "budget_spent": self.budget_spent,
        }


@dataclass
class _Outcome:
    delivered: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)  # transient: keep
    rejected: list[tuple[list[dict[str, Any]], str]] = field(default_factory=list)
    error: str | None = None  # label of the last transient failure


def _earlier(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


class _Blocked:
    """`stream in blocked` for Outbox.pending(skip_streams=...)."""

    def __init__(self, blocked: dict[str, str]) -> None:
        self.blocked = blocked

    def __contains__(self, stream: object) -> bool:
        return _BLOCK_ALL in self.blocked or stream in self.blocked


class SentinelSink:
    """The Sink for Sentinel. `streams` overrides DCR stream names by kind ("events",
    "alerts", "health"); `upload_kwargs` go to every `upload` call (per-request options such
    as `retry_total` or `logging_enable`).

    Thread-safe: the timer's deliver_outbox() runs outside the batch lock, next to emit().
    One drain of the outbox at a time (two would send the same entries twice); emit() does
    not wait for the timer's, it leaves the backlog to it. `clock` is for tests."""

    def __init__(
        self,
        client: LogsIngestionClient,
        dcr_immutable_id: str,
        outbox: Outbox,
        streams: dict[str, str] | None = None,
        upload_kwargs: dict[str, Any] | None = None,
        *,
        max_seconds_per_emit: float | None = DEFAULT_SECONDS_PER_EMIT,
        max_outbox_entries_per_emit: int | None = DEFAULT_OUTBOX_ENTRIES_PER_EMIT,
        max_outbox_seconds_per_emit: float | None = DEFAULT_OUTBOX_SECONDS_PER_EMIT,
        max_outbox_entries: int | None = DEFAULT_MAX_OUTBOX_ENTRIES,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        request_timeouts: Mapping[str, float] | None = None,
        clock: Callable[[], float] = time.monotonic,
        compact_rows: bool = True,
    ) -> None:
        """`request_timeouts` are the client's own limits per request (`timeout` of the
        retry policy, `read_timeout`, `connection_timeout`): a budget only ever shortens
        them. `compact_rows` False sends the full rows (an older DCR that has no compact
        keys; the current one takes both)."""
        unknown = set(streams or {}) - set(DEFAULT_STREAMS)
        if unknown:
            raise ValueError(f"unknown stream kinds {sorted(unknown)}; use {DEFAULT_STREAMS}")
        if not 2 < max_request_bytes <= CLIENT_CHUNK_BYTES:
            raise ValueError(f"max_request_bytes must be in 3..{CLIENT_CHUNK_BYTES}")
        self.client = client
        self.dcr_immutable_id = dcr_immutable_id
        self.outbox = outbox
        self.streams = {**DEFAULT_STREAMS, **(streams or {})}
        self.upload_kwargs = dict(upload_kwargs or {})
        self.max_seconds_per_emit = max_seconds_per_emit
        self.max_outbox_entries_per_emit = max_outbox_entries_per_emit
        self.max_outbox_seconds_per_emit = max_outbox_seconds_per_emit
        self.max_outbox_entries = max_outbox_entries
        self.max_request_bytes = max_request_bytes
        self.request_timeouts = {
            **{k: float(self.upload_kwargs[k]) for k in _TIMEOUT_KEYS if k in self.upload_kwargs},
            **(request_timeouts or {}),
        }
        self.clock = clock
        self._row = wire_row if compact_rows else full_wire_row
        self._counts_lock = threading.Lock()
        self._drain_lock = threading.Lock()
        # Since construction, per stream.
        self.delivered_rows: Counter[str] = Counter()
        self.queued_rows: Counter[str] = Counter()
        self.rejected_rows: Counter[str] = Counter()
        self.lost_rows: Counter[str] = Counter()
        self.refused_rows: Counter[str] = Counter()

    # ------------------------------------------------------------------ the Sink protocol

    def emit(self, result: BatchResult) -> None:
        # The batch is archived: no failure here may escape (the host would retry the batch).
        report = DeliveryReport()
        deadline = self._deadline(self.max_seconds_per_emit)
        drain_deadline = _earlier(deadline, self._deadline(self.max_outbox_seconds_per_emit))
        if self._drain_lock.acquire(blocking=False):  # else the timer is draining: leave it
            try:
                self._drain(report, self.max_outbox_entries_per_emit, drain_deadline)
            except Exception as exc:  # the backlog stays pending; this batch still goes out
                report.error = type(exc).__name__
                log.error("sentinel outbox delivery failed", error=report.error)
            finally:
                self._drain_lock.release()
        batches: tuple[tuple[str, list[Any]], ...] = (
            ("events", result.events),
            ("alerts", result.alerts),
            ("health", [result.health] if result.health is not None else []),
        )
        for kind, models in batches:
            if not models:
                continue
            stream = self.streams[kind]
            try:
                # Sentinel's copy of an alert is capped; the archive holds it complete.
                shaped = [sentinel_alert(m) for m in models] if kind == "alerts" else models
                rows = [self._row(spec_for(m), m) for m in shaped]
                self._deliver_new(stream, rows, report, deadline)
            except Exception as exc:  # a bug, not a delivery failure: count, never raise
                report.error = type(exc).__name__
                self._lost(stream, len(models), exc, report)
        self._log("sentinel batch delivery", report)

    def deliver_outbox(
        self,
        max_entries: int | None = DEFAULT_DELIVER_ENTRIES,
        max_seconds: float | None = DEFAULT_DELIVER_SECONDS,
    ) -> DeliveryReport:
        """Deliver pending outbox entries, oldest first (the timer function). Stops early
        when the service fails transiently, after `max_entries` entries or `max_seconds`
        (None: no bound). Waits for a drain emit() has under way (bounded by its budget)."""
        report = DeliveryReport()
        try:
            with self._drain_lock:
                self._drain(report, max_entries, self._deadline(max_seconds))
        except Exception as exc:
            report.error = type(exc).__name__
            log.error("sentinel outbox delivery failed", error=report.error)
        try:
            report.remaining = self.outbox.pending_count()
        except Exception as exc:
            report.error = report.error or type(exc).__name__
        self._log("sentinel outbox delivery", report, always=True)
        return report

    def close(self) -> None:
        self.client.close()

    # ------------------------------------------------------------------ delivery

    def _deadline(self, seconds: float | None) -> float | None:
        return None if seconds is None else self.clock() + seconds

    def _drain(
        self, report: DeliveryReport, max_entries: int | None, deadline: float | None
    ) -> None:
        if max_entries is not None and max_entries <= 0:
            return
        if deadline is not None and self.clock() >= deadline:
            return
        entries = self.outbox.pending(skip_streams=_Blocked(report.blocked))
        for tried, entry in enumerate(entries, start=1):
            self._redeliver(entry, report, deadline)
            if _BLOCK_ALL in report.blocked:
                break  # the service is unwell: the rest waits for the next call
            if max_entries is not None and tried >= max_entries:
                break
            if deadline is not None and self.clock() >= deadline:
                break

    def _redeliver(
        self, entry: OutboxEntry, report: DeliveryReport, deadline: float | None
    ) -> None:
        stream = entry.stream
        # Rows queued by the previous version are full rows, which the DCR stream still takes
        # as they are; those queued before RowId existed get the one they would have had.
        rows = [r if ROW_ID in r or is_compact(r) else {**r, ROW_ID: row_id(r)} for r in entry.rows]
        outcome = self._send(stream, rows, report, deadline)
        self._count(self.delivered_rows, report.rows_delivered, stream, outcome.delivered)
        whole_entry_rejected = (
            len(outcome.rejected) == 1
            and not outcome.failed
            and len(outcome.rejected[0][0]) == len(entry.rows)
        )
        if whole_entry_rejected:
            rejected, reason = outcome.rejected[0]
            self.outbox.reject(entry, reason)
            report.entries_rejected += 1
            self._count(self.rejected_rows, report.rows_rejected, stream, len(rejected))
            return
        for rejected, reason in outcome.rejected:
            self._reject_rows(stream, rejected, reason, report)
        if not outcome.failed:
            self.outbox.done(entry)
            if outcome.delivered:
                report.entries_delivered += 1
            else:
                report.entries_rejected += 1
        elif len(outcome.failed) == len(entry.rows):
            if outcome.error is not None:  # not tried at all (the budget ran out): no attempt
                self.outbox.retry_later(entry, entry.attempts + 1, outcome.error)
            report.entries_kept += 1
        else:  # partly delivered: keep only what failed, in the entry's place in the order
            self.outbox.add(
                stream,
                outcome.failed,
                attempts=entry.attempts + 1,
                first_failed=entry.first_failed,
                last_error=outcome.error or TIME_BUDGET,
            )
            self.outbox.done(entry)
            report.entries_kept += 1

    def _deliver_new(
        self,
        stream: str,
        rows: list[dict[str, Any]],
        report: DeliveryReport,
        deadline: float | None,
    ) -> None:
        outcome = self._send(stream, rows, report, deadline)
        self._count(self.delivered_rows, report.rows_delivered, stream, outcome.delivered)
        for rejected, reason in outcome.rejected:
            self._reject_rows(stream, rejected, reason, report)
        if not outcome.failed:
            return
        if self._outbox_full():
            self._count(self.refused_rows, report.rows_refused, stream, len(outcome.failed))
            log.error(
                "sentinel outbox full; rows refused, they are only in the archive",
                stream=stream,
                rows=len(outcome.failed),
                max_entries=self.max_outbox_entries,
            )
            return
        try:
            self.outbox.add(stream, outcome.failed, last_error=outcome.error or TIME_BUDGET)
        except Exception as exc:
            self._lost(stream, len(outcome.failed), exc, report)
        else:
            self._count(self.queued_rows, report.rows_queued, stream, len(outcome.failed))

    def _outbox_full(self) -> bool:
        if self.max_outbox_entries is None:
            return False
        try:
            return self.outbox.pending_estimate() >= self.max_outbox_entries
        except Exception as exc:  # cannot tell: try to keep the rows
            log.warning("sentinel outbox size unknown", error=type(exc).__name__)
            return False

    def _reject_rows(
        self, stream: str, rows: list[dict[str, Any]], reason: str, report: DeliveryReport
    ) -> None:
        self._count(self.rejected_rows, report.rows_rejected, stream, len(rows))
        try:
            self.outbox.reject(rows, reason, stream=stream)
        except Exception as exc:
            self._lost(stream, len(rows), exc, report)

    def _lost(self, stream: str, count: int, exc: Exception, report: DeliveryReport) -> None:
        self._count(self.lost_rows, report.rows_lost, stream, count)
        log.error(
            "sentinel rows not delivered nor kept; they are only in the archive",
            stream=stream,
            rows=count,
            error=type(exc).__name__,
        )

    def _budget(self, deadline: float | None) -> dict[str, Any] | None:
        """Per-request options that end the request by `deadline`; None once it is spent.
        `timeout` bounds the retries (IngestionRetryPolicy) and the connect, `read_timeout`
        a server that accepts the request and never answers."""
        if deadline is None:
            return {}
        left = deadline - self.clock()
        if left <= 0:
            return None
        limits = self.request_timeouts
        return {key: min(limits.get(key, left), left) for key in _TIMEOUT_KEYS}

    def _send(
        self,
        stream: str,
        rows: list[dict[str, Any]],
        report: DeliveryReport,
        deadline: float | None,
    ) -> _Outcome:
        """Try to deliver `rows` by `deadline`; sort what did not go into kept (failed) and
        rejected. `outcome.error` stays None when nothing was tried (budget, blocked)."""
        blocked = report.blocked
        outcome = _Outcome()
        sized: list[tuple[dict[str, Any], int]] = []
        for row in rows:
            size = json_size(row)
            if size + 2 > self.max_request_bytes:
                outcome.rejected.append(
                    (
                        [row],
                        f"row is {size} bytes of JSON; a Logs Ingestion request takes at most "
                        f"{self.max_request_bytes} bytes, so it can never be sent",
                    )
                )
            else:
                sized.append((row, size))
        queue = deque(request_groups(sized, self.max_request_bytes))
        while queue:
            group = queue.popleft()
            if _BLOCK_ALL in blocked or stream in blocked:
                outcome.failed.extend(group)
                continue
            budget = self._budget(deadline)
            if budget is None:
                report.budget_spent = True
                outcome.failed.extend(group)
                continue
            delivered = len(group)
            for error, failed in self._upload(stream, group, budget):
                delivered -= len(failed)
                failure = classify(error)
                if failure.kind == "too_large" and len(failed) > 1:
                    half = len(failed) // 2
                    queue.appendleft(failed[half:])
                    queue.appendleft(failed[:half])
                elif failure.kind in ("too_large", "permanent"):
                    # Status and error code only: the service's message can quote the rows
                    # (PHI), and rejected/ is read by people re-driving them.
                    outcome.rejected.append((failed, failure.label))
                    log.error(
                        "sentinel rejected rows",
                        stream=stream,
                        rows=len(failed),
                        status=failure.label,
                    )
                else:
                    outcome.failed.extend(failed)
                    outcome.error = failure.label
                    blocked[stream if failure.kind == "stream" else _BLOCK_ALL] = failure.label
                    log.warning(
                        "sentinel ingestion failed; rows kept in the outbox",
                        stream=stream,
                        rows=len(failed),
                        status=failure.label,
                    )
            outcome.delivered += delivered
        return outcome

    def _upload(
        self, stream: str, rows: list[dict[str, Any]], budget: dict[str, Any]
    ) -> list[tuple[BaseException, list[dict[str, Any]]]]:
        failures: list[tuple[BaseException, list[dict[str, Any]]]] = []

        def on_error(error: Any) -> None:
            failures.append((error.error, [dict(r) for r in error.failed_logs]))

        logs: list[MutableMapping[str, Any]] = list(rows)
        try:
            self.client.upload(
                rule_id=self.dcr_immutable_id,
                stream_name=stream,
                logs=logs,
                on_error=on_error,
                **{**self.upload_kwargs, **budget},
            )
        except Exception as exc:  # outside a chunk (never seen); treat the group as failed
            failures = [(exc, rows)]
        return failures

    def _count(self, total: Counter[str], report: Counter[str], stream: str, n: int) -> None:
        if n:
            with self._counts_lock:  # emit() and the timer's delivery run side by side
                total[stream] += n
            report[stream] += n

    def _log(self, message: str, report: DeliveryReport, *, always: bool = False) -> None:
        notable = (
            report.rows_queued
            or report.rows_rejected
            or report.rows_lost
            or report.rows_refused
            or report.budget_spent
            or report.entries_delivered
            or report.entries_kept
            or report.entries_rejected
            or report.error
        )
        fields = {
            "delivered": sum(report.rows_delivered.values()),
            "queued": sum(report.rows_queued.values()),
            "rejected": sum(report.rows_rejected.values()),
            "lost": sum(report.rows_lost.values()),
            "refused": sum(report.rows_refused.values()),
            "budget_spent": report.budget_spent,
            "outbox_delivered": report.entries_delivered,
            "outbox_kept": report.entries_kept,
            "outbox_rejected": report.entries_rejected,
            "blocked": dict(report.blocked),
        }
        if report.remaining is not None:
            fields["outbox_remaining"] = report.remaining
        (log.info if notable or always else log.debug)(message, **fields)


def sentinel_alert(alert: Alert) -> Alert:
    """The alert as Sentinel gets it: its lists cut to MAX_EVIDENCE entries, so one row stays
    small whatever the burst, with the counts and where the rest are. The archived alert is
    the complete one (`phiwatch archive evidence ALERT_ID` exports it with every event)."""
    uids = alert.evidence_event_uids
    patients = alert.patient_refs or []
    if len(uids) <= MAX_EVIDENCE and len(patients) <= MAX_EVIDENCE:
        return alert
    return alert.model_copy(
        update={
            "evidence_event_uids": uids[:MAX_EVIDENCE],
            "patient_refs": patients[:MAX_EVIDENCE] or None,
            "evidence_event_count": len(uids),
            "evidence_ref": (
                f"archived alert {alert.alert_id} (alerts/ in the audit archive) holds all "
                f"{len(uids)} evidence events and {len(patients)} patients: "
                f"phiwatch archive evidence {alert.alert_id}"
            ),
        }
    )


def sentinel_sink_from(
    endpoint: str,
    dcr_immutable_id: str,
    outbox: Outbox,
    credential: Any = None,
    *,
    streams: dict[str, str] | None = None,
    upload_kwargs: dict[str, Any] | None = None,
    max_seconds_per_emit: float | None = DEFAULT_SECONDS_PER_EMIT,
    max_outbox_entries_per_emit: int | None = DEFAULT_OUTBOX_ENTRIES_PER_EMIT,
    max_outbox_seconds_per_emit: float | None = DEFAULT_OUTBOX_SECONDS_PER_EMIT,
    max_outbox_entries: int | None = DEFAULT_MAX_OUTBOX_ENTRIES,
    clock: Callable[[], float] = time.monotonic,
    compact_rows: bool = True,
    **client_kwargs: Any,
) -> SentinelSink:
    """A SentinelSink over a real `LogsIngestionClient` for `endpoint` (the DCE, or the DCR's
    logs-ingestion endpoint). Authenticates with `DefaultAzureCredential` (the managed
    identity, which needs Monitoring Metrics Publisher on the DCR) unless a credential is
    given. Retry settings (`retry_total`, `retry_backoff_factor`, `retry_backoff_max`,
    `timeout`, `max_retry_after`, ...) override RETRY_DEFAULTS; other keywords go to the
    client (`connection_verify`, `connection_timeout`, `read_timeout`, ...)."""
    if credential is None:
        from azure.identity import DefaultAzureCredential  # noqa: PLC0415 (slow import)

        credential = DefaultAzureCredential()
    retry = {
        **RETRY_DEFAULTS,
        **{k: client_kwargs.pop(k) for k in RETRY_KEYS & client_kwargs.keys()},
    }
    client_kwargs.setdefault("connection_timeout", 10)
    client_kwargs.setdefault("read_timeout", 60)
    client = LogsIngestionClient(
        endpoint=endpoint,
        credential=credential,
        retry_policy=IngestionRetryPolicy(**retry),
        **client_kwargs,
    )
    return SentinelSink(
        client,
        dcr_immutable_id,
        outbox,
        streams,
        upload_kwargs,
        max_seconds_per_emit=max_seconds_per_emit,
        max_outbox_entries_per_emit=max_outbox_entries_per_emit,
        max_outbox_seconds_per_emit=max_outbox_seconds_per_emit,
        max_outbox_entries=max_outbox_entries,
        compact_rows=compact_rows,
        request_timeouts={
            "timeout": float(retry["timeout"]),
            "read_timeout": float(client_kwargs["read_timeout"]),
            "connection_timeout": float(client_kwargs["connection_timeout"]),
        },
        clock=clock,
    )
