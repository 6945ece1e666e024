"""Activity Log (Administrative, Policy) records as a subscription diagnostic setting ships them."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from .clock import iso7
from .emitted import Emitted
from .ids import new_uuid
from .population import Actor, ArmResource, Population

DIAG_NAME = "phiwatch-eventhub"
EVENTHUB_RULE = (
    "/subscriptions/{sub}/resourceGroups/rg-security-ops/providers/Microsoft.EventHub/"
    "namespaces/evhns-phiwatch/authorizationRules/RootManageSharedAccessKey"
)

POLICY_DEFS = "Microsoft.Authorization/policyDefinitions"
MGMT_GROUPS = "Microsoft.Management/managementGroups"

# Upper-case segment -> ARM spelling, for the camel-case ``properties.message``.
_CAMEL = {
    s.upper(): s
    for s in (
        "Microsoft.Storage",
        "storageAccounts",
        "listKeys",
        "Microsoft.Authorization",
        "roleAssignments",
        "Microsoft.Insights",
        "diagnosticSettings",
        "Microsoft.KeyVault",
        "vaults",
        "Microsoft.Sql",
        "servers",
        "databases",
        "firewallRules",
        "Microsoft.HealthcareApis",
        "services",
        "workspaces",
        "fhirservices",
        "Microsoft.Resources",
        "deployments",
        "Microsoft.Web",
        "sites",
        "restart",
        "policies",
        "audit",
        "write",
        "delete",
        "action",
    )
}


def camel_op(op: str) -> str:
    return "/".join(_CAMEL.get(seg, seg.lower()) for seg in op.split("/"))


def diag_setting_id(resource: ArmResource, name: str = DIAG_NAME) -> str:
    return f"{resource.camel_id}/providers/Microsoft.Insights/diagnosticSettings/{name}"


def diag_body(resource: ArmResource, *, enabled: bool, name: str = DIAG_NAME) -> dict[str, object]:
    return {
        "id": diag_setting_id(resource, name),
        "name": name,
        "properties": {
            "eventHubAuthorizationRuleId": EVENTHUB_RULE.format(sub=resource.sub),
            "eventHubName": "diagnostics",
            "logs": [{"category": c, "enabled": enabled} for c in resource.log_categories],
            "metrics": [{"category": "AllMetrics", "enabled": True}],
        },
    }


@dataclass(frozen=True, slots=True)
class ArmCall:
    op: str  # upper-case operationName
    resource_id: str  # camel case; upper-cased on output
    sub: str
    category: str = "Administrative"
    status_code: str = "OK"
    request_body: dict[str, object] | None = None
    response_body: dict[str, object] | None = None


def _identity(actor: Actor, call: ArmCall) -> dict[str, object]:
    role = "Owner" if "ROLEASSIGNMENTS" in call.op else "Contributor"
    claims = {"http://schemas.microsoft.com/identity/claims/objectidentifier": actor.oid}
    if actor.upn:
        claims["http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"] = actor.upn
    claims |= {"appid": actor.admin_app_id, "ipaddr": actor.ip}
    return {
        "authorization": {
            "scope": call.resource_id,
            "action": camel_op(call.op),
            "evidence": {
                "role": role,
                "roleAssignmentScope": f"/subscriptions/{call.sub}",
                "principalId": actor.oid.replace("-", ""),
                "principalType": "User" if actor.kind == "user" else "ServicePrincipal",
            },
        },
        "claims": claims,
    }


def arm_operation(
    pop: Population,
    actor: Actor,
    t: datetime,
    call: ArmCall,
    *,
    rng: random.Random,
    failed: bool = False,
    scenario: bool = False,
    corr: str | None = None,
) -> list[Emitted]:
    """Start plus Success/Failure for one ARM request, sharing a correlationId."""
    corr = corr or new_uuid(rng)
    resource_id = call.resource_id.upper()
    duration = rng.randint(300, 25_000)
    done = t + timedelta(milliseconds=duration)
    props = {
        "eventCategory": "Administrative",
        "entity": resource_id,
        "message": camel_op(call.op),
        "hierarchy": pop.hierarchy(call.sub),
    }
    identity = _identity(actor, call)

    def record(at: datetime, result: str, sig: str, ms: int, extra: dict[str, object]) -> dict:
        return {
            "time": iso7(at),
            "resourceId": resource_id,
            "operationName": call.op,
            "category": call.category,
            "resultType": result,
            "resultSignature": sig,
            "durationMs": ms,
            "callerIpAddress": actor.ip,
            "correlationId": corr,
            "identity": identity,
            "level": "Error" if result == "Failure" else "Informational",
            "location": "global",
            "properties": extra | props,
        }

    start_extra: dict[str, object] = {}
    if call.request_body is not None:
        # Activity Log ships request and response bodies as JSON inside a string.
        start_extra["requestbody"] = json.dumps(call.request_body, separators=(",", ":"))
    if failed:
        error = {"error": {"code": "AuthorizationFailed", "message": "Not authorized."}}
        end_extra: dict[str, object] = {
            "statusCode": "Forbidden",
            "serviceRequestId": None,
            "statusMessage": json.dumps(error, separators=(",", ":")),
        }
        end = record(done, "Failure", "Forbidden.", duration, end_extra)
    else:
        end_extra = {"statusCode": call.status_code, "serviceRequestId": new_uuid(rng)}
        if call.response_body is not None:
            end_extra["responseBody"] = json.dumps(call.response_body, separators=(",", ":"))
        sig = "Succeeded.Created" if call.status_code == "Created" else "Succeeded."
        end = record(done, "Success", sig, duration, end_extra)
    start = record(t, "Start", "Started.", 0, start_extra)
    stream = f"/subscriptions/{call.sub}"
    return [
        Emitted(t, stream, "activity", start, actor.oid, scenario),
        Emitted(done, stream, "activity", end, actor.oid, scenario),
    ]


def policy_record(
    pop: Population, actor: Actor, t: datetime, call: ArmCall, *, rng: random.Random, corr: str
) -> Emitted:
    """An Azure Policy audit verdict on a write; it shares the write's correlationId."""
    resource_id = call.resource_id.upper()
    policies = [
        {
            "policyDefinitionId": f"/providers/{POLICY_DEFS}/{new_uuid(rng)}",
            "policySetDefinitionName": "hipaa-hitrust",
            "policyDefinitionEffect": "Audit",
            "policyAssignmentScope": f"/providers/{MGMT_GROUPS}/{pop.mgmt_group}",
        }
    ]
    record = {
        "time": iso7(t),
        "resourceId": resource_id,
        "operationName": "MICROSOFT.AUTHORIZATION/POLICIES/AUDIT/ACTION",
        "category": "Policy",
        "resultType": "Success",
        "resultSignature": "",
        "durationMs": 0,
        "callerIpAddress": actor.ip,
        "correlationId": corr,
        "identity": _identity(actor, call),
        "level": "Warning",
        "location": "global",
        "properties": {
            "isComplianceCheck": "False",
            "resourceLocation": "eastus",
            "ancestors": pop.mgmt_group,
            "policies": json.dumps(policies, separators=(",", ":")),
            "eventCategory": "Policy",
            "entity": resource_id,
            "message": "Microsoft.Authorization/policies/audit/action",
            "hierarchy": pop.hierarchy(call.sub),
        },
    }
    return Emitted(t, f"/subscriptions/{call.sub}", "activity", record, actor.oid)
