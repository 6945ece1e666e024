"""Generated scenarios end to end: every injected incident is found, nothing else alerts,
every record is accounted for, and the shipped samples are what the generator makes."""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from phiwatch.config import Settings
from phiwatch.hosts.replay import replay
from phiwatch.model import Alert
from phiwatch.samplegen import generate
from tests.scenario_inputs import privacy_files, scenario_settings

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"
SLACK = timedelta(minutes=20)


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _matches(incident: dict, alert: Alert) -> bool:
    if alert.rule_id != incident["rule_id"]:
        return False
    start, end = _time(incident["start"]), _time(incident["end"])
    if not (start - SLACK <= alert.first_event_time <= end + SLACK):
        return False
    if incident["rule_id"] in {
        "diagnostics-disabled",
        "audit-tampering",
        "anonymous-phi-read",
        "log-source-silent",
        "curious-access",  # keyed by patient: the chart's service, at its time
    }:
        return alert.target_resource_id == incident["target_resource_id"]
    if incident["rule_id"] == "password-spray":  # the address; the accounts are victims
        return alert.src_ip_addr == incident["src_ip"]
    return alert.actor_user_id == incident["actor_user_id"]


def check_against_ground_truth(truth: dict, alerts: list[Alert]) -> None:
    unmatched = list(alerts)
    for incident in truth["incidents"]:
        found = [a for a in unmatched if _matches(incident, a)]
        assert len(found) == 1, f"incident not raised exactly once: {incident['description']}"
        unmatched.remove(found[0])
    assert unmatched == [], f"alerts outside the ground truth: {[a.title for a in unmatched]}"


@pytest.mark.parametrize(("seed", "records"), [(7, 20_000), (11, 3_000), (23, 8_000)])
def test_generated_scenario_finds_every_incident_and_nothing_else(tmp_path, seed, records):
    generate(tmp_path / "gen", seed=seed, records=records)
    truth = json.loads((tmp_path / "gen" / "ground_truth.json").read_text())
    # The scenario's deployment settings (its sanctioned FHIR exporter, its allow-listed
    # integrations) and its privacy inputs come with it.
    summary = replay(
        [tmp_path / "gen" / "logs"],
        tmp_path / "out",
        scenario_settings(truth),
        **privacy_files(tmp_path / "gen", truth),
    )
    assert summary.counts.accounted
    assert summary.problems == []
    check_against_ground_truth(truth, summary.alerts)
    kv = next(a for a in summary.alerts if a.rule_id == "keyvault-failed-operations")
    assert kv.severity == "High"  # the principal went on to read a secret
    mass = next(a for a in summary.alerts if a.rule_id == "mass-record-access")
    assert mass.distinct_patient_count >= 200


def test_shipped_samples_are_the_documented_generation(tmp_path):
    truth = json.loads((SAMPLES / "ground_truth.json").read_text())
    generate(tmp_path, seed=truth["seed"], records=truth["records"])
    shipped = sorted(p.relative_to(SAMPLES) for p in SAMPLES.rglob("*.gz"))
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.gz"))
    assert shipped == fresh
    for name in shipped:
        assert (SAMPLES / name).read_bytes() == (tmp_path / name).read_bytes(), name
    for name in privacy_files(SAMPLES, truth).values():  # the roster and the patient index
        assert name.read_bytes() == (tmp_path / name.name).read_bytes(), name.name
    size = sum(p.stat().st_size for p in SAMPLES.rglob("*") if p.is_file())
    assert size < 5_000_000


def _independent_body_records(path: Path) -> list[list[bytes]]:
    """Per line that is a whole body: each record's JSON, re-serialised compactly."""
    bodies = []
    for line in gzip.decompress(path.read_bytes()).splitlines():
        try:
            body = json.loads(line)
        except ValueError:
            bodies.append(None)
            continue
        bodies.append(body["records"])
    return bodies


@pytest.mark.parametrize("path", sorted((SAMPLES / "logs").glob("*.gz")), ids=lambda p: p.name)
def test_every_sample_file_is_accounted_for_and_archived_byte_exactly(tmp_path, path):
    summary = replay([path], tmp_path, Settings())
    counts = summary.counts
    assert counts.accounted
    assert counts.records == (
        counts.event_records + sum(counts.dead_letters.values()) + sum(counts.skipped.values())
    )
    bodies = _independent_body_records(path)
    well_formed = sum(len(b) for b in bodies if b is not None)
    assert counts.records >= well_formed + sum(1 for b in bodies if b is None)

    raw_lines = [
        json.loads(line)
        for obj in sorted((tmp_path / "archive" / "raw").rglob("*.jsonl.gz"))
        for line in gzip.decompress(obj.read_bytes()).splitlines()
    ]
    assert len(raw_lines) == counts.records
    text = gzip.decompress(path.read_bytes()).decode()
    cursor = 0
    for entry in raw_lines:  # each record's exact bytes, in order, inside the input
        found = text.find(entry["Raw"], cursor)
        assert found >= 0, entry["Position"]
        cursor = found + len(entry["Raw"])
