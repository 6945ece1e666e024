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


STORAGE_OID = "55555555-aaaa-4bbb-8ccc-000000000005"
STORAGE_APP = "66666666-aaaa-4bbb-8ccc-000000000006"
KEY_HASH = "key1(5RTE343A6FEB12342672AFD40072B70D4A91BGH5CDF797EC56BF82B2C3635CE)"
SAS_HASH = KEY_HASH.replace("5RTE", "0A0X") + (
    ",SasSignature(04D64C2B3A704145C9F1664F201123467A74D72DA72751A9137DDAA732FA03CF)"
)


def storage_category(operation: str) -> str:
    if operation.startswith(("Get", "List", "Query", "Find")) or operation == "CopyBlobSource":
        return "StorageRead"
    return "StorageDelete" if operation.startswith("Delete") else "StorageWrite"


def storage(
    seconds: float = 0,
    *,
    operation: str = "GetBlob",
    status: int | str | None = 200,
    status_text: str | None = "Success",
    auth: str = "OAuth",
    object_key: str = "/stphi01/discharge/MRN123/summary.pdf",
    oid: str | None = STORAGE_OID,
    upn: str | None = "carol.clerk@contoso-health.org",
    appid: str | None = STORAGE_APP,
    token_hash: str | None = None,
    ip: str = "10.3.4.5:50123",
    response_bytes: int | str | None = 2018,
    user_agent: str = "azsdk-python-storage-blob/12.19.0 Python/3.11.9 (Linux)",
) -> dict[str, Any]:
    """A blob service record in the Event Hubs form (monitor-blob-storage-reference): OAuth
    with a requester, SAS and AccountKey with only a token hash, Anonymous with neither."""
    identity: dict[str, Any] = {"type": auth}
    if auth == "OAuth":
        requester: dict[str, Any] = {
            "audience": "https://storage.azure.com/",
            "tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "tokenIssuer": "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/",
        }
        if appid:
            requester["appId"] = appid
        if oid:
            requester["objectId"] = oid
        if upn:
            requester["upn"] = upn
        identity["requester"] = requester
        identity["tokenHash"] = (
            token_hash or "B3CC9D5C64B3351573D806751312317FE4E910877E7CBAFA9D95E0BE923DD25C"
        )
        identity["authorization"] = [
            {
                "action": "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
                "principals": [{"id": oid, "type": "User" if upn else "ServicePrincipal"}],
                "reason": "Policy",
                "result": "Granted",
                "roleAssignmentId": "ecf75cb8-491c-4a25-ad6e-15e6a1f0e4c1",
                "roleDefinitionId": "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
                "type": "RBAC",
            }
        ]
    elif auth == "SAS":
        identity["tokenHash"] = token_hash or SAS_HASH
    elif auth == "AccountKey":
        identity["tokenHash"] = token_hash or KEY_HASH
    account, _, rest = object_key.strip("/").partition("/")
    path = "/" + rest
    record: dict[str, Any] = {
        "time": iso(at(seconds)),
        "resourceId": STORAGE_ID + "/BLOBSERVICES/DEFAULT",
        "category": storage_category(operation),
        "operationName": operation,
        "operationVersion": "2023-11-03",
        "schemaVersion": "1.0",
        "statusCode": status,
        "statusText": status_text,
        "durationMs": 12,
        "callerIpAddress": ip,
        "correlationId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"st{seconds}{operation}")),
        "location": "westeurope",
        # The request URL names the blob too (a SAS's signature redacted, `sp`/`se` kept).
        "uri": f"https://{account}.blob.core.windows.net{path}?sv=2023-11-03&sp=r&sig=XXXXX",
        "protocol": "HTTPS",
        "resourceType": "Microsoft.Storage/storageAccounts/blobServices",
        "identity": identity,
        "properties": {
            "accountName": account,
            "userAgentHeader": user_agent,
            "serviceType": "blob",
            "objectKey": object_key,
            "metricResponseType": "Success" if status_text == "Success" else "ClientOtherError",
            "serverLatencyMs": 9,
            "requestHeaderSize": 1523,
            "responseHeaderSize": 380,
            "responseBodySize": response_bytes,
            "tlsVersion": "TLS 1.2",
            "accessTier": "Hot",
        },
    }
    if status is None:
        del record["statusCode"]
    if status_text is None:
        del record["statusText"]
    return record
