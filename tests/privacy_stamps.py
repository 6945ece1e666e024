"""Events carrying the patient-privacy stamps, for the privacy rules' tests: the harness's
`access(...)` with what normalise would have stamped from the roster and the patient index
(the rules read only the stamps)."""

from __future__ import annotations

from typing import Any

from phiwatch.detect.testing import access
from phiwatch.model import AccessEvent

NURSE = "nora.nurse@contoso-health.org"
FHIR_SERVICE = (
    "/subscriptions/sub-1/resourcegroups/rg/providers/microsoft.healthcareapis/services/ehr"
)


def stamped(
    at: str,
    *,
    explanation: str | None = "unexplained",
    relation: str | None = None,
    basis: str | None = None,
    restricted: bool | None = None,
    status: str | None = None,
    **fields: Any,
) -> AccessEvent:
    """One access at `at` (ISO 8601 with an offset) by `actor` (default NURSE) to `patient`
    on the FHIR service, with the stamps given; other fields as `access` takes them."""
    fields.setdefault("actor", NURSE)
    fields.setdefault("target", FHIR_SERVICE)
    event = access(at, **fields)
    return event.model_copy(
        update={
            "access_explanation": explanation,
            "patient_relation": relation,
            "patient_relation_basis": basis,
            "patient_restricted": restricted,
            "actor_employment_status": status,
        }
    )
