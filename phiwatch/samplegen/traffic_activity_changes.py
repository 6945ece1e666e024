"""Activity Log writes whose new value lives in the bodies: the Start record carries
``requestbody`` and the Success record ``responseBody`` (both JSON inside a string), with
both casings of the role-assignment body. Benign changes only: no exposure, no open rule."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from .clock import sample_time
from .emitted import Emitted
from .ids import new_uuid
from .plan import ScenarioPlan
from .population import Population
from .records_activity import ArmCall, arm_operation

_READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
_BLOB_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"


def _storage_write(pop: Population, rng: random.Random) -> ArmCall:
    res = rng.choice([r for r in pop.arm if r.kind == "storage" and r.log_categories])
    request: dict[str, Any] = {
        "properties": {
            "allowBlobPublicAccess": False,
            "minimumTlsVersion": "TLS1_2",
            "supportsHttpsTrafficOnly": True,
        }
    }
    response: dict[str, Any] = {
        "id": res.camel_id,
        "name": res.camel_id.rsplit("/", 1)[-1],
        "type": "Microsoft.Storage/storageAccounts",
        "location": "eastus",
        "properties": {
            **request["properties"],
            "publicNetworkAccess": "Disabled",
            "networkAcls": {"defaultAction": "Deny", "bypass": "AzureServices"},
        },
    }
    return ArmCall(
        "MICROSOFT.STORAGE/STORAGEACCOUNTS/WRITE",
        res.camel_id,
        res.sub,
        request_body=request,
        response_body=response,
    )


def _container_write(pop: Population, rng: random.Random) -> ArmCall:
    res = rng.choice([r for r in pop.arm if r.kind == "storage" and r.log_categories])
    name = rng.choice(("discharge", "lab-results", "research-deid", "staging"))
    rid = f"{res.camel_id}/blobServices/default/containers/{name}"
    body: dict[str, Any] = {
        "properties": {"publicAccess": "None", "defaultEncryptionScope": "$account-encryption-key"}
    }
    return ArmCall(
        "MICROSOFT.STORAGE/STORAGEACCOUNTS/BLOBSERVICES/CONTAINERS/WRITE",
        rid,
        res.sub,
        status_code="Created",
        request_body=body,
        response_body={"id": rid, "name": name, **body},
    )


def _firewall_rule(pop: Population, rng: random.Random) -> ArmCall:
    res = rng.choice([r for r in pop.arm if r.kind == "sql"])
    name, start, end = rng.choice(
        (
            ("AllowVpnPool", "198.51.100.0", "198.51.100.63"),
            ("AllowBuildAgents", "203.0.113.32", "203.0.113.47"),
        )
    )
    rid = f"{res.camel_id}/firewallRules/{name}"
    body: dict[str, Any] = {"properties": {"startIpAddress": start, "endIpAddress": end}}
    return ArmCall(
        "MICROSOFT.SQL/SERVERS/FIREWALLRULES/WRITE",
        rid,
        res.sub,
        request_body=body,
        response_body={"id": rid, "name": name, **body},
    )


def _role_assignment(pop: Population, rng: random.Random) -> ArmCall:
    res = rng.choice(
        [r for r in pop.arm if r.kind == "vault" or (r.kind == "storage" and r.log_categories)]
    )
    rg = "/".join(res.camel_id.split("/")[:5])
    rid = f"{rg}/providers/Microsoft.Authorization/roleAssignments/{new_uuid(rng)}"
    role = f"/subscriptions/{res.sub}/providers/Microsoft.Authorization/roleDefinitions/"
    role += _BLOB_READER if res.kind == "storage" else _READER
    who = rng.choice(pop.clinicians)
    # The current API version spells the body in camel case (the original traffic uses the
    # older PascalCase form).
    body: dict[str, Any] = {
        "properties": {
            "roleDefinitionId": role,
            "principalId": who.oid,
            "principalType": "User",
            "scope": res.camel_id,
        }
    }
    response: dict[str, Any] = {
        "id": rid,
        "type": "Microsoft.Authorization/roleAssignments",
        "name": rid.rsplit("/", 1)[-1],
        "properties": {**body["properties"], "createdBy": None},
    }
    return ArmCall(
        "MICROSOFT.AUTHORIZATION/ROLEASSIGNMENTS/WRITE",
        rid,
        res.sub,
        status_code="Created",
        request_body=body,
        response_body=response,
    )


_MAKERS: tuple[tuple[Callable[[Population, random.Random], ArmCall], int], ...] = (
    (_storage_write, 3),
    (_container_write, 2),
    (_firewall_rule, 2),
    (_role_assignment, 3),
)


def activity_change_traffic(
    pop: Population, plan: ScenarioPlan, rng: random.Random, budget: int
) -> list[Emitted]:
    actors = [*pop.admins, pop.principal("app-devops-deploy")]
    makers = [m for m, _ in _MAKERS]
    weights = [w for _, w in _MAKERS]
    out: list[Emitted] = []
    for _ in range(budget * 10):
        if len(out) >= budget:
            break
        t = sample_time(rng, plan.start, tail=timedelta(minutes=10))
        actor = rng.choice(actors)
        call = rng.choices(makers, weights=weights)[0](pop, rng)
        if plan.busy(actor.oid, t) or plan.is_gone(call.resource_id, t):
            continue
        out += arm_operation(pop, actor, t, call, rng=rng, failed=rng.random() < 0.03)
    return out
