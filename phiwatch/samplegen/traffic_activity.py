"""Ordinary control-plane work: admins and the deploy pipeline changing resources."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta

from .clock import sample_time
from .emitted import Emitted
from .ids import new_hex, new_uuid
from .plan import ScenarioPlan
from .population import ArmResource, Population
from .records_activity import ArmCall, arm_operation, diag_body, diag_setting_id, policy_record

ROLE_DEFS = "Microsoft.Authorization/roleDefinitions"

Maker = Callable[[Population, ArmResource, random.Random], ArmCall]


def _write(op: str, category: str = "Write") -> Maker:
    def make(pop: Population, res: ArmResource, rng: random.Random) -> ArmCall:
        cat = category if rng.random() < 0.3 else "Administrative"
        return ArmCall(op, res.camel_id, res.sub, category=cat)

    return make


def _sub_write(op: str, child: str, names: tuple[str, ...]) -> Maker:
    def make(pop: Population, res: ArmResource, rng: random.Random) -> ArmCall:
        path = f"{res.camel_id}/{child}/{rng.choice(names)}"
        return ArmCall(op, path, res.sub, status_code="Created")

    return make


def _role_assignment(pop: Population, res: ArmResource, rng: random.Random) -> ArmCall:
    rg = "/".join(res.camel_id.split("/")[:5])
    rid = f"{rg}/providers/Microsoft.Authorization/roleAssignments/{new_uuid(rng)}"
    body: dict[str, object] = {
        "Id": rid.rsplit("/", 1)[-1],
        "Properties": {
            "PrincipalId": rng.choice(pop.clinicians).oid,
            "RoleDefinitionId": f"/providers/{ROLE_DEFS}/{new_uuid(rng)}",
            "Scope": rg,
        },
    }
    return ArmCall(
        "MICROSOFT.AUTHORIZATION/ROLEASSIGNMENTS/WRITE",
        rid,
        res.sub,
        status_code="Created",
        request_body=body,
    )


def _diag_write(pop: Population, res: ArmResource, rng: random.Random) -> ArmCall:
    body = diag_body(res, enabled=True)
    return ArmCall(
        "MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/WRITE",
        diag_setting_id(res),
        res.sub,
        request_body={"properties": body["properties"]},
        response_body=body,
    )


def _fhir_write(pop: Population, res: ArmResource, rng: random.Random) -> ArmCall:
    workspace = "/workspaces/" in res.camel_id.lower()
    op = "WORKSPACES/FHIRSERVICES" if workspace else "SERVICES"
    return ArmCall(f"MICROSOFT.HEALTHCAREAPIS/{op}/WRITE", res.camel_id, res.sub)


def _deployment(pop: Population, res: ArmResource, rng: random.Random) -> ArmCall:
    rg = "/".join(res.camel_id.split("/")[:5])
    rid = f"{rg}/providers/Microsoft.Resources/deployments/main-{new_hex(rng, 8)}"
    return ArmCall("MICROSOFT.RESOURCES/DEPLOYMENTS/WRITE", rid, res.sub, status_code="Created")


_FIREWALL_RULES = ("AllowVpnPool", "AllowBuildAgents", "AllowAzureServices")
_DATABASES = ("clinicaldb", "reportingdb", "auditdb")
_MENU: dict[str, list[tuple[Maker, int]]] = {
    "storage": [
        (_write("MICROSOFT.STORAGE/STORAGEACCOUNTS/WRITE"), 4),
        (_write("MICROSOFT.STORAGE/STORAGEACCOUNTS/LISTKEYS/ACTION", "Action"), 3),
        (_diag_write, 1),
        (_role_assignment, 1),
    ],
    "sql": [
        (_write("MICROSOFT.SQL/SERVERS/WRITE"), 1),
        (
            _sub_write(
                "MICROSOFT.SQL/SERVERS/FIREWALLRULES/WRITE", "firewallRules", _FIREWALL_RULES
            ),
            2,
        ),
        (_sub_write("MICROSOFT.SQL/SERVERS/DATABASES/WRITE", "databases", _DATABASES), 2),
        (_diag_write, 1),
    ],
    "func": [
        (_write("MICROSOFT.WEB/SITES/WRITE"), 2),
        (_write("MICROSOFT.WEB/SITES/RESTART/ACTION", "Action"), 2),
        (_deployment, 2),
        (_diag_write, 1),
    ],
    "vault": [
        (_write("MICROSOFT.KEYVAULT/VAULTS/WRITE"), 3),
        (_role_assignment, 2),
        (_diag_write, 1),
    ],
    "fhir": [(_fhir_write, 2), (_role_assignment, 2), (_diag_write, 1)],
}
# The scenario targets' diagnostic settings are only ever touched by the scenarios.
_PROTECTED_DIAGS = ("/vaults/kv-phi-prod", "/fhirservices/fhir-prod2")


def activity_traffic(
    pop: Population, plan: ScenarioPlan, rng: random.Random, budget: int
) -> list[Emitted]:
    deployer = next(p for p in pop.principals if "arm-deploy" in p.duties)
    actors = [*pop.admins, deployer]
    weights = [1.0] * len(pop.admins) + [1.5]
    out: list[Emitted] = []
    for _ in range(budget * 10):
        if len(out) >= budget:
            break
        t = sample_time(rng, plan.start, tail=timedelta(minutes=10))
        actor = rng.choices(actors, weights=weights)[0]
        res = rng.choice(pop.arm)
        if plan.busy(actor.oid, t) or plan.is_gone(res.arm_id, t):
            continue
        makers, mweights = zip(*_MENU[res.kind], strict=True)
        maker = rng.choices(makers, weights=mweights)[0]
        if maker is _diag_write and res.camel_id.lower().endswith(_PROTECTED_DIAGS):
            continue
        call = maker(pop, res, rng)
        corr = new_uuid(rng)
        out += arm_operation(pop, actor, t, call, rng=rng, failed=rng.random() < 0.03, corr=corr)
        # Policy audits writes to the governed resources themselves, not their children.
        on_resource = call.resource_id == res.camel_id and call.op.endswith("/WRITE")
        if on_resource and res.kind in ("storage", "vault", "sql") and rng.random() < 0.08:
            out.append(policy_record(pop, actor, t + _ms(rng), call, rng=rng, corr=corr))
    return out


def _ms(rng: random.Random) -> timedelta:
    return timedelta(milliseconds=rng.randint(50, 900))
