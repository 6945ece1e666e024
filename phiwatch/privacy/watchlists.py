"""The loaded directory as Sentinel watchlist CSVs: pseudonyms and flags, never a raw value.

`phiwatch roster watchlists` writes these from the roster and the patient index, loaded by
the same loaders and tenant key as the pipeline, so the KQL twins join the same keys the
stream stamps with: `ActorKey` is `detect/grouping.actor_key` of an actor in the roster
(`oid:` and the lowercase Entra object id), `PatientRef` is what the FHIR normaliser puts on
the events. Tags are the directory's 64-bit keyed HMACs, written as `tg_` and 16 hex digits;
equal tags in the two lists (a surname, a household) mean equal normalised values, which is
all a KQL twin needs to say "family" or "neighbour" the way `directory.relation` does.

Rows are written one at a time from the loaded table (`LoadedDirectory.iter_patients`), to a
temporary file renamed into place: a two-million-row index is never copied in memory, and an
interrupted export never leaves half a watchlist to be uploaded.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from phiwatch.privacy.directory import Member, PatientFacts, Tag
from phiwatch.privacy.loaded import LoadedDirectory

WORKFORCE = "phiwatch-workforce"
PATIENTS = "phiwatch-patients"
WORKFORCE_FILE = f"{WORKFORCE}.csv"
PATIENTS_FILE = f"{PATIENTS}.csv"
# The watchlists' itemsSearchKey (infra/sentinel/watchlists.bicep names the same columns;
# tests/test_roster_watchlists.py holds them equal).
WORKFORCE_SEARCH_KEY = "ActorKey"
PATIENTS_SEARCH_KEY = "PatientRef"
WORKFORCE_COLUMNS: tuple[str, ...] = (
    "ActorKey",
    "ObjectId",
    "EmploymentStatus",
    "TerminationDate",
    "EmployeeTag",
    "SurnameTag",
    "HouseholdTag",
    "StreetTag",
)
PATIENTS_COLUMNS: tuple[str, ...] = (
    "PatientRef",
    "Restricted",
    "CareTeamActorKeys",
    "EmployeeTag",
    "SurnameTag",
    "SurnameRare",
    "HouseholdTag",
    "StreetTag",
)
# What a watchlist's rawContent can carry in a template or API call; above it Sentinel
# takes the file only from Azure Storage through a SAS URI ("large watchlist"), up to
# LARGE_MAX_BYTES (infra/sentinel/README.md).
RAW_CONTENT_MAX_BYTES = 3_800_000
LARGE_MAX_BYTES = 500_000_000
CARE_TEAM_SEPARATOR = ";"


@dataclass(frozen=True, slots=True)
class Written:
    """One watchlist file: where, how many data rows, how many bytes."""

    alias: str
    path: Path
    rows: int
    size: int

    @property
    def needs_large_watchlist(self) -> bool:
        return self.size > RAW_CONTENT_MAX_BYTES


def tag_text(tag: Tag | None) -> str:
    return "" if tag is None else f"tg_{tag:016x}"


def member_actor_key(object_id: str) -> str:
    """`detect/grouping.actor_key` of an event by this member (object ids are lowercase in
    the directory; a KQL twin compares `strcat("oid:", tolower(ActorUserId))`)."""
    return f"oid:{object_id}"


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _date(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def workforce_rows(members: Iterable[Member]) -> Iterator[tuple[str, ...]]:
    """The workforce watchlist's data rows. The status is the roster's, as loaded: whether
    an access is past the termination date is judged at the event's time, by the stream
    (`directory.is_terminated`) and by a KQL twin from TerminationDate alike."""
    for m in members:
        yield (
            member_actor_key(m.object_id),
            m.object_id,
            m.status,
            _date(m.terminated_at),
            tag_text(m.employee),
            tag_text(m.surname),
            tag_text(m.address),
            tag_text(m.street),
        )


def patient_rows(patients: Iterable[tuple[str, PatientFacts]]) -> Iterator[tuple[str, ...]]:
    for ref, facts in patients:
        yield (
            ref,
            _flag(facts.restricted),
            CARE_TEAM_SEPARATOR.join(member_actor_key(oid) for oid in sorted(facts.care_team)),
            tag_text(facts.employee),
            tag_text(facts.surname),
            _flag(facts.surname_rare),
            tag_text(facts.address),
            tag_text(facts.street),
        )


def write_csv(
    path: Path, alias: str, columns: tuple[str, ...], rows: Iterable[tuple[str, ...]]
) -> Written:
    """Header and rows to `path`, through a temporary file beside it renamed at the end."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    count = 0
    try:
        with partial.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(columns)
            for row in rows:
                writer.writerow(row)
                count += 1
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return Written(alias, path, count, path.stat().st_size)


def write_watchlists(directory: LoadedDirectory, out_dir: Path) -> list[Written]:
    """The watchlist of each input the directory holds (a roster, an index, or both)."""
    written: list[Written] = []
    if directory.has_roster:
        written.append(
            write_csv(
                out_dir / WORKFORCE_FILE,
                WORKFORCE,
                WORKFORCE_COLUMNS,
                workforce_rows(directory.iter_members()),
            )
        )
    if directory.has_patients:
        written.append(
            write_csv(
                out_dir / PATIENTS_FILE,
                PATIENTS,
                PATIENTS_COLUMNS,
                patient_rows(directory.iter_patients()),
            )
        )
    return written
