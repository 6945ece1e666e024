"""PHI category of a FHIR resource type (minimum-necessary reporting)."""

from __future__ import annotations

from phiwatch.model import PhiCategory

_DEMOGRAPHIC = {"Patient", "RelatedPerson", "Person"}
_FINANCIAL = {
    "Account",
    "ChargeItem",
    "Claim",
    "ClaimResponse",
    "Coverage",
    "CoverageEligibilityRequest",
    "CoverageEligibilityResponse",
    "ExplanationOfBenefit",
    "Invoice",
    "PaymentNotice",
    "PaymentReconciliation",
}
# Definitional and administrative resources that hold no one's health information.
_NONE = {
    "CapabilityStatement",
    "CodeSystem",
    "ConceptMap",
    "Endpoint",
    "HealthcareService",
    "Location",
    "Medication",
    "metadata",
    "Organization",
    "OperationDefinition",
    "Practitioner",
    "PractitionerRole",
    "SearchParameter",
    "StructureDefinition",
    "Subscription",
    "ValueSet",
}


def phi_category(resource_type: str | None, has_patient: bool) -> PhiCategory:
    if resource_type in _DEMOGRAPHIC:
        return "demographic"
    if resource_type in _FINANCIAL:
        return "financial"
    if resource_type in _NONE:
        return "none"
    if resource_type is None:
        return "clinical" if has_patient else "none"
    # Any other FHIR resource (Observation, Condition, Encounter, ...) is clinical data.
    return "clinical"
