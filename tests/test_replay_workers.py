"""`replay --workers N`: the same output as one process, and a failed worker fails the run.

Compared: the archive's content (decompressed objects and the manifests' line hashes and
Merkle roots; not compressed bytes, their digests or signatures), events, alerts and
dead-letters as written, and the summary (counts, AlertIds and their order)."""

from __future__ import annotations

import gzip
import hashlib
import json
import multiprocessing
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

import phiwatch.hosts.replay as replay_host
from phiwatch.commands.app import app
from phiwatch.config import Settings
from phiwatch.hosts.replay import ReplayWorkerError, replay
from phiwatch.samplegen import generate
from tests import records
from tests.scenario_inputs import privacy_files, scenario_settings

REPO = Path(__file__).resolve().parent.parent
SAMPLE_LOGS = sorted((REPO / "samples" / "logs").glob("*.jsonl.gz"))
OUTPUTS = ("events.jsonl", "alerts.jsonl", "deadletter.jsonl")


def archive_digest(root: Path) -> dict[str, Any]:
    """What of an archive must not depend on the worker count (or the codec)."""
    out: dict[str, Any] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        data = path.read_bytes()
        if rel.endswith(".gz"):
            out[rel] = hashlib.sha256(gzip.decompress(data)).hexdigest()
        elif rel.startswith("manifests/") and rel.endswith(".json"):
            manifest = json.loads(data)
            for entry in manifest.get("objects", []):
                entry.pop("sha256", None)
                entry.pop("bytes", None)
            manifest.pop("signature", None)
            manifest.pop("previous", None)
            out[rel] = manifest
        else:
            out[rel] = len(data)
    return out


def _run(files: list[Path], out: Path, settings: Settings, workers: int, **kw: Any) -> dict:
    summary = replay(files, out, settings, workers=workers, **kw)
    (out / "summary.json").write_bytes(orjson.dumps(summary.as_dict()))
    return summary.as_dict()


def _assert_same(one: Path, many: Path) -> None:
    assert archive_digest(many / "archive") == archive_digest(one / "archive")
    for name in (*OUTPUTS, "summary.json"):
        assert (many / name).read_bytes() == (one / name).read_bytes(), name


def test_sample_files_give_the_same_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = SAMPLE_LOGS[:5]
    settings = Settings()
    one = _run(files, tmp_path / "one", settings, 1)
    kept = _kept(monkeypatch)
    many = _run(files, tmp_path / "many", settings, 2)
    # Redeliveries across files are left out record by record: no batch is done again.
    assert kept and all(kept)
    _assert_same(tmp_path / "one", tmp_path / "many")
    assert one["records"] > 1000 and one["accounted"]
    assert one == many
    assert one["skipped"].get("duplicate"), "the samples redeliver across files"


def test_generated_scenario_gives_the_same_output(tmp_path: Path) -> None:
    gen = tmp_path / "gen"
    generate(gen, seed=11, records=6_000)
    truth = json.loads((gen / "ground_truth.json").read_text())
    files = sorted((gen / "logs").glob("*.jsonl.gz"))
    settings = scenario_settings(truth)
    privacy = privacy_files(gen, truth)
    one = _run(files, tmp_path / "one", settings, 1, **privacy)
    many = _run(files, tmp_path / "many", settings, 3, **privacy)
    _assert_same(tmp_path / "one", tmp_path / "many")
    assert one["alert_list"] and one["alert_list"] == many["alert_list"]


def _jsonl(path: Path, bodies: list[list[dict]]) -> Path:
    path.write_text("".join(json.dumps({"records": b}) + "\n" for b in bodies))
    return path


def _kept(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each worker batch was kept (True) or done again here (False)."""
    kept: list[bool] = []
    check = replay_host._answers_hold

    def spy(pipeline: Any, work: Any) -> bool:
        kept.append(check(pipeline, work))
        return kept[-1]

    monkeypatch.setattr(replay_host, "_answers_hold", spy)
    return kept


def test_a_start_in_another_file_and_a_redelivery_are_done_as_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Start of a write in one file, its terminal record in the next (the NewValue comes
    from the Start), and a record delivered in both files (one duplicate)."""
    operation = "MICROSOFT.STORAGE/STORAGEACCOUNTS/WRITE"
    account = records.KV_ID.rsplit("/providers/", 1)[0] + (
        "/providers/Microsoft.Storage/storageAccounts/stphi01"
    )
    body = json.dumps({"properties": {"allowBlobPublicAccess": True}})
    start = records.activity(
        10, operation=operation, resource_id=account, result="Start", request_body=body
    )
    start["correlationId"] = "corr-write-1"
    done = records.activity(20, operation=operation, resource_id=account)
    done["correlationId"] = "corr-write-1"
    redelivered = records.keyvault(30)
    files = [
        _jsonl(tmp_path / "a.jsonl", [[start], [records.keyvault(5)], [redelivered]]),
        _jsonl(tmp_path / "b.jsonl", [[records.keyvault(15)], [done], [redelivered]]),
    ]
    settings = Settings()
    # One body a batch: the Start's batch is not the terminal record's.
    one = _run(files, tmp_path / "one", settings, 1, batch_bodies=1)
    kept = _kept(monkeypatch)
    _run(files, tmp_path / "many", settings, 2, batch_bodies=1)
    # b.jsonl's terminal record is done again here (its Start is a.jsonl's); the redelivered
    # record is kept, left out as the duplicate it is here.
    assert kept == [True, True, True, True, False, True]
    _assert_same(tmp_path / "one", tmp_path / "many")
    assert one["skipped"] == {"duplicate": 1, "non-terminal": 1}
    events = [json.loads(line) for line in (tmp_path / "many" / "events.jsonl").open()]
    (write,) = [e for e in events if e["Operation"].upper() == operation]
    assert "allowBlobPublicAccess" in write["NewValue"]


# ----------------------------------------------------------------- failed workers


def _dying_worker(setup: Any, files: Any, out: Any) -> None:
    """A worker that stops at once, as one killed by the OOM killer would."""
    os._exit(3)


def _silent_worker(setup: Any, files: Any, out: Any) -> None:
    time.sleep(120)


def _failing_worker(setup: Any, files: Any, out: Any) -> None:
    replay_host._worker_main(setup, [(0, Path("/nonexistent/phiwatch-file.jsonl"))], out)


def _second_dies(setup: Any, files: Any, out: Any) -> None:
    if files[0][0] == 1:
        os._exit(4)
    replay_host._worker_main(setup, files, out)


@pytest.mark.parametrize(
    ("worker", "message"),
    [
        (_dying_worker, "stopped (exit code 3)"),
        (_second_dies, "stopped (exit code 4)"),
        (_failing_worker, "No such file"),
        (_silent_worker, "sent nothing for 3 s"),
    ],
)
def test_a_failed_worker_fails_the_replay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, worker: Any, message: str
) -> None:
    monkeypatch.setattr(replay_host, "_worker_main", worker)
    if worker is _silent_worker:  # the others start real workers, which take seconds
        monkeypatch.setattr(replay_host, "_SILENT_SECONDS", 3.0)
    began = time.monotonic()
    with pytest.raises((ReplayWorkerError, OSError), match=re.escape(message)):
        replay(SAMPLE_LOGS[:2], tmp_path / "out", Settings(), workers=2)
    assert time.monotonic() - began < 60
    assert not [p for p in multiprocessing.active_children() if p.name.startswith("phiwatch")]


def test_the_command_fails_clearly_when_a_worker_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replay_host, "_worker_main", _second_dies)
    files = [str(p) for p in SAMPLE_LOGS[:2]]
    result = CliRunner().invoke(
        app, ["replay", *files, "--out", str(tmp_path / "out"), "-q", "--workers", "2"]
    )
    assert result.exit_code == 1
    assert "stopped (exit code 4)" in result.output
    assert not (tmp_path / "out" / "summary.json").exists()


def test_cli_workers_option(tmp_path: Path) -> None:
    files = [str(p) for p in SAMPLE_LOGS[:3]]
    runner = CliRunner()
    for workers, out in (("1", tmp_path / "one"), ("2", tmp_path / "two")):
        result = runner.invoke(
            app, ["replay", *files, "--out", str(out), "-q", "--workers", workers]
        )
        assert result.exit_code == 0, result.output
    _assert_same(tmp_path / "one", tmp_path / "two")


def test_identical_files_are_one_stream_and_read_by_one_process(tmp_path: Path) -> None:
    """Two copies of one file share a stream (a manifest chain): no workers for those."""
    copy = tmp_path / "copy.jsonl.gz"
    shutil.copy(SAMPLE_LOGS[0], copy)
    files = [SAMPLE_LOGS[0], copy]
    one = _run(files, tmp_path / "one", Settings(), 1)
    many = _run(files, tmp_path / "many", Settings(), 2)
    _assert_same(tmp_path / "one", tmp_path / "many")
    assert one == many


def test_an_unreadable_file_is_a_problem_as_in_one_process(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(b"not gzip at all")
    files = [SAMPLE_LOGS[0], broken, SAMPLE_LOGS[1]]
    one = _run(files, tmp_path / "one", Settings(), 1)
    many = _run(files, tmp_path / "many", Settings(), 2)
    assert one["problems"] and one["problems"] == many["problems"]
    _assert_same(tmp_path / "one", tmp_path / "many")
