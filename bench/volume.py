"""Hospital volume: millions of records through one pipeline, throughput per tenth of the run.

Issue #12 item 2: the dedupe set reaches its count cap (500,000 ids) after about an hour at
140 records/s, and the old set then went quadratic per commit (57 → 387 ms per 1,000 records
after 1.3 M records; 3 M did not finish in 10 minutes). This run sends `records` synthetic
FHIR reads (bench/synthetic.py: a Started and a Succeeded record per read, `actors` distinct
readers, event time moving at `rate` records per second) through one long-lived `Pipeline`
with the real normalisers and detections and a `NullArchive`: the archive's gzip, signing and
fsync cost the same per record at any volume and would only add disk noise to the ratio.

At the default rate the dedupe horizon (one hour of event time) holds 1.8 M ids, so the count
cap binds from record 500,000 on: the first tenth runs below the cap, the last at it. Each
tenth reports records per CPU second of `Pipeline.process` (CPU time, so other work on a
shared machine does not count; wall time too), and the run the last tenth / first tenth
ratio, peak RSS (VmHWM of this process alone) and the dedupe set's size and trim work.

Run as `python -m bench.volume` with a JSON spec on stdin (prints JSON), or via `measure`.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from typing import Any

from bench import synthetic
from bench.corpus import Message, batches
from bench.memory import peak_rss_mb, rss_mb, run_child
from bench.pipelines import make_pipeline, quiet_logging
from phiwatch.samplegen.clock import DEFAULT_START

DEFAULTS: dict[str, Any] = {
    "records": 3_000_000,
    "rate": 500.0,  # records per second of event time
    "actors": 10_000,  # 15 reads per actor per 10-minute window: under the mass-read threshold
    "per_body": synthetic.PER_BODY,
    "bodies_per_batch": 25,  # 1,000 records per invocation, the unit
}
TENTHS = 10


def reads(records: int, rate: float, actors: int, per_body: int) -> Iterator[Message]:
    """`records` records (read pairs) in bodies of `per_body`, event time moving at `rate`."""
    start = DEFAULT_START.timestamp()
    step = 2.0 / rate  # one read = two records
    chunk: list[tuple[float, dict[str, Any]]] = []
    for i in range(records // 2):
        t = start + i * step
        for record in synthetic.read_pair(i % actors, t, (i * 7919) % synthetic.PATIENTS):
            chunk.append((t, record))
        if len(chunk) >= per_body:
            yield from synthetic._bodies(chunk, per_body)
            chunk = []
    if chunk:
        yield from synthetic._bodies(chunk, per_body)


def run(spec: dict[str, Any]) -> dict[str, Any]:
    cfg = DEFAULTS | spec
    total = int(cfg["records"])
    pipeline = make_pipeline("detect")
    seen = pipeline.seen
    tenth_size = max(total // TENTHS, 1)
    tenths: list[dict[str, Any]] = []
    done = 0  # records processed so far
    records = cpu = wall = 0.0  # in the current tenth
    steps_at_start = seen.trim_steps
    cap_reached_at: int | None = None
    messages = reads(total, float(cfg["rate"]), int(cfg["actors"]), int(cfg["per_body"]))
    started = time.perf_counter()
    for batch in batches(messages, int(cfg["bodies_per_batch"])):
        c0, w0 = time.process_time(), time.perf_counter()
        result = pipeline.process(batch)
        cpu += time.process_time() - c0
        wall += time.perf_counter() - w0
        records += result.counts.records
        done += result.counts.records
        if cap_reached_at is None and len(seen) >= seen.max_entries:
            cap_reached_at = done
        if done >= tenth_size * (len(tenths) + 1) or done >= total:
            tenths.append(
                {
                    "records": int(records),
                    "up_to_record": done,
                    "records_per_cpu_s": round(records / cpu),
                    "records_per_wall_s": round(records / wall),
                    "dedupe_ids": len(seen),
                    "dedupe_trim_steps": seen.trim_steps - steps_at_start,
                    "rss_mb": round(rss_mb(), 1),
                }
            )
            records = cpu = wall = 0.0
            steps_at_start = seen.trim_steps
    pipeline.finish()
    totals = pipeline.totals
    first, last = tenths[0], tenths[-1]
    return {
        "config": cfg,
        "records": totals.records,
        "events": totals.events,
        "duplicates": totals.skipped.get("duplicate", 0),
        "accounted": totals.accounted,
        "alerts": sum(totals.alerts.values()),
        "dedupe_cap": seen.max_entries,
        "dedupe_cap_reached_at_record": cap_reached_at,
        "tenths": tenths,
        "first_tenth_records_per_s": first["records_per_cpu_s"],
        "last_tenth_records_per_s": last["records_per_cpu_s"],
        "last_to_first_ratio": round(last["records_per_cpu_s"] / first["records_per_cpu_s"], 3),
        "last_to_first_ratio_wall": round(
            last["records_per_wall_s"] / first["records_per_wall_s"], 3
        ),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }


def measure(spec: dict[str, Any], timeout: float = 7200) -> dict[str, Any]:
    """Run in a fresh interpreter, so peak RSS is this run's alone."""
    result: dict[str, Any] = run_child("bench.volume", [], spec, timeout)
    return result


def main() -> None:
    quiet_logging()
    spec = json.loads(sys.stdin.read() or "{}")
    print(json.dumps(run(spec), sort_keys=True))


if __name__ == "__main__":
    main()
