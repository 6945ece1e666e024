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
from phiwatch.sources.verbatim import JSON_FIELDS, VERBATIM, redact_json

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

# What `NormaliseContext.redacted` does to each field it may touch: bits of these.
_CLEAN, _VERBATIM, _JSON = 1, 2, 4
_TREATMENT: dict[str, int] = {}
for _name in IDENTITY_FIELDS:
    _TREATMENT[_name] = _CLEAN
for _name in VERBATIM:
    _TREATMENT[_name] = (
        _TREATMENT.get(_name, 0) | _VERBATIM | (_JSON if _name in JSON_FIELDS else 0)
    )
del _name
_TREATED = frozenset(_TREATMENT)


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
        normaliser builds its events through this, so no source can forget either.

        One pass over the fields given that the tables name (what `redact_verbatim` after
        the cleaning does, field by field), not one lookup per name of the two tables: this
        runs per event."""
        redact = self.pseudonymizer.redact_identifiers
        # Only the names present that a table names (a set operation in C), each once.
        for name in _TREATED.intersection(fields):
            value = fields[name]
            if value is None:
                continue
            how = _TREATMENT[name]
            if isinstance(value, str):
                text = value
                if how & _CLEAN:
                    # clean_identity's fast path inlined: most names print as they are.
                    cleaned = (
                        (value.strip() or None) if value.isprintable() else clean_identity(value)
                    )
                    if cleaned is None or not how & _VERBATIM:
                        fields[name] = cleaned
                        continue
                    text = cleaned
                if how & _JSON:
                    fields[name] = redact_json(text, redact)
                elif how & _VERBATIM:
                    fields[name] = redact(text)
            elif how & _VERBATIM and isinstance(value, list):
                fields[name] = [redact(v) if isinstance(v, str) else v for v in value]
        return fields


class SourceNormaliser(Protocol):
    """One per file in `phiwatch/sources/`; the registry asks each in turn.

    A source may also declare `MATCH_CATEGORIES`, the lower-cased categories outside which
    `matches` is always False: routing then asks it only for records of those
    (phiwatch/sources/__init__.py; tests/test_sources_registry.py holds the promise). A
    source without it is asked for every record. Events are built with
    `phiwatch.model.build_event` from the fields `redacted` returns."""

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
    fields = claims.actor_memo
    if fields is None:
        # Claims are shared by every record of one caller (Claims.of): derive them once.
        fields = claims.actor_memo = {
            "actor_user_id": clean_identity(claims.object_id),
            "actor_username": clean_identity(claims.upn),
            "actor_user_type": claims.user_type,
            "acting_app_id": clean_identity(claims.app_id),
        }
    return dict(fields)  # the caller's to change
