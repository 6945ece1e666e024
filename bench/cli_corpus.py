"""The whole CLI on a large generated corpus, against decoding the same files.

`python -m bench.cli_corpus [--records 200000] [--workers N] [--corpus-dir DIR]` generates
days of samplegen records (the layout of `samples/logs`: gzip'd JSON lines, one file an
hour), then, in one run: the baseline, `gzip` + `orjson.loads` of every body of every file
in this process (best of three), and `phiwatch replay FILES --out DIR -q` as a subprocess,
by wall clock (interpreter start, rule loading, the archive with fsync and the output files
included), with `--workers 1` on one core and with `--workers` = the machine's cores, on
all of them. A ratio is the baseline's seconds over the CLI's for the same files (records
per second over records per second); the two runs' outputs are compared (events, alerts,
dead-letters, summary). Prints JSON.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench.corpus import day_specs, generate_all

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RECORDS = 200_000
BASELINE_REPS = 3
# What must not depend on --workers (the archive is compared by the replay's own tests).
_COMPARED = ("events.jsonl", "alerts.jsonl", "deadletter.jsonl", "summary.json")


def corpus_files(records: int, root: Path) -> list[Path]:
    """The generated days' log files, oldest first (each day's files are its hours)."""
    cores = len(_cores())
    dirs = generate_all(day_specs(records), root, cores)
    return [path for d in dirs for path in sorted((d / "logs").glob("*.jsonl.gz"))]


def _cores() -> set[int]:
    if hasattr(os, "sched_getaffinity"):
        # What the machine has, not what a pinned parent (python -m bench) left us.
        return set(range(os.cpu_count() or 1))
    return {0}


def decode_baseline(files: list[Path], reps: int = BASELINE_REPS) -> dict[str, Any]:
    """gzip + orjson.loads of every body, the files read from the page cache."""
    best = float("inf")
    records = bodies = 0
    for _ in range(reps):
        records = bodies = 0
        began = time.perf_counter()
        for path in files:
            for line in gzip.decompress(path.read_bytes()).split(b"\n"):
                if not line.strip():
                    continue
                bodies += 1
                try:
                    value = orjson.loads(line)
                except orjson.JSONDecodeError:
                    records += 1  # the generator's malformed bodies: one dead-letter each
                    continue
                found = value.get("records") if isinstance(value, dict) else None
                records += len(found) if isinstance(found, list) else 1
        best = min(best, time.perf_counter() - began)
    return {
        "records": records,
        "bodies": bodies,
        "seconds": round(best, 3),
        "records_per_s": round(records / best, 1),
    }


def run_cli(files: list[Path], out: Path, home: Path, workers: int) -> dict[str, Any]:
    """`phiwatch replay` in a child: one core for one worker, every core for more."""
    cores = _cores()
    one = {min(cores)}
    env = {**os.environ, "PHIWATCH_HOME": str(home), "PYTHONPATH": str(ROOT)}

    def affinity() -> None:
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, one if workers == 1 else cores)

    cmd = [sys.executable, "-m", "phiwatch", "replay", *map(str, files)]
    cmd += ["--out", str(out), "-q", "--workers", str(workers)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    done = subprocess.run(  # noqa: S603 (our own interpreter and arguments)
        cmd,
        cwd=ROOT,
        env=env,
        capture_output=True,
        check=False,
        preexec_fn=affinity,  # only sets the child's CPUs
    )
    seconds = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU of the command and its workers: on a shared machine, what wall time cannot say.
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace")[-2000:]
        raise RuntimeError(f"phiwatch replay --workers {workers} failed: {tail}")
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return {
        "workers": workers,
        "cpus": 1 if workers == 1 else len(cores),
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu, 2),
        "records": summary["records"],
        "records_per_s": round(summary["records"] / seconds, 1),
        "accounted": summary["accounted"],
        "alerts": len(summary["alert_list"]),
    }


def _digest(out: Path) -> dict[str, str]:
    return {name: hashlib.sha256((out / name).read_bytes()).hexdigest() for name in _COMPARED}


def measure(
    records: int = DEFAULT_RECORDS,
    *,
    corpus_dir: Path | None = None,
    workers: int | None = None,
    scratch: Path | None = None,
) -> dict[str, Any]:
    """The baseline and the CLI with 1 and with `workers` (default: the cores) workers."""
    many = workers or len(_cores())
    own = scratch is None
    work = Path(tempfile.mkdtemp(prefix="phiwatch-cli-corpus-")) if own else scratch
    assert work is not None
    try:
        files = corpus_files(records, corpus_dir or work / "corpora")
        home = work / "home"
        home.mkdir(exist_ok=True)
        baseline = decode_baseline(files)
        runs: dict[str, dict[str, Any]] = {}
        digests = {}
        for n in dict.fromkeys((1, many)):
            out = work / f"out-{n}"
            shutil.rmtree(out, ignore_errors=True)
            run = run_cli(files, out, home, n)
            # Time over time for the same files: the count of records cancels out.
            run["ratio_to_decode"] = round(baseline["seconds"] / run["seconds"], 4)
            runs[str(n)] = run
            digests[n] = _digest(out)
            shutil.rmtree(out, ignore_errors=True)
        ratios = [r["ratio_to_decode"] for r in runs.values()]
        return {
            "records": baseline["records"],
            "files": len(files),
            "gzip_bytes": sum(p.stat().st_size for p in files),
            "baseline": baseline,
            "cli": runs,
            "workers_max": many,
            "ratio_workers_1": runs["1"]["ratio_to_decode"],
            "ratio_workers_max": runs[str(many)]["ratio_to_decode"],
            "ratio_best": max(ratios),
            "identical_output": len({tuple(sorted(d.items())) for d in digests.values()}) == 1,
        }
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.cli_corpus", description=__doc__)
    p.add_argument("--records", type=int, default=DEFAULT_RECORDS, metavar="N")
    p.add_argument("--workers", type=int, default=None, metavar="N", help="default: the cores")
    p.add_argument("--corpus-dir", type=Path, help="keep generated corpora here and reuse them")
    args = p.parse_args(argv)
    result = measure(args.records, corpus_dir=args.corpus_dir, workers=args.workers)
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
