"""Memory, each measured in its own subprocess so RSS belongs to that run alone.

`rss`: the full pipeline (real archive) over N records streamed from disk: generated days
one after another, with a burst of distinct actors (one detection window) merged into the
first day. Peak RSS is `ru_maxrss` at the end; state size is sampled as the stream goes on.

`state`: the same burst alone under tracemalloc, for the bytes detection (and dedupe) state
holds with that many active actors; then event time moves past window + lateness + dedupe
horizon and the state must drop.

Run as `python -m bench.memory rss|state` with a JSON spec on stdin; prints JSON.
"""

from __future__ import annotations

import gc
import heapq
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from bench import synthetic
from bench.corpus import batches, read_messages, stream
from bench.pipelines import make_pipeline, quiet_logging
from phiwatch.dedupe import DEDUPE_HORIZON_SECONDS
from phiwatch.pipeline import Pipeline
from phiwatch.samplegen.clock import DEFAULT_START

ROOT = Path(__file__).resolve().parent.parent
BURST_AT = DEFAULT_START.timestamp() + 2 * 3600  # 10:00 on the first day: the morning peak
BURST_SECONDS = 300.0


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def ru_maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def peak_rss_mb() -> float:
    """This process image's peak RSS (VmHWM). `ru_maxrss` survives exec on Linux, so in a
    child of a big parent it reports the parent's peak at fork time; VmHWM does not."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return ru_maxrss_mb()


def _state(pipeline: Pipeline) -> dict[str, Any]:
    engine = pipeline.engine
    return {
        "state_size": engine.state_size(),
        "by_rule": {d.rule_id: d.state_size() for d in engine.detections},
        "open_alerts": len(engine.book),
        "dedupe_uids": len(pipeline.seen),
        "pseudonym_cache": len(getattr(pipeline.pseudonymizer, "_cache", ())),
    }


def _short(path: str) -> str:
    return path.rsplit("site-packages/", 1)[-1].removeprefix(str(ROOT) + "/")


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run_rss(spec: dict[str, Any]) -> dict[str, Any]:
    corpora = [Path(p) for p in spec["corpora"]]
    actors = spec["actors"]
    sample_every = spec.get("sample_every", 50_000)
    scratch = Path(tempfile.mkdtemp(prefix="rss-", dir=spec["scratch"]))
    pipeline = make_pipeline("full", scratch / "archive")
    first_day = heapq.merge(
        read_messages(corpora[0]),
        synthetic.burst(actors, BURST_AT, BURST_SECONDS),
        key=lambda m: m[1],
    )
    messages = itertools.chain(first_day, stream(corpora[1:]))
    samples: list[dict[str, Any]] = []
    durations: list[float] = []
    records = 0
    next_sample = sample_every
    before_burst = None
    started = time.perf_counter()
    for batch in batches(messages):
        if before_burst is None and pipeline.engine.watermark >= BURST_AT - BURST_SECONDS:
            before_burst = {"records": records, "rss_mb": round(rss_mb(), 1)}
        t0 = time.perf_counter()
        result = pipeline.process(batch)
        durations.append(time.perf_counter() - t0)
        records += result.counts.records
        if records >= next_sample:
            next_sample += sample_every
            samples.append(
                {
                    "records": records,
                    "watermark": pipeline.engine.watermark,
                    "rss_mb": round(rss_mb(), 1),
                }
                | _state(pipeline)
            )
    pipeline.finish()
    wall = time.perf_counter() - started
    peak = peak_rss_mb()
    archive_bytes = _dir_bytes(scratch / "archive")
    shutil.rmtree(scratch)
    peak_state = max(s["state_size"] for s in samples) if samples else 0
    later = [s["state_size"] for s in samples if s["watermark"] > BURST_AT + 86400]
    return {
        "records": records,
        "active_actors_burst": actors,
        "peak_rss_mb": round(peak, 1),
        "ru_maxrss_mb": round(ru_maxrss_mb(), 1),
        "final_rss_mb": round(rss_mb(), 1),
        "process_seconds": round(sum(durations), 1),
        "wall_seconds": round(wall, 1),
        "records_per_s": round(records / sum(durations)),
        "batches": len(durations),
        "archive_bytes": archive_bytes,
        "peak_state_size": peak_state,
        "before_burst": before_burst,
        "max_state_size_after_first_day": max(later, default=0),
        "final": _state(pipeline),
        "samples": samples,
    }


def _feed(pipeline: Pipeline, messages, first_seq: int) -> int:
    count = 0
    for batch in batches(messages, first_seq=first_seq):
        pipeline.process(batch)
        count += len(batch.bodies)
    gc.collect()
    return first_seq + count


def _traced_now() -> int:
    return tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else 0


def _top_files(n: int = 5) -> list[dict[str, Any]]:
    stats = tracemalloc.take_snapshot().statistics("filename")[:n]
    return [{"file": _short(s.traceback[0].filename), "bytes": s.size} for s in stats]


def _burst_then_expire(actors: int, traced: bool) -> dict[str, Any]:
    """`actors` distinct actors read within one window; then a few readers carry event time
    past window + lateness + dedupe horizon. State (and held bytes, when traced) at both."""
    pipeline = make_pipeline("detect")  # state does not depend on how batches are archived
    engine = pipeline.engine
    # Past the longest any rule keeps an event (curious-access's days of daily counts) as
    # well as lateness and the dedupe horizon.
    width = max(d.horizon() for d in engine.detections)
    move = width + engine.lateness + DEDUPE_HORIZON_SECONDS + 1800
    if traced:
        tracemalloc.start()
    gc.collect()
    base, base_rss = _traced_now(), rss_mb()
    seq = _feed(pipeline, synthetic.burst(actors, BURST_AT, BURST_SECONDS), 0)
    active = _state(pipeline) | {
        "watermark": engine.watermark,
        "held_bytes": _traced_now() - base,
        "rss_delta_mb": round(rss_mb() - base_rss, 1),
    }
    top = _top_files() if traced else []
    # The trickle reads few charts, so what it leaves (its own last day) stays small.
    _feed(pipeline, synthetic.trickle(BURST_AT + BURST_SECONDS, move, patients=8), seq)
    after = _state(pipeline) | {
        "watermark": engine.watermark,
        "held_bytes": _traced_now() - base,
        "rss_delta_mb": round(rss_mb() - base_rss, 1),
    }
    top_after = _top_files() if traced else []
    tracemalloc.stop()
    return {
        "actors": actors,
        "window_seconds": width,
        "lateness_seconds": engine.lateness,
        "event_time_moved_s": move,
        "active": active,
        "after_expiry": after,
        "top_allocations": top,
        "top_allocations_after_expiry": top_after,
    }


def run_state(spec: dict[str, Any]) -> dict[str, Any]:
    """State sizes with every actor (untraced: tracemalloc slows the pipeline ~10x), and the
    bytes held per active actor under tracemalloc with a smaller burst, scaled up."""
    actors = spec["actors"]
    full = _burst_then_expire(actors, traced=False)
    sample = _burst_then_expire(min(actors, spec.get("traced_actors", 10_000)), traced=True)
    per_actor = sample["active"]["held_bytes"] / sample["actors"]
    for phase in ("active", "after_expiry"):
        del full[phase]["held_bytes"], sample[phase]["rss_delta_mb"]
    return full | {
        "traced": sample,
        "bytes_per_active_actor": round(per_actor),
        "held_bytes_active_estimate": round(per_actor * actors),
    }


def run_child(module: str, args: list[str], spec: dict[str, Any], timeout: float) -> Any:
    """Run `python -m module args` in a fresh interpreter (same core affinity, so peak RSS
    is that run's alone) with `spec` as JSON on stdin; returns the JSON it prints."""
    done = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", module, *args],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        name = " ".join([module, *args])
        raise RuntimeError(f"{name} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout)


def measure(mode: str, spec: dict[str, Any], timeout: float = 3600) -> dict[str, Any]:
    """Run one mode in a fresh interpreter and return its JSON."""
    return run_child("bench.memory", [mode], spec, timeout)


def main() -> None:
    quiet_logging()
    mode = sys.argv[1]
    spec = json.loads(sys.stdin.read())
    result = {"rss": run_rss, "state": run_state}[mode](spec)
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
