"""Settings → every part: archive store and signer, sinks and outbox, the phi-events
publisher, state store, detection engine, pipeline and detect stage.

The Functions host, `phiwatch consume`, `phiwatch replay` and the archive commands build their
parts here and nowhere else, so a setting means the same thing in every host, and a missing or
invalid one is reported the same way (`ConfigurationError`, naming the setting).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import structlog
from pydantic import ValidationError
from pydantic_settings import SettingsError

import detections
from phiwatch.archive.archive import Archive
from phiwatch.archive.blob_store import ArchiveContainerMissing, ArchiveNotImmutable, BlobStore
from phiwatch.archive.signer import load_signer
from phiwatch.archive.store import LocalStore, ObjectStore
from phiwatch.batch import Forwarder, Sink
from phiwatch.config import Settings
from phiwatch.detect.engine import DetectionEngine
from phiwatch.detect.stage import DetectProcessor
from phiwatch.detect.state_store import (
    BlobStateStore,
    LocalStateStore,
    StateStore,
    StateStoreError,
)
from phiwatch.eventhubs.publisher import EventHubsPublisher
from phiwatch.pipeline import Pipeline
from phiwatch.privacy.blobs import BlobDirectorySource
from phiwatch.privacy.files import FileDirectorySource
from phiwatch.privacy.inputs import log_inputs
from phiwatch.pseudonym import Pseudonymizer, load_pseudonymizer
from phiwatch.sinks.outbox import BlobOutbox, LocalOutbox, Outbox, OutboxError
from phiwatch.sinks.sentinel import SentinelSink, sentinel_sink_from

log = structlog.get_logger("phiwatch.wiring")

# What reading Settings() from the environment raises for a bad value (SettingsError: a
# complex field such as PHIWATCH_DETECTION_PARAMS that is not JSON).
SETTINGS_ERRORS = (ValidationError, SettingsError)


class ConfigurationError(Exception):
    """A required setting is missing or invalid; the message names it for the operator."""


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
                container_of(settings.state_url),
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
        compact_rows=settings.sentinel_compact_rows,
    )


def build_sinks(settings: Settings) -> list[Sink]:
    """Every sink the settings configure, in the order results reach them: the one place the
    list is decided (today Sentinel, when its DCR is set; a local replay adds its files)."""
    sentinel = sentinel_sink(settings)
    return [sentinel] if sentinel is not None else []


def sentinel_of(sinks: Sequence[Sink]) -> SentinelSink | None:
    """The Sentinel sink among `sinks`: its outbox is what the delivery timer drains."""
    return next((s for s in sinks if isinstance(s, SentinelSink)), None)


def outbox(settings: Settings) -> Outbox:
    try:
        if settings.outbox_url and settings.outbox_connection_string is not None:
            return BlobOutbox.from_connection_string(
                settings.outbox_connection_string.get_secret_value(),
                container_of(settings.outbox_url),
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


def container_of(url: str) -> str:
    """The container name at the end of a container URL (used with a connection string)."""
    return url.rstrip("/").rsplit("/", 1)[-1]


def archive_store(settings: Settings) -> ObjectStore:
    """The configured archive: the Blob container in Azure, a directory elsewhere."""
    if settings.archive_url:
        require = settings.archive_require_immutability
        try:
            store = blob_archive(settings, require_immutability=require)
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


def archive_to_read(location: str, connection_string: str | None = None) -> ObjectStore:
    """An archive to read back (verify, evidence, reports): a directory, a container URL, or
    with a connection string a container name. Immutable or not: checks work on any copy."""
    if connection_string:
        return BlobStore.from_connection_string(
            connection_string, location, require_immutability=False
        )
    if location.startswith("https://"):
        return BlobStore.from_url(location, require_immutability=False)
    path = Path(location)
    if not path.is_dir():
        raise ConfigurationError(f"{location}: no such archive directory")
    return LocalStore(path)


def blob_archive(settings: Settings, *, require_immutability: bool) -> BlobStore:
    url = settings.archive_url or ""
    if settings.archive_connection_string is not None:
        return BlobStore.from_connection_string(
            settings.archive_connection_string.get_secret_value(),
            container_of(url),
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


def load_settings() -> Settings:
    try:
        return Settings()
    except SETTINGS_ERRORS as exc:
        raise ConfigurationError(f"invalid phiwatch settings: {settings_problem(exc)}") from exc


def settings_problem(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        # Names only: pydantic's message would echo the offending values.
        names = {f"PHIWATCH_{str(e['loc'][0]).upper()}" for e in exc.errors() if e["loc"]}
        return "invalid value for " + ", ".join(sorted(names))
    return str(exc)  # SettingsError names the field, not its value


def build_engine(settings: Settings) -> DetectionEngine:
    lateness = float(settings.allowed_lateness_seconds)
    return DetectionEngine(
        detections.load_detections(settings.detection_params, lateness=lateness),
        lateness,
        float(settings.reorder_seconds),
    )


def directory_source(
    settings: Settings,
    pseudonymizer: Pseudonymizer,
    *,
    roster_file: Path | None = None,
    patients_file: Path | None = None,
) -> FileDirectorySource | BlobDirectorySource | None:
    """The privacy inputs: local files when given (`phiwatch replay --roster/--patients`),
    else the blobs PHIWATCH_ROSTER_URL / PHIWATCH_PATIENTS_URL name, else none. Loaded now,
    and the start-up line says what is loaded and what stays off."""
    source: FileDirectorySource | BlobDirectorySource | None = None
    if roster_file is not None or patients_file is not None:
        source = FileDirectorySource(
            pseudonymizer,
            roster=roster_file,
            patients=patients_file,
            default_fhir_service=settings.patients_fhir_service,
        )
    elif settings.roster_url or settings.patients_url:
        connection = settings.privacy_connection_string
        try:
            source = BlobDirectorySource.from_urls(
                pseudonymizer,
                roster_url=settings.roster_url,
                patients_url=settings.patients_url,
                connection_string=connection.get_secret_value() if connection else None,
                default_fhir_service=settings.patients_fhir_service,
                check_seconds=settings.privacy_check_seconds,
            )
        except ValueError as exc:
            raise ConfigurationError(
                "PHIWATCH_ROSTER_URL / PHIWATCH_PATIENTS_URL: each must be a blob URL "
                "(https://<account>.blob.core.windows.net/<container>/<blob>)"
            ) from exc
    if source is not None:
        source.current()
    log_inputs(source, frozenset(settings.privacy_allow_applications))
    return source


def build_pipeline(
    settings: Settings,
    archive: Path | ObjectStore,
    sinks: Sequence[Sink] = (),
    forwarder: Forwarder | None = None,
    *,
    roster_file: Path | None = None,
    patients_file: Path | None = None,
) -> Pipeline:
    """A pipeline archiving to `archive`: a local directory, or any object store. With a
    forwarder it is the `normalize` stage (detections run in `detect`); without, it detects
    in-process (one stream: a local replay, or a hub with one partition). Events are
    stamped from the privacy inputs (`directory_source`) and the allow-listed applications."""
    store = LocalStore(archive) if isinstance(archive, Path) else archive
    pseudonymizer = load_pseudonymizer(settings)
    directory = directory_source(
        settings, pseudonymizer, roster_file=roster_file, patients_file=patients_file
    )
    return Pipeline(
        pseudonymizer=pseudonymizer,
        engine=None if forwarder else build_engine(settings),
        archive=Archive(store, load_signer(settings)),
        sinks=sinks,
        max_record_bytes=settings.max_record_bytes,
        forwarder=forwarder,
        fhir_trusted_audit_apps=frozenset(settings.fhir_trusted_audit_apps),
        storage_patient_patterns=settings.storage_patient_patterns,
        storage_phi_containers=settings.storage_phi_containers,
        directory=directory,
        allow_applications=frozenset(settings.privacy_allow_applications),
    )


def build_archive(settings: Settings, archive: Path | ObjectStore) -> Archive:
    store = LocalStore(archive) if isinstance(archive, Path) else archive
    return Archive(store, load_signer(settings))


def build_detector(
    settings: Settings,
    archive: Path | ObjectStore,
    state_store: StateStore | None,
    sinks: Sequence[Sink] = (),
    *,
    hub: str = "phi-events",
    consumer_group: str = "phiwatch",
) -> DetectProcessor:
    """The `detect` stage: engines per partition, alerts archived to `archive`, state
    snapshots in `state_store` (None: in memory only, for one-process runs)."""
    store = LocalStore(archive) if isinstance(archive, Path) else archive
    build_engine(settings)  # fail now, not at the first batch, on a bad detection setting
    return DetectProcessor(
        engine_factory=lambda: build_engine(settings),
        archive=Archive(store, load_signer(settings)),
        state_store=state_store,
        sinks=sinks,
        hub=hub,
        consumer_group=consumer_group,
    )
