"""FHIR service `AuditLogs` (Azure API for FHIR and the Health Data Services FHIR service)."""

from __future__ import annotations

from phiwatch.model import AccessEvent, EventType
from phiwatch.sources.base import NormaliseContext, actor_fields, skip_if_non_terminal
from phiwatch.sources.fhir_uri import parse_fhir_uri, redacted_object, resource_type_name
from phiwatch.sources.fields import event_result, subscription_of, to_int, to_str
from phiwatch.sources.phi_category import phi_category
from phiwatch.sources.record import Record

name = "fhir"
PRODUCT = "FHIR Service"
# Data plane: who read or used what; its detections group by the actor.
PLANE = "data"

_READS = {"read", "vread", "history", "history-type", "history-instance", "history-system"}
_TYPES: dict[str, EventType] = {
    "create": "Create",
    "update": "Set",
    "patch": "Set",
    "delete": "Delete",
    "conditional-delete": "Delete",
    "batch": "Execute",
    "transaction": "Execute",
}


def matches(record: Record) -> bool:
    return (
        record.category.lower() == "auditlogs"
        and "/providers/microsoft.healthcareapis/" in record.resource_id
    )


def _event_type(interaction: str) -> EventType:
    if interaction in _READS or interaction.startswith(("search", "$", "capabilities")):
        return "Read"
    return _TYPES.get(interaction, "Other")


def normalise(record: Record, ctx: NormaliseContext) -> list[AccessEvent]:
    result_type = record.text("resulttype")
    skip_if_non_terminal(result_type)
    props = record.properties()
    time = record.time()
    status = to_int(record.get("resultsignature"))
    if status is None:
        status = to_int(props.get("statusCode") or props.get("StatusCode"))
    result = event_result(result_type, status)
    uri = record.text("uri", "requesturi") or to_str(props.get("requestUri") or props.get("uri"))
    parsed = parse_fhir_uri(uri or "")
    resource_type = (
        resource_type_name(to_str(props.get("fhirResourceType"))) or parsed.resource_type
    )
    interaction = record.operation_name.rsplit("/", 1)[-1].lower() or "unknown"
    resource_id = record.resource_id
    namespace = resource_id or "unknown-fhir-service"

    def ref(patient_id: str) -> str:
        return ctx.pseudonymizer.patient_ref(namespace, patient_id)

    patient_refs: list[str | None] = [ref(p) for p in parsed.patient_ids] or [None]
    common = ctx.redacted(
        {
            "time_generated": time,
            "event_original_uid": record.text("correlationid"),
            "event_type": _event_type(interaction),
            "event_sub_type": interaction,
            "event_result": result,
            "event_result_details": str(status) if status is not None else result_type,
            "event_product": PRODUCT,
            "operation": record.operation_name or interaction,
            "object": redacted_object(parsed, ref) or resource_type,
            "object_type": "Other",
            "src_ip_addr": record.caller_ip(),
            "http_user_agent": to_str(props.get("userAgent") or props.get("UserAgent")),
            "target_resource_id": resource_id or None,
            "dvc_scope_id": subscription_of(resource_id),
            "record_count": 1 if interaction in {"read", "vread"} and result == "Success" else None,
            "phi_category": phi_category(resource_type, parsed.patient_ids != ()),
            "source_category": "AuditLogs",
            "raw_record_ref": ctx.raw_record_ref,
            **actor_fields(record.claims()),
        }
    )
    # One event per patient named: a search over `_id=a,b,c` is three patients' records,
    # and counting it as one would let a bulk lookup slip under the distinct-patient rule.
    return [
        AccessEvent(
            event_uid=record.uid if i == 0 else f"{record.uid}-{i}",
            patient_ref=patient,
            **common,
        )
        for i, patient in enumerate(patient_refs)
    ]
