"""`phiwatch report patient` on a real archive: exactly the patient's accesses in the input,
the range verified, no other patient named; tampering found; CSV, HTML; --identifier."""

from __future__ import annotations

import csv
import gzip
import io
import os
import re
import shutil
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from phiwatch.archive.archive import decode_lines, encode_lines
from phiwatch.archive.hour_index import lookup
from phiwatch.archive.signer import load_public_key, local_public_key
from phiwatch.archive.store import LocalStore
from phiwatch.commands import report as report_command
from phiwatch.commands.app import app
from phiwatch.config import Settings
from phiwatch.pseudonym import Pseudonymizer
from phiwatch.reports.patient import (
    ACCESS_FIELDS,
    DISCLOSURE_FIELDS,
    NOT_RECORDED,
    fhir_id_ref,
    identifier_refs,
    patient_report,
)
from phiwatch.reports.source import SLACK, events
from phiwatch.reports.timespec import time_range
from tests.conftest import TEST_KEY_HEX
from tests.fhir_standin import FhirStandIn
from tests.https_standin import StaticToken
from tests.report_scenario import Scenario, build, names_patient, searches_identifier

runner = CliRunner()
SINCE, UNTIL = "2026-11-01T00:00:00Z", "2026-11-04T00:00:00Z"
TOKEN = "report-token"
PSEUDONYMIZER = Pseudonymizer(bytes.fromhex(TEST_KEY_HEX))


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    return build(tmp_path_factory.mktemp("report"))


def _index(scenario: Scenario) -> list[dict[str, str]]:
    with gzip.open(scenario.gen / "patients.csv.gz", "rt", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


_BUSIEST: dict[str, tuple[str, list[str]]] = {}


def _busiest(scenario: Scenario, service: str) -> tuple[str, list[str]]:
    """The patient of `service` the input names most, and the EventUids naming them."""
    if service in _BUSIEST:
        return _BUSIEST[service]
    ids = {row["PatientId"] for row in _index(scenario) if row["FhirService"].lower() == service}
    counts: Counter[str] = Counter()
    for record in scenario.fhir:
        if record.service == service:
            for patient in ids.intersection(re.findall(r"[A-Za-z0-9-]+", record.uri)):
                if names_patient(record, patient):
                    counts[patient] += 1
    patient = counts.most_common(1)[0][0]
    uids = [r.uid for r in scenario.fhir if r.service == service and names_patient(r, patient)]
    _BUSIEST[service] = (patient, uids)
    return patient, uids


def _services(scenario: Scenario) -> tuple[str, str]:
    services = sorted({r.service for r in scenario.fhir})
    prod = next(s for s in services if s.endswith("/services/fhir-prod"))
    prod2 = next(s for s in services if s.endswith("/fhirservices/fhir-prod2"))
    return prod, prod2


def _run(*args: str) -> Any:
    return runner.invoke(app, ["report", "patient", *args])


def _base_uid(uid: str) -> str:
    return uid.split("-", 1)[0]  # `<record uid>-<i>`: the i-th patient a request named


def _other_patient_values(scenario: Scenario, keep: set[str]) -> set[str]:
    values = set()
    for row in _index(scenario):
        values |= {row["PatientId"], row["Mrn"]} - {""}
    return values - keep


def _assert_names_no_other_patient(text: str, ours: set[str], others: set[str]) -> None:
    assert set(re.findall(r"pr_[0-9a-f]{32}", text)) <= ours
    tokens = set(re.findall(r"[A-Za-z0-9]+", text))
    assert not tokens & others


def test_lists_exactly_the_patients_accesses_and_says_verified(scenario: Scenario) -> None:
    service, _ = _services(scenario)
    patient, uids = _busiest(scenario, service)
    assert len(uids) >= 5
    # The service id in the records' own (upper) case: the namespace is case-blind.
    result = _run(
        patient,
        "--service",
        service.upper(),
        "--archive",
        str(scenario.archive),
        "--since",
        SINCE,
        "--until",
        UNTIL,
    )
    assert result.exit_code == 0, result.output
    document = orjson.loads(result.stdout)
    assert list(document) == ["patient", "range", "verified", "problems", "accesses", "alerts"]
    assert document["patient"] == fhir_id_ref(PSEUDONYMIZER, service, patient)
    assert document["verified"] is True
    assert document["problems"] == []
    assert document["range"] == {"since": SINCE, "until": UNTIL}
    found = Counter(_base_uid(a["EventUid"]) for a in document["accesses"])
    assert found == Counter(uids)  # every access in the input, each once, and nothing else
    for access in document["accesses"]:
        assert tuple(access) == ACCESS_FIELDS
        assert access["RawRecordRef"].startswith("raw/")
    times = [a["TimeGenerated"] for a in document["accesses"]]
    assert times == sorted(times)
    assert "archive verified for the range" in result.stderr
    ours = {document["patient"]}
    _assert_names_no_other_patient(result.stdout, ours, _other_patient_values(scenario, {patient}))


def test_csv_and_html_carry_the_accounting_fields(scenario: Scenario, tmp_path: Path) -> None:
    service, _ = _services(scenario)
    patient, uids = _busiest(scenario, service)
    args = [patient, "--service", service, "--archive", str(scenario.archive), "--since", SINCE]
    assert (
        _run(*args, "--until", UNTIL, "--format", "csv", "--out", str(tmp_path / "r.csv")).exit_code
        == 0
    )
    assert (tmp_path / "r.csv").stat().st_mode & 0o777 == 0o600
    rows = list(csv.DictReader(io.StringIO((tmp_path / "r.csv").read_text())))
    assert tuple(rows[0]) == DISCLOSURE_FIELDS
    assert len(rows) == len(uids)
    assert all(r["Date"] and r["WhoViewed"] and r["What"] and r["Purpose"] for r in rows)
    assert {r["Purpose"] for r in rows} == {NOT_RECORDED}  # the scenario sends no audit headers
    assert all("{patient}" in r["What"] or "Patient" not in r["What"] for r in rows)

    result = _run(*args, "--until", UNTIL, "--format", "html", "--out", str(tmp_path / "r.html"))
    assert result.exit_code == 0, result.output
    page = (tmp_path / "r.html").read_text()
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    # Nothing the page could fetch: no script, no link, no source attribute, no url().
    assert not re.search(r"<script|<link|<img|<iframe|\ssrc=|\shref=|url\(", page, re.I)
    assert page.count("<tr>") == len(uids) + 1
    assert rows[0]["WhoViewed"] in page
    ours = {fhir_id_ref(PSEUDONYMIZER, service, patient)}
    others = _other_patient_values(scenario, {patient})
    _assert_names_no_other_patient(page, ours, others)
    _assert_names_no_other_patient((tmp_path / "r.csv").read_text(), ours, others)


def test_html_escapes_what_came_from_the_wire() -> None:
    from phiwatch.reports.render import Table, to_html

    page = to_html(
        "t", [("who", "<b>x</b>")], [Table("c", ["h"], [["<script>1</script>"]])], verified=False
    )
    assert "<script>1" not in page and "&lt;script&gt;1" in page
    assert "&lt;b&gt;x" in page and "NOT verified" in page


def test_a_tampered_archive_object_is_not_verified(scenario: Scenario, tmp_path: Path) -> None:
    service, _ = _services(scenario)
    patient, _ = _busiest(scenario, service)
    copy = tmp_path / "archive"
    shutil.copytree(scenario.archive, copy)
    victim = sorted((copy / "events").rglob("*.jsonl.gz"))[3]
    lines = decode_lines(victim.read_bytes())
    event = orjson.loads(lines[0])
    event["ActorUsername"] = "someone.else@contoso-health.org"
    lines[0] = orjson.dumps(event)
    os.chmod(victim, 0o644)
    victim.write_bytes(encode_lines(lines))
    result = _run(
        patient, "--service", service, "--archive", str(copy), "--since", SINCE, "--until", UNTIL
    )
    assert result.exit_code == 1
    document = orjson.loads(result.stdout)
    assert document["verified"] is False
    assert any(victim.name in p for p in document["problems"])
    assert "NOT verified" in result.stderr


def test_an_empty_range_is_not_verified(scenario: Scenario) -> None:
    service, _ = _services(scenario)
    patient, _ = _busiest(scenario, service)
    result = _run(
        patient,
        "--service",
        service,
        "--archive",
        str(scenario.archive),
        "--since",
        "2025-01-01",
        "--until",
        "2025-01-02",
    )
    assert result.exit_code == 1
    document = orjson.loads(result.stdout)
    assert document["verified"] is False and document["accesses"] == []
    assert any("no archive objects" in p for p in document["problems"])


def test_alerts_involving_the_patient(scenario: Scenario) -> None:
    store = LocalStore(scenario.archive)
    settings = Settings()
    kid, pem = local_public_key(settings) or ("", "")
    trusted = {kid: load_public_key(pem)}
    # The self-record-access alert cites the nurse's read of her own chart.
    alert = next(
        orjson.loads(line)
        for name in store.list("alerts/")
        for line in decode_lines(store.get(name))
        if orjson.loads(line)["RuleId"] == "self-record-access"
    )
    evidence = set(alert["EvidenceEventUids"])
    ref = next(
        e["PatientRef"]
        for name in store.list("events/")
        for line in decode_lines(store.get(name))
        if (e := orjson.loads(line))["EventUid"] in evidence and e.get("PatientRef")
    )
    span = time_range(SINCE, UNTIL, default_span=timedelta(days=1))
    report = patient_report(store, trusted, [ref], span)
    assert alert["AlertId"] in report.alerts
    assert evidence & {a["EventUid"] for a in report.accesses}


def test_the_identifier_covers_the_fhir_ids_and_its_own_ref(
    scenario: Scenario, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An MRN the input searches by identifier (the scenario's MRN lookups name no patient of
    # its index), which the FHIR service, here the stand-in, says is the busiest patient's.
    searched, service = next(
        (r.uri.split("identifier=", 1)[1].split("&")[0], r.service)
        for r in scenario.fhir
        if "Patient?identifier=" in r.uri
    )
    system, _, mrn = searched.rpartition("|")
    patient, _ = _busiest(scenario, service)
    other = next(r for r in _index(scenario) if r["Mrn"] and r["Mrn"] != mrn)
    fhir_patients = [
        {
            "resourceType": "Patient",
            "id": patient,
            "identifier": [{"system": system, "value": mrn}],
        },
        {
            "resourceType": "Patient",
            "id": other["PatientId"],
            "identifier": [{"system": system, "value": other["Mrn"]}],
        },
    ]
    expected = [
        r.uid
        for r in scenario.fhir
        if (r.service == service and names_patient(r, patient))
        or searches_identifier(r, system, mrn)
    ]
    assert any(searches_identifier(r, system, mrn) for r in scenario.fhir)
    server = FhirStandIn(tmp_path, fhir_patients, token=TOKEN).start()
    server.fail_next(429, {"x-ms-retry-after-ms": "0"})  # retried; stdout stays the report
    try:
        monkeypatch.setattr(report_command, "_credential", lambda: StaticToken(TOKEN))
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", server.ca_file)
        result = _run(
            "--identifier",
            f"{system}|{mrn}",
            "--fhir-url",
            server.url,
            "--service",
            service,
            "--archive",
            str(scenario.archive),
            "--since",
            SINCE,
            "--until",
            UNTIL,
        )
    finally:
        server.stop()
    assert result.exit_code == 0, result.output
    document = orjson.loads(result.stdout)
    assert document["patient"] == identifier_refs(PSEUDONYMIZER, f"{system}|{mrn}")[0]
    assert Counter(_base_uid(a["EventUid"]) for a in document["accesses"]) == Counter(expected)
    assert "resolves to 1 FHIR patient id" in result.stderr
    assert mrn not in result.stderr and patient not in result.stderr
    throttled, request = server.requests
    assert throttled.status == 429 and request.status == 200
    assert request.query["identifier"] == [f"{system}|{mrn}"]
    assert request.authorization == f"Bearer {TOKEN}"
    _assert_names_no_other_patient(
        result.stdout,
        {fhir_id_ref(PSEUDONYMIZER, service, patient), *identifier_refs(PSEUDONYMIZER, searched)},
        _other_patient_values(scenario, {patient, mrn}),
    )


def test_usage_errors(scenario: Scenario) -> None:
    service, _ = _services(scenario)
    assert _run("--service", service).exit_code == 2  # neither id nor identifier
    assert _run("x", "--service", "not-an-arm-id").exit_code == 2
    result = _run("x", "--service", service, "--since", "yesterday")
    assert result.exit_code == 2 and "ISO 8601" in result.output
    result = _run("--identifier", "sys|v", "--service", service)
    assert result.exit_code == 2 and "--fhir-url" in result.output


def test_the_same_report_from_a_blob_container(scenario: Scenario, azurite, blob_container) -> None:
    service, _ = _services(scenario)
    patient, uids = _busiest(scenario, service)
    for path in sorted(p for p in scenario.archive.rglob("*") if p.is_file()):
        name = path.relative_to(scenario.archive).as_posix()
        blob_container.upload_blob(name, path.read_bytes())
    args = [patient, "--service", service, "--since", SINCE, "--until", UNTIL]
    local = _run(*args, "--archive", str(scenario.archive))
    remote = _run(
        *args,
        "--archive",
        blob_container.container_name,
        "--connection-string",
        azurite.connection_string,
    )
    assert remote.exit_code == 0, remote.output
    assert orjson.loads(remote.stdout) == orjson.loads(local.stdout)
    assert len(orjson.loads(remote.stdout)["accesses"]) == len(uids)


def test_failures_everything_and_searches_are_listed_exactly(scenario: Scenario) -> None:
    """Patients behind the input's failed requests and $everything calls: each report holds
    exactly their records (reads, searches, failures, $everything), on either service."""
    store = LocalStore(scenario.archive)
    kid, pem = local_public_key(Settings()) or ("", "")
    span = time_range(SINCE, UNTIL, default_span=timedelta(days=1))
    index = {(r["FhirService"].lower(), r["PatientId"]) for r in _index(scenario)}
    picked: set[tuple[str, str]] = set()
    for record in scenario.fhir:
        if record.value.get("resultType") == "Failed" or "$everything" in record.uri:
            picked |= {
                (service, pid)
                for service, pid in index
                if service == record.service and pid in record.uri and names_patient(record, pid)
            }
    assert len(picked) >= 3
    kinds: Counter[str] = Counter()
    for service, pid in sorted(picked)[:8]:
        expected = [r.uid for r in scenario.fhir if r.service == service and names_patient(r, pid)]
        ref = fhir_id_ref(PSEUDONYMIZER, service, pid)
        report = patient_report(store, {kid: load_public_key(pem)}, [ref], span)
        assert report.verified
        assert Counter(_base_uid(a["EventUid"]) for a in report.accesses) == Counter(expected)
        kinds.update(str(a["Operation"]).rsplit("/", 1)[-1] for a in report.accesses)
        kinds.update(a["EventResult"] for a in report.accesses)
    assert kinds["everything"] and kinds["Failure"] and kinds["read"]
    assert any(k.startswith("search") for k in kinds)


class _CountingStore(LocalStore):
    """The archive, counting which events objects are read."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.read: set[str] = set()

    def get(self, name: str) -> bytes:
        if name.startswith("events/"):
            self.read.add(name)
        return super().get(name)


def test_a_patients_events_are_read_only_from_the_objects_its_index_names(
    scenario: Scenario,
) -> None:
    service, _ = _services(scenario)
    patient, uids = _busiest(scenario, service)
    ref = fhir_id_ref(PSEUDONYMIZER, service, patient)
    span = time_range(SINCE, UNTIL, default_span=timedelta(days=1))
    store = _CountingStore(scenario.archive)
    found = list(
        events(store, span.since, span.until, keys=[ref], keep=lambda e: e["PatientRef"] == ref)
    )
    assert {_base_uid(e["EventUid"]) for e in found} == {_base_uid(u) for u in uids}
    everything = {n for n in store.list("events/") if n.endswith(".jsonl.gz")}
    holding = {
        name
        for name, _ in lookup(
            LocalStore(scenario.archive),
            patient_ref=ref,
            since=span.since - SLACK,
            until=span.until + SLACK,
        )
    }
    # Only the objects the sidecars name were opened, a small share of the archive's.
    assert store.read == holding
    assert 0 < len(holding) < len(everything) / 4
