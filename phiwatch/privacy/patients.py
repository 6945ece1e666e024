"""The patient index: one row per patient, held as tags in a compact table by PatientRef.

Columns (any case, aliases below): FhirService (the FHIR service's ARM resource id; a
default can be given for an index of one service), PatientId (the FHIR logical id,
required), Mrn, Surname, Address, Postcode, EmployeeId (when the patient is staff),
Restricted (true/false, yes/no, 1/0), CareTeamObjectIds (Entra object ids, `;` between).

The PatientRef is `Pseudonymizer.patient_ref(namespace_of(FhirService), PatientId)`, the
FHIR normaliser's own function, so a row and the events about that patient meet.

Memory: two million patients as `PatientFacts` in a dict cost about 800 MB (a 35-character
key, a slotted object, four 64-bit ints each), so the table is columnar instead: arrays of
64-bit tags sorted by PatientRef, found by bisection (about 60 bytes a patient), and a
`PatientFacts` is built when asked for.

Rare surnames: a surname tag is rare when at most `RARE_SHARE` of the index's patients hold
it and at most `RARE_MAX` of them do (0.01% and 50: in a two-million index, a surname of 50
patients or fewer). A small index has no rare surnames at all, which is right: a hundred
patients cannot say whether a name is rare. Counts per tag exist only during the load.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import BinaryIO

from phiwatch.privacy.csvrows import (
    Fields,
    HashingLines,
    InputRefused,
    LoadReport,
    RowError,
    RowProblem,
    boolean,
    column_index,
    object_id,
    rows,
)
from phiwatch.privacy.directory import PatientFacts, Tag
from phiwatch.privacy.tags import Tagger
from phiwatch.pseudonym import Pseudonymizer
from phiwatch.sources.fhir import namespace_of

RARE_SHARE = 0.0001
RARE_MAX = 50
EMPTY_TEAM: frozenset[str] = frozenset()

# The order `_Builder.add` takes them in.
COLUMNS = (
    "fhirservice",
    "patientid",
    "mrn",
    "surname",
    "address",
    "postcode",
    "employeeid",
    "restricted",
    "careteamobjectids",
)
ALIASES: dict[str, tuple[str, ...]] = {
    "fhirservice": ("Fhir Service", "FhirServiceId", "FhirServiceResourceId", "ResourceId"),
    "patientid": ("Patient Id", "FhirPatientId", "Fhir Patient Id", "LogicalId"),
    "mrn": ("Medical Record Number", "MedicalRecordNumber", "MRN Number"),
    "surname": ("Last Name", "LastName", "FamilyName", "Family Name"),
    "address": ("Street Address", "StreetAddress", "Home Address", "HomeAddress"),
    "postcode": ("Postal Code", "PostalCode", "Zip", "ZipCode", "Zip Code", "Post Code"),
    "employeeid": ("Employee Id", "EmployeeNumber", "Employee Number"),
    "restricted": ("VIP", "IsVip", "Is VIP", "Restricted Record", "IsRestricted"),
    "careteamobjectids": (
        "CareTeamObjectIds",
        "Care Team Object Ids",
        "CareTeam",
        "Care Team",
        "CareTeamOids",
    ),
}


class PatientTable:
    """The patient index by PatientRef: parallel arrays sorted by the ref's 128 bits."""

    __slots__ = (
        "_address",
        "_employee",
        "_hi",
        "_lo",
        "_mrn",
        "_mrn_row",
        "_rare",
        "_restricted",
        "_street",
        "_surname",
        "_team",
        "_teams",
    )

    def __init__(self) -> None:
        self._hi = array("Q")
        self._lo = array("Q")
        self._surname = array("Q")  # 0: no value (a Tagger never gives 0)
        self._address = array("Q")
        self._street = array("Q")
        self._employee = array("Q")
        self._restricted = array("B")
        self._team = array("I")  # index into _teams
        self._teams: list[frozenset[str]] = [EMPTY_TEAM]
        self._rare: frozenset[Tag] = frozenset()
        self._mrn = array("Q")  # sorted mrn tags
        self._mrn_row = array("I")  # and the row of each

    def __len__(self) -> int:
        return len(self._hi)

    def patient(self, patient_ref: str) -> PatientFacts | None:
        key = _ref_bits(patient_ref)
        if key is None:
            return None
        row = self._find(*key)
        return None if row is None else self._facts(row)

    def by_mrn(self, mrn: Tag) -> str | None:
        """The PatientRef of the patient with this MRN tag (`Tagger.mrn`): how a report
        that names an MRN is resolved to the events' pseudonym."""
        i = bisect_left(self._mrn, mrn)
        if i < len(self._mrn) and self._mrn[i] == mrn:
            row = self._mrn_row[i]
            return f"pr_{self._hi[row]:016x}{self._lo[row]:016x}"
        return None

    def _find(self, hi: int, lo: int) -> int | None:
        i = bisect_left(self._hi, hi)
        while i < len(self._hi) and self._hi[i] == hi:
            if self._lo[i] == lo:
                return i
            i += 1
        return None

    def _facts(self, row: int) -> PatientFacts:
        surname = self._surname[row] or None
        return PatientFacts(
            employee=self._employee[row] or None,
            surname=surname,
            surname_rare=surname in self._rare,
            address=self._address[row] or None,
            street=self._street[row] or None,
            restricted=bool(self._restricted[row]),
            care_team=self._teams[self._team[row]],
        )


@dataclass(slots=True)
class PatientIndex:
    table: PatientTable = field(default_factory=PatientTable)
    report: LoadReport = field(default_factory=lambda: LoadReport("patients"))


def load_patients(
    stream: BinaryIO | Iterable[bytes],
    pseudonymizer: Pseudonymizer,
    tagger: Tagger,
    *,
    default_fhir_service: str | None = None,
    rare_share: float = RARE_SHARE,
    rare_max: int = RARE_MAX,
) -> PatientIndex:
    """Every good row in the table; bad rows in `report.errors`. Raises InputRefused for a
    file without a PatientId column, or without a FhirService column and no default. A
    repeated PatientRef: the later row wins."""
    lines = HashingLines(stream)
    reader = rows(lines)
    header = next(reader, None)
    if header is None:
        raise InputRefused("patients: the file is empty (a header row is needed)")
    index = column_index(header, ALIASES)
    if "patientid" not in index:
        raise InputRefused("patients: no PatientId column (the FHIR Patient logical id)")
    if "fhirservice" not in index and not default_fhir_service:
        raise InputRefused(
            "patients: no FhirService column and no default FHIR service: a PatientRef is "
            "scoped to the service that holds the patient"
        )
    fields = Fields(index, COLUMNS)
    builder = _Builder(pseudonymizer, tagger, default_fhir_service)
    result = PatientIndex()
    try:
        for number, cells in enumerate(reader, start=2):
            if not any(c.strip() for c in cells):
                continue
            result.report.rows += 1
            try:
                builder.add(*fields(cells))
            except RowProblem as problem:
                result.report.add(RowError(number, problem.column, problem.problem))
    finally:
        tagger.forget()
    result.table = builder.finish(rare_share, rare_max)
    result.report.loaded = len(result.table)
    result.report.digest = lines.digest()
    return result


class _Builder:
    """Rows appended in file order, then sorted once by PatientRef."""

    def __init__(
        self, pseudonymizer: Pseudonymizer, tagger: Tagger, default_service: str | None
    ) -> None:
        self._refs = pseudonymizer.patient_refs
        self._tagger = tagger
        self._default = self._refs(namespace_of(default_service)) if default_service else None
        self._namespaces: dict[str, Callable[[str], str]] = {}
        self._table = PatientTable()
        self._team_ids: dict[frozenset[str], int] = {EMPTY_TEAM: 0}
        self._surname_counts: dict[Tag, int] = {}
        self._mrn_tags = array("Q")  # two arrays, not a list of tuples: 16 bytes an MRN
        self._mrn_rows = array("I")

    def add(
        self,
        service: str,
        patient_id: str,
        mrn_text: str,
        surname_text: str,
        address: str,
        postcode: str,
        employee: str,
        restricted_text: str,
        care_team: str,
    ) -> None:
        table, tagger = self._table, self._tagger
        if not patient_id:
            raise RowProblem("PatientId", "empty")
        ref_of = self._namespace(service) if service else self._default
        if ref_of is None:
            raise RowProblem("FhirService", "empty, and no default FHIR service")
        restricted = boolean(restricted_text, "Restricted")
        team = self._team(care_team)
        ref = ref_of(patient_id)
        surname = tagger.surname(surname_text)
        household, street = tagger.address(address, postcode)
        mrn = tagger.mrn(mrn_text)
        # Everything checked: append the row whole (a half-appended row would misalign).
        position = len(table._hi)
        table._hi.append(int(ref[3:19], 16))
        table._lo.append(int(ref[19:35], 16))
        table._surname.append(surname or 0)
        table._address.append(household or 0)
        table._street.append(street or 0)
        table._employee.append(tagger.employee(employee) or 0)
        table._restricted.append(restricted)
        table._team.append(team)
        if surname is not None:
            self._surname_counts[surname] = self._surname_counts.get(surname, 0) + 1
        if mrn is not None:
            self._mrn_tags.append(mrn)
            self._mrn_rows.append(position)

    def _namespace(self, service: str) -> Callable[[str], str]:
        """The PatientRef function of a FHIR service (an index holds a handful)."""
        ref_of = self._namespaces.get(service)
        if ref_of is None:
            ref_of = self._namespaces[service] = self._refs(namespace_of(service))
        return ref_of

    def _team(self, cell: str) -> int:
        if not cell:
            return 0
        oids = frozenset(
            object_id(part.strip(), "CareTeamObjectIds") for part in cell.split(";") if part.strip()
        )
        # Interned: teams repeat (a ward's staff), and a frozenset is 200+ bytes.
        team = self._team_ids.get(oids)
        if team is None:
            team = self._team_ids[oids] = len(self._table._teams)
            self._table._teams.append(oids)
        return team

    def finish(self, rare_share: float, rare_max: int) -> PatientTable:
        old = self._table
        n = len(old._hi)
        hi, lo = old._hi, old._lo
        # By the high 64 bits only (half the key memory of 128-bit ints); stable, so equal
        # refs stay adjacent in file order and the last of each run is kept below. Two
        # refs sharing their high bits (odds 1e-7 at two million) are both kept: `_find`
        # checks the low bits.
        order = sorted(range(n), key=hi.__getitem__)
        new = PatientTable()
        new._teams = old._teams
        position = array("I", bytes(4 * n))  # file row -> table row
        for k, i in enumerate(order):
            last = k + 1 == n or hi[order[k + 1]] != hi[i] or lo[order[k + 1]] != lo[i]
            position[i] = len(new._hi)  # a repeated ref's earlier rows map to the kept one
            if not last:
                continue
            new._hi.append(hi[i])
            new._lo.append(lo[i])
            new._surname.append(old._surname[i])
            new._address.append(old._address[i])
            new._street.append(old._street[i])
            new._employee.append(old._employee[i])
            new._restricted.append(old._restricted[i])
            new._team.append(old._team[i])
        del order
        limit = min(rare_share * len(new._hi), rare_max)
        new._rare = frozenset(t for t, c in self._surname_counts.items() if c <= limit)
        self._surname_counts.clear()
        tags, rows_ = self._mrn_tags, self._mrn_rows
        by_tag = sorted(range(len(tags)), key=tags.__getitem__)
        new._mrn = array("Q", (tags[k] for k in by_tag))
        new._mrn_row = array("I", (position[rows_[k]] for k in by_tag))
        self._mrn_tags, self._mrn_rows = array("Q"), array("I")
        return new


def _ref_bits(patient_ref: str) -> tuple[int, int] | None:
    if len(patient_ref) != 35 or not patient_ref.startswith("pr_"):
        return None
    try:
        return int(patient_ref[3:19], 16), int(patient_ref[19:35], 16)
    except ValueError:
        return None
