"""The contract between the privacy inputs and what reads them.

The loaders (`roster.py`, `patients.py`) turn the workforce roster and the patient index into
a `Directory`; the explainer (`explain.py`) stamps each PHI access with what the directory
says about it; the privacy detections read only those stamps. Every identifying value is a
`Tag`: a keyed HMAC of the normalised value (`tags.py`), so the directory, state, archive,
alerts and Sentinel hold pseudonyms only. Entra object ids are kept as they are: they are
in every event already and name no patient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from phiwatch.model import AccessExplanation as Explanation
from phiwatch.model import EmploymentStatus as Status
from phiwatch.model import PatientRelation as Relation
from phiwatch.model import RelationBasis

Tag = int  # 64 bits of a keyed HMAC of one normalised value in its own domain
# Precedence: one relationship per access, the first that holds.
RELATIONS: tuple[Relation, ...] = ("self", "family", "coworker", "neighbour")
# The basis of a relationship in words, for reasons: never the values compared.
BASIS_WORDS: dict[RelationBasis, str] = {
    "employee-id": "the patient's employee id is the actor's",
    "surname-and-address": "the patient's surname and recorded address match the employee's",
    "rare-surname": "the patient shares the employee's surname, a rare one in the index",
    "patient-is-employee": "the patient is an employee of the organisation",
    "street-and-postcode": "the patient lives on the employee's street, in the same postcode",
}
__all__ = ["Explanation", "Relation", "RelationBasis", "Status"]


@dataclass(frozen=True, slots=True)
class Member:
    """One workforce roster row, as tags."""

    object_id: str  # Entra object id, lowercase
    employee: Tag | None
    surname: Tag | None
    address: Tag | None  # house number, street and postcode: one household
    street: Tag | None  # street and postcode block, without the house number
    status: Status
    terminated_at: float | None  # epoch seconds (UTC) of the termination date, when given


@dataclass(frozen=True, slots=True)
class PatientFacts:
    """One patient index row, as tags, found by the patient's PatientRef."""

    employee: Tag | None  # the patient's employee id, when the patient is staff
    surname: Tag | None
    surname_rare: bool  # the surname is rare in the index (a bucket, never the name)
    address: Tag | None
    street: Tag | None
    restricted: bool  # VIP / restricted record
    care_team: frozenset[str]  # Entra object ids, lowercase


class Directory(Protocol):
    """What is known about actors and patients; either side may be absent."""

    @property
    def has_roster(self) -> bool: ...

    @property
    def has_patients(self) -> bool: ...

    @property
    def version(self) -> str:
        """Which inputs are loaded (their blob versions or file digests), for the reasons."""
        ...

    def member(self, object_id: str) -> Member | None: ...

    def patient(self, patient_ref: str) -> PatientFacts | None: ...


def relation(member: Member, patient: PatientFacts) -> tuple[Relation, RelationBasis] | None:
    """The actor's relationship to the patient and its basis (BASIS_WORDS says it in words).

    Self before family (one's own chart shares one's surname and address), family before
    coworker, coworker before neighbour (a neighbour has the same street and postcode block
    and a different household)."""
    if _same(member.employee, patient.employee):
        return "self", "employee-id"
    same_surname = _same(member.surname, patient.surname)
    same_household = _same(member.address, patient.address)
    if same_surname and same_household:
        return "family", "surname-and-address"
    if same_surname and patient.surname_rare:
        return "family", "rare-surname"
    if patient.employee is not None:
        return "coworker", "patient-is-employee"
    if _same(member.street, patient.street) and not same_household:
        return "neighbour", "street-and-postcode"
    return None


def is_terminated(member: Member, at: float) -> bool:
    """Past the termination date, or marked terminated (a date may be missing)."""
    if member.terminated_at is not None and at >= member.terminated_at:
        return True
    return member.status == "terminated" and member.terminated_at is None


def _same(a: Tag | None, b: Tag | None) -> bool:
    return a is not None and a == b


class DirectorySource(Protocol):
    """Where the pipeline gets the directory in force: reloaded by its owner when the inputs
    change (a new blob version, a changed file); None while neither input is configured."""

    def current(self) -> Directory | None: ...
