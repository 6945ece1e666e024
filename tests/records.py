"""Builders for realistic diagnostic records (formats: shared/notes/azure-formats.md §2)."""

from __future__ import annotations

import json
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


EHR_APP_ID = "55555555-aaaa-4bbb-8ccc-000000000005"


def fhir_on_behalf(
    seconds: float = 0,
    *,
    headers: dict[str, str] | None = None,
    app_id: str = EHR_APP_ID,
    app_oid: str = "66666666-aaaa-4bbb-8ccc-000000000006",
    path: str = "Patient/123",
    interaction: str = "read",
    operation_prefix: str = "Microsoft.HealthcareApis/workspaces/fhirservices",
) -> dict[str, Any]:
    """An EHR application's own token (app id, no UPN) calling FHIR for a clinician, with
    the X-MS-AZUREFHIR-AUDIT-* headers in the property bag, where the service puts them."""
    record = fhir(seconds, path=path, interaction=interaction, oid=app_oid, upn=None)
    record["identity"]["claims"] |= {"appid": app_id, "idtyp": "app"}
    record["operationName"] = f"{operation_prefix}/{interaction}"
    if headers is None:
        headers = {
            "X-MS-AZUREFHIR-AUDIT-USERID": "77777777-aaaa-4bbb-8ccc-000000000007",
            "X-MS-AZUREFHIR-AUDIT-USERNAME": "carol.doctor@contoso-health.org",
            "X-MS-AZUREFHIR-AUDIT-PURPOSEOFUSE": "TREAT",
        }
    record["properties"] |= headers
    return record


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


TENANT = "9b1c7e2a-5555-4ddd-8eee-666677778888"
AADIAM_ID = f"/tenants/{TENANT}/providers/Microsoft.aadiam"


def signin(
    seconds: float = 0,
    *,
    category: str = "SignInLogs",
    result: str | None = "0",
    user_id: str = "55555555-aaaa-4bbb-8ccc-000000000005",
    upn: str = "carol.doctor@contoso-health.org",
    ip: str = "198.51.100.7",
    latitude: float | str | None = 47.6062,
    longitude: float | str | None = -122.3321,
    country: str = "US",
    city: str = "Seattle",
    asn: int | str | None = 8075,
    interactive: bool | str | None = True,
    risk_during: str = "none",
    risk_aggregated: str = "none",
    risk_state: str = "none",
    conditional_access: str = "success",
    requirement: str = "multiFactorAuthentication",
    methods: tuple[str, ...] = ("Password", "Mobile app notification"),
    app_id: str = "c44b4083-3bb0-49c1-b47d-974e53cbdf3c",
    app_name: str = "Azure Portal",
) -> dict[str, Any]:
    """A user sign-in (interactive or not), Event Hubs form (azure-formats.md §2f)."""
    code = int(result) if result is not None and result.lstrip("-").isdigit() else 0
    props: dict[str, Any] = {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"signin-{seconds}-{upn}")),
        "createdDateTime": at(seconds).isoformat(),
        "userDisplayName": "Carol Doctor",
        "userPrincipalName": upn,
        "userId": user_id,
        "userType": "Member",
        "appId": app_id,
        "appDisplayName": app_name,
        "ipAddress": ip,
        "clientAppUsed": "Browser",
        "userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
        "correlationId": f"corr-signin-{seconds}",
        "conditionalAccessStatus": conditional_access,
        "authenticationRequirement": requirement,
        "authenticationDetails": [
            {"authenticationMethod": m, "succeeded": code == 0} for m in methods
        ],
        "status": {"errorCode": code, "failureReason": "Invalid username or password."}
        if code
        else {"errorCode": 0},
        "riskLevelDuringSignIn": risk_during,
        "riskLevelAggregated": risk_aggregated,
        "riskState": risk_state,
        "riskDetail": "none",
        "location": {
            "city": city,
            "state": "Washington",
            "countryOrRegion": country,
            "geoCoordinates": {"latitude": latitude, "longitude": longitude},
        },
        "resourceDisplayName": "Windows Azure Service Management API",
        "resourceId": "797f4846-ba00-4fd7-ba43-dac1f8f63013",
    }
    if interactive is not None:
        props["isInteractive"] = interactive
    if asn is not None:
        props["autonomousSystemNumber"] = asn
    record: dict[str, Any] = {
        "time": iso(at(seconds)),
        "resourceId": AADIAM_ID,
        "operationName": "Sign-in activity",
        "operationVersion": "1.0",
        "category": category,
        "tenantId": TENANT,
        "resultSignature": "None",
        "resultDescription": "Invalid username or password." if code else "",
        "durationMs": 0,
        "callerIpAddress": ip,
        "correlationId": f"corr-signin-{seconds}",
        "identity": "Carol Doctor",
        "Level": 4,
        "location": country,
        "properties": props,
    }
    if result is not None:
        record["resultType"] = result
    return record


def workload_signin(
    seconds: float = 0,
    *,
    category: str = "ServicePrincipalSignInLogs",
    result: str = "0",
    principal_id: str = "66666666-aaaa-4bbb-8ccc-000000000006",
    app_id: str = "77777777-aaaa-4bbb-8ccc-000000000007",
    principal_name: str = "ehr-integration",
    ip: str = "20.50.1.2",
) -> dict[str, Any]:
    """A service principal or managed identity sign-in (no user; `userId` null)."""
    return {
        "time": iso(at(seconds)),
        "resourceId": AADIAM_ID,
        "operationName": "Sign-in activity",
        "operationVersion": "1.0",
        "category": category,
        "tenantId": TENANT,
        "resultType": result,
        "resultSignature": "None",
        "durationMs": 0,
        "callerIpAddress": ip,
        "correlationId": f"corr-wsignin-{seconds}",
        "Level": 4,
        "location": "US",
        "properties": {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"wsignin-{seconds}-{principal_id}")),
            "createdDateTime": at(seconds).isoformat(),
            "userId": None,
            "appId": app_id,
            "ipAddress": ip,
            "status": {"errorCode": int(result)},
            "location": {
                "city": "",
                "state": "",
                "countryOrRegion": "",
                "geoCoordinates": {"latitude": 0.0, "longitude": 0.0},
            },
            "conditionalAccessStatus": "notApplied",
            "isInteractive": False,
            "riskLevelAggregated": "low",
            "riskLevelDuringSignIn": "low",
            "riskState": "none",
            "resourceDisplayName": "Azure Key Vault",
            "resourceId": "cfa8b339-82a2-471a-a3c9-0fc0be7a4093",
            "servicePrincipalName": principal_name,
            "servicePrincipalId": principal_id,
        },
    }


GLOBAL_ADMIN_TEMPLATE = "62e90394-69f5-4237-9190-012177145e10"


def entra_audit(
    seconds: float = 0,
    *,
    activity: str = "Add member to role",
    category: str = "RoleManagement",
    service: str = "Core Directory",
    operation_type: str = "Assign",
    result: str = "success",
    actor_upn: str | None = "mallory.admin@contoso-health.org",
    actor_id: str = "44444444-aaaa-4bbb-8ccc-000000000004",
    app_name: str | None = None,
    target_id: str = "55555555-aaaa-4bbb-8ccc-000000000005",
    target_upn: str = "carol.doctor@contoso-health.org",
    role: str = "Global Administrator",
    role_template: str = GLOBAL_ADMIN_TEMPLATE,
    extra_properties: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """An Entra directory audit record (role assignment by default), Event Hubs form."""
    if app_name is not None:
        initiated: dict[str, Any] = {
            "app": {
                "appId": None,
                "displayName": app_name,
                "servicePrincipalId": "88888888-aaaa-4bbb-8ccc-000000000008",
                "servicePrincipalName": None,
            }
        }
    else:
        initiated = {
            "user": {
                "id": actor_id,
                "displayName": None,
                "userPrincipalName": actor_upn,
                "ipAddress": "203.0.113.50",
            }
        }
    modified = [
        {"displayName": "Role.ObjectID", "oldValue": None, "newValue": '"d7f1e2a0-role-obj"'},
        {"displayName": "Role.DisplayName", "oldValue": None, "newValue": json.dumps(role)},
        {"displayName": "Role.TemplateId", "oldValue": None, "newValue": json.dumps(role_template)},
        {"displayName": "Role.WellKnownObjectName", "oldValue": None, "newValue": '"TenantAdmins"'},
        *(extra_properties or []),
    ]
    return {
        "time": iso(at(seconds)),
        "resourceId": AADIAM_ID,
        "operationName": activity,
        "operationVersion": "1.0",
        "category": "AuditLogs",
        "tenantId": TENANT,
        "resultSignature": "None",
        "durationMs": 0,
        "callerIpAddress": "203.0.113.50",
        "correlationId": f"corr-aad-{seconds}",
        "identity": app_name or "Mallory Admin",
        "Level": 4,
        "properties": {
            "id": f"Directory_corr-aad-{seconds}",
            "category": category,
            "correlationId": f"corr-aad-{seconds}",
            "result": result,
            "resultReason": "",
            "activityDisplayName": activity,
            "activityDateTime": at(seconds).isoformat(),
            "loggedByService": service,
            "operationType": operation_type,
            "initiatedBy": initiated,
            "targetResources": [
                {
                    "id": target_id,
                    "displayName": None,
                    "type": "User",
                    "userPrincipalName": target_upn,
                    "modifiedProperties": modified,
                    "administrativeUnits": [],
                },
                {"id": "d7f1e2a0-role-obj", "displayName": role, "type": "Role"},
            ],
            "additionalDetails": [],
        },
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
        # The metric's outcome follows the status text: a record without either says neither.
        del record["statusText"], record["properties"]["metricResponseType"]
    return record
