"""What every source normaliser gets and shares."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

from phiwatch.model import AccessEvent
from phiwatch.pseudonym import Pseudonymizer
from phiwatch.sources.record import Claims, Record, RecordSkipped
from phiwatch.sources.verbatim import redact_verbatim

NON_TERMINAL_RESULTS = frozenset({"start", "started", "accept", "accepted", "in progress"})


@dataclass(slots=True, frozen=True)
class NormaliseContext:
    pseudonymizer: Pseudonymizer
    raw_record_ref: str
    # Storage blob logs (phiwatch/sources/storage.py): PHIWATCH_STORAGE_PATIENT_PATTERNS
    # compiled, PHIWATCH_STORAGE_PHI_CONTAINERS as (account, container prefix) pairs.
    storage_patient_patterns: tuple[re.Pattern[str], ...] = ()
    storage_phi_containers: tuple[tuple[str, str], ...] = ()

    def redacted(self, fields: dict[str, Any]) -> dict[str, Any]:
        """AccessEvent keyword arguments with the text copied from the wire redacted
        (phiwatch.sources.verbatim): every normaliser builds its events through this."""
        return redact_verbatim(fields, self.pseudonymizer.redact_identifiers)


class SourceNormaliser(Protocol):
    """One per file in `phiwatch/sources/`; the registry asks each in turn."""

    name: str
    PRODUCT: str  # the EventProduct of every event it makes
    PLANE: str  # "data" or "control": which rules see its events (phiwatch.phievents.routing)

    def matches(self, record: Record) -> bool: ...

    def normalise(self, record: Record, ctx: NormaliseContext) -> list[AccessEvent]: ...


def skip_if_non_terminal(result_type: str | None) -> None:
    """Start/Started (and Accept) precede the terminal record: only that one is an access."""
    if result_type and result_type.lower() in NON_TERMINAL_RESULTS:
        raise RecordSkipped("non-terminal", f"non-terminal '{result_type}' record")


def actor_fields(claims: Claims) -> dict[str, Any]:
    return {
        "actor_user_id": claims.object_id,
        "actor_username": claims.upn,
        "actor_user_type": claims.user_type,
        "acting_app_id": claims.app_id,
    }
