"""The `Directory` the loaders build: a roster, a patient index, either may be absent."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from phiwatch.privacy.csvrows import LoadReport
from phiwatch.privacy.directory import Member, PatientFacts, Tag
from phiwatch.privacy.patients import PatientIndex
from phiwatch.privacy.roster import Roster
from phiwatch.privacy.table import PatientTable

DIGEST_CHARS = 12  # enough to tell two loads apart in a reason; the full digest is in the report


@dataclass(frozen=True, slots=True)
class LoadedDirectory:
    """Implements `Directory`; `version` is a digest prefix of each input, so a reason says
    which files it was judged against."""

    members: dict[str, Member] | None
    patients: PatientTable | None
    version: str

    @property
    def has_roster(self) -> bool:
        return self.members is not None

    @property
    def has_patients(self) -> bool:
        return self.patients is not None

    def member(self, object_id: str) -> Member | None:
        if self.members is None:
            return None
        return self.members.get(object_id.lower())

    def patient(self, patient_ref: str) -> PatientFacts | None:
        return None if self.patients is None else self.patients.patient(patient_ref)

    def iter_members(self) -> Iterator[Member]:
        """The roster's members by object id (a stable order for an export); none without a
        roster. Read-only: the members are frozen."""
        if self.members is not None:
            for oid in sorted(self.members):
                yield self.members[oid]

    def iter_patients(self) -> Iterator[tuple[str, PatientFacts]]:
        """The index's patients as (PatientRef, facts), streamed in load order; none without
        an index."""
        if self.patients is not None:
            yield from self.patients.rows()

    def patient_by_mrn(self, mrn: Tag) -> str | None:
        """The PatientRef of an MRN's tag (`Tagger.mrn`), for resolving a report."""
        return None if self.patients is None else self.patients.by_mrn(mrn)


def version_of(roster: LoadReport | None, patients: LoadReport | None) -> str:
    def part(name: str, report: LoadReport | None) -> str:
        return f"{name}:{report.digest[:DIGEST_CHARS] if report else '-'}"

    return f"{part('roster', roster)} {part('patients', patients)}"


def directory(roster: Roster | None, patients: PatientIndex | None) -> LoadedDirectory:
    return LoadedDirectory(
        members=roster.members if roster else None,
        patients=patients.table if patients else None,
        version=version_of(
            roster.report if roster else None, patients.report if patients else None
        ),
    )
