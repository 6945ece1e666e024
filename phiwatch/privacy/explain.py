"""The stamps: what the directory in force says of one access (docs/privacy.md, "Stamps").

The pipeline stamps every event once, at normalise time, against the directory its batch
started with; the archive, Sentinel and the detections all read those stamps and never the
directory, so a later roster cannot rewrite why yesterday's access was or was not explained.

Pure: the event and the directory in, a stamped copy out (or the event itself when nothing
is known of it). It never raises for an odd event: an actor that is no object id, or a
PatientRef that is not one, is simply not found.
"""

from __future__ import annotations

from typing import Any

from phiwatch.model import AccessEvent
from phiwatch.privacy.directory import (
    Directory,
    Explanation,
    Member,
    PatientFacts,
    Status,
    is_terminated,
    relation,
)

# The AccessEvent fields this module writes, and no other.
STAMPS = (
    "access_explanation",
    "patient_relation",
    "patient_relation_basis",
    "patient_restricted",
    "actor_employment_status",
)
# AccessEvent caches its JSON (model.py, `_json`) and model_copy copies the cache with the
# fields: a copy made after the event was serialised would write the unstamped bytes.
_JSON_CACHE = "_json"


class Explainer:
    """Stamps events against one directory (the one in force for a batch) and the
    allow-listed applications (lowercase app ids)."""

    __slots__ = ("_allowed", "_directory", "_members", "_patients")

    def __init__(
        self, directory: Directory | None, allow_applications: frozenset[str] = frozenset()
    ) -> None:
        self._directory = directory
        self._allowed = allow_applications
        self._members = directory is not None and directory.has_roster
        self._patients = directory is not None and directory.has_patients

    def stamp(self, event: AccessEvent) -> AccessEvent:
        actor = event.actor_user_id.lower() if event.actor_user_id else None
        member = self._member(actor)
        updates: dict[str, Any] = {}
        if member is not None:
            # Judged at the event's time, not now: an access replayed or arriving late is
            # weighed against the employment the actor had when it happened.
            updates["actor_employment_status"] = employment_status(
                member, event.time_generated.timestamp()
            )
        if event.patient_ref:
            self._explain(event, actor, member, updates)
        if not updates:
            return event
        stamped = event.model_copy(update=updates)
        stamped.__dict__.pop(_JSON_CACHE, None)
        return stamped

    def _member(self, actor: str | None) -> Member | None:
        if not self._members or actor is None:
            return None
        assert self._directory is not None
        return self._directory.member(actor)

    def _explain(
        self,
        event: AccessEvent,
        actor: str | None,
        member: Member | None,
        updates: dict[str, Any],
    ) -> None:
        facts: PatientFacts | None = None
        if self._patients:
            assert self._directory is not None and event.patient_ref is not None
            facts = self._directory.patient(event.patient_ref)
        app = event.acting_app_id.lower() if event.acting_app_id else None
        explanation: Explanation | None
        if facts is not None and actor is not None and actor in facts.care_team:
            explanation = "care-team"
        elif app is not None and app in self._allowed:
            explanation = "allowed-application"
        elif self._patients:
            # A patient the index does not hold is still a patient of a loaded index: no
            # care team is known to explain the access, and an index that lags the EHR by a
            # day must not make new patients' charts look explained.
            explanation = "unexplained"
        else:
            # No index: nothing could explain the access, and saying "unexplained" of every
            # access would only say the input is missing.
            explanation = None
        if explanation is not None:
            updates["access_explanation"] = explanation
        if facts is None:
            return
        updates["patient_restricted"] = facts.restricted
        # An explained access (care team, allow-listed integration) raises no relationship:
        # a nurse caring for her neighbour is doing her job.
        if explanation == "unexplained" and member is not None:
            found = relation(member, facts)
            if found is not None:
                updates["patient_relation"], updates["patient_relation_basis"] = found


def employment_status(member: Member, at: float) -> Status:
    """The actor's employment at epoch second `at`."""
    if is_terminated(member, at):
        return "terminated"
    # HR often marks a leaver terminated ahead of the date: until then they still work here.
    return "active" if member.status == "terminated" else member.status


def stamp(
    event: AccessEvent,
    directory: Directory | None,
    allow_applications: frozenset[str] = frozenset(),
) -> AccessEvent:
    """One event's stamps (an `Explainer` for one call)."""
    return Explainer(directory, allow_applications).stamp(event)
