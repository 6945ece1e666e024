"""Machine info, the summary of every measure against its target, the table, the JSON file."""

from __future__ import annotations

import os
import platform
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

TARGETS = {  # summary key: (comparison, target, unit); issue #18's, then the stream's bounds
    "full_records_per_s": (">=", 50_000, "records/s"),
    # The `normalize` stage (archive, normalise, publish to phi-events) on one core.
    "normalize_forwarding_records_per_s": (">=", 60_000, "records/s"),
    # The `detect` stage with a snapshot after every batch.
    "detect_stage_events_per_s": (">=", 100_000, "events/s"),
    "batch_100_p99_ms": ("<", 50, "ms"),
    # 1,000,000 records with 100,000 active actors.
    "rss_peak_mb": ("<", 300, "MB"),
    # One Event Hub body of 100,000 records (bench/huge_body.py).
    "huge_body_peak_rss_mb": ("<", 600, "MB"),
    "ingest_ratio": ("<=", 0.35, "x raw"),
    # `phiwatch replay` on a generated corpus against gzip + orjson of the same files, the
    # better of --workers 1 and --workers = cores (bench/cli_corpus.py).
    "cli_ratio_to_decode": (">=", 0.15, "x decode"),
    # "State must stay bounded as the stream goes on": what is left once event time has
    # moved past window + lateness, as a share of the state with every actor active.
    "state_left_after_expiry": ("<=", 0.01, "x active"),
    # No cliff at hospital volume: the last tenth of a >= 3 M-record run as fast as the first.
    "volume_last_to_first_ratio": (">=", 0.8, "x first tenth"),
}
# What bounds a missed target, besides the full pipeline's profile: memory is not in a CPU
# profile, and the CLI adds its start and the files to the pipeline.
_BOUND_BY = {
    "rss_peak_mb": "peak RSS: measures.memory (state per actor, the dedupe set's cap)",
    "huge_body_peak_rss_mb": "peak RSS of one body: measures.huge_body",
    "ingest_ratio": "row sizes: measures.ingest (columns per row)",
    "cli_ratio_to_decode": "the full pipeline per record, plus the CLI's start: measures.cli",
    "state_left_after_expiry": "detection state: measures.memory.state",
    "volume_last_to_first_ratio": "per tenth: measures.volume.tenths",
}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _fs_type(path: Path) -> str:
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts") as fh:
            for line in fh:
                parts = line.split()
                if str(path).startswith(parts[1]) and len(parts[1]) > len(best):
                    best, kind = parts[1], parts[2]
    except OSError:
        pass
    return kind


def machine_info(pinned: set[int] | None, scratch: Path) -> dict[str, Any]:
    versions = {}
    for dist in ("phiwatch", "orjson", "pydantic", "cryptography", "msgspec", "pysimdjson"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "pinned_cpus": sorted(pinned) if pinned else None,
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "scratch_filesystem": _fs_type(scratch),
        # Others may share the machine: the load when the run ended, for judging noise.
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "versions": versions,
    }


def summarise(m: dict[str, Any]) -> dict[str, float]:
    """One number per measure: what the smoke test checks and the table shows."""
    stages = m["stages"]
    out: dict[str, float] = {"baseline_records_per_s": m["baseline"]["records_per_s"]}
    for name in ("decode", "normalise", "detect", "full"):
        out[f"{name}_records_per_s"] = stages[name]["records_per_s"]
        out[f"{name}_ratio_to_baseline"] = stages[name]["ratio_to_baseline"]
    rss, state = m["memory"]["rss"], m["memory"]["state"]
    out |= {
        "rss_peak_mb": rss["peak_rss_mb"],
        "rss_records": rss["records"],
        "rss_run_records_per_s": rss["records_per_s"],
        "state_size_active": state["active"]["state_size"],
        "state_rss_delta_mb_active": state["active"]["rss_delta_mb"],
        "state_bytes_per_actor": state["bytes_per_active_actor"],
        "state_bytes_active_estimate": state["held_bytes_active_estimate"],
        "state_size_after_expiry": state["after_expiry"]["state_size"],
        "state_left_after_expiry": round(
            state["after_expiry"]["state_size"] / max(state["active"]["state_size"], 1), 4
        ),
        "state_bytes_after_expiry_traced": state["traced"]["after_expiry"]["held_bytes"],
        "rss_run_max_state_after_first_day": rss["max_state_size_after_first_day"],
    }
    vol = m["volume"]
    out |= {
        "volume_records": vol["records"],
        "volume_first_tenth_records_per_s": vol["first_tenth_records_per_s"],
        "volume_last_tenth_records_per_s": vol["last_tenth_records_per_s"],
        "volume_last_to_first_ratio": vol["last_to_first_ratio"],
        "volume_peak_rss_mb": vol["peak_rss_mb"],
    }
    two = m["two_stage"]
    out["normalize_forwarding_records_per_s"] = two["normalize_forwarding"]["records_per_s"]
    out["normalize_forwarding_ratio_to_baseline"] = two["normalize_forwarding"]["ratio_to_baseline"]
    out["detect_stage_events_per_s"] = two["detect"]["events_per_s"]
    for size, lat in m["batch_latency"].items():
        out[f"batch_{size}_p50_ms"] = lat["p50_ms"]
        out[f"batch_{size}_p99_ms"] = lat["p99_ms"]
    out["ingest_ratio"] = m["ingest"]["ratio_to_raw_records"]
    huge = m.get("huge_body")
    if huge and "peak_rss_mb" in huge:
        out["huge_body_records"] = huge["records"]
        out["huge_body_mb"] = round(huge["body_bytes"] / 1e6, 1)
        out["huge_body_peak_rss_mb"] = huge["peak_rss_mb"]
        out["huge_body_seconds"] = huge["seconds"]
    cli = m["cli"]
    out |= {
        "cli_records": cli["records"],
        "cli_decode_records_per_s": cli["baseline"]["records_per_s"],
        "cli_workers_1_records_per_s": cli["cli"]["1"]["records_per_s"],
        "cli_ratio_workers_1": cli["ratio_workers_1"],
        "cli_workers_max": cli["workers_max"],
        "cli_ratio_workers_max": cli["ratio_workers_max"],
        "cli_ratio_to_decode": cli["ratio_best"],
    }
    det = m["detection_latency"]
    out["incidents_detected"] = det["incidents_detected"]
    out["incidents_total"] = det["incidents_total"]
    out["detection_max_batches_after_trigger"] = det["max_batches_after_trigger_event_rules"]
    out["detection_max_records_after_trigger"] = det["max_records_after_trigger_event_rules"]
    return out


# Targets a CPU profile of the pipeline speaks to (the others are bytes or memory).
_CPU_BOUND = {
    "full_records_per_s",
    "normalize_forwarding_records_per_s",
    "detect_stage_events_per_s",
    "batch_100_p99_ms",
    "cli_ratio_to_decode",
    "volume_last_to_first_ratio",
}


def checks(
    summary: dict[str, float], profile: dict[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    """Every target with a measure in `summary` (see `unmeasured`); a missed one says what
    bounds it: the profile's file and the functions with the most own time in it."""
    ops = {">=": float.__ge__, "<": float.__lt__, "<=": float.__le__}
    out: dict[str, dict[str, Any]] = {}
    for key, (op, target, unit) in TARGETS.items():
        if key not in summary:
            continue
        check: dict[str, Any] = {
            "value": summary[key],
            "target": f"{op} {target}",
            "unit": unit,
            "pass": bool(ops[op](float(summary[key]), float(target))),
        }
        if not check["pass"]:
            bound: dict[str, Any] = {}
            if key in _BOUND_BY:
                bound["measure"] = _BOUND_BY[key]
            if profile and key in _CPU_BOUND:
                bound["profile"] = f"{profile['file']} (the full pipeline's cProfile)"
                bound["most_own_time"] = profile["most_own_time"]
            check["bound_by"] = bound or {"profile": "not written (run with --profile)"}
        out[key] = check
    return out


def unmeasured(summary: dict[str, float]) -> list[str]:
    """Targets whose measure this run did not produce (bench/huge_body.py not present)."""
    return [key for key in TARGETS if key not in summary]


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
    tmp.replace(path)


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fmt(value: float) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return f"{int(value):,}"


def print_tables(result: dict[str, Any], console: Console) -> None:
    m, summary, verdict = result["measures"], result["summary"], result["targets"]
    stages = Table(title="Throughput, one core (median of runs)")
    for col in ("Stage", "records/s", "x baseline", "µs/record"):
        stages.add_column(col, justify="right" if col != "Stage" else "left")
    base = m["baseline"]
    stages.add_row(
        f"baseline: {base['decoder']}.loads per body",
        _fmt(base["records_per_s"]),
        "1.000",
        _fmt(1e6 / base["records_per_s"]),
    )
    labels = {
        "decode": "envelope decode",
        "normalise": "+ normalise (no detections, null archive)",
        "detect": "+ detect (null archive)",
        "full": "full pipeline (local archive, gzip, sign)",
    }
    for name, label in labels.items():
        s = m["stages"][name]
        stages.add_row(
            label, _fmt(s["records_per_s"]), _fmt(s["ratio_to_baseline"]), _fmt(s["us_per_record"])
        )
    console.print(stages)

    table = Table(title="Measures and targets")
    for col in ("Measure", "Value", "Target", "Result"):
        table.add_column(col)
    for key, value in summary.items():
        check = verdict.get(key)
        if check:
            mark = "[green]PASS[/]" if check["pass"] else "[red]FAIL[/]"
            table.add_row(key, _fmt(value), f"{check['target']} {check['unit']}", mark)
        else:
            table.add_row(key, _fmt(value), "", "")
    for key in result.get("unmeasured", []):
        op, target, unit = TARGETS[key]
        table.add_row(key, "not measured", f"{op} {target} {unit}", "[yellow]n/a[/]")
    console.print(table)
    missed = {k: c for k, c in verdict.items() if not c["pass"]}
    if missed:
        bounds = Table(title="What bounds each missed target")
        for col in ("Target", "Bound by"):
            bounds.add_column(col)
        for key, check in missed.items():
            bound = check.get("bound_by", {})
            parts = [bound[k] for k in ("measure", "profile") if k in bound]
            if bound.get("most_own_time"):
                parts.append("most own time: " + ", ".join(bound["most_own_time"][:3]))
            bounds.add_row(key, "; ".join(parts))
        console.print(bounds)

    det = Table(title="Detection latency per injected incident")
    for col in (
        "Rule",
        "Opened by",
        "Trigger record",
        "Records after",
        "Batches after",
        "Watermark after trigger s",
    ):
        det.add_column(col)
    for row in m["detection_latency"]["incidents"]:
        if not row.get("detected"):
            det.add_row(row["rule_id"], "[red]not detected[/]", "", "", "", "")
            continue
        det.add_row(
            row["rule_id"],
            row["opened_by"],
            str(row["trigger_record"]),
            str(row["records_after_trigger"]),
            str(row["batches_after_trigger"]),
            str(row.get("watermark_after_trigger_s", "")),
        )
    console.print(det)
