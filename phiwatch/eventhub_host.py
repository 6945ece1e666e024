"""Event Hubs host glue, free of `azure.functions`: messages → one pipeline batch per partition.

`function_app.py` (and any other Event Hubs host) turns its events into `EventHubMessage`s and
calls `EventHubBatchProcessor.process`. Bad records never raise here (the pipeline dead-letters
them); an archive failure does, on purpose: the Functions host checkpoints when the function
returns, even after an exception, so only a raise plus the function's retry policy replays a
batch that is not in the archive yet (DESIGN.md §1, "archive before emit, emit before return").
A batch that fails after its raw put (`BatchPoisoned`) raises too, up to
PHIWATCH_POISON_BATCH_ATTEMPTS times; then it is quarantined and the call returns.
"""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from pydantic import ValidationError
from pydantic_settings import SettingsError

import phiwatch
from phiwatch.archive.blob_store import ArchiveContainerMissing, ArchiveNotImmutable, BlobStore
from phiwatch.archive.names import MAX_STREAM, safe_name
from phiwatch.archive.store import LocalStore, ObjectStore
from phiwatch.config import Settings
from phiwatch.detect.stage import DetectProcessor, DetectResult
from phiwatch.detect.state_store import (
    BlobStateStore,
    LocalStateStore,
    StateStore,
    StateStoreError,
)
from phiwatch.envelope import Body
from phiwatch.event_publisher import EventHubsPublisher
from phiwatch.health import ACTIVITY, Activity, CheckResult, run_checks
from phiwatch.inprocess_state import InProcessState
from phiwatch.logs import configure_logging
from phiwatch.phievents.forwarder import PublishingForwarder
from phiwatch.pipeline import (
    Batch,
    BatchResult,
    Counts,
    Forwarder,
    Pipeline,
    Sink,
    archive_alerts,
    emit_to,
)
from phiwatch.quarantine import BatchPoisoned, PoisonAttempts
from phiwatch.rules.scheduled import ScheduledRules, backends_from
from phiwatch.runtime import build_archive, build_detector, build_pipeline
from phiwatch.sinks.backlog_alert import backlog_alert, hour_of
from phiwatch.sinks.outbox import BlobOutbox, LocalOutbox, Outbox, OutboxError
from phiwatch.sinks.sentinel import DeliveryReport, SentinelSink, sentinel_sink_from
from phiwatch.sources import canary

log = structlog.get_logger("phiwatch.eventhub")

# What reading Settings() from the environment raises for a bad value (SettingsError: a
# complex field such as PHIWATCH_DETECTION_PARAMS that is not JSON).
SETTINGS_ERRORS = (ValidationError, SettingsError)


KEY_VAULT_REFERENCE = "@Microsoft.KeyVault("


class ConfigurationError(Exception):
    """A required setting is missing or invalid; the message names it for the operator."""


@dataclass(slots=True, frozen=True)
class EventHubMessage:
    """One Event Hub event, as any host sees it."""

    body: bytes
    sequence_number: int | None
    enqueued_time: datetime | None
    partition_id: str | None


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
        self.sentinel = sentinel_sink(settings) if sinks is None else None
        self._sinks = list(sinks) if sinks is not None else [s for s in [self.sentinel] if s]
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
        total = BatchResult(Counts(), [], [], [], 0)
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
            archive_alerts(self._pipeline.archive, stream="outbox", batch=batch, alerts=[alert])
        emit_to(self._sinks, BatchResult(Counts(), [], [alert], [], 0))

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
        self.sentinel = sentinel_sink(settings) if sinks is None else None
        chosen = list(sinks) if sinks is not None else [s for s in [self.sentinel] if s]
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
        total = BatchResult(Counts(), [], [], [], 0)
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


def event_publisher(settings: Settings) -> EventHubsPublisher:
    """The phi-events producer, identity-based; one per process (see get_processor)."""
    if not settings.phi_events_namespace:
        raise ConfigurationError(
            "PHIWATCH_PHI_EVENTS_HUB is set but PHIWATCH_PHI_EVENTS_NAMESPACE is not: "
            "normalize needs the namespace to publish events to detect"
        )
    return EventHubsPublisher.connect(settings.phi_events_namespace, settings.phi_events_hub or "")


def state_store(settings: Settings) -> StateStore:
    """Where detect keeps its per-partition snapshots: a Blob container, else a directory."""
    try:
        if settings.state_url and settings.state_connection_string is not None:
            return BlobStateStore.from_connection_string(
                settings.state_connection_string.get_secret_value(),
                _container_of(settings.state_url),
            )
        if settings.state_url:
            return BlobStateStore.from_url(settings.state_url)
        if settings.state_dir is not None:
            return LocalStateStore(settings.state_dir)
    except StateStoreError as exc:
        raise ConfigurationError(str(exc)) from exc
    raise ConfigurationError(
        "the detect function keeps detection state per partition: set PHIWATCH_STATE_URL "
        "(a Blob container, not the archive) or PHIWATCH_STATE_DIR"
    )


def sentinel_sink(settings: Settings) -> SentinelSink | None:
    """The Sentinel sink when the DCR is configured, with its outbox; else None."""
    if not (settings.dcr_endpoint and settings.dcr_immutable_id):
        return None
    streams = {
        "events": settings.dcr_events_stream,
        "alerts": settings.dcr_alerts_stream,
        "health": settings.dcr_health_stream,
    }
    return sentinel_sink_from(
        settings.dcr_endpoint,
        settings.dcr_immutable_id,
        outbox(settings),
        streams=streams,
        max_seconds_per_emit=settings.sentinel_seconds_per_batch,
        max_outbox_entries=settings.outbox_max_entries,
    )


def outbox(settings: Settings) -> Outbox:
    try:
        if settings.outbox_url and settings.outbox_connection_string is not None:
            return BlobOutbox.from_connection_string(
                settings.outbox_connection_string.get_secret_value(),
                _container_of(settings.outbox_url),
            )
        if settings.outbox_url:
            return BlobOutbox.from_url(settings.outbox_url)
    except OutboxError as exc:
        raise ConfigurationError(str(exc)) from exc
    if settings.outbox_dir is not None:
        return LocalOutbox(settings.outbox_dir)
    raise ConfigurationError(
        "Sentinel delivery needs an outbox for rows Sentinel cannot take yet: set "
        "PHIWATCH_OUTBOX_URL (a Blob container, not the archive) or PHIWATCH_OUTBOX_DIR"
    )


def _container_of(url: str) -> str:
    """The container name at the end of a container URL (used with a connection string)."""
    return url.rstrip("/").rsplit("/", 1)[-1]


def archive_store(settings: Settings) -> ObjectStore:
    """The configured archive: the Blob container in Azure, a directory elsewhere."""
    if settings.archive_url:
        require = settings.archive_require_immutability
        try:
            store = _blob_archive(settings, require_immutability=require)
        except (ArchiveNotImmutable, ArchiveContainerMissing) as exc:
            raise ConfigurationError(str(exc)) from exc
        state = immutability_state(settings, store)
        if state == "unlocked":
            # Loud on every start until someone locks it: an unlocked policy can be shortened
            # or deleted by an account administrator, and then the archive with it.
            log.warning(
                "archive immutability policy is unlocked: lock it for production "
                "(infra/README.md, 'Immutability: unlocked or locked')",
                immutability=state,
            )
        elif state == "none":
            log.warning(
                "archive container is not immutable (PHIWATCH_ARCHIVE_REQUIRE_IMMUTABILITY "
                "is false): a test container only",
                immutability=state,
            )
        return store
    if settings.archive_dir is not None:
        return LocalStore(settings.archive_dir)
    raise ConfigurationError(
        "no archive configured: the Event Hub function archives every raw record before it "
        "returns, so set PHIWATCH_ARCHIVE_URL (the archive container URL) or "
        "PHIWATCH_ARCHIVE_DIR"
    )


def _blob_archive(settings: Settings, *, require_immutability: bool) -> BlobStore:
    url = settings.archive_url or ""
    if settings.archive_connection_string is not None:
        return BlobStore.from_connection_string(
            settings.archive_connection_string.get_secret_value(),
            _container_of(url),
            require_immutability=require_immutability,
        )
    return BlobStore.from_url(url, require_immutability=require_immutability)


def immutability_state(settings: Settings, store: BlobStore) -> str:
    """`locked`, `unlocked` or `none`. The data plane shows whether a retention policy is in
    force, not whether it is locked: that comes from PHIWATCH_ARCHIVE_IMMUTABILITY_LOCKED,
    which infra sets from the same parameter that stops it rewriting the policy."""
    if not store.immutability.immutable:
        return "none"
    return "locked" if settings.archive_immutability_locked else "unlocked"


def build_batch(
    hub: str, partition: str, messages: Sequence[EventHubMessage], *, generation: str = ""
) -> Batch:
    """The pipeline batch for one partition's messages; its name depends only on them (and
    on the hub's configured generation): see `batch_identity`."""
    stream = f"eventhub:{hub}/{partition}"
    seqs = [m.sequence_number for m in messages if m.sequence_number is not None]
    numbered = len(seqs) == len(messages)
    bodies = [
        Body(
            data=m.body,
            stream=stream,
            position=f"seq {m.sequence_number}" if numbered else f"index {index}",
            sequence_number=m.sequence_number,
            enqueued_time=m.enqueued_time,
        )
        for index, m in enumerate(messages)
    ]
    # Hub and partition come from the wire: bounded and made safe for names (as they were
    # for every plain, short name).
    chain = safe_name(f"{hub}-p{partition}", MAX_STREAM)
    if numbered and seqs:
        first = min(seqs)
        identity = batch_identity(generation, [m for m in messages if m.sequence_number == first])
        return Batch(chain, first, max(seqs), bodies, identity)
    # Indices repeat from batch to batch; the content digest keeps names (and chains) apart
    # while a redelivery (same bodies) still gets the same name.
    last = max(len(messages) - 1, 0)
    identity = batch_identity(generation, [])
    return Batch(safe_name(f"{chain}-noseq-{_digest(messages)[:16]}"), 0, last, bodies, identity)


def batch_identity(generation: str, first: Sequence[EventHubMessage]) -> str:
    """Which incarnation of a hub a batch comes from: `g<generation>` when one is configured
    (PHIWATCH_EVENTHUB_GENERATION, bumped by infra when the hub is re-created or fails over),
    and `t<enqueued time of the batch's first message>` (UTC, milliseconds). A redelivery
    repeats that time exactly; a re-created hub or a Geo-DR secondary, whose sequence
    numbers start again, enqueued its messages at other times."""
    parts = [f"g{generation}"] if generation else []
    times = [m.enqueued_time for m in first if m.enqueued_time is not None]
    if times:
        when = min(t if t.tzinfo else t.replace(tzinfo=UTC) for t in times).astimezone(UTC)
        parts.append(f"t{when:%Y%m%dT%H%M%S}{when.microsecond // 1000:03d}Z")
    return "-".join(parts)


def _settings() -> Settings:
    try:
        return Settings()
    except SETTINGS_ERRORS as exc:
        raise ConfigurationError(f"invalid phiwatch settings: {_settings_problem(exc)}") from exc


@functools.cache
def _cached_processor() -> EventHubBatchProcessor:
    return EventHubBatchProcessor(_settings())


@functools.cache
def _cached_detector() -> DetectBatchProcessor:
    return DetectBatchProcessor(_settings())


_processor_lock = threading.Lock()


def get_processor() -> EventHubBatchProcessor:
    """The process-wide processor, built on first use from the environment.

    A failed build is not cached (functools.cache keeps results only), so fixing the
    setting and retrying works without a restart.
    """
    with _processor_lock:
        return _cached_processor()


@functools.cache
def _cached_rule_runner() -> ScheduledRules | None:
    settings = _settings()
    backends = backends_from(settings)
    if not backends:
        return None
    return ScheduledRules(
        backends=backends,
        archive=build_archive(settings, archive_store(settings)),
        state_store=state_store(settings),
        sinks=[s for s in [sentinel_sink(settings)] if s],
    )


def get_rule_runner() -> ScheduledRules | None:
    """The scheduled-rules runner, or None when no workspace or ADX database is configured."""
    with _processor_lock:
        return _cached_rule_runner()


def get_detector() -> DetectBatchProcessor:
    """The process-wide `detect` processor (engines per partition live in it)."""
    with _processor_lock:
        return _cached_detector()


def health_status(activity: Activity = ACTIVITY) -> tuple[int, dict[str, Any]]:
    """HTTP status and body for the health endpoint: what is configured, whether the archive
    and the state store answer (each check bounded in time), and how old each partition's
    last successful batch is. Never a value; 503 names the failing check."""
    try:
        settings = Settings()
    except SETTINGS_ERRORS as exc:
        failed: dict[str, Any] = {"status": "misconfigured", "version": phiwatch.__version__}
        return 503, failed | {"problem": _settings_problem(exc)}
    archive = settings.archive_url is not None or settings.archive_dir is not None
    secret = settings.pseudonym_key.get_secret_value() if settings.pseudonym_key else ""
    # A Key Vault reference the platform could not resolve arrives as its own literal text.
    unresolved = secret.startswith(KEY_VAULT_REFERENCE)
    key = bool(secret) and not unresolved
    two_stage = bool(settings.phi_events_hub)
    state = settings.state_url is not None or settings.state_dir is not None
    # Without phi-events, detections run inside normalize: right for one partition only.
    detection = "two-stage" if two_stage else "in-process (one diagnostics partition only)"
    problems: list[str] = []
    if unresolved:
        problems.append("PHIWATCH_PSEUDONYM_KEY: the Key Vault reference did not resolve")
    elif not key:
        problems.append(
            "PHIWATCH_PSEUDONYM_KEY is not set: set the secret and deploy with "
            "pseudonymKeyVersion (infra/README.md, Keys)"
        )
    if two_stage and not state:
        problems.append("PHIWATCH_STATE_URL: detect needs a state container")
    if not archive:
        problems.append("PHIWATCH_ARCHIVE_URL: no archive configured")
    checks: dict[str, Any] = {}
    if archive:
        checks["archive"] = functools.partial(_check_archive, settings)
    if two_stage and state:
        checks["state"] = functools.partial(_check_state, settings)
    results = run_checks(checks, settings.health_check_timeout_seconds)
    batches, stale = activity.report(settings.health_max_batch_age_seconds)
    problems += [r.problem for r in results.values() if r.problem]
    problems += stale
    warnings = [r.warning for r in results.values() if r.warning]
    body: dict[str, Any] = {
        "status": "degraded" if problems else "ok",
        "version": phiwatch.__version__,
        "archive_configured": archive,
        "pseudonym_key_configured": key,
        "detection": detection,
        "state_configured": state,
        "checks": {name: dict(result.detail) for name, result in results.items()},
        "batches": batches,
    }
    if "archive" in results:
        body["immutability"] = results["archive"].detail.get("immutability", "unknown")
    if warnings:
        body["warnings"] = warnings
    if problems:
        body["problem"] = problems[0]
        body["problems"] = problems
    return (503 if problems else 200), body


def _check_archive(settings: Settings) -> CheckResult:
    """Reachable, the container exists, and its immutability: one container GET."""
    if not settings.archive_url:
        found = settings.archive_dir is not None and settings.archive_dir.is_dir()
        detail = {"status": "ok" if found else "missing", "immutability": "local directory"}
        problem = None if found else "archive: PHIWATCH_ARCHIVE_DIR does not exist"
        return CheckResult(found, detail, problem)
    try:
        store = _blob_archive(settings, require_immutability=False)
    except ArchiveContainerMissing:
        return CheckResult(False, {"status": "missing"}, "archive: the container does not exist")
    state = immutability_state(settings, store)
    detail = {"status": "ok", "immutability": state}
    if state == "none":
        text = "archive: the container is not immutable (no version-level retention policy)"
        if settings.archive_require_immutability:
            return CheckResult(False, detail, text)
        return CheckResult(True, detail, warning=text)
    if state == "unlocked":
        return CheckResult(
            True,
            detail,
            warning="archive: the immutability policy is unlocked; lock it for production "
            "(infra/README.md, 'Immutability: unlocked or locked')",
        )
    return CheckResult(True, detail)


# A key no snapshot ever has (dot-free, valid): loading it proves the container answers.
_HEALTH_PROBE_KEY = "health/probe.json.gz"


def _check_state(settings: Settings) -> CheckResult:
    try:
        state_store(settings).load(_HEALTH_PROBE_KEY)
    except (ConfigurationError, StateStoreError) as exc:
        return CheckResult(False, {"status": "failed"}, f"state: {exc}")
    return CheckResult(True, {"status": "ok"})


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


def _settings_problem(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        # Names only: pydantic's message would echo the offending values.
        names = {f"PHIWATCH_{str(e['loc'][0]).upper()}" for e in exc.errors() if e["loc"]}
        return "invalid value for " + ", ".join(sorted(names))
    return str(exc)  # SettingsError names the field, not its value


def _digest(messages: Sequence[EventHubMessage]) -> str:
    h = hashlib.sha256()
    for m in messages:
        h.update(len(m.body).to_bytes(8, "big"))
        h.update(m.body)
    return h.hexdigest()


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
