"""`phiwatch rules backtest`: a small archive written by `phiwatch replay`, then the KQL twin of
mass-record-access replayed over it per queryFrequency."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from phiwatch.commands.app import app
from phiwatch.rules.backtest import BacktestError, backtest, parse_time
from phiwatch.rules.loader import KQL_DIR, load_rule
from tests.records import fhir

runner = CliRunner()
TWIN = KQL_DIR / "phiwatch-mass-record-access.yaml"
OID = "33333333-aaaa-4bbb-8ccc-000000000003"  # tests.records.fhir's default actor
QUIET = 16 * 3600  # seconds after 2 Nov 08:00: 3 Nov 00:00


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 patients read in 5 minutes from 08:01 on 2 Nov (a burst), then a few reads ten minutes
    apart just after midnight on 3 Nov, through the real pipeline into an archive."""
    root = tmp_path_factory.mktemp("backtest")
    burst = [fhir(60 + i * 5, path=f"Patient/p{i}") for i in range(60)]
    quiet = [fhir(QUIET + i * 600, path=f"Patient/q{i}") for i in range(3)]
    records = burst + quiet
    bodies = [records[i : i + 20] for i in range(0, len(records), 20)]
    (root / "in").mkdir()
    (root / "in" / "logs.jsonl").write_text(
        "".join(json.dumps({"records": body}) + "\n" for body in bodies)
    )
    result = runner.invoke(app, ["replay", str(root / "in"), "--out", str(root / "out"), "--quiet"])
    assert result.exit_code == 0, result.output
    return root / "out" / "archive"


def backtest_cli(*args: str):
    return runner.invoke(app, ["rules", "backtest", str(TWIN), *args])


def test_twin_fires_on_the_burst_day_only(archive: Path) -> None:
    result = backtest_cli("--archive", str(archive), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    fired = {d["day"]: d for d in report["days"] if d["results"]}
    assert list(fired) == ["2026-11-02"]
    day = fired["2026-11-02"]
    # One burst, one actor: Account, IP and AzureResource entities.
    assert day["results"] == 1
    assert day["distinctEntities"] == 3
    (row,) = report["results"]
    assert row["ActorKey"] == f"oid:{OID}"
    assert row["DistinctPatientCount"] == 60
    assert row["RuleId"] == "mass-record-access"
    # The quiet day ran and fired nothing.
    assert any(d["day"] == "2026-11-03" and d["runs"] and not d["results"] for d in report["days"])


def test_overlapping_windows_count_a_result_once(archive: Path) -> None:
    # Every 10 minutes over a 1h queryPeriod: the burst is in six windows, one result.
    rule = load_rule(TWIN).template
    report = backtest(
        rule,
        archive,
        parse_time("2026-11-02T07:00"),
        parse_time("2026-11-02T10:00"),
        step=timedelta(minutes=10),
    )
    assert report.runs == 18
    (day,) = report.days
    assert day.fired_runs == 6
    assert day.results == 1


def test_window_is_bounded_by_each_run(archive: Path) -> None:
    # The 51st patient is read at 08:05:10: no run before 08:06 may fire, although the rows
    # are loaded (rows after a run's now() did not exist yet when it ran).
    rule = load_rule(TWIN).template
    report = backtest(
        rule,
        archive,
        parse_time("2026-11-02T07:50"),
        parse_time("2026-11-02T08:20"),
        step=timedelta(minutes=1),
    )
    assert report.runs == 30
    assert [r["FirstFiredAt"] for r in report.results][:1] == ["2026-11-02T08:06:00Z"]
    assert report.results[0]["DistinctPatientCount"] == 60  # done by 08:05:55


def test_table_output(archive: Path) -> None:
    result = backtest_cli("--archive", str(archive))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1].split() == ["day", "runs", "fired", "results", "entities"]
    assert lines[2].split()[0] == "2026-11-02"
    assert lines[2].split()[-2:] == ["1", "3"]


def test_no_events_in_range_is_a_clear_error(archive: Path) -> None:
    result = backtest_cli(
        "--archive", str(archive), "--since", "2025-01-01", "--until", "2025-01-02"
    )
    assert result.exit_code == 1
    assert "holds no PhiAccessEvents_CL rows" in result.stderr


def test_a_table_the_archive_lacks_is_a_clear_error(archive: Path, tmp_path: Path) -> None:
    text = TWIN.read_text().replace(
        "let reads = materialize(PhiAccessEvents_CL", "let reads = materialize(SigninLogs"
    )
    rule = tmp_path / "signin-twin.yaml"
    rule.write_text(text)
    result = runner.invoke(app, ["rules", "backtest", str(rule), "--archive", str(archive)])
    assert result.exit_code == 1
    assert "reads SigninLogs, which the archive does not hold" in result.stderr


def test_not_an_archive(tmp_path: Path) -> None:
    result = backtest_cli("--archive", str(tmp_path))
    assert result.exit_code == 1
    assert "not a phiwatch archive" in result.stderr


def test_step_longer_than_the_period_is_refused(archive: Path) -> None:
    with pytest.raises(BacktestError, match="longer than the rule's queryPeriod"):
        backtest(load_rule(TWIN).template, archive, step=timedelta(hours=2))


def test_alerts_are_loaded_as_phialerts(archive: Path) -> None:
    # A rule over PhiAlerts_CL reads the archive's alerts/ (TimeGenerated = DetectedAt).
    query = "PhiAlerts_CL | where TimeGenerated > ago(1h) | distinct AlertId, RuleId, ActorUserId"
    rule = load_rule(TWIN).template.model_copy(update={"query": query})
    report = backtest(rule, archive)
    assert set(report.rows_loaded) == {"PhiAlerts_CL"}
    assert [(r["RuleId"], r["ActorUserId"]) for r in report.results] == [
        ("mass-record-access", OID)
    ]
    assert [d.day for d in report.days if d.results] == ["2026-11-02"]
