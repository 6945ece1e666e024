"""`phiwatch archive verify|evidence|public-key` as a user or an auditor runs them: on an
archive written by `phiwatch replay`, on evidence bundles, and on Azure Blob (Azurite)."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from typer.testing import CliRunner

from phiwatch.archive.blob_store import BlobStore
from phiwatch.archive.signer import Ed25519Signer
from phiwatch.commands.app import app
from phiwatch.config import Settings
from phiwatch.wiring import build_pipeline
from tests.conftest import TEST_SIGNING_SEED_HEX
from tests.harness import CollectingSink, batches_of
from tests.records import activity, fhir, keyvault

runner = CliRunner()
KEY_ID = Ed25519Signer.from_seed(bytes.fromhex(TEST_SIGNING_SEED_HEX)).key_id
# Distinctive ids: none can occur by chance in hex hashes, pseudonyms or timestamps.
PATIENTS = [f"zqpatient{i:04d}" for i in range(60)]
# Read by someone else, below any threshold: in the archive, in no alert.
OTHERS = [f"zqother{i:04d}" for i in range(5)]
RAW_LINE_ONLY = "raw record lines are the evidence; nothing else may name a patient"


# --- helpers ------------------------------------------------------------------------------


def input_records() -> list[dict[str, Any]]:
    burst = [fhir(i * 4, path=f"Patient/{p}") for i, p in enumerate(PATIENTS)]
    kv = [keyvault(400 + i, status=403, secret=f"s{i}") for i in range(6)]
    bystander = "55555555-0000-4000-8000-000000000005"
    others = [
        fhir(300 + i, path=f"Patient/{p}", oid=bystander, upn="bob@contoso-health.org")
        for i, p in enumerate(OTHERS)
    ]
    return [*burst, *others, *kv, activity(700)]


def cli(*args: str):
    return runner.invoke(app, list(args))


def build(tmp_path: Path) -> Path:
    """`phiwatch replay` over a small input; returns the --out directory."""
    records = input_records()
    bodies = [records[i : i + 10] for i in range(0, len(records), 10)]
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "logs.jsonl").write_text("".join(json.dumps({"records": b}) + "\n" for b in bodies))
    out = tmp_path / "out"
    result = cli("replay", str(folder), "--out", str(out), "--batch-bodies", "2", "--quiet")
    assert result.exit_code == 0, result.output
    return out


def alert_id(out: Path, rule: str) -> str:
    alerts = [json.loads(line) for line in (out / "alerts.jsonl").read_text().splitlines()]
    (found,) = {a["AlertId"] for a in alerts if a["RuleId"] == rule}
    return found


def lister(archive: Path, name: str) -> str:
    for path in sorted((archive / "manifests").rglob("*.json")):
        if name in {e["name"] for e in orjson.loads(path.read_bytes())["objects"]}:
            return path.relative_to(archive).as_posix()
    raise AssertionError(f"no manifest lists {name}")


def flip_a_byte(path: Path) -> None:
    path.chmod(0o644)  # the archive writes its objects read-only
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def foreign_key_file(tmp_path: Path) -> Path:
    path = tmp_path / "foreign.pem"
    path.write_bytes(
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return path


def exported_key_file(tmp_path: Path) -> Path:
    result = cli("archive", "public-key")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("-----BEGIN PUBLIC KEY-----\n")
    path = tmp_path / "published.pem"
    path.write_text(result.stdout)
    return path


def export_bundle(out: Path, alert: str, target: Path) -> dict[str, Any]:
    result = cli(
        "archive", "evidence", alert, "--out", str(target), "--archive", str(out / "archive")
    )
    assert result.exit_code == 0, result.output
    return json.loads(target.read_text())


def verify_bundle(bundle: dict[str, Any] | Path, tmp_path: Path, *extra: str):
    if isinstance(bundle, dict):
        path = tmp_path / "tampered.json"
        path.write_text(json.dumps(bundle))
    else:
        path = bundle
    return cli("archive", "verify", "--bundle", str(path), *extra)


def patient_of(raw_item: dict[str, Any]) -> str:
    raw = json.loads(json.loads(raw_item["line"])["Raw"])
    return raw["uri"].rsplit("/", 1)[1]


# --- verify ---------------------------------------------------------------------------------


def test_verify_an_untouched_archive(tmp_path):
    out = build(tmp_path)
    result = cli("archive", "verify", str(out / "archive"))
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    assert line.startswith("archive verified: ")
    assert line.endswith("chain intact")
    # Data objects and their hour index sidecars (archive/hour_index.py).
    objects = [*(out / "archive").rglob("*.jsonl.gz"), *(out / "archive").rglob("*.idx.gz")]
    assert line == (
        f"archive verified: {len(objects)} objects, "
        f"{len(list((out / 'archive' / 'manifests').rglob('*.json')))} manifests, "
        "1 stream(s), chain intact"
    )


def test_verify_reports_a_flipped_byte(tmp_path):
    out = build(tmp_path)
    archive = out / "archive"
    victim = sorted((archive / "events").rglob("*.jsonl.gz"))[1]
    name = victim.relative_to(archive).as_posix()
    flip_a_byte(victim)
    result = cli("archive", "verify", str(archive))
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"FAIL {name}: SHA-256 differs from {lister(archive, name)} (altered)",
        "archive NOT verified: 1 problem(s) from 1 cause(s)",
    ]


def test_verify_a_missing_directory_is_a_clear_error(tmp_path):
    result = cli("archive", "verify", str(tmp_path / "nope"))
    assert result.exit_code == 2
    assert f"{tmp_path / 'nope'}: no such archive directory" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output


def test_verify_time_window(tmp_path):
    out = build(tmp_path)
    archive = out / "archive"
    flip_a_byte(sorted((archive / "events").rglob("*.jsonl.gz"))[0])
    # The objects are filed under 2026-11-02 08:00: a window that holds them sees the damage.
    inside = cli(
        "archive", "verify", str(archive), "--since", "2026-11-02", "--until", "2026-11-03"
    )
    assert inside.exit_code == 1
    assert inside.stdout.splitlines()[-1] == "archive NOT verified: 1 problem(s) from 1 cause(s)"
    # A range with no data is not "verified": exit 3, so a script cannot mistake it.
    later = cli("archive", "verify", str(archive), "--since", "2026-11-03T00:00:00+00:00")
    assert later.exit_code == 3, later.output
    assert later.stdout.startswith("archive has no data in the range: 0 objects ")
    assert "chain intact" not in later.stdout
    earlier = cli("archive", "verify", str(archive), "--until", "2026-11-01")
    assert earlier.exit_code == 3, earlier.output
    assert earlier.stdout.strip().endswith("nothing to verify")


def test_verify_a_bad_date_is_a_clear_error(tmp_path):
    out = build(tmp_path)
    for option in ("--since", "--until"):
        result = cli("archive", "verify", str(out / "archive"), option, "yesterday")
        assert result.exit_code == 2
        assert "'yesterday' is neither ISO 8601 nor a span like 30d" in result.stderr
        assert "Traceback" not in result.output


def test_verify_takes_a_span_back_from_now(tmp_path):
    out = build(tmp_path)
    # The archive's batches are from 2026-11: a week back from now holds none of them.
    result = cli("archive", "verify", str(out / "archive"), "--since", "7d")
    assert result.exit_code == 3, result.output
    # Ten years back holds them all.
    assert cli("archive", "verify", str(out / "archive"), "--since", "3650d").exit_code == 0


def test_verify_with_the_published_key_and_with_a_foreign_key(tmp_path):
    out = build(tmp_path)
    archive = out / "archive"
    published = exported_key_file(tmp_path)
    pinned = cli("archive", "verify", str(archive), "--public-key", str(published))
    assert pinned.exit_code == 0, pinned.output
    assert pinned.stdout.startswith("archive verified: ")

    foreign = cli(
        "archive", "verify", str(archive), "--public-key", str(foreign_key_file(tmp_path))
    )
    assert foreign.exit_code == 1
    manifests = sorted(
        p.relative_to(archive).as_posix() for p in (archive / "manifests").rglob("*.json")
    )
    # One root cause, one line: every manifest is signed by a key not given.
    assert len(manifests) > 1
    (fail_line, summary) = foreign.stdout.splitlines()
    assert fail_line.startswith(
        f"FAIL {len(manifests)} problems of one cause (untrusted-key): "
        f"signed by untrusted key {KEY_ID!r} (first manifests/"
    )
    assert summary == f"archive NOT verified: {len(manifests)} problem(s) from 1 cause(s)"
    every = cli(
        "archive", "verify", str(archive), "--all", "--public-key", str(tmp_path / "foreign.pem")
    )
    assert sorted(every.stdout.splitlines()[:-1]) == sorted(
        f"FAIL {m}: signed by untrusted key {KEY_ID!r}" for m in manifests
    )


def test_verify_with_an_unreadable_key_file(tmp_path):
    out = build(tmp_path)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key")
    result = cli("archive", "verify", str(out / "archive"), "--public-key", str(junk))
    assert result.exit_code == 2
    assert f"{junk}: not a usable public key" in result.stderr
    assert "Traceback" not in result.output


def test_verify_prints_planted_object_names_verbatim(tmp_path):
    """Object names come from the (untrusted) store and must be printed as they are, never
    read as Rich markup: `[/x]` once crashed `verify` with MarkupError, `[bold]` was shown
    with its brackets eaten (i.e. under another name than the one to delete)."""
    out = build(tmp_path)
    archive = out / "archive"
    for name in ("[/x].jsonl.gz", "[bold]y.jsonl.gz"):  # the first is "[" / "x].jsonl.gz"
        planted = archive / "events" / "undated" / name
        planted.parent.mkdir(parents=True, exist_ok=True)
        planted.write_bytes(b"forged")
    result = cli("archive", "verify", str(archive), "--all")
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "FAIL events/undated/[/x].jsonl.gz: not listed by any manifest",
        "FAIL events/undated/[bold]y.jsonl.gz: not listed by any manifest",
        "archive NOT verified: 2 problem(s) from 1 cause(s)",
    ]
    grouped = cli("archive", "verify", str(archive))
    assert grouped.stdout.splitlines() == [
        "FAIL 2 problems of one cause (unlisted-object): not listed by any manifest (first "
        "events/undated/[/x].jsonl.gz, last events/undated/[bold]y.jsonl.gz; --all lists each)",
        "archive NOT verified: 2 problem(s) from 1 cause(s)",
    ]


def test_verify_json_for_a_script(tmp_path):
    out = build(tmp_path)
    archive = out / "archive"
    ok = cli("archive", "verify", str(archive), "--json")
    assert ok.exit_code == 0, ok.output
    report = json.loads(ok.stdout)
    assert (report["status"], report["verified"], report["exit_code"]) == ("verified", True, 0)
    # Every data object and its hour-index sidecar.
    assert report["objects"] == len(list(archive.rglob("*.jsonl.gz"))) + len(
        list(archive.rglob("*.idx.gz"))
    )
    assert report["causes"] == [] and report["problem_count"] == 0

    empty = cli("archive", "verify", str(archive), "--json", "--since", "2027-01-01")
    assert empty.exit_code == 3
    assert json.loads(empty.stdout)["status"] == "no-data"

    victims = sorted((archive / "events").rglob("*.jsonl.gz"))[:2]
    for victim in victims:
        flip_a_byte(victim)
    bad = cli(
        "archive", "verify", str(archive), "--json", "--public-key", str(foreign_key_file(tmp_path))
    )
    assert bad.exit_code == 1
    report = json.loads(bad.stdout)
    assert (report["status"], report["verified"]) == ("problems", False)
    causes = {c["cause"]: c for c in report["causes"]}
    assert set(causes) == {"untrusted-key", "hash-mismatch"}
    assert causes["hash-mismatch"]["count"] == 2
    assert report["problem_count"] == sum(c["count"] for c in report["causes"])
    assert all(c["summary"] and len(c["problems"]) == c["count"] for c in report["causes"])


def test_archive_commands_default_to_the_last_replay(tmp_path, monkeypatch):
    monkeypatch.delenv("PHIWATCH_ARCHIVE_DIR", raising=False)
    monkeypatch.setenv("PHIWATCH_HOME", str(tmp_path / "home"))
    nothing = cli("archive", "verify")
    assert nothing.exit_code == 2
    assert "run `phiwatch replay` first" in nothing.stderr
    out = build(tmp_path)  # records its archive under PHIWATCH_HOME
    result = cli("archive", "verify")
    assert result.exit_code == 0, result.output
    assert f"archive: {(out / 'archive').resolve()}" in result.stderr
    alert = alert_id(out, "mass-record-access")
    made = cli("archive", "evidence", alert, "--out", str(tmp_path / "b.json"))
    assert made.exit_code == 0, made.output
    assert json.loads((tmp_path / "b.json").read_text())["alert_id"] == alert


# --- raw -------------------------------------------------------------------------------------


def test_raw_prints_the_proven_record_behind_a_ref(tmp_path):
    out = build(tmp_path)
    archive = out / "archive"
    event = json.loads((out / "events.jsonl").read_text().splitlines()[0])
    ref = event["RawRecordRef"]
    result = cli("archive", "raw", ref, "--archive", str(archive))
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["category"] and "time" in record
    # The bytes shown are the ones the archive's RecordHash proves, and the user is told so.
    name, _, index = ref.rpartition("#")
    line = json.loads(gzip.decompress((archive / name).read_bytes()).splitlines()[int(index)])
    assert result.stdout_bytes == line["Raw"].encode() + b"\n"
    assert hashlib.sha256(line["Raw"].encode()).hexdigest() == line["RecordHash"]
    assert f"SHA-256 {line['RecordHash']}, listed by manifests/" in result.stderr
    assert "raw PHI" in result.stderr


def test_raw_refuses_an_altered_object_a_foreign_key_and_a_bad_ref(tmp_path):
    out = build(tmp_path)
    archive = out / "archive"
    ref = json.loads((out / "events.jsonl").read_text().splitlines()[0])["RawRecordRef"]
    foreign = cli(
        "archive",
        "raw",
        ref,
        "--archive",
        str(archive),
        "--public-key",
        str(foreign_key_file(tmp_path)),
    )
    assert foreign.exit_code == 1 and foreign.stdout == ""
    assert "signed by untrusted key" in foreign.stderr
    for bad in ("events/2026/11/02/08/x.jsonl.gz#1", "raw/2026/11/02/08/x.jsonl.gz", "nope"):
        refused = cli("archive", "raw", bad, "--archive", str(archive))
        assert refused.exit_code == 1 and refused.stdout == ""
    unknown = cli("archive", "raw", "raw/2026/11/02/08/x.jsonl.gz#0", "--archive", str(archive))
    assert unknown.exit_code == 1 and "no manifest lists" in unknown.stderr
    flip_a_byte(archive / ref.rpartition("#")[0])
    altered = cli("archive", "raw", ref, "--archive", str(archive))
    assert altered.exit_code == 1 and altered.stdout == ""
    assert "SHA-256 differs" in altered.stderr
    assert "Traceback" not in altered.output


# --- evidence -------------------------------------------------------------------------------


def test_evidence_bundle_holds_the_evidence_and_no_more(tmp_path):
    out = build(tmp_path)
    alert = alert_id(out, "mass-record-access")
    target = tmp_path / "b.json"
    result = cli(
        "archive", "evidence", alert, "--out", str(target), "--archive", str(out / "archive")
    )
    assert result.exit_code == 0, result.output
    bundle = json.loads(target.read_text())

    proven_alert = json.loads(bundle["alert"]["line"])
    assert bundle["alert_id"] == proven_alert["AlertId"] == alert
    assert proven_alert["RuleId"] == "mass-record-access"
    evidence = proven_alert["EvidenceEventUids"]
    events = [json.loads(item["line"]) for item in bundle["events"]]
    assert sorted(e["EventUid"] for e in events) == sorted(evidence)
    # One raw record per evidence event, and exactly the ones the events point at.
    assert len(bundle["raw_records"]) == len(evidence) == len(bundle["events"])
    assert {f"{r['object']}#{r['index']}" for r in bundle["raw_records"]} == {
        e["RawRecordRef"] for e in events
    }
    assert bundle["manifests"] and all(m.startswith("manifests/") for m in bundle["manifests"])
    assert set(bundle["public_keys"]) == {KEY_ID}
    assert result.stdout.strip() == (
        f"wrote {target}: alert, {len(evidence)} events, {len(evidence)} raw records, "
        f"{len(bundle['manifests'])} manifests; {len(PATIENTS)} patients"
    )
    # Complete: every read of the burst, every patient (as pseudonyms in the alert).
    assert len(evidence) == len(PATIENTS) == proven_alert["EventCount"]
    assert len(proven_alert["PatientRefs"]) == len(PATIENTS)
    # It holds raw PHI: readable by its owner only, and the user is told.
    assert target.stat().st_mode & 0o777 == 0o600
    assert "raw PHI" in result.stderr

    # Minimum necessary: patient ids only inside the raw records' lines ...
    shown = {patient_of(r) for r in bundle["raw_records"]}
    assert shown == set(PATIENTS)
    without_raw_lines = json.loads(target.read_text())
    for item in without_raw_lines["raw_records"]:
        item["line"] = ""
    text = json.dumps(without_raw_lines)
    assert [p for p in PATIENTS if p in text] == [], RAW_LINE_ONLY
    # ... and patients whose records are not evidence appear nowhere at all.
    full = target.read_text()
    assert [p for p in OTHERS if p in full] == []


def test_bundle_verifies_unpinned_pinned_and_not_with_a_foreign_key(tmp_path):
    out = build(tmp_path)
    alert = alert_id(out, "mass-record-access")
    export_bundle(out, alert, tmp_path / "b.json")

    # Without a pinned key the proofs hold only against the bundle's own key: not verified
    # unless the auditor accepts that explicitly.
    refused = verify_bundle(tmp_path / "b.json", tmp_path)
    assert refused.exit_code == 1, refused.output
    assert refused.stdout.splitlines()[-1].startswith("bundle NOT verified: its proofs hold")
    unpinned = verify_bundle(tmp_path / "b.json", tmp_path, "--allow-unpinned")
    assert unpinned.exit_code == 0, unpinned.output
    (line,) = unpinned.stdout.splitlines()
    bundle = json.loads((tmp_path / "b.json").read_text())
    records = 1 + len(bundle["events"]) + len(bundle["raw_records"])
    assert line == (
        f"bundle verified: alert {alert}, {records} records proven against signed manifests; "
        f"signer key {KEY_ID} (NOT pinned: compare it with the key your organisation published)"
    )

    pinned = verify_bundle(
        tmp_path / "b.json", tmp_path, "--public-key", str(exported_key_file(tmp_path))
    )
    assert pinned.exit_code == 0, pinned.output
    assert pinned.stdout.strip().endswith(f"signer key {KEY_ID} (pinned)")

    foreign = verify_bundle(
        tmp_path / "b.json", tmp_path, "--public-key", str(foreign_key_file(tmp_path))
    )
    assert foreign.exit_code == 1
    lines = foreign.stdout.splitlines()
    # One root cause, one line: the manifests' signer is not the key given (the lines they
    # would prove are not listed again one by one).
    assert lines == [
        f"FAIL {len(bundle['manifests'])} problems of one cause (untrusted-key): signed by "
        f"untrusted key {KEY_ID!r} (first {min(bundle['manifests'])}, last "
        f"{max(bundle['manifests'])}; --all lists each)",
        f"bundle NOT verified: {len(bundle['manifests'])} problem(s)",
    ]


def test_bundle_json_for_a_script(tmp_path):
    out = build(tmp_path)
    alert = alert_id(out, "mass-record-access")
    export_bundle(out, alert, tmp_path / "b.json")
    refused = verify_bundle(tmp_path / "b.json", tmp_path, "--json")
    assert refused.exit_code == 1
    report = json.loads(refused.stdout)
    assert (report["verified"], report["pinned"], report["alert_id"]) == (False, False, alert)
    assert [c["cause"] for c in report["causes"]] == ["unpinned-key"]
    pinned = verify_bundle(
        tmp_path / "b.json", tmp_path, "--json", "--public-key", str(exported_key_file(tmp_path))
    )
    assert pinned.exit_code == 0, pinned.output
    report = json.loads(pinned.stdout)
    assert (report["status"], report["pinned"], report["signer_key_ids"]) == (
        "verified",
        True,
        [KEY_ID],
    )
    assert report["records"] == 1 + 2 * len(PATIENTS)


def test_tampered_bundles_fail(tmp_path):
    out = build(tmp_path)
    bundle = export_bundle(out, alert_id(out, "mass-record-access"), tmp_path / "b.json")

    def fails(tampered: dict[str, Any]) -> list[str]:
        result = verify_bundle(tampered, tmp_path, "--all")
        assert result.exit_code == 1, result.output
        lines = result.stdout.splitlines()
        assert lines[-1] == f"bundle NOT verified: {len(lines) - 1} problem(s)"
        return lines[:-1]

    # One character of one raw record changed.
    edited = json.loads(json.dumps(bundle))
    raw = edited["raw_records"][3]
    patient = patient_of(raw)
    raw["line"] = raw["line"].replace(patient, patient[:-1] + "X", 1)
    assert raw["line"] != bundle["raw_records"][3]["line"]
    assert fails(edited) == [
        f"FAIL raw record {raw['object']}#{raw['index']}: not what the archive holds (proof fails)"
    ]

    # One raw record left out.
    dropped = json.loads(json.dumps(bundle))
    gone = dropped["raw_records"].pop(5)
    (event,) = [
        json.loads(e["line"])
        for e in bundle["events"]
        if json.loads(e["line"])["RawRecordRef"] == f"{gone['object']}#{gone['index']}"
    ]
    assert fails(dropped) == [f"FAIL event {event['EventUid']}: its raw record is missing"]

    # Another event's line under this event's position.
    swapped = json.loads(json.dumps(bundle))
    first, second = swapped["events"][0], swapped["events"][1]
    first["line"] = second["line"]
    assert fails(swapped)[0] == (
        f"FAIL event {first['object']}#{first['index']}: not what the archive holds (proof fails)"
    )

    # The alert id changed.
    renamed = json.loads(json.dumps(bundle))
    renamed["alert_id"] = alert_id(out, "diagnostics-disabled")
    assert fails(renamed) == ["FAIL alert: the proven alert is not the one the bundle names"]


def test_bundle_with_a_genuine_event_of_another_alert_fails(tmp_path):
    """The strongest swap: an event, raw record and manifest that the archive really holds
    (each with a valid proof), but belonging to another alert."""
    out = build(tmp_path)
    bundle = export_bundle(out, alert_id(out, "mass-record-access"), tmp_path / "b.json")
    other = export_bundle(out, alert_id(out, "diagnostics-disabled"), tmp_path / "o.json")
    assert len(other["events"]) == 1
    alien = other["events"][0]
    assert alien["object"] not in {e["object"] for e in bundle["events"]}
    bundle["raw_records"].extend(other["raw_records"])
    bundle["manifests"].update(other["manifests"])
    replaced = json.loads(bundle["events"][0]["line"])["EventUid"]
    bundle["events"][0] = alien
    result = verify_bundle(bundle, tmp_path)
    assert result.exit_code == 1
    uid = json.loads(alien["line"])["EventUid"]
    assert result.stdout.splitlines() == [
        f"FAIL event {uid}: not evidence of this alert",
        f"FAIL evidence event {replaced} is missing from the bundle",
        "bundle NOT verified: 2 problem(s)",
    ]


def test_bundle_with_an_evidence_event_left_out_fails(tmp_path):
    """The proven alert names its EvidenceEventUids: dropping one with its raw record (to hide
    that one patient's record was read) must not leave a bundle that verifies."""
    out = build(tmp_path)
    bundle = export_bundle(out, alert_id(out, "mass-record-access"), tmp_path / "b.json")
    hidden = bundle["events"].pop(0)
    ref = json.loads(hidden["line"])["RawRecordRef"]
    bundle["raw_records"] = [
        r for r in bundle["raw_records"] if f"{r['object']}#{r['index']}" != ref
    ]
    result = verify_bundle(bundle, tmp_path)
    assert result.exit_code == 1, result.output


def test_evidence_for_an_unknown_alert(tmp_path):
    out = build(tmp_path)
    archive = out / "archive"
    result = cli(
        "archive",
        "evidence",
        "no-such-alert",
        "--out",
        str(tmp_path / "b.json"),
        "--archive",
        str(archive),
    )
    assert result.exit_code == 1
    assert f"no alert no-such-alert in the archive at {archive}" in result.stderr
    assert not (tmp_path / "b.json").exists()
    assert "Traceback" not in result.output


# --- Azure Blob (Azurite) -------------------------------------------------------------------


def test_verify_and_evidence_on_azurite(azurite, blob_container, tmp_path):
    sink = CollectingSink()
    pipeline = build_pipeline(
        Settings(), BlobStore(blob_container, require_immutability=False), [sink]
    )
    for batch in batches_of(input_records(), per_body=5, bodies_per_batch=3):
        pipeline.process(batch)
    pipeline.finish()
    conn = azurite.connection_string
    container = blob_container.container_name

    result = cli("archive", "verify", container, "--connection-string", conn)
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    assert line.startswith("archive verified: ") and line.endswith(", 1 stream(s), chain intact")

    (alert,) = [a for a in sink.alerts.values() if a.rule_id == "mass-record-access"]
    target = tmp_path / "blob.json"
    made = cli(
        "archive",
        "evidence",
        alert.alert_id,
        "--out",
        str(target),
        "--archive",
        container,
        "--connection-string",
        conn,
    )
    assert made.exit_code == 0, made.output
    bundle = json.loads(target.read_text())
    assert bundle["archive"] == blob_container.url
    assert len(bundle["events"]) == len(bundle["raw_records"]) == len(alert.evidence_event_uids)
    checked = verify_bundle(target, tmp_path, "--public-key", str(exported_key_file(tmp_path)))
    assert checked.exit_code == 0, checked.output
    assert checked.stdout.strip().endswith("(pinned)")

    name = sorted(blob_container.list_blob_names(name_starts_with="events/"))[0]
    data = bytearray(blob_container.download_blob(name).readall())
    data[len(data) // 2] ^= 0x01
    blob_container.upload_blob(name, bytes(data), overwrite=True)
    manifest = next(
        m
        for m in sorted(blob_container.list_blob_names(name_starts_with="manifests/"))
        if name
        in {e["name"] for e in orjson.loads(blob_container.download_blob(m).readall())["objects"]}
    )
    tampered = cli("archive", "verify", container, "--connection-string", conn)
    assert tampered.exit_code == 1
    assert tampered.stdout.splitlines() == [
        f"FAIL {name}: SHA-256 differs from {manifest} (altered)",
        "archive NOT verified: 1 problem(s) from 1 cause(s)",
    ]
