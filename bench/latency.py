"""Batch latency (one Functions invocation, archive writes included) and detection latency
(records between an incident's triggering record and the batch that emits its alert)."""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.corpus import batches, stream
from bench.observe import Observer, ProbeEngine
from bench.pipelines import Scenario, make_engine, make_pipeline
from phiwatch.model import Alert


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def batch_latency(
    corpora: list[Path], bodies_per_batch: int, min_batches: int, scratch: Path
) -> dict[str, Any]:
    """Time `pipeline.process` per batch over the corpora, passing over them again with a
    fresh pipeline and archive until `min_batches` full batches are timed. The first batch of
    each pass warms up and is not counted, nor is a short last batch."""
    samples: list[float] = []
    records: list[int] = []
    passes = 0
    while len(samples) < min_batches:
        passes += 1
        archive = Path(tempfile.mkdtemp(prefix="latency-", dir=scratch))
        pipeline = make_pipeline("full", archive)
        for i, batch in enumerate(batches(stream(corpora), bodies_per_batch)):
            started = time.perf_counter()
            result = pipeline.process(batch)
            elapsed = time.perf_counter() - started
            if i > 0 and len(batch.bodies) == bodies_per_batch:
                samples.append(elapsed * 1000)
                records.append(result.counts.records)
            if len(samples) >= min_batches:
                break
        shutil.rmtree(archive)
    return {
        "bodies_per_batch": bodies_per_batch,
        "batches": len(samples),
        "passes": passes,
        "records_per_batch_mean": round(sum(records) / len(records), 1),
        "p50_ms": round(percentile(samples, 50), 2),
        "p99_ms": round(percentile(samples, 99), 2),
        "max_ms": round(max(samples), 2),
        "us_per_record_p50": round(
            percentile([s / r * 1000 for s, r in zip(samples, records, strict=True)], 50), 2
        ),
    }


def observed_run(
    batch_list: list, scratch: Path, scenario: Scenario | None = None
) -> tuple[Observer, ProbeEngine]:
    """The full pipeline over `batch_list` with the probe engine and the observing sink."""
    engine = make_engine(cls=ProbeEngine, scenario=scenario)
    assert isinstance(engine, ProbeEngine)
    observer = Observer(engine)
    archive = Path(tempfile.mkdtemp(prefix="observed-", dir=scratch))
    pipeline = make_pipeline("full", archive, sinks=[observer], engine=engine, scenario=scenario)
    for batch in batch_list:
        pipeline.process(batch)
    pipeline.finish()
    shutil.rmtree(archive)
    return observer, engine


GRACE_NOTE = (
    "a deleted diagnostic setting is held for the rule's grace period (10 min of event time: "
    "a deletion of the resource itself within it explains the delete), so the alert is "
    "raised in the batch whose watermark passes delete time + grace; the records counted are "
    "those that arrived during the grace"
)


def _same_resource(alert: Alert, incident: dict[str, Any]) -> bool:
    wanted = (incident.get("target_resource_id") or "").lower()
    if incident.get("actor_user_id") or not wanted:
        return True
    held = (alert.target_resource_id or "").lower()
    return held == wanted or held.startswith(wanted + "/")


def detection_latency(
    observer: Observer, engine: ProbeEngine, truth: dict[str, Any]
) -> dict[str, Any]:
    """Per injected incident: the record that completed the pattern (the event whose
    processing opened the alert, or for an alert opened by event time passing, its first
    evidence), and how many records and batches later the alert's first version left."""
    rows = []
    matched: set[str] = set()
    for incident in truth["incidents"]:
        seen = sorted(
            (
                s
                for s in observer.first.values()
                if s.alert.rule_id == incident["rule_id"]
                and s.alert.actor_user_id == incident["actor_user_id"]
                # Incidents of one rule with no actor (two silent sources) are told apart by
                # the resource, and one alert answers for one incident only.
                and s.alert.alert_id not in matched
                and _same_resource(s.alert, incident)
            ),
            key=lambda s: s.batch,
        )
        row: dict[str, Any] = {"rule_id": incident["rule_id"], "incident_start": incident["start"]}
        if not seen:
            rows.append(row | {"detected": False})
            continue
        first = seen[0]
        matched.add(first.alert.alert_id)
        opener = engine.opened_by.get(first.alert.alert_id)
        trigger = opener or first.alert.evidence_event_uids[0]
        index, batch, when = observer.events[trigger]
        row |= {
            "detected": True,
            "opened_by": "event" if opener else "watermark",
            "trigger_record": index,
            "alert_batch_last_record": first.last_record,
            "records_after_trigger": first.last_record - index,
            "batches_after_trigger": first.batch - batch,
        }
        if not opener:
            # How far event time had to move before the rule could decide.
            row["watermark_after_trigger_s"] = round(first.watermark - when, 1)
            row["note"] = GRACE_NOTE
        rows.append(row)
    unexpected = sorted(
        s.alert.rule_id for s in observer.first.values() if s.alert.alert_id not in matched
    )
    detected = [r for r in rows if r.get("detected")]
    by_event = [r for r in detected if r["opened_by"] == "event"]
    return {
        "incidents": rows,
        "incidents_total": len(rows),
        "incidents_detected": len(detected),
        "unexpected_alerts": unexpected,
        "max_batches_after_trigger_event_rules": max(
            (r["batches_after_trigger"] for r in by_event), default=0
        ),
        "max_records_after_trigger_event_rules": max(
            (r["records_after_trigger"] for r in by_event), default=0
        ),
    }
