"""The privacy inputs: normalisation, tags, the roster and patient-index loaders, the loaded
Directory and its file source."""

from __future__ import annotations

import gzip
import hmac
import io
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phiwatch.privacy import normalise
from phiwatch.privacy.csvrows import InputRefused, gunzipped
from phiwatch.privacy.directory import relation
from phiwatch.privacy.files import FileDirectorySource
from phiwatch.privacy.loaded import LoadedDirectory, directory
from phiwatch.privacy.patients import load_patients
from phiwatch.privacy.roster import load_roster
from phiwatch.privacy.table import PatientTable
from phiwatch.privacy.tags import Tagger
from phiwatch.pseudonym import Pseudonymizer
from tests.records import FHIR_ID, fhir

OID_A = "11111111-aaaa-4bbb-8ccc-000000000001"
OID_B = "22222222-aaaa-4bbb-8ccc-000000000002"
ROSTER = (
    "ObjectId,UserPrincipalName,EmployeeId,Surname,Address,Postcode,Department,Status,"
    "TerminationDate\n"
    f"{OID_A.upper()},ann@contoso.org,000417,Müller-Smith Jr.,12 North Main Street Apt 4,"
    "12345-6789,Cardiology,active,\n"
    f"{OID_B},bob@contoso.org,E-9,Okafor,7 Elm Road,SW1A 1AA,ED,terminated,2026-03-01\n"
)
PATIENTS = (
    "FhirService,PatientId,Mrn,Surname,Address,Postcode,EmployeeId,Restricted,CareTeamObjectIds\n"
    # Ann herself (her employee id, unpadded), her relative, a neighbour, a stranger.
    f"{FHIR_ID},p-self,MRN001,Muller Smith,12 N Main St,12345,417,no,\n"
    f"{FHIR_ID},p-family,MRN002,MULLER-SMITH,12 n. main st #9,12345,,yes,{OID_B};{OID_A}\n"
    f"{FHIR_ID},p-neighbour,MRN003,Jones,40 North Main Street,12345,,0,\n"
    f"{FHIR_ID},p-stranger,MRN004,Jones,1 Other Lane,99999,,false,\n"
)


@pytest.fixture
def tagger(pseudonymizer: Pseudonymizer) -> Tagger:
    return pseudonymizer.privacy_tagger()


def loaded(pseudonymizer: Pseudonymizer, roster: str = ROSTER, patients: str = PATIENTS):
    tagger = pseudonymizer.privacy_tagger()
    r = load_roster(io.BytesIO(roster.encode()), tagger)
    p = load_patients(io.BytesIO(patients.encode()), pseudonymizer, tagger, rare_share=1.0)
    return r, p, directory(r, p)


# ------------------------------------------------------------------ normalisation


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Müller", "MULLER"),
        ("José  García", "jose garcia"),
        ("O'Brien", "OBRIEN"),
        ("Smith, Jr.", "smith"),
        ("Smith III", "Smith"),
        ("de la Cruz", "DeLaCruz"),
        ("Ｍｕｌｌｅｒ", "muller"),  # fullwidth, NFKC
    ],
)
def test_surnames_that_are_one_name_agree(a: str, b: str) -> None:
    assert normalise.surname(a) == normalise.surname(b)


def test_a_suffix_alone_is_a_surname_and_blank_is_none() -> None:
    assert normalise.surname("Ii") == "ii"
    assert normalise.surname(" ,. ") is None


@pytest.mark.parametrize(
    ("line", "house", "street"),
    [
        ("12 North Main Street", "12", "n main st"),
        ("12 N. Main St., Apt 4B", "12", "n main st"),
        ("12 n main st #4", "12", "n main st"),
        ("12 Main Street Suite 300", "12", "main st"),
        ("Flat 2, 10 High Street", "10", "high st"),
        ("5 Rue de la Paix", "5", "rue de la paix"),
        ("77 Sunset Boulevard", "77", "sunset blvd"),
        ("3 Oak Court", "3", "oak ct"),
        ("Main Street", None, "main st"),
        ("12 34B Main St", "12", "34b main st"),
        ("12 #4", "12", None),
        ("12B Main St", "12b", "main st"),
    ],
)
def test_address_lines_lose_units_and_abbreviate(line, house, street) -> None:
    assert normalise.street_line(line) == (house, street)


@pytest.mark.parametrize(
    ("code", "expected"),
    [("12345-6789", "12345"), ("123456789", "12345"), ("sw1a 1aa", "SW1A1AA"), ("", None)],
)
def test_postcodes(code: str, expected: str | None) -> None:
    assert normalise.postcode(code) == expected


def test_address_keys_need_a_street_and_a_postcode() -> None:
    keys = normalise.address("12 Main St", "12345")
    assert keys.household is not None and keys.street is not None
    assert keys.household != keys.street
    assert normalise.address("12 Main St", "") == (None, None)
    assert normalise.address("12", "12345") == (None, None)
    # No house number: a street, not a household.
    assert normalise.address("Main St", "12345").household is None


@given(st.text())
def test_normalising_never_crashes_and_is_idempotent(value: str) -> None:
    once = normalise.text(value)
    assert normalise.text(once) == once
    name = normalise.surname(value)
    if name is not None:
        assert normalise.surname(name) == name
    normalise.address(value, value)
    normalise.employee_id(value)


@given(st.text(alphabet=st.characters(max_codepoint=127)))
def test_the_ascii_fast_path_agrees_with_the_unicode_path(value: str) -> None:
    assert normalise.text(value) == normalise._unicode_text(value)


# ------------------------------------------------------------------ tags


def test_tags_are_pinned_for_a_fixed_key() -> None:
    # A speed-up that changes a tag silently unlinks every loaded roster from its events.
    tagger = Tagger(b"\x5e" * 32)
    assert [tagger.tag(d, "smith") for d in ("surname", "employee", "mrn")] == [
        14292253532356311094,
        14786796291734559599,
        18293929458891100613,
    ]
    # The definition, spelled out: HMAC-SHA256(key, prefix, domain, value), first 8 bytes.
    mac = hmac.new(b"\x5e" * 32, b"phiwatch-privacy-tag\x1fsurname\x1fsmith", "sha256")
    assert tagger.tag("surname", "smith") == int.from_bytes(mac.digest()[:8], "big")
    # And through normalisation: the raw spelling is part of what is pinned.
    assert tagger.surname("Müller-Smith, Jr.") == 6423153455270389347


def test_domains_are_separate_and_keys_matter(tagger: Tagger) -> None:
    values = {tagger.tag(d, "417") for d in ("employee", "surname", "address", "street", "mrn")}
    assert len(values) == 5
    assert Tagger(b"k" * 32).tag("surname", "smith") != tagger.tag("surname", "smith")
    assert tagger.surname("Smith, Jr.") == tagger.surname("SMITH")
    assert tagger.employee("000417") == tagger.employee("417")
    assert tagger.surname("") is None


# ------------------------------------------------------------------ loaders


def test_loaded_files_give_self_family_and_neighbour(pseudonymizer: Pseudonymizer) -> None:
    roster, patients, found = loaded(pseudonymizer)
    assert roster.report.errors == [] and patients.report.errors == []
    assert (found.has_roster, found.has_patients) == (True, True)
    ann = found.member(OID_A)
    assert ann is not None and ann.object_id == OID_A  # lowercased
    ref = {
        p: pseudonymizer.patient_ref(FHIR_ID.lower(), p)
        for p in ("p-self", "p-family", "p-neighbour", "p-stranger")
    }
    facts = {p: found.patient(r) for p, r in ref.items()}
    assert all(f is not None for f in facts.values())
    assert relation(ann, facts["p-self"]) == ("self", "employee-id")
    assert relation(ann, facts["p-family"]) == ("family", "surname-and-address")
    assert relation(ann, facts["p-neighbour"]) == ("neighbour", "street-and-postcode")
    assert relation(ann, facts["p-stranger"]) is None
    family = facts["p-family"]
    assert family is not None and family.restricted and family.care_team == {OID_A, OID_B}
    assert found.patient("pr_" + "0" * 32) is None and found.patient("nonsense") is None


def test_refs_match_the_fhir_normaliser(pseudonymizer: Pseudonymizer, normalise) -> None:
    _, _, found = loaded(pseudonymizer)
    (event,) = normalise(fhir(1, path="Patient/p-family/Observation"))
    facts = found.patient(event.patient_ref)
    assert facts is not None and facts.restricted


def test_the_loaders_ref_function_is_patient_ref(pseudonymizer: Pseudonymizer) -> None:
    refs = pseudonymizer.patient_refs(FHIR_ID)
    for patient_id in ("123", "p-é", "a" * 200):
        assert refs(patient_id) == pseudonymizer.patient_ref(FHIR_ID.lower(), patient_id)


def test_an_mrn_tag_resolves_to_the_patient_ref(pseudonymizer: Pseudonymizer, tagger) -> None:
    _, _, found = loaded(pseudonymizer)
    expected = pseudonymizer.patient_ref(FHIR_ID.lower(), "p-neighbour")
    assert found.patient_by_mrn(tagger.mrn("mrn003")) == expected
    assert found.patient_by_mrn(tagger.mrn("MRN999")) is None


def test_termination_date_is_epoch_utc(pseudonymizer: Pseudonymizer) -> None:
    _, _, found = loaded(pseudonymizer)
    bob = found.member(OID_B)
    assert bob is not None and bob.status == "terminated"
    assert bob.terminated_at == 1772323200.0  # 2026-03-01T00:00:00Z


def test_watchlist_aliases_and_extra_columns(pseudonymizer: Pseudonymizer, tagger) -> None:
    text = (
        "User Principal Name,AADObjectId,Employee Id,Last Name,Termination Date,Notes\n"
        f"ann@contoso.org,{OID_A},417,Smith,2026-01-02T03:04:05+00:00,anything\n"
    )
    roster = load_roster(io.BytesIO(text.encode("utf-8-sig")), tagger)
    member = roster.members[OID_A]
    assert member.employee == tagger.employee("417")
    assert member.surname == tagger.surname("smith")
    assert member.terminated_at == 1767323045.0


def test_bad_rows_are_reported_by_row_and_column_without_the_value(tagger) -> None:
    text = (
        "ObjectId,Status,TerminationDate\n"
        f"{OID_A},active,\n"
        "not-a-guid-SECRET1,active,\n"
        f"{OID_B},retired-SECRET2,\n"
        f"{OID_B},active,yesterday-SECRET3\n"
    )
    roster = load_roster(io.BytesIO(text.encode()), tagger)
    assert list(roster.members) == [OID_A]
    assert [(e.row, e.column) for e in roster.report.errors] == [
        (3, "ObjectId"),
        (4, "Status"),
        (5, "TerminationDate"),
    ]
    assert "SECRET" not in " ".join(str(e) for e in roster.report.errors)
    assert (roster.report.rows, roster.report.loaded) == (4, 1)


def test_a_row_csv_cannot_read_is_reported_and_the_rest_loads(tagger) -> None:
    huge = "x" * 200_000  # past csv's field size limit
    text = f"ObjectId,Surname\n{OID_A},{huge}\n{OID_B},Smith\n"
    roster = load_roster(io.BytesIO(text.encode()), tagger)
    assert list(roster.members) == [OID_B]
    assert [(e.row, e.column) for e in roster.report.errors] == [(2, "-")]
    assert "xxx" not in str(roster.report.errors[0])


def test_bad_patient_rows_are_reported_and_the_rest_loads(pseudonymizer, tagger) -> None:
    text = (
        "FhirService,PatientId,Restricted,CareTeamObjectIds\n"
        f"{FHIR_ID},p1,maybe-SECRET,\n"
        f"{FHIR_ID},,no,\n"
        f"{FHIR_ID},p3,no,{OID_A};bad-SECRET\n"
        f"{FHIR_ID},p4,no,\n"
    )
    index = load_patients(io.BytesIO(text.encode()), pseudonymizer, tagger)
    assert [(e.row, e.column) for e in index.report.errors] == [
        (2, "Restricted"),
        (3, "PatientId"),
        (4, "CareTeamObjectIds"),
    ]
    assert "SECRET" not in " ".join(map(str, index.report.errors))
    assert len(index.table) == 1


def test_a_file_without_its_key_column_is_refused(pseudonymizer, tagger) -> None:
    with pytest.raises(InputRefused, match="ObjectId"):
        load_roster(io.BytesIO(b"UserPrincipalName,Surname\nann@x.org,Smith\n"), tagger)
    with pytest.raises(InputRefused, match="PatientId"):
        load_patients(io.BytesIO(b"Mrn,Surname\n1,Smith\n"), pseudonymizer, tagger)
    with pytest.raises(InputRefused, match="FhirService"):
        load_patients(io.BytesIO(b"PatientId\n1\n"), pseudonymizer, tagger)
    index = load_patients(
        io.BytesIO(b"PatientId\n1\n"), pseudonymizer, tagger, default_fhir_service=FHIR_ID
    )
    assert index.table.patient(pseudonymizer.patient_ref(FHIR_ID.lower(), "1")) is not None


def test_rare_surnames_by_share_and_count(pseudonymizer, tagger) -> None:
    rows = [f"{FHIR_ID},p{i},{'Common' if i < 9 else 'Zyx'}" for i in range(10)]
    data = ("FhirService,PatientId,Surname\n" + "\n".join(rows)).encode()
    index = load_patients(io.BytesIO(data), pseudonymizer, tagger, rare_share=0.2, rare_max=5)

    def rare(i: int) -> bool:
        facts = index.table.patient(pseudonymizer.patient_ref(FHIR_ID, f"p{i}"))
        assert facts is not None
        return facts.surname_rare

    assert (rare(0), rare(9)) == (False, True)
    # The default share: ten patients cannot tell a rare name.
    default = load_patients(io.BytesIO(data), pseudonymizer, tagger)
    ref = pseudonymizer.patient_ref(FHIR_ID, "p9")
    assert default.table.patient(ref).surname_rare is False


def test_a_repeated_patient_keeps_the_later_row(pseudonymizer, tagger) -> None:
    data = f"FhirService,PatientId,Restricted,Mrn\n{FHIR_ID},p1,no,M1\n{FHIR_ID},p1,yes,M2\n"
    index = load_patients(io.BytesIO(data.encode()), pseudonymizer, tagger)
    ref = pseudonymizer.patient_ref(FHIR_ID, "p1")
    assert len(index.table) == 1
    assert index.table.patient(ref).restricted
    assert index.table.by_mrn(tagger.mrn("M1")) == index.table.by_mrn(tagger.mrn("M2")) == ref


def test_a_table_past_its_first_slots_finds_every_patient_and_mrn(pseudonymizer, tagger):
    rows = [f"{FHIR_ID},p{i},M{i},S{i % 7}" for i in range(3000)]  # slots grow twice
    data = ("FhirService,PatientId,Mrn,Surname\n" + "\n".join(rows)).encode()
    table = load_patients(io.BytesIO(data), pseudonymizer, tagger).table
    assert len(table) == 3000
    for i in range(3000):
        ref = pseudonymizer.patient_ref(FHIR_ID, f"p{i}")
        facts = table.patient(ref)
        assert facts is not None and facts.surname == tagger.surname(f"S{i % 7}")
        assert table.by_mrn(tagger.mrn(f"M{i}")) == ref
    assert table.patient(pseudonymizer.patient_ref(FHIR_ID, "p3000")) is None
    assert table.patient("pr_" + "0_" * 16) is None


def test_either_input_may_be_absent(pseudonymizer) -> None:
    roster, patients, _ = loaded(pseudonymizer)
    only_roster = directory(roster, None)
    assert (only_roster.has_roster, only_roster.has_patients) == (True, False)
    assert only_roster.patient(pseudonymizer.patient_ref(FHIR_ID, "p-self")) is None
    only_patients = directory(None, patients)
    assert only_patients.member(OID_A) is None and only_patients.has_patients
    assert only_roster.version.startswith("roster:") and "patients:-" in only_roster.version


def _reachable(root: object) -> list[object]:
    """Every object reachable from the directory through slots, dicts and containers."""
    seen: set[int] = set()
    out: list[object] = []
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        out.append(obj)
        if isinstance(obj, dict):
            stack += [*obj.keys(), *obj.values()]
        elif isinstance(obj, list | tuple | set | frozenset):
            stack += list(obj)
        elif hasattr(obj, "__slots__"):
            stack += [getattr(obj, s) for s in obj.__slots__ if hasattr(obj, s)]
    return out


def test_no_raw_value_in_the_directory(pseudonymizer: Pseudonymizer) -> None:
    _, _, found = loaded(pseudonymizer)
    kinds = set()
    for obj in _reachable(found):
        kinds.add(type(obj).__name__)
        if isinstance(obj, str):
            # Object ids (and the version) only: no name, address, MRN or patient id.
            assert obj in {OID_A, OID_B, found.version} or obj in ("active", "terminated")
    assert isinstance(found, LoadedDirectory) and isinstance(found.patients, PatientTable)
    assert {"Member", "array", "frozenset"} <= kinds  # the walk reached the contents
    assert kinds <= {
        "LoadedDirectory",
        "PatientTable",
        "_Slots",
        "Member",
        "dict",
        "array",
        "list",
        "frozenset",
        "str",
        "int",
        "float",
        "NoneType",
        "bool",
    }


# ------------------------------------------------------------------ the file source


def test_the_file_source_reloads_when_a_file_changes(tmp_path: Path, pseudonymizer) -> None:
    roster, patients = tmp_path / "roster.csv", tmp_path / "patients.csv"
    roster.write_text(ROSTER)
    source = FileDirectorySource(pseudonymizer, roster=roster, patients=patients, check_seconds=0)
    first = source.current()
    assert first is not None and first.has_roster and not first.has_patients
    assert source.current() is first and source.loads == 1  # unchanged: no reload
    os.utime(roster, ns=(1, 1))  # touched, same bytes: hashed, not parsed
    assert source.current() is first and source.loads == 1
    patients.write_text(PATIENTS)
    second = source.current()
    assert second is not first and second is not None and second.has_patients
    assert second.version != first.version
    roster.write_text(ROSTER.replace("active", "leave"))
    third = source.current()
    assert third is not None and third.member(OID_A).status == "leave"
    roster.write_text("Surname\nSmith\n")  # refused whole: the previous roster stays
    assert source.current() is third


def test_the_file_source_without_inputs_and_its_check_interval(tmp_path, pseudonymizer) -> None:
    assert FileDirectorySource(pseudonymizer).current() is None
    now = [0.0]
    roster = tmp_path / "roster.csv"
    roster.write_text(ROSTER)
    source = FileDirectorySource(
        pseudonymizer, roster=roster, check_seconds=30, clock=lambda: now[0]
    )
    first = source.current()
    roster.write_text(ROSTER.replace("active", "leave"))
    assert source.current() is first  # within the interval: not even a stat
    now[0] = 31.0
    assert source.current() is not first


def test_no_value_outlives_its_load_in_the_caches(pseudonymizer: Pseudonymizer) -> None:
    loaded(pseudonymizer)
    for cached in (normalise._unicode_text, normalise.surname, normalise._street):
        assert cached.cache_info().currsize == 0
    tagger = pseudonymizer.privacy_tagger()
    tagger.surname("Smith")
    tagger.forget()
    assert all(not cache for cache in tagger._caches.values())


def test_a_gzip_input_loads_as_its_csv(tmp_path: Path, pseudonymizer) -> None:
    plain_roster, plain_patients = tmp_path / "roster.csv", tmp_path / "patients.csv"
    plain_roster.write_text(ROSTER)
    plain_patients.write_text(PATIENTS)
    packed = tmp_path / "patients.csv.gz"
    packed.write_bytes(gzip.compress(PATIENTS.encode()))
    plain = FileDirectorySource(pseudonymizer, roster=plain_roster, patients=plain_patients)
    zipped = FileDirectorySource(pseudonymizer, roster=plain_roster, patients=packed)
    a, b = plain.current(), zipped.current()
    assert a is not None and b is not None and b.has_patients
    assert [r.loaded for r in zipped.reports] == [r.loaded for r in plain.reports]
    ref = pseudonymizer.patient_ref(FHIR_ID.lower(), "p-family")
    assert b.patient(ref) == a.patient(ref) is not None


def test_gunzipped_streams_in_bounded_pieces_and_refuses_a_broken_stream() -> None:
    bomb = gzip.compress(b"a,b\n" * 5_000_000)  # 20 MB out of a few KB
    pieces = list(gunzipped([bomb[i : i + 4096] for i in range(0, len(bomb), 4096)]))
    assert b"".join(pieces) == b"a,b\n" * 5_000_000
    assert max(len(p) for p in pieces) <= 4 << 20
    assert list(gunzipped([b"not ", b"gzip"])) == [b"not ", b"gzip"]
    assert list(gunzipped([])) == []
    with pytest.raises(InputRefused, match="ends before"):
        list(gunzipped([bomb[: len(bomb) // 2]]))
    with pytest.raises(InputRefused, match="corrupt"):
        list(gunzipped([bomb[:10] + b"\xff" * 64]))
