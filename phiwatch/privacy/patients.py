"""The patient index: one row per patient, held as tags in a compact table by PatientRef.

Columns (any case, aliases below): FhirService (the FHIR service's ARM resource id; a
default can be given for an index of one service), PatientId (the FHIR logical id,
required), Mrn, Surname, Address, Postcode, EmployeeId (when the patient is staff),
Restricted (true/false, yes/no, 1/0), CareTeamObjectIds (Entra object ids, `;` between).

The PatientRef is `Pseudonymizer.patient_ref(namespace_of(FhirService), PatientId)`, the
FHIR normaliser's own function, so a row and the events about that patient meet.

The table: phiwatch/privacy/table.py.

Rare surnames: a surname tag is rare when at most `RARE_SHARE` of the index's patients hold
it and at most `RARE_MAX` of them do (0.01% and 50: in a two-million index, a surname of 50
patients or fewer). A small index has no rare surnames at all, which is right: a hundred
patients cannot say whether a name is rare. Counts per tag exist only during the load.
"""

from __future__ import annotations

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
    data_rows,
    object_id,
    rows,
)
from phiwatch.privacy.directory import Tag
from phiwatch.privacy.table import EMPTY_TEAM, PatientTable
from phiwatch.privacy.tags import Tagger
from phiwatch.pseudonym import Pseudonymizer
from phiwatch.sources.fhir import namespace_of

RARE_SHARE = 0.0001
RARE_MAX = 50

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
    if not header:
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
        for number, cells in data_rows(reader, result.report):
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
    """Rows into the table, and the surname counts that decide rarity at the end (a
    repeated PatientRef counts twice: duplicates are few, and can only make a name look less
    rare, never rarer)."""

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
        tagger = self._tagger
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
        employee_tag = tagger.employee(employee)
        self._table.add(
            ref,
            surname=surname,
            address=household,
            street=street,
            employee=employee_tag,
            restricted=restricted,
            team=team,
            mrn=mrn,
        )
        if surname is not None:
            self._surname_counts[surname] = self._surname_counts.get(surname, 0) + 1

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
            team = self._team_ids[oids] = self._table.team(oids)
        return team

    def finish(self, rare_share: float, rare_max: int) -> PatientTable:
        limit = min(rare_share * len(self._table), rare_max)
        self._table.set_rare(frozenset(t for t, c in self._surname_counts.items() if c <= limit))
        self._surname_counts.clear()
        return self._table
