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


SQL_SERVER_ID = (
    f"/SUBSCRIPTIONS/{SUB.upper()}/RESOURCEGROUPS/RG-PHI/PROVIDERS/MICROSOFT.SQL/SERVERS/SQL-PHI"
)
SQL_DB_ID = SQL_SERVER_ID + "/DATABASES/EHR"
# The documented full form (MicrosoftDocs learn, "Secure your data"), with a Health type added.
SQL_SENSITIVITY_FULL = (
    '<sensitivity_attributes max_rank="30" max_rank_desc="High">'
    '<sensitivity_attribute label="Confidential - GDPR" label_id="bf91e08c-f4f0-478a-b016-'
    '23422b2a65ff" information_type="Name" information_type_id="57845286-7598-22f5-3422-'
    '15b24aeb125e" rank="20" rank_desc="Medium"/>'
    '<sensitivity_attribute label="Highly Confidential" label_id="b82ce05b-60a9-4cf3-8a8a-'
    'd6a0bb76e903" information_type="Health" information_type_id="6e2c5b18-97d2-46db-a220-'
    'da43b90cb117" rank="30" rank_desc="High"/>'
    "</sensitivity_attributes>"
)
SQL_SENSITIVITY_SHORT = (
    "<sensitivity_attributes>"
    '<sensitivity_attribute label="Confidential" information_type="Financial"/>'
    "</sensitivity_attributes>"
)


def sql(
    seconds: float = 0,
    *,
    action: str = "BCM",
    action_name: str = "BATCH COMPLETED",
    statement: str = "SELECT mrn, name FROM dbo.patients WHERE ward = 'ICU'",
    succeeded: Any = "true",
    principal: str | None = "alice.nurse@contoso-health.org",
    database_principal: str = "alice.nurse@contoso-health.org",
    client_ip: str = "10.40.1.7",
    application_name: str = "Microsoft SQL Server Management Studio - Query",
    host_name: str = "WKS-NURSE-12",
    database: str = "ehr",
    resource_id: str = SQL_DB_ID,
    response_rows: Any = 42,
    affected_rows: Any = 0,
    sensitivity: str = SQL_SENSITIVITY_FULL,
    additional_information: str = "",
    sequence_number: Any = 1,
) -> dict[str, Any]:
    """A `SQLSecurityAuditEvents` record as diagnostic settings stream it (audit-log-format:
    snake_case properties, `succeeded` a string, `originalEventTimestamp` beside `time`)."""
    when = iso(at(seconds))
    props: dict[str, Any] = {
        "audit_schema_version": 1,
        "event_time": when,
        "sequence_number": sequence_number,
        "action_id": action,
        "action_name": action_name,
        "succeeded": succeeded,
        "is_column_permission": "false",
        "session_id": 71,
        "server_principal_id": 1,
        "database_principal_id": 5,
        "target_server_principal_id": 0,
        "target_database_principal_id": 0,
        "object_id": 0,
        "class_type": "DB",
        "class_type_description": "DATABASE",
        "securable_class_type": "DATABASE",
        "duration_milliseconds": 12,
        "response_rows": response_rows,
        "affected_rows": affected_rows,
        "client_ip": client_ip,
        "permission_bitmask": "00000000000000000000000000000000",
        "sequence_group_id": f"5d3e8a1c-0000-4000-8000-{int(seconds):012d}",
        "session_server_principal_name": principal or "",
        "server_principal_name": principal or "",
        "server_principal_sid": "0x0106000000000064000000000000000011223344",
        "database_principal_name": database_principal,
        "server_instance_name": "sql-phi",
        "database_name": database,
        "schema_name": "",
        "object_name": "",
        "statement": statement,
        "additional_information": additional_information,
        "user_defined_information": "",
        "application_name": application_name,
        "connection_id": "9b1c2d3e-4f50-4a6b-8c7d-0e1f2a3b4c5d",
        "data_sensitivity_information": sensitivity,
        "host_name": host_name,
        "session_context": "",
        "client_tls_version": 0,
        "is_server_level_audit": "false",
    }
    return {
        "originalEventTimestamp": when,
        "time": when,
        "resourceId": resource_id,
        "category": "SQLSecurityAuditEvents",
        "operationName": "AuditEvent",
        "properties": props,
    }


def sql_failed_login(seconds: float = 0, **overrides: Any) -> dict[str, Any]:
    """`DBAF`: a failed database authentication, error 18456 in additional_information."""
    fields: dict[str, Any] = {
        "action": "DBAF",
        "action_name": "DATABASE AUTHENTICATION FAILED",
        "statement": "",
        "succeeded": "false",
        "principal": "sqladmin",
        "database_principal": "",
        "response_rows": 0,
        "sensitivity": "",
        "additional_information": (
            "<login_information><error_code>18456</error_code><error_state>8</error_state>"
            "</login_information>"
        ),
    }
    fields.update(overrides)
    return sql(seconds, **fields)
