"""`phiwatch report hipaa`'s content on an archive written by a replay of known records:
coverage and silences per source, the inventory's silent resources, integrity, retention,
the controls' statuses; the time parser and the inventory file; the command."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from phiwatch.archive.blob_store import BlobStore, ImmutabilityStatus
from phiwatch.archive.signer import load_public_key, local_public_key
from phiwatch.archive.store import LocalStore
from phiwatch.commands.app import app
from phiwatch.config import Settings
from phiwatch.hosts.replay import replay
from phiwatch.reports.hipaa import (
    HipaaReport,
    InventoryEntry,
    ReportError,
    build_report,
    gaps_of,
    parse_inventory,
    parse_time,
    retention_of,
)
from phiwatch.reports.hipaa_html import SECTIONS, render
from phiwatch.wiring import build_pipeline
from tests.harness import CollectingSink, batches_of
from tests.records import FHIR_ID, KV_ID, SUB, T0, fhir, keyvault

runner = CliRunner()
MISSING_SQL = (
    f"/subscriptions/{SUB}/resourceGroups/rg-phi/providers/Microsoft.Sql/servers/sql-phi"
    "/databases/ehr"
)
PATIENT = "zqpatient0042"  # distinctive: must never reach the page


def input_records() -> list[dict[str, Any]]:
    # The FHIR service logs every 5 minutes for 5 hours; the vault every 5 minutes, but not
    # from 1:00 to 3:00 (a 2-hour silence, over AuditEvent's 60-minute floor), and stops at
    # 3:30 (silent for the last 1.5 hours of the period, still silent at its end).
    records: list[dict[str, Any]] = []
    for minute in range(0, 301, 5):
        records.append(fhir(minute * 60, path=f"Patient/{PATIENT}"))
        if minute <= 60 or 180 <= minute <= 210:
            records.append(keyvault(minute * 60 + 1, secret=f"s{minute}"))
    records.append({"category": "AuditEvent", "resourceId": KV_ID, "operationName": "SecretGet"})
    return records


def write_input(folder: Path) -> Path:
    folder.mkdir(parents=True)
    records = input_records()
    bodies = [records[i : i + 10] for i in range(0, len(records), 10)]
    (folder / "logs.jsonl").write_text("".join(json.dumps({"records": b}) + "\n" for b in bodies))
    return folder


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    summary = replay([write_input(tmp_path / "in")], tmp_path / "out", Settings())
    assert summary.problems == []
    return tmp_path / "out" / "archive"


def trusted() -> dict[str, Any]:
    local = local_public_key(Settings())
    assert local is not None
    return {local[0]: load_public_key(local[1])}


def report_of(archive: Path, **kwargs: Any) -> HipaaReport:
    return build_report(LocalStore(archive), trusted=trusted(), settings=Settings(), **kwargs)


def source(report: HipaaReport, resource: str, category: str):
    (found,) = [s for s in report.sources if (s.resource, s.category) == (resource, category)]
    return found


# --- content -----------------------------------------------------------------------------


def test_coverage_first_and_last_record_per_resource_and_category(archive):
    report = report_of(archive)
    vault = source(report, KV_ID.lower(), "AuditEvent")
    service = source(report, FHIR_ID.lower(), "AuditLogs")
    assert (vault.first, vault.last) == (
        T0 + timedelta(seconds=1),
        T0 + timedelta(minutes=210, seconds=1),
    )
    assert (service.first, service.last) == (T0, T0 + timedelta(minutes=300))
    assert vault.records == 13 + 7 and service.records == 61
    assert (vault.floor_minutes, service.floor_minutes) == (60, 30)  # log-source-silent's FLOORS
    assert report.events == 81
    assert (report.first, report.last) == (T0, T0 + timedelta(minutes=300))
    products = {(p.product, p.category): p for p in report.products}
    assert products[("Key Vault", "AuditEvent")].resources == 1


def test_silences_longer_than_the_floor_and_the_one_still_running(archive):
    report = report_of(archive)
    vault = source(report, KV_ID.lower(), "AuditEvent")
    assert [(g.start - T0, g.end - T0, g.ongoing) for g in vault.gaps] == [
        (timedelta(minutes=60), timedelta(minutes=180), False),
        (timedelta(minutes=210), timedelta(minutes=300), True),
    ]
    assert source(report, FHIR_ID.lower(), "AuditLogs").gaps == []  # 5 minutes apart


def test_a_period_ending_earlier_cuts_the_running_silence_at_its_end(archive):
    report = report_of(archive, until=T0 + timedelta(minutes=200))
    vault = source(report, KV_ID.lower(), "AuditEvent")
    assert [(g.start - T0, g.end - T0) for g in vault.gaps] == [
        (timedelta(minutes=60), timedelta(minutes=180))
    ]
    assert vault.last == T0 + timedelta(minutes=195, seconds=1)


def test_gaps_of_counts_active_minutes_against_the_floor():
    assert gaps_of([0, 10, 100, 101], 30, None) == [(10, 100, False)]
    assert gaps_of([0, 10], 30, 41) == [(10, 41, True)]
    assert gaps_of([0, 10], 30, 40) == []  # exactly the floor is not longer than it
    assert gaps_of([], 30, 100) == []


def test_inventory_lists_the_resources_sending_nothing(archive):
    inventory = [
        InventoryEntry(KV_ID, "KeyVault", "kv-phi"),
        InventoryEntry(FHIR_ID.lower(), "FhirService", "fhir-prod"),
        InventoryEntry(MISSING_SQL, "SqlDatabase", "ehr"),
    ]
    report = report_of(archive, inventory=inventory)
    assert [m.entry.name for m in report.missing] == ["ehr"]
    sending = {i.entry.name: i.categories for i in report.inventory or [] if i.sending}
    assert sending == {"kv-phi": ("AuditEvent",), "fhir-prod": ("AuditLogs",)}
    audit = next(c for c in report.controls if c.citation == "164.312(b)")
    assert "1 sent nothing" in " ".join(audit.evidence)


def test_integrity_dead_letters_alerts_and_detections(archive):
    report = report_of(archive)
    assert report.integrity.verified and report.integrity.objects > 0
    assert report.dead_letters == {"no-timestamp": 1}
    rules = {d.rule_id: d for d in report.detections}
    assert rules["log-source-silent"].on and rules["log-source-silent"].params["gap_factor"] == 3
    assert not rules["break-glass-sign-in"].on  # no emergency-access accounts configured
    assert report.retention.state == "not checked locally"


def test_controls_table_maps_every_citation_to_evidence_and_a_status(archive):
    statuses = {c.citation: c.status for c in report_of(archive).controls}
    assert statuses == {
        "164.312(b)": "attention",  # silences, and no inventory to compare with
        "164.312(c)(1)": "met",
        "164.312(c)(2)": "attention",  # verified, but storage immutability unknown locally
        "164.308(a)(1)(ii)(D)": "met",
        "164.308(a)(5)(ii)(C)": "not met",  # no sign-in logs at all
        "164.316(b)(2)": "not checked",
    }


def test_a_tampered_archive_fails_the_integrity_controls(archive):
    victim = next((archive / "events").rglob("*.jsonl.gz"))
    victim.chmod(0o644)
    victim.write_bytes(victim.read_bytes() + b"x")
    report = report_of(archive)
    assert not report.integrity.verified and report.integrity.problem_count
    statuses = {c.citation: c.status for c in report.controls}
    assert statuses["164.312(c)(1)"] == statuses["164.312(c)(2)"] == "not met"


def test_retention_of_a_blob_container_comes_from_its_policy_and_the_lock_setting():
    store = object.__new__(BlobStore)  # the state only: no container is reached
    store.immutability = ImmutabilityStatus(
        "https://acct.blob.core.windows.net/a", True, True, False
    )
    locked = retention_of(store, Settings(archive_immutability_locked=True))
    assert (locked.checked, locked.state) == (True, "locked")
    assert retention_of(store, Settings()).state == "unlocked"
    store.immutability = ImmutabilityStatus(
        "https://acct.blob.core.windows.net/a", True, False, False
    )
    assert retention_of(store, Settings()).state == "none"


def test_the_page_has_every_section_and_names_no_patient(archive):
    page = render(report_of(archive, inventory=[InventoryEntry(MISSING_SQL, "SqlDatabase", "ehr")]))
    for sid, _ in SECTIONS:
        assert f'<section id="{sid}">' in page
    for chart in ("chart-volume", "chart-coverage", "chart-deadletters"):  # no alert here
        assert f'id="{chart}"' in page
    assert PATIENT not in page and "alice.nurse" not in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page and "<script" not in page


# --- inputs ------------------------------------------------------------------------------


def test_times_are_iso_8601_or_spans_back_from_now():
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    assert parse_time("30d", now) == now - timedelta(days=30)
    assert parse_time("12h", now) == now - timedelta(hours=12)
    assert parse_time("2026-11-02T08:00", now) == datetime(2026, 11, 2, 8, tzinfo=UTC)
    assert parse_time("2026-11-02T09:00+01:00", now) == datetime(2026, 11, 2, 8, tzinfo=UTC)
    with pytest.raises(ReportError):
        parse_time("yesterday", now)


def test_inventory_file_shape():
    text = f"Kind,ResourceId,Name\nKeyVault,{KV_ID},\n\nSqlDatabase,{MISSING_SQL},ehr\n"
    entries = parse_inventory(text)
    assert [(e.kind, e.name) for e in entries] == [("KeyVault", "KV-PHI"), ("SqlDatabase", "ehr")]
    with pytest.raises(ReportError, match="header"):
        parse_inventory("id,kind\nx,y\n")
    with pytest.raises(ReportError, match="line 2"):
        parse_inventory("ResourceId,Kind\nnot-an-arm-id,KeyVault\n")


# --- the command -------------------------------------------------------------------------


def test_the_command_writes_the_page(archive, tmp_path):
    inventory = tmp_path / "inventory.csv"
    inventory.write_text(
        f"ResourceId,Kind,Name\n{KV_ID},KeyVault,kv-phi\n{MISSING_SQL},SqlDatabase,ehr\n"
    )
    page = tmp_path / "report" / "hipaa.html"
    result = runner.invoke(
        app,
        [
            "report",
            "hipaa",
            "--archive",
            str(archive),
            "--out",
            str(page),
            "--inventory",
            str(inventory),
            "--since",
            "2026-11-02T08:00",
            "--until",
            "2026-11-02T13:00Z",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "archive verified" in result.output and "1 expected resource(s) silent" in result.output
    assert "164.312(c)(1): met" in result.output
    assert '<section id="controls">' in page.read_text()


def test_the_command_exits_1_when_the_archive_is_not_verified(archive, tmp_path):
    victim = next((archive / "events").rglob("*.jsonl.gz"))
    victim.chmod(0o644)
    victim.write_bytes(b"")
    result = runner.invoke(
        app, ["report", "hipaa", "--archive", str(archive), "--out", str(tmp_path / "r.html")]
    )
    assert result.exit_code == 1
    assert "archive NOT verified" in result.output and (tmp_path / "r.html").exists()


def test_the_command_refuses_a_bad_time(archive, tmp_path):
    result = runner.invoke(
        app,
        [
            "report",
            "hipaa",
            "--archive",
            str(archive),
            "--out",
            str(tmp_path / "r.html"),
            "--since",
            "last tuesday",
        ],
    )
    assert result.exit_code == 2


def test_the_command_on_a_blob_container_reads_its_immutability(azurite, blob_container, tmp_path):
    store = BlobStore(blob_container, require_immutability=False)
    pipeline = build_pipeline(Settings(), store, [CollectingSink()])
    for batch in batches_of(input_records(), per_body=10, bodies_per_batch=3):
        pipeline.process(batch)
    pipeline.finish()
    page = tmp_path / "blob.html"
    result = runner.invoke(
        app,
        [
            "report",
            "hipaa",
            "--archive",
            blob_container.container_name,
            "--connection-string",
            azurite.connection_string,
            "--out",
            str(page),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "archive verified" in result.output
    # Azurite has no immutability: the retention control is not met, and the page says why.
    assert "164.316(b)(2): not met" in result.output
    assert "Version-level immutability (WORM): off." in page.read_text()
