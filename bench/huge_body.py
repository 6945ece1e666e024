"""Peak memory of one huge Event Hub body through the full pipeline (issue #18).

The body is `{"records": [...]}` of N records shaped like the bench corpus: the sample
generator's days, mostly FHIR `AuditLogs` and Key Vault `AuditEvent` records (every one of
those, and one in ten of the other sources), in generation order, compact JSON as Azure
Monitor sends it. 100,000 records are about 90 MB.

The parent generates the body into a scratch file; a fresh interpreter reads it and runs
`Pipeline.process` of a Batch holding that one body (`make_pipeline("full", dir)`: real
detections and the real archive), so its peak RSS (VmHWM of /proc/self/status, see
bench/memory.py) is that run's alone, the body's own bytes included.

    python -m bench.huge_body [--records 100000] [--scratch DIR]

prints JSON with `records`, `body_bytes`, `peak_rss_mb` and `seconds` (plus the RSS before
the batch, CPU seconds and the batch's counts). `measure(records)` returns the same dict.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench.corpus import SHIP_DELAY, day_specs, generate_all
from bench.memory import peak_rss_mb, rss_mb, run_child
from bench.pipelines import make_pipeline, quiet_logging
from phiwatch.eventhubs.batches import build_batch
from phiwatch.eventhubs.message import EventHubMessage
from phiwatch.sources.fields import parse_time

MAIN_CATEGORIES = frozenset({"AuditLogs", "AuditEvent"})  # FHIR, Key Vault
OTHERS_EVERY = 10
TARGET_MB = 600.0
BODY_FILE = "body.json"


def _day_records(corpus: Path) -> list[Any]:
    out: list[Any] = []
    for path in sorted((corpus / "logs").glob("*.jsonl.gz")):
        for line in gzip.decompress(path.read_bytes()).split(b"\n"):
            try:
                body = orjson.loads(line)
            except orjson.JSONDecodeError:  # the generator's truncated body
                continue
            records = body.get("records") if isinstance(body, dict) else None
            out.extend(r for r in records or () if isinstance(r, dict))
    return out


def build_body(records: int, scratch: Path) -> tuple[bytes, float]:
    """The body's bytes and its enqueued time (newest record + the shipping delay)."""
    picked: list[bytes] = []
    newest = 0.0
    others = 0
    first_day = 0
    while len(picked) < records:
        # Each generated day holds about 0.7 of its raw records in FHIR and Key Vault.
        need = records - len(picked)
        specs = day_specs(max(need, 1), first_day=first_day)
        first_day += len(specs)
        for corpus in generate_all(specs, scratch / "corpus", workers=1):
            for record in _day_records(corpus):
                if len(picked) == records:
                    break
                if record.get("category") not in MAIN_CATEGORIES:
                    others += 1
                    if others % OTHERS_EVERY:
                        continue
                when = parse_time(record.get("time"))
                if when is not None:
                    newest = max(newest, when.timestamp())
                picked.append(orjson.dumps(record))
            shutil.rmtree(corpus)
    return b'{"records":[' + b",".join(picked) + b"]}", newest + SHIP_DELAY


def run(body_path: Path, enqueued: float, records: int) -> dict[str, Any]:
    """In the child: one batch of one body through the full pipeline."""
    quiet_logging()
    archive = body_path.parent / "archive"
    pipeline = make_pipeline("full", archive)
    data = body_path.read_bytes()
    message = EventHubMessage(data, 0, datetime.fromtimestamp(enqueued, tz=UTC), "0")
    batch = build_batch("phiwatch-diagnostics", "0", [message])
    del message
    before = rss_mb()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = pipeline.process(batch)
    seconds = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    counts = result.counts
    return {
        "records": counts.records,
        "requested_records": records,
        "body_bytes": len(data),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "rss_before_batch_mb": round(before, 1),
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu, 2),
        "events": counts.events,
        "alerts": len(result.alerts),
        "dead_letters": sum(counts.dead_letters.values()),
        "skipped": sum(counts.skipped.values()),
        "accounted": counts.accounted,
        "target_peak_rss_mb": TARGET_MB,
    }


def measure(records: int = 100_000, scratch: Path | None = None) -> dict[str, Any]:
    """Generate the body here, process it in a fresh interpreter, return the child's JSON."""
    root = Path(tempfile.mkdtemp(prefix="huge-body-", dir=scratch))
    try:
        data, enqueued = build_body(records, root)
        body_path = root / BODY_FILE
        body_path.write_bytes(data)
        del data
        spec = {"body": str(body_path), "enqueued": enqueued, "records": records}
        return run_child("bench.huge_body", ["--child"], spec, timeout=3600)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.huge_body")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--scratch", type=Path, default=None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        spec = json.loads(sys.stdin.read())
        print(json.dumps(run(Path(spec["body"]), spec["enqueued"], spec["records"])))
        return
    print(json.dumps(measure(args.records, args.scratch), sort_keys=True))


if __name__ == "__main__":
    main()
