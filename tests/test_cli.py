"""`phiwatch replay` as a user runs it: outputs, determinism, and clear errors."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from phiwatch.commands.app import app
from tests.records import activity, fhir, keyvault

runner = CliRunner()


def write_input(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    burst = [fhir(i * 3, path=f"Patient/p{i}") for i in range(70)]
    kv = [keyvault(600 + i, status=403, secret=f"s{i}") for i in range(6)]
    bodies = [burst[i : i + 20] for i in range(0, 70, 20)] + [kv, [activity(900)]]
    text = "".join(json.dumps({"records": b}) + "\n" for b in bodies)
    (folder / "logs.jsonl.gz").write_bytes(gzip.compress(text.encode(), mtime=0))
    (folder / "more.json").write_text(json.dumps({"records": [{"category": "Mystery"}]}))
    return folder


def replay(*args: str):
    return runner.invoke(app, ["replay", *args, "--quiet"])


def test_replay_writes_every_output_and_prints_the_summary(tmp_path):
    out = tmp_path / "out"
    result = replay(str(write_input(tmp_path / "in")), "--out", str(out))
    assert result.exit_code == 0, result.output
    for name in ("alerts.jsonl", "events.jsonl", "deadletter.jsonl", "summary.json"):
        assert (out / name).is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["records"] == 70 + 6 + 1 + 1
    assert summary["events"] == 77 and summary["dead_letters"] == {"unknown-category": 1}
    assert summary["alerts"] == {
        "diagnostics-disabled": 1,
        "keyvault-failed-operations": 1,
        "mass-record-access": 1,
    }
    assert summary["accounted"] is True
    assert summary["reasons"]["unknown-category"] == "no normaliser for category 'Mystery'"
    assert len((out / "alerts.jsonl").read_text().splitlines()) == 3
    assert list((out / "archive" / "raw").rglob("*.jsonl.gz"))
    assert "records read" in result.output and "every record accounted for: yes" in result.output
    assert "mass-record-access: Mass patient record access by" in result.output


def test_replaying_again_gives_identical_alerts_and_archive(tmp_path):
    data = write_input(tmp_path / "in")
    first, second = tmp_path / "a", tmp_path / "b"
    assert replay(str(data), "--out", str(first)).exit_code == 0
    assert replay(str(data), "--out", str(second), "--batch-bodies", "1").exit_code == 0
    assert (first / "alerts.jsonl").read_bytes() == (second / "alerts.jsonl").read_bytes()
    assert replay(str(data), "--out", str(first)).exit_code == 0  # into the same archive
    files = [p for p in (first / "archive").rglob("*") if p.is_file()]
    assert files and all(f.stat().st_mode & 0o222 == 0 for f in files)  # written read-only


def test_detection_parameters_from_the_command_line(tmp_path):
    result = replay(
        str(write_input(tmp_path / "in")),
        "--out",
        str(tmp_path / "o"),
        "--param",
        "mass-record-access.threshold=100",
    )
    assert result.exit_code == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert "mass-record-access" not in summary["alerts"]


def test_replaying_with_other_settings_into_the_same_archive_is_refused(tmp_path):
    data, out = write_input(tmp_path / "in"), str(tmp_path / "o")
    assert replay(str(data), "--out", out).exit_code == 0
    result = replay(str(data), "--out", out, "--param", "mass-record-access.threshold=10")
    assert result.exit_code == 1
    assert "already held different results" in result.output
    assert "needs a new --out" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ("threshold=5", "expected RULE.NAME=VALUE"),
        ("no-such-rule.x=1", "parameters given for unknown detections"),
        ("mass-record-access.threshold=-3", "bad parameters"),
    ],
)
def test_bad_parameters_are_clear_errors(tmp_path, param, message):
    result = replay(
        str(write_input(tmp_path / "in")), "--out", str(tmp_path / "o"), "--param", param
    )
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_missing_path_is_a_clear_error(tmp_path):
    result = replay(str(tmp_path / "nope"), "--out", str(tmp_path / "o"))
    assert result.exit_code == 2
    assert "no such file or directory" in result.output
    assert "Traceback" not in result.output


def test_empty_directory_and_empty_file(tmp_path):
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    result = replay(str(empty_dir), "--out", str(tmp_path / "o"))
    assert result.exit_code == 2 and "no input files found" in result.output
    (empty_dir / "nothing.jsonl").write_text("\n\n")
    result = replay(str(empty_dir), "--out", str(tmp_path / "o"))
    assert result.exit_code == 2 and "the input holds no records" in result.output


def test_malformed_and_unreadable_files_fail_after_processing_the_rest(tmp_path):
    data = write_input(tmp_path / "in")
    (data / "garbage.jsonl").write_bytes(b"\x00\x01 not json\n{{{{\n")
    (data / "broken.jsonl.gz").write_bytes(b"this is not gzip")
    result = replay(str(data), "--out", str(tmp_path / "o"))
    assert result.exit_code == 1
    assert "garbage.jsonl: malformed, no record in it could be read" in result.output
    assert "broken.jsonl.gz: cannot read" in result.output
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["events"] == 77 and summary["accounted"] is True
    assert "Traceback" not in result.output


def test_module_entry_point_runs():
    done = subprocess.run(
        [sys.executable, "-m", "phiwatch", "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0
    assert "replay" in done.stdout and "samples" in done.stdout


def test_summary_counts_events_per_source(tmp_path):
    out = tmp_path / "out"
    result = replay(str(write_input(tmp_path / "in")), "--out", str(out))
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    written = Counter(
        json.loads(line)["EventProduct"] for line in (out / "events.jsonl").read_text().splitlines()
    )
    by_product = summary["events_by_product"]
    assert by_product == dict(written)
    assert len(by_product) == 3  # FHIR, Key Vault and the Activity Log in write_input
    assert sum(by_product.values()) == summary["events"]
    rows = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in result.output.splitlines()
        if line.count("│") >= 3
    }
    for product, n in by_product.items():
        assert rows[product] == f"{n:,}"
