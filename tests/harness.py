"""Drive the real pipeline over a list of records, split into bodies and batches at will."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from phiwatch.batch import Batch
from phiwatch.config import Settings
from phiwatch.envelope import Body
from phiwatch.model import AccessEvent, Alert, DeadLetter
from phiwatch.pipeline import Pipeline
from phiwatch.wiring import build_pipeline


class CollectingSink:
    def __init__(self) -> None:
        self.events: list[AccessEvent] = []
        self.alert_versions: list[Alert] = []
        self.dead: list[DeadLetter] = []
        self.health: list = []

    def emit(self, result) -> None:
        self.events.extend(result.events)
        self.alert_versions.extend(result.alerts)
        self.dead.extend(result.dead_letters)
        if result.health is not None:
            self.health.append(result.health)

    @property
    def alerts(self) -> dict[str, Alert]:
        latest: dict[str, Alert] = {}
        for alert in self.alert_versions:
            latest[alert.alert_id] = alert
        return latest


def make_pipeline(
    tmp_path: Path, params: dict[str, dict[str, Any]] | None = None
) -> tuple[Pipeline, CollectingSink]:
    sink = CollectingSink()
    settings = Settings(detection_params=params or {})
    archive = tmp_path / f"archive-{uuid.uuid4().hex[:8]}"
    return build_pipeline(settings, archive, [sink]), sink


def batches_of(
    records: list[dict[str, Any]], *, per_body: int = 10, bodies_per_batch: int = 5
) -> list[Batch]:
    bodies = [
        Body(
            data=json.dumps({"records": records[i : i + per_body]}).encode(),
            stream="test",
            position=f"body{i // per_body}",
        )
        for i in range(0, len(records), per_body)
    ]
    return [
        Batch(
            f"test-{per_body}-{bodies_per_batch}",
            i,
            i + bodies_per_batch - 1,
            bodies[i : i + bodies_per_batch],
        )
        for i in range(0, len(bodies), bodies_per_batch)
    ]


def run(
    records: list[dict[str, Any]],
    tmp_path: Path,
    *,
    per_body: int = 10,
    bodies_per_batch: int = 5,
    params: dict[str, dict[str, Any]] | None = None,
    finish: bool = True,
) -> CollectingSink:
    pipeline, sink = make_pipeline(tmp_path, params)
    for batch in batches_of(records, per_body=per_body, bodies_per_batch=bodies_per_batch):
        pipeline.process(batch)
    if finish:
        pipeline.finish()
    return sink
