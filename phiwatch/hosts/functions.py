"""The Functions host glue, free of `azure.functions`: messages → one pipeline batch per
partition (`normalize`), phi-events messages → the detect stage (`detect`), and the
process-wide instances `function_app.py` calls.

Bad records never raise here (the pipeline dead-letters them); an archive failure does, on
purpose: the Functions host checkpoints when the function returns, even after an exception,
so only a raise plus the function's retry policy replays a batch that is not in the archive
yet (DESIGN.md §1, "archive before emit, emit before return"). A batch that fails after its
raw put (`BatchPoisoned`) raises too, up to PHIWATCH_POISON_BATCH_ATTEMPTS times; then it is
quarantined and the call returns.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TypeVar

import structlog

from phiwatch.archive.alerts import archive_alerts
from phiwatch.batch import Batch, BatchResult, Forwarder, Sink, emit_to
from phiwatch.config import Settings
from phiwatch.detect.stage import DetectProcessor, DetectResult
from phiwatch.detect.state_store import (
    StateStore,
)
from phiwatch.eventhubs.batches import build_batch
from phiwatch.eventhubs.message import EventHubMessage
from phiwatch.hosts import collector
from phiwatch.hosts.activity import ACTIVITY
from phiwatch.hosts.inprocess_state import InProcessState
from phiwatch.logs import configure_logging
from phiwatch.phievents.forwarder import PublishingForwarder
from phiwatch.pipeline import Pipeline
from phiwatch.quarantine import BatchPoisoned, PoisonAttempts
from phiwatch.rules.scheduled import ScheduledRules, backends_from
from phiwatch.sinks.backlog_alert import backlog_alert, hour_of
from phiwatch.sinks.sentinel import DeliveryReport
from phiwatch.sources import canary
from phiwatch.wiring import (
    SETTINGS_ERRORS,
    ConfigurationError,
    archive_store,
    build_archive,
    build_detector,
    build_pipeline,
    build_sinks,
    event_publisher,
    load_settings,
    sentinel_of,
    state_store,
)

log = structlog.get_logger("phiwatch.eventhub")


class EventHubBatchProcessor:
    """`normalize`: one long-lived pipeline per process (the dedupe set lives in it). With a
    phi-events hub configured it forwards events there (two stages); without, it runs the
    detections itself, which is right only for a diagnostics hub with one partition."""

    def __init__(
        self,
        settings: Settings,
        sinks: Sequence[Sink] | None = None,
        forwarder: Forwarder | None = None,
    ) -> None:
        self.hub = settings.eventhub_name  # None: the host's trigger metadata names it
        self._sinks = list(sinks) if sinks is not None else build_sinks(settings)
        self.sentinel = sentinel_of(self._sinks)
        if forwarder is None and settings.phi_events_hub:
            forwarder = PublishingForwarder.for_settings(event_publisher(settings), settings)
        if forwarder is None:
            log.warning(
                "no phi-events hub configured: detections run inside normalize, correct only "
                "for a diagnostics hub with one partition (set PHIWATCH_PHI_EVENTS_HUB)"
            )
        # Built now so a missing key or archive fails at the first invocation, loudly.
        self._pipeline: Pipeline = build_pipeline(
            settings, archive_store(settings), self._sinks, forwarder
        )
        self._backlog_alert_entries = settings.outbox_backlog_alert_entries
        self._generation = settings.eventhub_generation
        # The Python worker runs sync functions on a thread pool, so two partitions can be
        # processed at once; the pipeline's state is not thread-safe.
        self._lock = threading.Lock()
        # In memory, per batch name: the retry policy is unbounded on purpose (outages), so
        # this is what bounds the retries of a batch that fails the same way every time.
        self._poison = PoisonAttempts(settings.poison_batch_attempts)
        self._inprocess: InProcessState | None = None
        if forwarder is None and self._pipeline.engine is not None:
            store = None
            if settings.state_url or settings.state_dir is not None:
                store = state_store(settings)
            else:
                log.warning(
                    "detections run inside normalize without a state store: a restart loses "
                    "open windows (set PHIWATCH_STATE_URL)"
                )
            self._inprocess = InProcessState(store, self._pipeline.engine)

    def process(self, hub: str, messages: Sequence[EventHubMessage]) -> BatchResult:
        started = time.monotonic()
        total = BatchResult.empty()
        groups: dict[str, list[EventHubMessage]] = {}
        for message in messages:
            groups.setdefault(message.partition_id or "0", []).append(message)
        names: list[str] = []
        with self._lock:
            for partition, group in groups.items():
                batch = build_batch(hub, partition, group, generation=self._generation)
                names.append(batch.name)
                if self._inprocess is not None:
                    self._check_inprocess(hub, partition)
                _merge(total, self._process_one(hub, partition, batch))
                if self._inprocess is not None:
                    # Last, after archive and emit: a crash before it redoes the batch.
                    self._inprocess.save(hub, partition)
        counts = total.counts
        log.info(
            "eventhub batch processed",
            hub=hub,
            partitions=sorted(groups),
            batches=names,
            messages=len(messages),
            records=counts.records,
            events=counts.events,
            dead_letters=sum(counts.dead_letters.values()),
            skipped=sum(counts.skipped.values()),
            alerts=len(total.alerts),
            late=total.late,
            lag_seconds=_lag_seconds(messages),
            duration_ms=round((time.monotonic() - started) * 1000),
        )
        return total

    def deliver_outbox(self) -> DeliveryReport | None:
        """For the timer: send what Sentinel did not take yet, oldest first, within the
        sink's entry and time budget. Not under the batch lock: a backlog of hours must not
        hold up the archive path (the sink is thread-safe; a batch's emit leaves the
        backlog to this drain). Past the threshold, an `outbox-backlog` alert."""
        if self.sentinel is None:
            return None
        report = self.sentinel.deliver_outbox()
        log.info("outbox delivery", **report.as_dict())
        if report.remaining is not None and report.remaining >= self._backlog_alert_entries:
            self._raise_backlog_alert(report.remaining)
        return report

    def _raise_backlog_alert(self, pending: int) -> None:
        assert self.sentinel is not None
        now = datetime.now(UTC)
        alert = backlog_alert(
            self.sentinel.outbox.location, pending, self._backlog_alert_entries, now
        )
        log.error("outbox backlog", pending=pending, threshold=self._backlog_alert_entries)
        # Named by hour and count: create-only, and a recount in the same hour is a new
        # object (a new version of the hour's AlertId), never a clash with the last one.
        batch = f"outbox-backlog-{hour_of(now):%Y%m%dT%H}-{pending}"
        with self._lock:  # the archive's chains are the batches' too
            archive_alerts(self._pipeline.archive, stream="outbox", base=batch, alerts=[alert])
        emit_to(self._sinks, BatchResult.of_alerts([alert]))

    def _check_inprocess(self, hub: str, partition: str) -> None:
        assert self._inprocess is not None
        self._inprocess.check_partition(hub, partition)
        self._inprocess.restore(hub, partition)

    def _process_one(self, hub: str, partition: str, batch: Batch) -> BatchResult:
        try:
            result = self._pipeline.process(batch)
        except BatchPoisoned as exc:
            attempts = self._poison.failed(batch.name)
            if attempts < self._poison.limit:
                log.error(
                    "eventhub batch failed after its raw put; raising so the host retries it",
                    hub=hub,
                    partition=partition,
                    batch=batch.name,
                    attempt=attempts,
                    quarantine_after=self._poison.limit,
                    error=exc.error,
                )
                ACTIVITY.batch_failed("normalize", partition, exc)
                raise
            # An archive failure here raises: the next retry quarantines again (idempotent).
            result = self._pipeline.quarantine(batch, exc, attempts)
            self._poison.forget(batch.name)
            ACTIVITY.batch_succeeded("normalize", partition)
            return result
        except Exception as exc:
            ACTIVITY.batch_failed("normalize", partition, exc)
            # The pipeline commits nothing of a failed batch, so the host's retry of it
            # derives and archives exactly what a first clean attempt would have.
            log.error(
                "eventhub batch failed; raising so the host retries it",
                hub=hub,
                partition=partition,
                batch=batch.name,
                error=f"{type(exc).__name__}: {exc}",
            )
            raise
        self._poison.forget(batch.name)
        ACTIVITY.batch_succeeded("normalize", partition)
        if result.counts.skipped.get(canary.SKIP_REASON):
            ACTIVITY.canary_seen()
        return result


class DetectBatchProcessor:
    """`detect`: the phi-events trigger's batches, one `DetectProcessor` call per partition."""

    def __init__(
        self,
        settings: Settings,
        sinks: Sequence[Sink] | None = None,
        state: StateStore | None = None,
    ) -> None:
        if not settings.phi_events_hub:
            raise ConfigurationError(
                "the detect function reads the phi-events hub: set PHIWATCH_PHI_EVENTS_HUB"
            )
        self.hub: str = settings.phi_events_hub
        chosen = list(sinks) if sinks is not None else build_sinks(settings)
        self.sentinel = sentinel_of(chosen)
        self.detector: DetectProcessor = build_detector(
            settings,
            archive_store(settings),
            state if state is not None else state_store(settings),
            chosen,
            hub=settings.phi_events_hub,
            consumer_group=settings.phi_events_consumer_group,
        )

    def process(self, hub: str, messages: Sequence[EventHubMessage]) -> BatchResult:
        """The host-facing call (Functions trigger, `phiwatch consume --stage detect`)."""
        total = BatchResult.empty()
        for result in self.process_partitions(messages):
            total.counts.events += result.events
            total.alerts.extend(result.alerts)
            total.late += result.late
        return total

    def process_partitions(self, messages: Sequence[EventHubMessage]) -> list[DetectResult]:
        groups: dict[str, list[EventHubMessage]] = {}
        for message in messages:
            groups.setdefault(message.partition_id or "0", []).append(message)
        results = []
        for partition, group in groups.items():
            try:
                results.append(self.detector.process(partition, group))
            except Exception as exc:
                ACTIVITY.batch_failed("detect", partition, exc)
                # Nothing of the batch is durable yet (state is saved last): the host's
                # retry restores the partition and redoes it.
                log.error(
                    "detect batch failed; raising so the host retries it",
                    partition=partition,
                    error=f"{type(exc).__name__}: {exc}",
                )
                raise
            ACTIVITY.batch_succeeded("detect", partition)
        # The consumer-lag alert (infra/modules/alerts.bicep) reads lag_seconds from here.
        log.info(
            "detect invocation processed",
            partitions=sorted(groups),
            messages=len(messages),
            lag_seconds=_lag_seconds(messages),
        )
        return results


@functools.cache
def _cached_sinks() -> tuple[Sink, ...]:
    # One set per process, shared by normalize, detect and the scheduled rules: one
    # Sentinel client and one outbox, which the timer drains for all of them.
    return tuple(build_sinks(load_settings()))


@functools.cache
def _cached_processor() -> EventHubBatchProcessor:
    return EventHubBatchProcessor(load_settings(), _cached_sinks())


@functools.cache
def _cached_detector() -> DetectBatchProcessor:
    return DetectBatchProcessor(load_settings(), _cached_sinks())


_processor_lock = threading.Lock()
_tuned_once: list[bool] = []
T = TypeVar("T")


def _tuned(build: Callable[[], T]) -> T:
    """`build()`, and the collector tuned once the first part of this worker exists."""
    part = build()
    if not _tuned_once:
        collector.tune()
        _tuned_once.append(True)
    return part


def get_processor() -> EventHubBatchProcessor:
    """The process-wide processor, built on first use from the environment.

    A failed build is not cached (functools.cache keeps results only), so fixing the
    setting and retrying works without a restart.
    """
    with _processor_lock:
        return _tuned(_cached_processor)


@functools.cache
def _cached_rule_runner() -> ScheduledRules | None:
    settings = load_settings()
    backends = backends_from(settings)
    if not backends:
        return None
    return ScheduledRules(
        backends=backends,
        archive=build_archive(settings, archive_store(settings)),
        state_store=state_store(settings),
        sinks=list(_cached_sinks()),
    )


def get_rule_runner() -> ScheduledRules | None:
    """The scheduled-rules runner, or None when no workspace or ADX database is configured."""
    with _processor_lock:
        return _cached_rule_runner()


def get_detector() -> DetectBatchProcessor:
    """The process-wide `detect` processor (engines per partition live in it)."""
    with _processor_lock:
        return _tuned(_cached_detector)


def configure_host_logging() -> None:
    """Logging for the Functions worker; a bad setting must not stop the app from indexing."""
    try:
        level = Settings().log_level
    except SETTINGS_ERRORS:
        level = "INFO"  # get_processor() reports the bad setting on the first batch
    try:
        configure_logging(level)
    except ValueError:  # unknown level name
        configure_logging("INFO")


def _merge(into: BatchResult, other: BatchResult) -> None:
    into.counts.add(other.counts)
    into.events.extend(other.events)
    into.alerts.extend(other.alerts)
    into.dead_letters.extend(other.dead_letters)
    into.late += other.late


def _lag_seconds(messages: Sequence[EventHubMessage]) -> float | None:
    """Now minus the newest enqueued time: how far behind the hub this invocation runs."""
    times = [
        m.enqueued_time
        for m in messages
        if m.enqueued_time is not None and m.enqueued_time.tzinfo is not None
    ]
    if not times:
        return None
    return round((datetime.now(UTC) - max(times)).total_seconds(), 3)
