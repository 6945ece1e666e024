"""Builders for realistic diagnostic records (formats: shared/notes/azure-formats.md §2)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

SUB = "0f3c2a10-1111-4aaa-8bbb-222233334444"
KV_ID = (
    f"/SUBSCRIPTIONS/{SUB.upper()}/RESOURCEGROUPS/RG-PHI/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/KV-PHI"
)
FHIR_ID = (
    f"/SUBSCRIPTIONS/{SUB.upper()}/RESOURCEGROUPS/RG-PHI/PROVIDERS/"
    "MICROSOFT.HEALTHCAREAPIS/SERVICES/FHIR-PROD"
)
STORAGE_ID = (
    f"/SUBSCRIPTIONS/{SUB.upper()}/RESOURCEGROUPS/RG-PHI/PROVIDERS/"
    "MICROSOFT.STORAGE/STORAGEACCOUNTS/STPHI01"
)
T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)

OID_LONG = "http://schemas.microsoft.com/identity/claims/objectidentifier"
UPN_LONG = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"  # Azure's 7 fractional digits


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def keyvault(
    seconds: float = 0,
    *,
    operation: str = "SecretGet",
    status: int | str = 200,
    oid: str | None = "11111111-aaaa-4bbb-8ccc-000000000001",
    appid: str = "22222222-aaaa-4bbb-8ccc-000000000002",
    upn: str | None = None,
    long_claims: bool = False,
    ip: str = "10.1.2.3",
    secret: str = "fhir-client-secret",
    vault_id: str = KV_ID,
) -> dict[str, Any]:
    claim: dict[str, Any] = {"appid": appid}
    if oid:
        claim[OID_LONG if long_claims else "oid"] = oid
    if upn:
        claim[UPN_LONG if long_claims else "upn"] = upn
    code = int(status)
    return {
        "time": iso(at(seconds)),
        "resourceId": vault_id,
        "operationName": operation,
        "operationVersion": "7.4",
        "category": "AuditEvent",
        "resultType": "Success",
        "resultSignature": "OK" if code < 300 else "Forbidden",
        "resultDescription": "",
        "durationMs": "78",
        "callerIpAddress": ip,
        "correlationId": f"corr-kv-{seconds}-{operation}",
        "identity": {"claim": claim},
        "properties": {
            "id": f"https://kv-phi.vault.azure.net/secrets/{secret}",
            "clientInfo": "azsdk-python-keyvault-secrets/4.8.0",
            "requestUri": f"https://kv-phi.vault.azure.net/secrets/{secret}?api-version=7.4",
            "httpStatusCode": status,
        },
    }


def fhir(
    seconds: float = 0,
    *,
    path: str = "Patient/123",
    result: str = "Succeeded",
    status: int | str = 200,
    interaction: str = "read",
    oid: str = "33333333-aaaa-4bbb-8ccc-000000000003",
    upn: str | None = "alice.nurse@contoso-health.org",
    ip: str = "10.20.30.40",
    resource_type: str | None = None,
    correlation: str | None = None,
    time_text: str | None = None,
) -> dict[str, Any]:
    claims: dict[str, Any] = {"iss": "https://sts.windows.net/tid/", "oid": oid}
    if upn:
        claims["upn"] = upn
    uri = f"https://fhir-prod.azurehealthcareapis.com/{path}"
    typed = [s for s in path.split("?", maxsplit=1)[0].split("/") if s[:1].isupper()]
    rtype = resource_type or (typed[-1] if typed else None)
    return {
        "time": time_text or at(seconds).strftime("%Y-%m-%d %H:%M:%SZ"),
        "resourceId": FHIR_ID,
        "operationName": f"Microsoft.HealthcareApis/services/fhir-R4/{interaction}",
        "category": "AuditLogs",
        "resultType": result,
        "resultSignature": status,
        "durationMs": 5,
        "callerIpAddress": ip,
        "correlationId": correlation or str(uuid.uuid5(uuid.NAMESPACE_URL, f"{seconds}{path}")),
        "identity": {"claims": claims},
        "location": "westeurope",
        "uri": uri,
        "properties": {"fhirResourceType": rtype, "requestUri": uri},
    }


def activity(
    seconds: float = 0,
    *,
    operation: str = "MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/DELETE",
    resource_id: str = KV_ID + "/PROVIDERS/MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/TO-HUB",
    result: str = "Success",
    category: str = "Administrative",
    event_category: str = "Administrative",
    oid: str = "44444444-aaaa-4bbb-8ccc-000000000004",
    upn: str = "mallory.admin@contoso-health.org",
    request_body: str | None = None,
    status_code: str = "OK",
) -> dict[str, Any]:
    props: dict[str, Any] = {
        "statusCode": status_code,
        "serviceRequestId": "req-1",
        "eventCategory": event_category,
        "entity": resource_id,
        "message": operation.lower(),
    }
    if request_body is not None:
        props["requestbody"] = request_body
    return {
        "time": iso(at(seconds)),
        "resourceId": resource_id,
        "operationName": operation,
        "category": category,
        "resultType": result,
        "resultSignature": "Succeeded." if result == "Success" else "Started.",
        "callerIpAddress": "203.0.113.9",
        "correlationId": f"corr-act-{seconds}-{operation}",
        "durationMs": 0,
        "level": "Informational",
        "location": "global",
        "identity": {
            "authorization": {
                "scope": resource_id,
                "action": operation,
                "evidence": {"role": "Owner", "principalType": "User"},
            },
            "claims": {
                OID_LONG: oid,
                UPN_LONG: upn,
                "appid": "c44b4083-3bb0-49c1-b47d-974e53cbdf3c",
            },
        },
        "properties": props,
    }


def activity_export(seconds: float = 0) -> dict[str, Any]:
    """One event of the portal/REST Activity Log export (`az monitor activity-log list`): not
    the diagnostic-settings shape (`{value, localizedValue}` objects, `eventTimestamp`)."""
    operation = "Microsoft.Insights/diagnosticSettings/delete"
    resource_id = KV_ID + "/providers/microsoft.insights/diagnosticSettings/to-hub"
    return {
        "authorization": {"action": operation, "scope": resource_id},
        "caller": "mallory.admin@contoso-health.org",
        "category": {"value": "Administrative", "localizedValue": "Administrative"},
        "claims": {UPN_LONG: "mallory.admin@contoso-health.org"},
        "correlationId": f"corr-export-{seconds}",
        "eventDataId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"export{seconds}")),
        "eventName": {"value": "EndRequest", "localizedValue": "End request"},
        "eventTimestamp": iso(at(seconds)),
        "submissionTimestamp": iso(at(seconds + 12)),
        "id": resource_id + "/events/1",
        "level": "Informational",
        "operationName": {"value": operation, "localizedValue": "Delete diagnostic setting"},
        "resourceId": resource_id,
        "status": {"value": "Succeeded", "localizedValue": "Succeeded"},
        "subStatus": {"value": "", "localizedValue": ""},
        "subscriptionId": SUB,
        "properties": {"statusCode": "OK", "eventCategory": "Administrative"},
    }
