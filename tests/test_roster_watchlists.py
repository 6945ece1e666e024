"""`phiwatch roster watchlists`: the pseudonymised roster and patient index as Sentinel
watchlist CSVs. Only pseudonyms and flags come out, keyed as the stream keys them."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import tracemalloc
from pathlib import Path

import pytest
from typer.testing import CliRunner

from phiwatch.commands.app import app
from phiwatch.detect.grouping import actor_key
from phiwatch.model import AccessEvent
from phiwatch.privacy import normalise
from phiwatch.privacy.loaded import directory
from phiwatch.privacy.patients import load_patients
from phiwatch.privacy.watchlists import (
    PATIENTS_COLUMNS,
    PATIENTS_FILE,
    PATIENTS_SEARCH_KEY,
    WORKFORCE_COLUMNS,
    WORKFORCE_FILE,
    WORKFORCE_SEARCH_KEY,
    write_watchlists,
)
from phiwatch.pseudonym import Pseudonymizer
from phiwatch.sources.fhir import namespace_of
from tests.conftest import TEST_KEY_HEX
from tests.records import FHIR_ID, fhir

runner = CliRunner()

NURSE = "33333333-aaaa-4bbb-8ccc-000000000003"  # the actor of tests.records.fhir()
ANN = "11111111-aaaa-4bbb-8ccc-000000000001"
BOB = "22222222-aaaa-4bbb-8ccc-000000000002"
ROSTER = (
    "ObjectId,UserPrincipalName,EmployeeId,Surname,Address,Postcode,Department,Status,"
    "TerminationDate\n"
    f"{ANN.upper()},ann.quixote@contoso.org,EMP-QX417,Quixote-Vasquez Jr.,"
    "12 North Wyvern Street Apt 4,KW1 4XY,Cardiology,active,\n"
    f"{BOB},bob.okonkwo@contoso.org,EMP-ZK9,Okonkwo,7 Juniper Road,SW1Z 9QQ,Pharmacy,"
    "terminated,2026-03-01\n"
    f"{NURSE},alice.nurse@contoso-health.org,EMP-WV33,Pemberton,3 Yarrow Way,YO1 7PW,ICU,leave,\n"
    "not-a-guid,zed.kowalski@contoso.org,EMP-ZZZ,Kowalski,9 Quay Lane,QQ1 1QQ,ED,active,\n"
    f"{BOB},bob.okonkwo@contoso.org,EMP-ZK9,Okonkwo,7 Juniper Road,SW1Z 9QQ,Pharmacy,"
    "sacked,\n"
)
PATIENTS = (
    "FhirService,PatientId,Mrn,Surname,Address,Postcode,EmployeeId,Restricted,CareTeamObjectIds\n"
    f"{FHIR_ID},p-self,MRNQ0001,Quixote Vasquez,12 N Wyvern St,KW1 4XY,EMP-QX417,no,\n"
    f"{FHIR_ID},p-vip,MRNQ0002,Threlkeld,1 Xylem Lane,ZZ9 9ZZ,,yes,{BOB};{ANN.upper()}\n"
    f"{FHIR_ID},p-neighbour,MRNQ0003,Fairweather,40 North Wyvern Street,KW1 4XY,,0,\n"
    f"{FHIR_ID},p-badflag,MRNQ0004,Whitlock,5 Quarry Row,QW1 1WQ,,perhaps,\n"
    f"{FHIR_ID},,MRNQ0005,Whitlock,5 Quarry Row,QW1 1WQ,,no,\n"
)
# Cells that are no raw value: object ids are in every event already and name nobody
# (phiwatch/privacy/directory.py); statuses, flags and dates are what the lists publish.
NOT_RAW = re.compile(
    r"^([0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}|active|leave|terminated|yes|no|0|"
    r"not-a-guid|sacked|perhaps|2026-03-01|)$",
    re.IGNORECASE,
)
TAG = r"tg_[0-9a-f]{16}"
OID_KEY = r"oid:[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}"
SHAPES = {
    "ActorKey": OID_KEY,
    "ObjectId": OID_KEY.removeprefix("oid:"),
    "EmploymentStatus": r"active|leave|terminated",
    "TerminationDate": r"|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ",
    "PatientRef": r"pr_[0-9a-f]{32}",
    "Restricted": r"true|false",
    "SurnameRare": r"true|false",
    "CareTeamActorKeys": rf"|{OID_KEY}(;{OID_KEY})*",
    "EmployeeTag": rf"|{TAG}",
    "SurnameTag": rf"|{TAG}",
    "HouseholdTag": rf"|{TAG}",
    "StreetTag": rf"|{TAG}",
}


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    roster, patients = tmp_path / "roster.csv", tmp_path / "patients.csv"
    roster.write_text(ROSTER, encoding="utf-8")
    patients.write_text(PATIENTS, encoding="utf-8")
    return roster, patients


def watchlists(*args: str):
    return runner.invoke(app, ["roster", "watchlists", *args])


def read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def export(inputs: tuple[Path, Path], out: Path, *extra: str) -> dict[str, list[dict[str, str]]]:
    roster, patients = inputs
    result = watchlists("--roster", str(roster), "--patients", str(patients), "--out", str(out))
    assert result.exit_code == 0, result.output
    return {"workforce": read(out / WORKFORCE_FILE), "patients": read(out / PATIENTS_FILE)}


def test_the_columns_and_rows_of_both_lists(inputs, tmp_path):
    lists = export(inputs, tmp_path / "out")
    assert tuple(lists["workforce"][0]) == WORKFORCE_COLUMNS
    assert tuple(lists["patients"][0]) == PATIENTS_COLUMNS
    assert WORKFORCE_SEARCH_KEY in WORKFORCE_COLUMNS and PATIENTS_SEARCH_KEY in PATIENTS_COLUMNS
    workforce = {row["ObjectId"]: row for row in lists["workforce"]}
    # Sorted by object id; Bob's later, bad row is refused, so his good row stands.
    assert list(workforce) == sorted([ANN, BOB, NURSE])
    assert workforce[ANN]["ActorKey"] == f"oid:{ANN}"
    assert workforce[BOB]["EmploymentStatus"] == "terminated"
    assert workforce[BOB]["TerminationDate"] == "2026-03-01T00:00:00Z"
    assert workforce[NURSE]["EmploymentStatus"] == "leave"
    assert workforce[ANN]["TerminationDate"] == ""
    patients = lists["patients"]
    assert [p["Restricted"] for p in patients] == ["false", "true", "false"]
    assert patients[1]["CareTeamActorKeys"] == f"oid:{ANN};oid:{BOB}"


def test_the_tags_say_what_the_directory_relates(inputs, tmp_path):
    lists = export(inputs, tmp_path / "out")
    ann = next(r for r in lists["workforce"] if r["ObjectId"] == ANN)
    own, _, neighbour = lists["patients"]
    # Ann's own chart: her employee id, surname and household; a neighbour: her street only.
    for column in ("EmployeeTag", "SurnameTag", "HouseholdTag", "StreetTag"):
        assert own[column] == ann[column] != ""
    assert neighbour["StreetTag"] == ann["StreetTag"]
    assert neighbour["HouseholdTag"] != ann["HouseholdTag"]
    assert neighbour["SurnameTag"] != ann["SurnameTag"]


def test_every_value_is_a_pseudonym_or_a_flag(inputs, tmp_path):
    for rows in export(inputs, tmp_path / "out").values():
        for row in rows:
            for column, value in row.items():
                assert re.fullmatch(SHAPES[column], value), (column, value)


def test_no_raw_value_of_either_input_is_in_the_output(inputs, tmp_path):
    out = tmp_path / "out"
    result = watchlists("--roster", str(inputs[0]), "--patients", str(inputs[1]), "--out", str(out))
    assert result.exit_code == 0
    raw: set[str] = set()
    for text in (ROSTER, PATIENTS):
        for row in list(csv.reader(io.StringIO(text)))[1:]:
            for cell in row[1:] if text is PATIENTS else row:  # FhirService: no person's
                if all(NOT_RAW.match(part) for part in cell.split(";")):
                    continue
                raw.add(cell.lower())
                raw.update(p.strip().lower() for p in re.split(r"[\s;,-]+", cell) if len(p) > 3)
                for form in (normalise.surname(cell), normalise.identifier(cell)):
                    if form:
                        raw.add(form.lower())
    # Two letters ("ED") are in any English text; the header row holds column names only.
    raw = {value for value in raw if len(value) > 2}
    produced = [
        p.read_text(encoding="utf-8").lower().split("\n", 1)[1] for p in sorted(out.iterdir())
    ]
    produced.append(result.output.lower())  # what the command prints, errors included
    for text in produced:
        leaked = sorted(value for value in raw if value in text)
        assert not leaked, leaked


def test_patient_ref_and_actor_key_are_what_replay_stamps_on_events(inputs, tmp_path):
    logs = tmp_path / "logs" / "fhir.jsonl.gz"
    logs.parent.mkdir()
    body = {"records": [fhir(10, path="Patient/p-self"), fhir(20, path="Patient/p-vip")]}
    logs.write_bytes(gzip.compress((json.dumps(body) + "\n").encode(), mtime=0))
    replay_out = tmp_path / "replay"
    result = runner.invoke(
        app,
        ["replay", str(logs.parent), "--out", str(replay_out), "--quiet"]
        + ["--roster", str(inputs[0]), "--patients", str(inputs[1])],
    )
    assert result.exit_code == 0, result.output
    lines = (replay_out / "events.jsonl").read_text().splitlines()
    events = [AccessEvent.model_validate_json(line) for line in lines]
    lists = export(inputs, tmp_path / "out")
    refs = [p["PatientRef"] for p in lists["patients"]]
    assert [e.patient_ref for e in events] == refs[:2]
    nurse = next(r for r in lists["workforce"] if r["ObjectId"] == NURSE)
    assert {actor_key(e) for e in events} == {nurse["ActorKey"]}
    # The stamps replay put on the events agree with the flags published.
    assert [e.patient_restricted for e in events] == [False, True]
    # The key id the export prints is the one the replay ran under.
    key_id = json.loads((replay_out / "summary.json").read_text())["pseudonym_key_id"]
    result = watchlists("--patients", str(inputs[1]), "--out", str(tmp_path / "again"))
    assert f"pseudonym key id {key_id}" in result.output


def test_bad_rows_are_reported_by_row_and_column_and_the_rest_is_written(inputs, tmp_path):
    roster, patients = inputs
    out = tmp_path / "out"
    result = watchlists("--roster", str(roster), "--patients", str(patients), "--out", str(out))
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "roster: row 5, column ObjectId: not an Entra object id" in text
    assert "roster: row 6, column Status: not active, leave or terminated" in text
    assert "patients: row 5, column Restricted: not true/false" in text
    assert "patients: row 6, column PatientId: empty" in text
    assert "phiwatch-workforce: 3 rows" in text and "phiwatch-patients: 3 rows" in text
    for value in ("not-a-guid", "sacked", "perhaps", "Whitlock"):
        assert value.lower() not in result.output.lower()


def test_one_input_alone_writes_its_list_only(inputs, tmp_path):
    out = tmp_path / "out"
    result = watchlists("--patients", str(inputs[1]), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [PATIENTS_FILE]


def test_the_key_comes_from_the_key_file_as_from_the_environment(inputs, tmp_path, monkeypatch):
    from_env = export(inputs, tmp_path / "env")
    key_file = tmp_path / "tenant.key"
    key_file.write_text(TEST_KEY_HEX + "\n")
    monkeypatch.delenv("PHIWATCH_PSEUDONYM_KEY")
    roster, patients = inputs
    args = ["--roster", str(roster), "--patients", str(patients)]
    result = watchlists(*args, "--out", str(tmp_path / "none"))
    assert result.exit_code == 2 and "--key-file" in result.output
    assert not (tmp_path / "none").exists()  # no key generated, nothing written
    result = watchlists(*args, "--out", str(tmp_path / "file"), "--key-file", str(key_file))
    assert result.exit_code == 0, result.output
    assert read(tmp_path / "file" / PATIENTS_FILE) == from_env["patients"]
    assert read(tmp_path / "file" / WORKFORCE_FILE) == from_env["workforce"]
    other = tmp_path / "other.key"
    other.write_text("6f" * 32)
    result = watchlists(*args, "--out", str(tmp_path / "other"), "--key-file", str(other))
    assert (
        read(tmp_path / "other" / PATIENTS_FILE)[0]["PatientRef"]
        != (from_env["patients"][0]["PatientRef"])
    )


def test_usage_errors_and_refused_files(inputs, tmp_path):
    assert watchlists("--out", str(tmp_path / "o")).exit_code == 2
    headless = tmp_path / "headless.csv"
    headless.write_text("Surname,Address\nQuixote,12 Wyvern St\n")
    result = watchlists("--roster", str(headless), "--out", str(tmp_path / "o"))
    assert result.exit_code == 1 and "no ObjectId column" in " ".join(result.output.split())
    assert "quixote" not in result.output.lower()


def test_the_export_streams_rows_instead_of_copying_the_index(tmp_path, pseudonymizer):
    rows = 30_000
    text = "FhirService,PatientId,Surname,Address,Postcode,Restricted\n" + "".join(
        f"{FHIR_ID},p{i},Name{i % 997},{i} High Street,AB{i % 50} 1CD,{i % 2}\n"
        for i in range(rows)
    )
    tagger = pseudonymizer.privacy_tagger()
    index = load_patients(io.BytesIO(text.encode()), pseudonymizer, tagger)
    loaded = directory(None, index)
    tracemalloc.start()
    try:
        (written,) = write_watchlists(loaded, tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert written.rows == rows and written.size > 100 * rows
    # A copy of the rows would be tens of MB; a row at a time stays within the buffers.
    assert peak < 2_000_000, peak


def test_ids_in_the_watchlists_are_the_pseudonymizer_s(pseudonymizer: Pseudonymizer, tmp_path):
    text = f"FhirService,PatientId\n{FHIR_ID},p-self\n"
    index = load_patients(io.BytesIO(text.encode()), pseudonymizer, pseudonymizer.privacy_tagger())
    (written,) = write_watchlists(directory(None, index), tmp_path)
    assert read(written.path)[0]["PatientRef"] == pseudonymizer.patient_ref(
        namespace_of(FHIR_ID), "p-self"
    )


def test_a_list_too_large_for_raw_content_points_to_the_large_watchlist_path(
    inputs, tmp_path, monkeypatch
):
    import phiwatch.commands.roster as command
    import phiwatch.privacy.watchlists as lists

    monkeypatch.setattr(lists, "RAW_CONTENT_MAX_BYTES", 500)
    monkeypatch.setattr(command, "RAW_CONTENT_MAX_BYTES", 500)
    result = watchlists("--roster", str(inputs[0]), "--out", str(tmp_path / "o"))
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "phiwatch-workforce: over 500 bytes: too large for rawContent" in text
    assert "SAS URI" in text
