"""`phiwatch report hipaa`'s content on an archive written by a replay of known records:
coverage and silences per source, the inventory's silent resources, the attested coverage
per control (failing resources named), integrity, retention, the controls' statuses; the
time parser and the inventory file; the command, with an inventory file or from Resource
Graph (its local stand-in)."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.core.pipeline.transport import RequestsTransport
from typer.testing import CliRunner

from phiwatch.archive.blob_store import BlobStore, ImmutabilityStatus
from phiwatch.archive.signer import load_public_key, local_public_key
from phiwatch.archive.store import LocalStore
from phiwatch.attest import inventory as attest_inventory
from phiwatch.attest.inventory import Inventory, InventoryError, PhiResource, parse_inventory
from phiwatch.commands import report_hipaa
from phiwatch.commands.app import app
from phiwatch.config import Settings
from phiwatch.hosts.replay import replay
from phiwatch.reports.hipaa import (
    HipaaReport,
    build_report,
    gaps_of,
    parse_time,
    retention_of,
)
from phiwatch.reports.hipaa_html import SECTIONS, render
from phiwatch.reports.timespec import TimeSpecError
from phiwatch.wiring import build_pipeline
from tests.harness import CollectingSink, batches_of
from tests.https_standin import StaticToken
from tests.records import FHIR_ID, KV_ID, SUB, T0, fhir, keyvault
from tests.resource_graph_standin import ResourceGraphStandIn

runner = CliRunner()
MISSING_SQL = (
    f"/subscriptions/{SUB}/resourceGroups/rg-phi/providers/Microsoft.Sql/servers/sql-phi"
    "/databases/ehr"
)
ARCHIVE_ACCOUNT = (
    f"/subscriptions/{SUB}/resourceGroups/rg-phi/providers/Microsoft.Storage"
    "/storageAccounts/stphiarchive"
)
PATIENT = "zqpatient0042"  # distinctive: must never reach the page
GRAPH_TOKEN = "graph-token"


def estate() -> Inventory:
    """The vault closed to the internet; the FHIR service restricted but without a customer
    key and open; the SQL database sending nothing and stating nothing; the archive account
    meeting every check but sending no data-plane logs (the replay archives to a folder)."""
    return Inventory(
        (
            PhiResource(
                KV_ID.lower(),
                "keyvault",
                public_network_disabled=True,
                private_endpoint=True,
                display_name="kv-phi",
            ),
            PhiResource(
                FHIR_ID.lower(),
                "fhir",
                tier="restricted",
                public_network_disabled=False,
                customer_managed_key=False,
                display_name="fhir-prod",
            ),
            PhiResource(MISSING_SQL.lower(), "sql", display_name="ehr"),
            PhiResource(
                ARCHIVE_ACCOUNT.lower(),
                "storage",
                archive=True,
                public_network_disabled=True,
                customer_managed_key=True,
                private_endpoint=True,
                immutability_locked=True,
            ),
        ),
        "file:estate.csv",
    )


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
    report = report_of(archive, inventory=estate())
    assert [m.entry.name for m in report.missing] == ["ehr", "stphiarchive"]
    sending = {i.entry.name: i.categories for i in report.inventory or [] if i.sending}
    assert sending == {"kv-phi": ("AuditEvent",), "fhir-prod": ("AuditLogs",)}
    audit = next(c for c in report.controls if c.citation == "164.312(b)")
    assert "2 sent nothing" in " ".join(audit.evidence)


def test_attested_coverage_per_control_names_the_failing_resources_and_checks(archive):
    report = report_of(archive, inventory=estate())
    coverage = {c.control_id: c for c in report.attestation or []}
    sql, store, fhir_service = MISSING_SQL.lower(), ARCHIVE_ACCOUNT.lower(), FHIR_ID.lower()
    # Diagnostics from the archive: the vault and the FHIR service logged, the others not.
    audit = coverage["164.312(b)"]
    assert (audit.percentage, audit.passing, audit.applicable) == (50.0, 2, 4)
    assert audit.failing_checks == {sql: ("diagnostics",), store: ("diagnostics",)}
    # A customer key where the tier requires it: the restricted FHIR service lacks one.
    integrity = coverage["164.312(c)(1)"]
    assert (integrity.percentage, integrity.applicable) == (50.0, 2)
    assert integrity.failing_checks == {fhir_service: ("customer-managed-key",)}
    assert coverage["164.312(c)(2)"].percentage == 100.0  # the archive account, locked
    transmission = coverage["164.312(e)(1)"]
    assert transmission.percentage == 50.0
    assert transmission.failing_checks == {  # unknown fails: the SQL database states nothing
        fhir_service: ("public-network-off", "private-endpoint"),
        sql: ("public-network-off", "private-endpoint"),
    }
    failing = {i.entry.name: i.failing for i in report.inventory or []}
    assert failing["kv-phi"] == () and failing["ehr"] == (
        "diagnostics",
        "public-network-off",
        "private-endpoint",
    )
    controls = {c.citation: c for c in report.controls}
    assert {k: c.status for k, c in controls.items()} == {
        "164.312(b)": "not met",  # below 100% of the inventory
        "164.312(c)(1)": "not met",  # the chain verifies; the FHIR service has no customer key
        "164.312(c)(2)": "attention",  # 100% attested; storage immutability unknown locally
        "164.312(e)(1)": "not met",
        "164.308(a)(1)(ii)(D)": "met",
        "164.308(a)(5)(ii)(C)": "not met",
        "164.316(b)(2)": "not checked",
    }
    assert "Attested coverage: 50% (2 of 4 inventory resources pass diagnostics); 2 failing." in (
        controls["164.312(b)"].evidence
    )


def test_diagnostics_are_judged_on_the_hours_of_the_period(tmp_path):
    # One body a batch, so the archive has a folder per hour the records span (a file
    # replayed whole is one batch, filed under its first hour). The vault stops at 3:30:
    # from 4:00 the FHIR service is the only one logging.
    replay([write_input(tmp_path / "in")], tmp_path / "out", Settings(), batch_bodies=1)
    report = report_of(
        tmp_path / "out" / "archive",
        inventory=estate(),
        since=T0 + timedelta(hours=4),
        until=T0 + timedelta(hours=5),
    )
    audit = next(c for c in report.attestation or [] if c.control_id == "164.312(b)")
    assert audit.failing_checks == {
        KV_ID.lower(): ("diagnostics",),
        MISSING_SQL.lower(): ("diagnostics",),
        ARCHIVE_ACCOUNT.lower(): ("diagnostics",),
    }
    assert audit.percentage == 25.0
    assert {i.entry.name for i in report.missing} == {"ehr", "kv-phi", "stphiarchive"}


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
        "164.312(e)(1)": "not checked",  # no inventory to attest
        "164.308(a)(1)(ii)(D)": "met",
        "164.308(a)(5)(ii)(C)": "not met",  # no sign-in logs at all
        "164.316(b)(2)": "not checked",
    }


def test_a_tampered_archive_fails_the_integrity_controls(archive):
    victim = next((archive / "events").rglob("*.jsonl.gz"))
    victim.chmod(0o644)
    victim.write_bytes(victim.read_bytes() + b"x")
    report = report_of(archive, inventory=estate())  # attestation reads on past it too
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
    page = render(report_of(archive, inventory=estate()))
    for sid, _ in SECTIONS:
        assert f'<section id="{sid}">' in page
    for chart in ("chart-volume", "chart-coverage", "chart-deadletters", "chart-attestation"):
        assert f'id="{chart}"' in page  # no alert here
    attested = page.split('<section id="attestation">')[1].split("</section>")[0]
    assert "<b>ehr</b> <code>" + MISSING_SQL.lower() + "</code>: fails diagnostics</li>" in attested
    assert "<b>fhir-prod</b>" in attested and "fails customer-managed-key" in attested
    assert ">50%</span>" in attested and ">100%</span>" in attested
    assert "<b>50%</b>audit coverage" in page  # the summary card
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
    with pytest.raises(TimeSpecError):  # the shared parser (phiwatch/reports/timespec.py)
        parse_time("yesterday", now)


def test_the_first_inventory_format_is_an_attestation_inventory():
    # ResourceId,Kind[,Name], any column order and case, ARM-flavoured kinds, blank lines.
    text = (
        f"kind,resourceid,NAME\nKeyVault,{KV_ID},\n,,\n\nSqlDatabase,{MISSING_SQL},ehr\n"
        f"FhirService,{FHIR_ID},\nStorageAccount,{ARCHIVE_ACCOUNT},\n"
    )
    entries = parse_inventory(text)
    assert [(e.kind, e.name) for e in entries] == [
        ("keyvault", "kv-phi"),
        ("sql", "ehr"),
        ("fhir", "fhir-prod"),
        ("storage", "stphiarchive"),
    ]
    # What the format does not state is unknown, and unknown fails its check.
    assert entries.resources[0].public_network_disabled is None
    assert entries.resources[0].diagnostics is None
    with pytest.raises(InventoryError, match="unknown columns"):
        parse_inventory("id,kind\nx,keyvault\n")
    with pytest.raises(InventoryError, match="row 1: ResourceId"):
        parse_inventory("ResourceId,Kind\nnot-an-arm-id,KeyVault\n")
    with pytest.raises(InventoryError, match="row 1: Kind"):
        parse_inventory(f"ResourceId,Kind\n{KV_ID},Workspace\n")


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
    # The first format: the vault logged, the database did not; no network state is stated.
    assert (
        "attested over 2 inventory resource(s): 164.312(b) 50%, 164.312(c)(1) n/a, "
        "164.312(c)(2) n/a, 164.312(e)(1) 0%" in result.output
    )
    assert "164.312(b): not met" in result.output and "164.312(e)(1): not met" in result.output
    assert "164.312(c)(1): met" in result.output  # no resource its checks apply to: the chain
    assert '<section id="controls">' in page.read_text()


def test_the_command_refuses_a_bad_inventory_naming_the_row(archive, tmp_path):
    inventory = tmp_path / "inventory.csv"
    inventory.write_text(f"ResourceId,Kind\n{KV_ID},Cosmos\n")
    args = ["report", "hipaa", "--archive", str(archive), "--out", str(tmp_path / "r.html")]
    result = runner.invoke(app, [*args, "--inventory", str(inventory)])
    assert result.exit_code == 2 and "row 1: Kind" in result.output
    result = runner.invoke(app, [*args, "--inventory", str(inventory), "--resource-graph"])
    assert result.exit_code == 2 and "not both" in result.output
    result = runner.invoke(app, [*args, "--subscription", SUB])
    assert result.exit_code == 2 and "needs --resource-graph" in result.output


GRAPH_ROWS: dict[str, list[dict[str, Any]]] = {
    "microsoft.keyvault/vaults": [
        {
            "id": KV_ID.lower(),
            "tier": "",
            "archive": False,
            "network": "Disabled",
            "defaultAction": "",
            "cmk": False,
            "privateEndpoints": 1,
            "immutability": "",
        },
        {  # another subscription's vault: out of scope
            "id": KV_ID.lower().replace(SUB, "99999999-0000-4000-8000-000000000000"),
            "tier": "",
            "archive": False,
            "network": "Enabled",
            "defaultAction": "",
            "cmk": False,
            "privateEndpoints": 0,
            "immutability": "",
        },
    ],
    "microsoft.sql/servers/databases": [
        {
            "id": MISSING_SQL.lower(),
            "tier": "restricted",
            "archive": False,
            "network": "Enabled",
            "defaultAction": "",
            "cmk": True,
            "privateEndpoints": 0,
            "immutability": "",
        }
    ],
}


@pytest.fixture
def graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ResourceGraphStandIn]:
    """The stand-in, and the command's Resource Graph client pointed at it (the credential,
    endpoint and transport the command leaves to DefaultAzureCredential and the SDK)."""
    server = ResourceGraphStandIn(tmp_path, GRAPH_ROWS, token=GRAPH_TOKEN).start()
    monkeypatch.setattr(
        report_hipaa,
        "inventory_from_graph",
        functools.partial(
            attest_inventory.inventory_from_graph,
            StaticToken(GRAPH_TOKEN),
            base_url=server.url,
            transport=RequestsTransport(connection_verify=server.ca_file),
        ),
    )
    yield server
    server.stop()


def test_the_command_takes_the_inventory_from_resource_graph(archive, tmp_path, graph):
    page = tmp_path / "graph.html"
    result = runner.invoke(
        app,
        [
            "report",
            "hipaa",
            "--archive",
            str(archive),
            "--out",
            str(page),
            "--resource-graph",
            "--subscription",
            SUB,
        ],
    )
    assert result.exit_code == 0, result.output
    assert {tuple(q.body["subscriptions"]) for q in graph.requests} == {(SUB,)}
    assert len(graph.requests) == 4  # one query per kind
    # The vault logged and is closed; the database sent nothing, is open, has no endpoint.
    assert (
        "attested over 2 inventory resource(s): 164.312(b) 50%, 164.312(c)(1) 100%, "
        "164.312(c)(2) n/a, 164.312(e)(1) 50%" in result.output
    )
    html = page.read_text()
    assert "<code>resource-graph</code>" in html
    assert "fails public-network-off, private-endpoint" in html and "99999999" not in html


def test_the_command_says_when_resource_graph_refuses(archive, tmp_path, graph):
    graph.token = "another-token"
    result = runner.invoke(
        app,
        ["report", "hipaa", "--archive", str(archive), "--out", str(tmp_path / "r.html")]
        + ["--resource-graph"],
    )
    assert result.exit_code == 1
    assert "Resource Graph refused the inventory query (ClientAuthenticationError" in (
        result.output
    )
    assert not (tmp_path / "r.html").exists()


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
