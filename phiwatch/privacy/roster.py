"""The workforce roster: one row per Entra identity, held as `Member`s (tags only).

Columns (any case, aliases below): ObjectId (required), UserPrincipalName, EmployeeId,
Surname, Address, Postcode, Department, Status (active / leave / terminated; empty is
active), TerminationDate (ISO 8601). UserPrincipalName and Department are recognised so a
watchlist export loads, and are not kept: the directory is looked up by object id, and a
department names nobody's relationship to a patient.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import BinaryIO

from phiwatch.privacy.csvrows import (
    HashingLines,
    InputRefused,
    LoadReport,
    Row,
    RowError,
    RowProblem,
    column_index,
    data_rows,
    epoch,
    object_id,
    rows,
)
from phiwatch.privacy.directory import Member, Status
from phiwatch.privacy.tags import Tagger

# Canonical name -> aliases (the Sentinel watchlist templates' column names among them:
# "VIP Users", "Terminated Employees", "Identity Correlation").
ALIASES: dict[str, tuple[str, ...]] = {
    "objectid": (
        "Object Id",
        "AADObjectId",
        "AAD Object Id",
        "User Object Id",
        "EntraObjectId",
        "UserObjectId",
        "Oid",
        "AzureADObjectId",
    ),
    "userprincipalname": ("User Principal Name", "UPN", "UserPrincipal"),
    "employeeid": ("Employee Id", "EmployeeNumber", "Employee Number"),
    "surname": ("Last Name", "LastName", "FamilyName", "Family Name"),
    "address": ("Street Address", "StreetAddress", "Home Address", "HomeAddress"),
    "postcode": ("Postal Code", "PostalCode", "Zip", "ZipCode", "Zip Code", "Post Code"),
    "department": ("Department Name",),
    "status": ("Employment Status", "EmploymentStatus", "EmployeeStatus"),
    "terminationdate": ("Termination Date", "TerminationDate", "Leave Date", "LeaveDate"),
}
_STATUSES: dict[str, Status] = {
    "": "active",
    "active": "active",
    "leave": "leave",
    "onleave": "leave",
    "on leave": "leave",
    "loa": "leave",
    "terminated": "terminated",
}


@dataclass(slots=True)
class Roster:
    members: dict[str, Member] = field(default_factory=dict)
    report: LoadReport = field(default_factory=lambda: LoadReport("roster"))


def load_roster(stream: BinaryIO | Iterable[bytes], tagger: Tagger) -> Roster:
    """Every good row as a Member; bad rows in `report.errors`. Raises InputRefused for a
    file without an ObjectId column. A repeated object id: the later row wins (an export
    appended to)."""
    lines = HashingLines(stream)
    reader = rows(lines)
    header = next(reader, None)
    if not header:
        raise InputRefused("roster: the file is empty (a header row is needed)")
    index = column_index(header, ALIASES)
    if "objectid" not in index:
        raise InputRefused(
            "roster: no ObjectId column (Object Id, AADObjectId...): members are found by "
            "their Entra object id; a UserPrincipalName alone cannot be resolved here"
        )
    roster = Roster()
    try:
        for number, cells in data_rows(reader, roster.report):
            try:
                member = _member(Row(cells, index), tagger)
            except RowProblem as problem:
                roster.report.add(RowError(number, problem.column, problem.problem))
                continue
            roster.members[member.object_id] = member
    finally:
        tagger.forget()
    roster.report.loaded = len(roster.members)
    roster.report.digest = lines.digest()
    return roster


def _member(row: Row, tagger: Tagger) -> Member:
    oid = object_id(row.get("objectid"), "ObjectId")
    status = _STATUSES.get(row.get("status").lower())
    if status is None:
        raise RowProblem("Status", "not active, leave or terminated")
    household, street = tagger.address(row.get("address"), row.get("postcode"))
    return Member(
        object_id=oid,
        employee=tagger.employee(row.get("employeeid")),
        surname=tagger.surname(row.get("surname")),
        address=household,
        street=street,
        status=status,
        terminated_at=epoch(row.get("terminationdate"), "TerminationDate"),
    )
