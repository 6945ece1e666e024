"""`python -m bench --quick` runs end to end and records every measure as a number.

No timing assertions: how fast the pipeline is depends on the machine; that the benchmark
keeps measuring everything does not.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MEASURES = (
    "baseline_records_per_s",
    "decode_records_per_s",
    "decode_ratio_to_baseline",
    "normalise_records_per_s",
    "normalise_ratio_to_baseline",
    "detect_records_per_s",
    "detect_ratio_to_baseline",
    "full_records_per_s",
    "full_ratio_to_baseline",
    "rss_peak_mb",
    "rss_records",
    "state_size_active",
    "state_bytes_per_actor",
    "state_bytes_active_estimate",
    "state_size_after_expiry",
    "state_left_after_expiry",
    "batch_100_p50_ms",
    "batch_100_p99_ms",
    "batch_1000_p50_ms",
    "batch_1000_p99_ms",
    "ingest_ratio",
    "incidents_detected",
    "detection_max_batches_after_trigger",
    "detection_max_records_after_trigger",
    "volume_records",
    "volume_first_tenth_records_per_s",
    "volume_last_tenth_records_per_s",
    "volume_last_to_first_ratio",
    "volume_peak_rss_mb",
    "normalize_forwarding_records_per_s",
    "detect_stage_events_per_s",
    "cli_records",
    "cli_decode_records_per_s",
    "cli_ratio_workers_1",
    "cli_ratio_workers_max",
    "cli_ratio_to_decode",
)
# Measured once bench/huge_body.py is there (bench runs without it).
HUGE_BODY = ("huge_body_records", "huge_body_peak_rss_mb", "huge_body_seconds")
# Every target the issue names, checked in every run that can measure it.
TARGETS = {
    "full_records_per_s",
    "normalize_forwarding_records_per_s",
    "detect_stage_events_per_s",
    "batch_100_p99_ms",
    "rss_peak_mb",
    "huge_body_peak_rss_mb",
    "ingest_ratio",
    "cli_ratio_to_decode",
}


@pytest.mark.timeout(300)
def test_quick_bench_reports_every_measure(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(out.read_text())

    summary = result["summary"]
    huge = importlib.util.find_spec("bench.huge_body") is not None
    for key in (*MEASURES, *(HUGE_BODY if huge else ())):
        value = summary.get(key)
        assert isinstance(value, int | float) and not isinstance(value, bool), key
    for name, check in result["targets"].items():
        assert isinstance(check["value"], int | float), name
        assert isinstance(check["pass"], bool), name
        if not check["pass"]:
            assert check["bound_by"], name
    expected = TARGETS if huge else TARGETS - {"huge_body_peak_rss_mb"}
    assert expected <= set(result["targets"])
    assert "full_ratio_to_baseline" not in result["targets"]  # the old 0.25x target is gone
    assert set(result["unmeasured"]) == (set() if huge else {"huge_body_peak_rss_mb"})
    cli = result["measures"]["cli"]
    assert cli["identical_output"] and cli["cli"]["1"]["accounted"]
    incidents = result["measures"]["detection_latency"]["incidents"]
    assert len(incidents) == result["summary"]["incidents_total"] > 0
    volume = result["measures"]["volume"]
    assert len(volume["tenths"]) == 10 and volume["accounted"]
    assert sum(t["records"] for t in volume["tenths"]) == volume["records"]
    machine = result["machine"]
    assert machine["cpu_count"] and machine["python"] and machine["platform"]


def test_targets_say_what_bounds_a_miss() -> None:
    """Without a run: a missed CPU target names the profile, a memory one its measure, and a
    target without a measure is listed as unmeasured rather than failed."""
    from bench import report

    summary = {key: 0.0 for key in report.TARGETS} | {"rss_peak_mb": 999.0}
    del summary["huge_body_peak_rss_mb"]
    profile = {"file": "bench/results/profile-full.txt", "most_own_time": ["fsync 13%"]}
    checks = report.checks(summary, profile)
    assert "huge_body_peak_rss_mb" not in checks
    assert report.unmeasured(summary) == ["huge_body_peak_rss_mb"]
    assert "profile-full.txt" in checks["full_records_per_s"]["bound_by"]["profile"]
    assert checks["full_records_per_s"]["bound_by"]["most_own_time"] == ["fsync 13%"]
    assert "profile" not in checks["rss_peak_mb"]["bound_by"]
    assert checks["rss_peak_mb"]["bound_by"]["measure"]
    assert "full_ratio_to_baseline" not in report.TARGETS
    assert report.TARGETS["cli_ratio_to_decode"] == (">=", 0.15, "x decode")
