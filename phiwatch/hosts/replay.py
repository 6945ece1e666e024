"""Local replay: run the pipeline over diagnostic-log files (the embedded default)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phiwatch.batch import Batch, Counts
from phiwatch.config import Settings
from phiwatch.envelope import Body, InputError, discover, read_file_bodies
from phiwatch.hosts import collector
from phiwatch.model import Alert
from phiwatch.pipeline import Pipeline
from phiwatch.privacy.files import FileDirectorySource
from phiwatch.quarantine import BatchPoisoned
from phiwatch.sinks.local_files import LocalFileSink
from phiwatch.wiring import build_pipeline

# Like the Functions trigger's maxEventBatchSize: archive objects per batch stay small.
DEFAULT_BATCH_BODIES = 100


@dataclass
class ReplaySummary:
    counts: Counts
    files: int
    late: int
    alerts: list[Alert]
    key_id: str
    archive_objects: int
    problems: list[str] = field(default_factory=list)  # unreadable or malformed files
    events_by_product: dict[str, int] = field(default_factory=dict)  # EventProduct -> events

    def as_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            **self.counts.as_dict(),
            "events_by_product": dict(sorted(self.events_by_product.items())),
            "late_events": self.late,
            "alert_list": [
                {
                    "AlertId": a.alert_id,
                    "RuleId": a.rule_id,
                    "Severity": a.severity,
                    "Title": a.title,
                }
                for a in self.alerts
            ],
            "archive_objects": self.archive_objects,
            "pseudonym_key_id": self.key_id,
            "problems": self.problems,
        }


def _batches(path: Path, batch_bodies: int) -> Iterator[Batch]:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    chunk: list[Body] = []
    first = 0
    for index, body in enumerate(read_file_bodies(path)):
        if not chunk:
            first = index
        chunk.append(body)
        if len(chunk) >= batch_bodies:
            yield Batch(f"file-{digest}", first, index, chunk)
            chunk = []
    if chunk:
        yield Batch(f"file-{digest}", first, first + len(chunk) - 1, chunk)


def _process(pipeline: Pipeline, batch: Batch, path: Path, problems: list[str]) -> None:
    """One batch; a poison batch is quarantined at once (a local retry would read the same
    bytes with the same code) and the replay goes on with the next one."""
    try:
        pipeline.process(batch)
    except BatchPoisoned as exc:
        result = pipeline.quarantine(batch, exc, attempts=1)
        problems.append(
            f"{path}: bodies {batch.first}..{batch.last} failed ({exc.error}) and were set "
            f"aside: {result.counts.records} record(s) dead-lettered as batch-quarantined"
        )


def _privacy_problems(pipeline: Pipeline, given: dict[str, Path | None]) -> list[str]:
    """A privacy file named on the command line and refused whole is a failed replay (the
    log line says why): its events would be stamped as if the input were absent."""
    source = pipeline.directory
    loaded = set()
    if isinstance(source, FileDirectorySource):
        loaded = {r.source for r in source.reports}
    return [
        f"{path}: the {name} file was not loaded (see the log); its stamps are missing"
        for name, path in given.items()
        if path is not None and name not in loaded
    ]


def replay(
    paths: list[Path],
    out_dir: Path,
    settings: Settings,
    *,
    batch_bodies: int = DEFAULT_BATCH_BODIES,
    on_file: Callable[[Path, int], None] | None = None,
    roster: Path | None = None,
    patients: Path | None = None,
) -> ReplaySummary:
    """Raises InputError when there is nothing to read at all. `roster` and `patients` are
    the privacy inputs as local files (docs/privacy.md)."""
    files = discover(paths)
    sink = LocalFileSink(out_dir)
    pipeline = build_pipeline(
        settings, out_dir / "archive", [sink], roster_file=roster, patients_file=patients
    )
    problems = _privacy_problems(pipeline, {"roster": roster, "patients": patients})
    collector.tune()
    try:
        for path in files:
            records_before = pipeline.totals.records
            undecodable_before = pipeline.totals.undecodable
            try:
                for batch in _batches(path, batch_bodies):
                    _process(pipeline, batch, path, problems)
            except InputError as exc:
                problems.append(str(exc))
                continue
            read = pipeline.totals.records - records_before
            undecodable = pipeline.totals.undecodable - undecodable_before
            if read and undecodable == read:
                problems.append(f"{path}: malformed, no record in it could be read")
            if on_file:
                on_file(path, path.stat().st_size)
        pipeline.finish()
    finally:
        sink.close()
    if pipeline.totals.records == 0 and not problems:
        raise InputError("the input holds no records")
    archive = pipeline.archive
    conflicts = archive.derived_conflicts
    if conflicts:
        problems.append(
            f"the archive in {out_dir / 'archive'} already held different results for "
            f"{len(conflicts)} object(s) (first: {conflicts[0]}); it never overwrites, so "
            "replaying the same input with other settings or another phiwatch version "
            "needs a new --out directory"
        )
    return ReplaySummary(
        counts=pipeline.totals,
        files=len(files),
        late=pipeline.engine.late if pipeline.engine else 0,
        alerts=sorted(sink.alerts.values(), key=lambda a: (a.first_event_time, a.alert_id)),
        key_id=pipeline.pseudonymizer.key_id,
        archive_objects=archive.objects_written + archive.objects_unchanged,
        problems=problems,
        events_by_product=dict(sink.events_by_product),
    )
