"""`python -m bench [--quick] [--records-rss N]`: generate, measure on one core, report."""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from bench import cli_corpus, memory, report, volume
from bench.corpus import (
    FIRST_SEED,
    CorpusSpec,
    batches,
    day_specs,
    generate_all,
    ground_truth,
    read_messages,
)
from bench.ingest import ingest_summary, raw_sizes
from bench.latency import batch_latency, detection_latency, observed_run
from bench.pipelines import Scenario, quiet_logging
from bench.stages import measure_baseline, measure_stages, profile_full
from bench.two_stage import measure_two_stage

RESULTS = Path(__file__).resolve().parent / "results"
PROFILE = RESULTS / "profile-full.txt"
FULL = {
    "stage_records": 20_000,
    "reps": 5,
    "records_rss": 1_000_000,
    "actors": 100_000,
    "latency_batches": {100: 200, 1000: 200},
    "records_volume": 3_000_000,
    "records_huge": 100_000,
    "records_cli": cli_corpus.DEFAULT_RECORDS,
}
QUICK = {
    "stage_records": 4_000,
    "reps": 2,
    "records_rss": 40_000,
    "actors": 2_000,
    "latency_batches": {100: 20, 1000: 5},
    "records_volume": 20_000,
    "records_huge": 5_000,
    "records_cli": 2_000,
}
NOTES = [
    "A batch is one Functions invocation: N Event Hub events (bodies of 1-40 records each), "
    "host.json maxEventBatchSize=100.",
    "Rates are raw records per second (every record read: events, dead-letters, skips).",
    "Logging is production's (INFO, JSON, PHI redaction) written to /dev/null.",
    "Stages use the real Pipeline: normalise = no detections + NullArchive, detect = real "
    "detections + NullArchive, full = real detections + Archive(LocalStore) with fsync.",
    "Corpus generation runs on every core before pinning; only measurements are pinned.",
    "The CLI measure runs `phiwatch replay` as a child: --workers 1 on one core, --workers = "
    "cores on all of them; its decode baseline is gzip + orjson of the same files, here.",
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small corpus: a smoke run")
    p.add_argument(
        "--records-rss",
        type=int,
        default=None,
        metavar="N",
        help="records in the peak-RSS run (default 1,000,000; --quick 40,000)",
    )
    p.add_argument(
        "--records-volume",
        type=int,
        default=None,
        metavar="N",
        help="records in the volume run (default 3,000,000; --quick 20,000)",
    )
    p.add_argument(
        "--records-huge",
        type=int,
        default=None,
        metavar="N",
        help="records in the one huge body (default 100,000; --quick 5,000)",
    )
    p.add_argument(
        "--records-cli",
        type=int,
        default=None,
        metavar="N",
        help="records in the CLI's generated corpus (default 200,000; --quick 2,000)",
    )
    p.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    p.add_argument(
        "--profile",
        type=Path,
        nargs="?",
        const=PROFILE,
        help="write a cProfile of the full-pipeline stage (top 15; a full run writes "
        f"{PROFILE.relative_to(RESULTS.parent.parent)} unless --no-profile)",
    )
    p.add_argument("--no-profile", action="store_true", help="no profile, not even in a full run")
    p.add_argument("--corpus-dir", type=Path, help="keep generated corpora here and reuse them")
    p.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    return p.parse_args(argv)


def huge_body_measure() -> Callable[[int], dict[str, Any]] | None:
    """bench/huge_body.py's `measure(records)`, when that file is there."""
    try:
        module = importlib.import_module("bench.huge_body")
    except ModuleNotFoundError as exc:
        if exc.name != "bench.huge_body":
            raise
        return None
    found: Callable[[int], dict[str, Any]] | None = getattr(module, "measure", None)
    return found


def pin_one_core() -> set[int] | None:
    if not hasattr(os, "sched_setaffinity"):
        return None
    target = {min(os.sched_getaffinity(0))}
    os.sched_setaffinity(0, target)
    return target


def run(args: argparse.Namespace, console: Console, scratch: Path) -> dict[str, Any]:
    cfg = dict(QUICK if args.quick else FULL)
    if args.records_rss is not None:
        cfg["records_rss"] = args.records_rss
    if args.records_volume is not None:
        cfg["records_volume"] = args.records_volume
    if args.records_huge is not None:
        cfg["records_huge"] = args.records_huge
    if args.records_cli is not None:
        cfg["records_cli"] = args.records_cli
    # A full run says what bounds a missed target: its profile is written unless refused.
    profile: Path | None = args.profile
    if profile is None and not args.quick and not args.no_profile:
        profile = PROFILE
    clock = time.perf_counter()

    def step(text: str) -> None:
        console.log(f"[{time.perf_counter() - clock:6.1f}s] {text}")

    stage_spec = CorpusSpec(FIRST_SEED, cfg["stage_records"], 0)
    # The RSS run: a burst of distinct actors (2 records each) plus generated days.
    rss_actors = min(cfg["actors"], cfg["records_rss"] // 10)
    days = day_specs(cfg["records_rss"] - 2 * rss_actors)
    step(f"generating {len({stage_spec, *days})} corpora (deterministic, samplegen)")
    workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    corpus_root = args.corpus_dir or scratch / "corpora"
    stage_dir, *day_dirs = generate_all([stage_spec, *days], corpus_root, workers)
    if stage_spec == days[0]:
        day_dirs = [stage_dir, *day_dirs]
    pinned = pin_one_core()
    step(f"pinned to CPU {sorted(pinned) if pinned else 'n/a'}")

    # Memory first, while this process is small (the children inherit nothing large).
    m: dict[str, Any] = {}
    step(f"state with {cfg['actors']:,} active actors (subprocess)")
    m["memory"] = {"state": memory.measure("state", {"actors": cfg["actors"]})}
    step(f"peak RSS over {cfg['records_rss']:,} records (subprocess)")
    m["memory"]["rss"] = memory.measure(
        "rss",
        {
            "corpora": [str(d) for d in day_dirs],
            "actors": rss_actors,
            "scratch": str(scratch),
            "sample_every": max(cfg["records_rss"] // 20, 1000),
        },
    )
    step(f"volume: {cfg['records_volume']:,} records through one pipeline (subprocess)")
    m["volume"] = volume.measure({"records": cfg["records_volume"]})
    huge = huge_body_measure()
    if huge is None:
        m["huge_body"] = {"skipped": "bench/huge_body.py is not there"}
    else:
        step(f"one body of {cfg['records_huge']:,} records (subprocess)")
        m["huge_body"] = huge(cfg["records_huge"])
    step(f"the CLI on {cfg['records_cli']:,} generated records vs gzip + orjson (subprocess)")
    cli_scratch = scratch / "cli"
    cli_scratch.mkdir()
    m["cli"] = cli_corpus.measure(
        cfg["records_cli"],
        corpus_dir=(args.corpus_dir / "cli") if args.corpus_dir else None,
        scratch=cli_scratch,
    )

    batch_list = list(batches(read_messages(stage_dir)))
    # The stage corpus's tenant as `make demo` configures it: parameters, privacy inputs.
    scenario = Scenario.of(stage_dir)
    raw = raw_sizes(batch_list)
    bodies = [body.data for b in batch_list for body in b.bodies]
    reps = cfg["reps"]
    m["corpus"] = {
        "stage": stage_spec.name,
        "bodies": len(bodies),
        **raw,
        "batches": len(batch_list),
        "days_rss": len(day_dirs),
    }
    step(f"baseline over {raw['records']:,} records in {len(bodies):,} bodies")
    m["baseline"] = measure_baseline(bodies, raw["records"], reps)
    step("stages: decode, + normalise, + detect, full")
    m["stages"] = measure_stages(
        batch_list, raw["records"], m["baseline"]["records_per_s"], reps, scratch, scenario
    )
    step("two stages: normalize forwarding to phi-events, detect with snapshots")
    m["two_stage"] = measure_two_stage(
        batch_list,
        raw["records"],
        m["baseline"]["records_per_s"],
        reps,
        scratch,
        scenario=scenario,
    )
    step("observed run: ingest bytes and detection latency")
    observer, engine = observed_run(batch_list, scratch, scenario)
    m["ingest"] = ingest_summary(observer, raw)
    m["detection_latency"] = detection_latency(observer, engine, ground_truth(stage_dir))
    m["batch_latency"] = {}
    for size, count in cfg["latency_batches"].items():
        step(f"batch latency: {count} batches of {size} events")
        m["batch_latency"][str(size)] = batch_latency(day_dirs, size, count, scratch)
    profiled: dict[str, Any] | None = None
    if profile:
        step(f"profiling the full pipeline → {profile}")
        profile.parent.mkdir(parents=True, exist_ok=True)
        text, most = profile_full(batch_list, scratch, scenario=scenario)
        profile.write_text(text, encoding="utf-8")
        profiled = {"file": str(profile), "most_own_time": most}
    summary = report.summarise(m)
    notes = list(NOTES)
    if m["memory"]["rss"]["records"] < 1_000_000:
        notes.append(
            f"Peak RSS measured over {m['memory']['rss']['records']:,} records, not "
            "the 1,000,000 the target names."
        )
    step("done")
    return {
        "generated_at": report.now_iso(),
        "duration_s": round(time.perf_counter() - clock, 1),
        "machine": report.machine_info(pinned, scratch),
        "config": {
            **cfg,
            "latency_batches": {str(k): v for k, v in cfg["latency_batches"].items()},
            "quick": args.quick,
        },
        "measures": m,
        "summary": summary,
        "targets": report.checks(summary, profiled),
        "unmeasured": report.unmeasured(summary),
        "profile": profiled,
        "notes": notes,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(stderr=True)
    quiet_logging()
    scratch = Path(tempfile.mkdtemp(prefix="phiwatch-bench-"))
    try:
        result = run(args, console, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report.write_json(args.out, result)
    out = Console(width=None if sys.stdout.isatty() else 120)
    report.print_tables(result, out)
    out.print(f"written to {args.out} in {result['duration_s']} s")
    failed = [k for k, c in result["targets"].items() if not c["pass"]]
    return 1 if args.check and failed else 0


if __name__ == "__main__":
    sys.exit(main())
