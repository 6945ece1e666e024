"""`phiwatch report actor` on a real archive: the actor's PHI activity counted as the
pipeline emitted it, by object id, UPN or app id; the usual daily volume; alerts; CSV, HTML."""

from __future__ import annotations

import csv
import io
import statistics
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from phiwatch.commands.app import app
from phiwatch.reports.actor import NO_HISTORY, is_phi
from tests.report_scenario import Scenario, build

runner = CliRunner()
SINCE, UNTIL = "2026-11-02T00:00:00Z", "2026-11-04T00:00:00Z"


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    return build(tmp_path_factory.mktemp("report-actor"))


def _emitted(scenario: Scenario) -> list[dict[str, Any]]:
    """The events the replay emitted (its local sink), each once."""
    lines = (scenario.archive.parent / "events.jsonl").read_bytes().splitlines()
    return list({e["EventUid"]: e for e in map(orjson.loads, lines)}.values())


def _when(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["TimeGenerated"])


def _busiest_user(scenario: Scenario) -> dict[str, Any]:
    counts = Counter(
        e["ActorUserId"] for e in _emitted(scenario) if is_phi(e) and e.get("ActorUsername")
    )
    uid = counts.most_common(1)[0][0]
    return next(e for e in _emitted(scenario) if e["ActorUserId"] == uid)


def _run(*args: str) -> Any:
    return runner.invoke(app, ["report", "actor", *args])


def _report(scenario: Scenario, actor: str, since: str = SINCE, until: str = UNTIL) -> Any:
    result = _run(actor, "--archive", str(scenario.archive), "--since", since, "--until", until)
    assert result.exit_code == 0, result.output
    return orjson.loads(result.stdout)


def _ranked(counter: Counter[Any]) -> dict[str, int]:
    return {str(k): v for k, v in counter.items()}


def test_counts_what_the_actor_did_on_phi(scenario: Scenario) -> None:
    sample = _busiest_user(scenario)
    upn = sample["ActorUsername"].lower()
    # By UPN: the object id's events and those naming only the UPN (a SQL session's login).
    mine = [
        e for e in _emitted(scenario) if is_phi(e) and (e.get("ActorUsername") or "").lower() == upn
    ]
    document = _report(scenario, sample["ActorUsername"])
    assert document["verified"] is True and document["problems"] == []
    assert document["events"] == len(mine) > 10
    patients = Counter(e["PatientRef"] for e in mine if e.get("PatientRef"))
    assert {p["name"]: p["count"] for p in document["patients"]} == _ranked(patients)
    assert document["distinct_patients"] == len(patients)
    assert all(p["name"].startswith("pr_") for p in document["patients"])
    resources = Counter(e["TargetResourceId"] for e in mine)
    assert {r["name"]: r["count"] for r in document["resources"]} == _ranked(resources)
    operations = Counter(e["EventSubType"] or e["Operation"] for e in mine)
    assert {o["name"]: o["count"] for o in document["operations"]} == _ranked(operations)
    hours = Counter(f"{_when(e).hour:02d}" for e in mine)
    assert document["hours"] == dict(sorted(hours.items()))
    failures = Counter(
        e["EventSubType"] or e["Operation"] for e in mine if e["EventResult"] == "Failure"
    )
    assert {f["name"]: f["count"] for f in document["failures"]} == _ranked(failures)
    # By object id, in any case: that principal's events.
    by_id = _report(scenario, sample["ActorUserId"].upper())
    assert by_id["events"] == sum(
        1 for e in _emitted(scenario) if is_phi(e) and e["ActorUserId"] == sample["ActorUserId"]
    )
    assert by_id["events"] <= document["events"]


def test_usual_daily_volume_from_the_days_before(scenario: Scenario) -> None:
    sample = _busiest_user(scenario)
    start = datetime.fromisoformat(scenario.truth["start"])
    assert _report(scenario, sample["ActorUserId"])["usual_daily_events"] == NO_HISTORY
    since = "2026-11-02T20:00:00Z"
    before = [
        e
        for e in _emitted(scenario)
        if e["ActorUserId"] == sample["ActorUserId"]
        and is_phi(e)
        and start <= _when(e) < datetime(2026, 11, 2, 20, tzinfo=UTC)
    ]
    document = _report(scenario, sample["ActorUserId"], since=since)
    # The archive covers one day before `since` (the scenario starts at 08:00 that day).
    assert document["history_days"] == 1
    assert document["usual_daily_events"] == statistics.median([len(before)])


def test_an_application_and_its_alerts(scenario: Scenario) -> None:
    incident = next(i for i in scenario.truth["incidents"] if i["rule_id"] == "mass-record-access")
    alerts = [
        orjson.loads(line)
        for line in (scenario.archive.parent / "alerts.jsonl").read_bytes().splitlines()
    ]
    alert = next(a for a in alerts if a["RuleId"] == "mass-record-access")
    document = _report(scenario, incident["actor_user_id"])
    assert alert["AlertId"] in document["alerts"]
    assert document["distinct_patients"] >= 200
    app_id = next(
        e["ActingAppId"] for e in _emitted(scenario) if e.get("ActingAppId") and is_phi(e)
    )
    by_app = [e for e in _emitted(scenario) if e.get("ActingAppId") == app_id and is_phi(e)]
    assert _report(scenario, app_id)["events"] >= len(by_app) > 0


def test_csv_and_html(scenario: Scenario) -> None:
    sample = _busiest_user(scenario)
    args = [
        sample["ActorUserId"],
        "--archive",
        str(scenario.archive),
        "--since",
        SINCE,
        "--until",
        UNTIL,
    ]
    document = _report(scenario, sample["ActorUserId"])
    result = _run(*args, "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["section", "key", "count"]
    assert ["events", "", str(document["events"])] in rows
    assert sum(int(r[2]) for r in rows if r[0] == "patients") == sum(
        p["count"] for p in document["patients"]
    )
    result = _run(*args, "--format", "html")
    assert result.exit_code == 0, result.output
    assert "Actor activity report" in result.stdout and "<script" not in result.stdout
    assert "Archive verified for the range." in result.stdout


def test_an_unknown_actor_has_nothing(scenario: Scenario) -> None:
    document = _report(scenario, "nobody@contoso-health.org")
    assert document["events"] == 0 and document["patients"] == [] and document["alerts"] == []
