"""What every source normaliser gets and shares."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

from phiwatch.model import AccessEvent
from phiwatch.pseudonym import Pseudonymizer
from phiwatch.sources.activity_changes import StartBuffer
from phiwatch.sources.fields import clean_identity
from phiwatch.sources.record import Claims, Record, RecordSkipped
from phiwatch.sources.verbatim import redact_verbatim

NON_TERMINAL_RESULTS = frozenset({"start", "started", "accept", "accepted", "in progress"})


# Names, UPNs, ids and places an analyst reads (and alert titles quote): no control or
# bidirectional-override character may reach them, from any source.
IDENTITY_FIELDS = (
    "actor_user_id",
    "actor_username",
    "acting_app_id",
    "acting_app_name",
    "claimed_user_id",
    "claimed_username",
    "target_user_id",
    "target_username",
    "target_app_id",
    "target_app_name",
    "src_geo_country",
    "src_geo_region",
    "src_geo_city",
)


@dataclass(slots=True, frozen=True)
class NormaliseContext:
    pseudonymizer: Pseudonymizer
    raw_record_ref: str
    # Pipeline state the Activity Log normaliser carries from a write's Start record to its
    # terminal record (sources/activity_changes.py); None: each record stands alone.
    changes: StartBuffer | None = None
    # Application ids (lower case) whose FHIR audit headers name the actor
    # (PHIWATCH_FHIR_TRUSTED_AUDIT_APPS, phiwatch/sources/fhir.py).
    fhir_trusted_audit_apps: frozenset[str] = frozenset()
    # Storage blob logs (phiwatch/sources/storage.py): PHIWATCH_STORAGE_PATIENT_PATTERNS
    # compiled, PHIWATCH_STORAGE_PHI_CONTAINERS as (account, container prefix) pairs.
    storage_patient_patterns: tuple[re.Pattern[str], ...] = ()
    storage_phi_containers: tuple[tuple[str, str], ...] = ()

    def redacted(self, fields: dict[str, Any]) -> dict[str, Any]:
        """AccessEvent keyword arguments with the text copied from the wire redacted
        (phiwatch.sources.verbatim) and every identity cleaned (`clean_identity`): every
        normaliser builds its events through this, so no source can forget either."""
        for name in IDENTITY_FIELDS:
            value = fields.get(name)
            if isinstance(value, str):
                fields[name] = clean_identity(value)
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
    """The caller's identity fields, every text through `clean_identity` (no bidi overrides
    or controls in a name an alert title shows)."""
    return {
        "actor_user_id": clean_identity(claims.object_id),
        "actor_username": clean_identity(claims.upn),
        "actor_user_type": claims.user_type,
        "acting_app_id": clean_identity(claims.app_id),
    }
