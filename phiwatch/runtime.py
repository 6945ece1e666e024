"""Builds a ready pipeline from settings: the one place hosts (CLI, Functions) wire parts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import detections
from phiwatch.archive.local import LocalArchive
from phiwatch.config import Settings
from phiwatch.detect.engine import DetectionEngine
from phiwatch.pipeline import Pipeline, Sink
from phiwatch.pseudonym import load_pseudonymizer


def build_pipeline(settings: Settings, archive_dir: Path, sinks: Sequence[Sink] = ()) -> Pipeline:
    lateness = float(settings.allowed_lateness_seconds)
    engine = DetectionEngine(
        detections.load_detections(settings.detection_params, lateness=lateness), lateness
    )
    return Pipeline(
        pseudonymizer=load_pseudonymizer(settings),
        engine=engine,
        archive=LocalArchive(archive_dir),
        sinks=sinks,
        max_record_bytes=settings.max_record_bytes,
    )
