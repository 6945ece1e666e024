"""Baseline decode and the pipeline stages, each timed over the same in-memory batches.

Every repetition starts from a fresh pipeline (and a fresh archive directory), so the dedupe
set and detection state never carry over; one warm-up run precedes the timed ones and the
median is reported.
"""

from __future__ import annotations

import cProfile
import gc
import importlib
import io
import json
import pstats
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bench.pipelines import Scenario, make_pipeline
from phiwatch.batch import Batch
from phiwatch.envelope import decode_body

Prepared = tuple[Callable[[], object], Callable[[], None]]  # (timed run, cleanup)


def repeat(prepare: Callable[[], Prepared], reps: int, warmup: int = 1) -> list[float]:
    times: list[float] = []
    for i in range(warmup + reps):
        run, cleanup = prepare()
        gc.collect()
        started = time.perf_counter()
        run()
        elapsed = time.perf_counter() - started
        cleanup()
        if i >= warmup:
            times.append(elapsed)
    return times


def _summary(times: list[float], records: int, baseline: float | None = None) -> dict[str, Any]:
    median = statistics.median(times)
    rate = records / median
    out: dict[str, Any] = {
        "median_s": round(median, 4),
        "runs_s": [round(t, 4) for t in times],
        "records_per_s": round(rate),
        "us_per_record": round(median / records * 1e6, 2),
    }
    if baseline:
        out["ratio_to_baseline"] = round(rate / baseline, 4)
    return out


def decoders() -> dict[str, Callable[[bytes], object]]:
    """Every JSON decoder installed (none is added for the bench): orjson, msgspec, simdjson,
    and the stdlib for reference."""
    found: dict[str, Callable[[bytes], object]] = {"orjson": orjson.loads, "json": json.loads}
    for name, attr in (("msgspec", "json.decode"), ("simdjson", "loads")):
        try:
            obj: Any = importlib.import_module(name)
        except ImportError:
            continue
        for part in attr.split("."):
            obj = getattr(obj, part)
        found[name] = obj
    return found


def measure_baseline(bodies: list[bytes], records: int, reps: int) -> dict[str, Any]:
    results = {}
    for name, loads in decoders().items():

        def prepare(loads=loads) -> Prepared:
            def run() -> None:
                for data in bodies:
                    try:
                        loads(data)
                    except Exception:  # noqa: S112 - the corpus's truncated body
                        continue

            return run, lambda: None

        results[name] = _summary(repeat(prepare, reps), records)
    fastest = max(results, key=lambda n: results[n]["records_per_s"])
    return {
        "decoder": fastest,
        "records_per_s": results[fastest]["records_per_s"],
        "decoders": results,
    }


def _pipeline_run(
    kind: str, batches: list[Batch], scratch: Path, scenario: Scenario | None = None
) -> Prepared:
    archive = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=scratch))
    pipeline = make_pipeline(kind, archive, scenario=scenario)  # type: ignore[arg-type]

    def run() -> None:
        for batch in batches:
            pipeline.process(batch)

    return run, lambda: shutil.rmtree(archive)


def measure_stages(
    batches: list[Batch],
    records: int,
    baseline: float,
    reps: int,
    scratch: Path,
    scenario: Scenario | None = None,
) -> dict[str, Any]:
    def decode() -> Prepared:
        def run() -> None:
            for batch in batches:
                for body in batch.bodies:
                    decode_body(body)

        return run, lambda: None

    stages: dict[str, Any] = {"decode": _summary(repeat(decode, reps), records, baseline)}
    for kind in ("normalise", "detect", "full"):
        times = repeat(lambda kind=kind: _pipeline_run(kind, batches, scratch, scenario), reps)
        stages[kind] = _summary(times, records, baseline)
    return stages


def profile_full(
    batches: list[Batch], scratch: Path, top: int = 15, scenario: Scenario | None = None
) -> tuple[str, list[str]]:
    """cProfile of one full-pipeline run: the report (top entries by cumulative and by own
    time) and the few functions with the most own time, which the summary names beside a
    missed target."""
    run, cleanup = _pipeline_run("full", batches, scratch, scenario)
    profiler = cProfile.Profile()
    profiler.runcall(run)
    cleanup()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    for order in ("cumulative", "tottime"):
        text.write(f"==== sorted by {order} ====\n")
        stats.sort_stats(order).print_stats(top)
    return text.getvalue(), _most_own_time(stats, 5)


def _most_own_time(stats: pstats.Stats, n: int) -> list[str]:
    entries = stats.stats  # type: ignore[attr-defined]  # (file, line, name) -> (.., tottime, ..)
    total = sum(v[2] for v in entries.values()) or 1.0
    ranked = sorted(entries.items(), key=lambda item: -item[1][2])[:n]
    out = []
    for (filename, line, name), value in ranked:
        where = name if filename == "~" else f"{Path(filename).name}:{line}({name})"
        out.append(f"{where} {100 * value[2] / total:.0f}%")
    return out
