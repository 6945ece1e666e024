"""Source normalisers, one per file, and the routing of a record to its normaliser."""

from __future__ import annotations

from phiwatch.sources import activity, canary, entra_audit, fhir, keyvault, signins, sql, storage
from phiwatch.sources.base import NormaliseContext, SourceNormaliser
from phiwatch.sources.record import (
    Record,
    RecordRejected,
    RecordSkipped,
    diagnostic_shape_problem,
)

# Order matters only where two could match: Entra's directory AuditLogs share FHIR's
# category, so the strict entra_audit is asked before fhir.
NORMALISERS: tuple[SourceNormaliser, ...] = (
    keyvault,
    entra_audit,
    fhir,
    activity,
    signins,
    sql,
    storage,
)

__all__ = [
    "NORMALISERS",
    "NormaliseContext",
    "Record",
    "RecordRejected",
    "RecordSkipped",
    "route",
]


# Lower-cased category → the normalisers that may match it, in NORMALISERS order. A source
# declaring MATCH_CATEGORIES is asked only for those; one without is asked for every record.
# Bounded: categories come from the wire.
_CANDIDATES: dict[str, tuple[SourceNormaliser, ...]] = {}
_MAX_CANDIDATE_ENTRIES = 256


def _candidates(category: str) -> tuple[SourceNormaliser, ...]:
    found = _CANDIDATES.get(category)
    if found is None:
        found = tuple(
            n
            for n in NORMALISERS
            if category in getattr(n, "MATCH_CATEGORIES", frozenset({category}))
        )
        if len(_CANDIDATES) >= _MAX_CANDIDATE_ENTRIES:
            _CANDIDATES.clear()
        _CANDIDATES[category] = found
    return found


def route(record: Record) -> SourceNormaliser:
    """The normaliser for a record; raises Skipped/Rejected when there is none."""
    canary.skip_if_canary(record)  # a deployment check, counted, never normalised
    if (problem := diagnostic_shape_problem(record)) is not None:
        raise RecordRejected("not-diagnostic-shape", problem)
    for normaliser in _candidates(record.category_lower):
        if normaliser.matches(record):
            return normaliser
    category = record.category
    if not category:
        raise RecordRejected("no-category", "record has no category")
    if category.lower() in activity.UNMONITORED_CATEGORIES:
        raise RecordSkipped(
            "category-not-monitored", f"activity log category '{category}' is not monitored"
        )
    provider = _provider(record.resource_id)
    raise RecordRejected(
        "unknown-category",
        f"no normaliser for category '{category}'" + (f" from {provider}" if provider else ""),
    )


def _provider(resource_id: str) -> str | None:
    parts = resource_id.split("/providers/")
    if len(parts) < 2:
        return None
    return "/".join(parts[-1].split("/")[:2]) or None
