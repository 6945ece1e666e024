"""Builds a ready pipeline from settings: the one place hosts (CLI, Functions) wire parts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import detections
from phiwatch.archive.archive import Archive
from phiwatch.archive.signer import load_signer
from phiwatch.archive.store import LocalStore, ObjectStore
from phiwatch.config import Settings
from phiwatch.detect.engine import DetectionEngine
from phiwatch.detect.stage import DetectProcessor
from phiwatch.detect.state_store import StateStore
from phiwatch.pipeline import Forwarder, Pipeline, Sink
from phiwatch.pseudonym import load_pseudonymizer


def build_engine(settings: Settings) -> DetectionEngine:
    lateness = float(settings.allowed_lateness_seconds)
    return DetectionEngine(
        detections.load_detections(settings.detection_params, lateness=lateness),
        lateness,
        float(settings.reorder_seconds),
    )


def build_pipeline(
    settings: Settings,
    archive: Path | ObjectStore,
    sinks: Sequence[Sink] = (),
    forwarder: Forwarder | None = None,
) -> Pipeline:
    """A pipeline archiving to `archive`: a local directory, or any object store. With a
    forwarder it is the `normalize` stage (detections run in `detect`); without, it detects
    in-process (one stream: a local replay, or a hub with one partition)."""
    store = LocalStore(archive) if isinstance(archive, Path) else archive
    return Pipeline(
        pseudonymizer=load_pseudonymizer(settings),
        engine=None if forwarder else build_engine(settings),
        archive=Archive(store, load_signer(settings)),
        sinks=sinks,
        max_record_bytes=settings.max_record_bytes,
        forwarder=forwarder,
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
