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
from phiwatch.pipeline import Pipeline, Sink
from phiwatch.pseudonym import load_pseudonymizer


def build_engine(settings: Settings) -> DetectionEngine:
    lateness = float(settings.allowed_lateness_seconds)
    return DetectionEngine(
        detections.load_detections(settings.detection_params, lateness=lateness),
        lateness,
        float(settings.reorder_seconds),
    )


def build_pipeline(
    settings: Settings, archive: Path | ObjectStore, sinks: Sequence[Sink] = ()
) -> Pipeline:
    """A pipeline archiving to `archive`: a local directory, or any object store."""
    store = LocalStore(archive) if isinstance(archive, Path) else archive
    engine = build_engine(settings)
    return Pipeline(
        pseudonymizer=load_pseudonymizer(settings),
        engine=engine,
        archive=Archive(store, load_signer(settings)),
        sinks=sinks,
        max_record_bytes=settings.max_record_bytes,
    )
