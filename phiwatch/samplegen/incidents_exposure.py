"""public-exposure and privilege-escalation: one injected incident each and their
look-alikes, each rule on its own generator.

The incident: late at night an admin, from an address of their own outside the VPN, rewrites
the PHI archive account to allow anonymous blob access with the network default action
Allow (the Start record's request body; its Success carries the account as it now is). The
ordinary Activity writes (traffic_activity_changes.py) have shown that account private.

The look-alikes, which must stay quiet: a write closing a SQL server's public network
access, the same opening attempted on another PHI account and refused (a failed write), and
a new storage account created public (a fresh account holds no PHI yet).

privilege-escalation: in the small hours an admin assigns Owner on the subscription, then
Storage Blob Data Owner on a PHI account, to a clinician's account (one alert, High). Its
look-alikes: another admin assigns Reader, and makes a time-bound PIM assignment.

Everything here draws from its own random.Random, seeded from the seed and the rule id, and
is packed into bodies of its own: the original records and the other added sources are the
bytes they were. They count with the scenario's own records (they are its incidents), and
stay when the added sources are left out.
"""

from __future__ import annotations

import dataclasses
import json
import random
from datetime import timedelta
from typing import Any

from .emitted import Emitted
from .ground_truth import Incident, Lookalike, span
from .ids import new_uuid, public_ip
from .plan import ScenarioPlan
from .population import Actor, Population
from .records_activity import ArmCall, arm_operation
from .traffic_entra import directory_record
from .writer import Body, pack

RULE_ID = "public-exposure"
PRIVILEGE_RULE_ID = "privilege-escalation"
# Minutes after the scenario's start, clear of the other scenarios (plan.OFFSETS_MIN).
INCIDENT_AT_MIN = 1015
LOOKALIKES_AT_MIN = 1095
PRIVILEGE_AT_MIN = 1175
PRIVILEGE_LOOKALIKES_AT_MIN = 1255
_ROLE_DEFS = "providers/Microsoft.Authorization/roleDefinitions"
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"


def _rng(seed: int, rule_id: str = RULE_ID) -> random.Random:
    return random.Random(f"phiwatch-samplegen/{seed}/{rule_id}")  # noqa: S311 - test data


def _account_write(account_id: str, sub: str, props: dict[str, Any], **kw: Any) -> ArmCall:
    request: dict[str, object] = {"properties": props}
    response: dict[str, object] = {
        "id": account_id,
        "name": account_id.rsplit("/", 1)[-1],
        "type": "Microsoft.Storage/storageAccounts",
        "location": "eastus",
        "properties": {"minimumTlsVersion": "TLS1_2", **props},
    }
    return ArmCall(
        "MICROSOFT.STORAGE/STORAGEACCOUNTS/WRITE",
        account_id,
        sub,
        request_body=request,
        response_body=response,
        **kw,
    )


def _actor(pop: Population, rng: random.Random, index: int) -> Actor:
    """An admin of the plan's (0 and 2 act in incidents; 1, the cascade admin, only in
    look-alikes: a look-alike's actor must never be an incident's)."""
    admins = pop.admins
    return dataclasses.replace(admins[index % len(admins)], ip=public_ip(rng))


def exposure_incident(
    pop: Population, plan: ScenarioPlan, rng: random.Random
) -> tuple[list[Emitted], Incident]:
    actor = _actor(pop, rng, 0)
    account = pop.resource("storage", "stphiarchive01")
    t = plan.start + timedelta(minutes=INCIDENT_AT_MIN, seconds=rng.uniform(3, 50))
    opened = {"allowBlobPublicAccess": True, "networkAcls": {"defaultAction": "Allow"}}
    call = _account_write(account.camel_id, account.sub, opened)
    out = arm_operation(pop, actor, t, call, rng=rng, scenario=True)
    first, last = span(out)
    return out, Incident(
        rule_id=RULE_ID,
        description=f"{actor.upn} allowed anonymous blob access on the PHI archive account "
        "stphiarchive01 and set its network default action to Allow, from outside the VPN "
        "late at night; the account had been seen private.",
        actor_user_id=actor.oid,
        actor_app_id=actor.admin_app_id,
        src_ip=actor.ip,
        target_resource_id=account.camel_id.lower(),
        start=first,
        end=last,
    )


def exposure_lookalikes(
    pop: Population, plan: ScenarioPlan, rng: random.Random
) -> tuple[list[Emitted], Lookalike]:
    actor = _actor(pop, rng, 1)
    t = plan.start + timedelta(minutes=LOOKALIKES_AT_MIN, seconds=rng.uniform(3, 50))
    sql = pop.resource("sql", "sql-reporting")
    closed = ArmCall(
        "MICROSOFT.SQL/SERVERS/WRITE",
        sql.camel_id,
        sql.sub,
        request_body={"properties": {"publicNetworkAccess": "Disabled"}},
        response_body={"id": sql.camel_id, "properties": {"publicNetworkAccess": "Disabled"}},
    )
    account = pop.resource("storage", "stphi01")
    refused = _account_write(account.camel_id, account.sub, {"allowBlobPublicAccess": True})
    new_id = "/".join(account.camel_id.split("/")[:-1]) + "/stwebassets03"
    created = _account_write(
        new_id,
        account.sub,
        {"allowBlobPublicAccess": True, "publicNetworkAccess": "Enabled"},
        status_code="Created",
    )
    out = arm_operation(pop, actor, t, closed, rng=rng, scenario=True)
    out += arm_operation(pop, actor, t + timedelta(minutes=2), refused, rng=rng, failed=True)
    out += arm_operation(pop, actor, t + timedelta(minutes=4), created, rng=rng, scenario=True)
    first, last = span(out)
    return out, Lookalike(
        kind="exposure-near-misses",
        resembles_rule_id=RULE_ID,
        description=f"{actor.upn} closed public network access on sql-reporting, tried to "
        "allow anonymous blob access on stphi01 and was refused, and created a new public "
        "storage account (no PHI in it yet).",
        actor_user_id=actor.oid,
        actor_app_id=actor.admin_app_id,
        src_ip=actor.ip,
        target_resource_id=account.camel_id.lower(),
        start=first,
        end=last,
        details={"changes": ["private write", "failed write", "account creation"]},
    )


def _role_assignment(
    sub: str, scope: str, role: str, principal: str, rng: random.Random
) -> ArmCall:
    rg_or_sub = scope if "/resourceGroups/" not in scope else "/".join(scope.split("/")[:5])
    rid = f"{rg_or_sub}/providers/Microsoft.Authorization/roleAssignments/{new_uuid(rng)}"
    body: dict[str, object] = {
        "properties": {
            "roleDefinitionId": f"/subscriptions/{sub}/{_ROLE_DEFS}/{role}",
            "principalId": principal,
            "principalType": "User",
            "scope": scope,
        }
    }
    return ArmCall(
        "MICROSOFT.AUTHORIZATION/ROLEASSIGNMENTS/WRITE",
        rid,
        sub,
        status_code="Created",
        request_body=body,
        response_body={"id": rid, "type": "Microsoft.Authorization/roleAssignments", **body},
    )


def privilege_incident(
    pop: Population, plan: ScenarioPlan, rng: random.Random
) -> tuple[list[Emitted], Incident]:
    actor = _actor(pop, rng, 2)
    account = pop.resource("storage", "stphi01")
    grantee = pop.clinicians[-1]
    t = plan.start + timedelta(minutes=PRIVILEGE_AT_MIN, seconds=rng.uniform(3, 50))
    owner = _role_assignment(account.sub, f"/subscriptions/{account.sub}", OWNER, grantee.oid, rng)
    data = _role_assignment(account.sub, account.camel_id, BLOB_DATA_OWNER, grantee.oid, rng)
    out = arm_operation(pop, actor, t, owner, rng=rng, scenario=True)
    out += arm_operation(pop, actor, t + timedelta(minutes=3), data, rng=rng, scenario=True)
    first, last = span(out)
    return out, Incident(
        rule_id=PRIVILEGE_RULE_ID,
        description=f"{actor.upn} assigned Owner on the subscription, then Storage Blob Data "
        "Owner on stphi01, to a clinician's account in the small hours, outside PIM.",
        actor_user_id=actor.oid,
        actor_app_id=actor.admin_app_id,
        src_ip=actor.ip,
        target_resource_id=f"/subscriptions/{account.sub}".lower(),
        start=first,
        end=last,
    )


def privilege_lookalikes(
    pop: Population, plan: ScenarioPlan, rng: random.Random
) -> tuple[list[Emitted], Lookalike]:
    actor = _actor(pop, rng, 1)
    account = pop.resource("storage", "stphiarchive01")
    grantee = pop.clinicians[-2]
    t = plan.start + timedelta(minutes=PRIVILEGE_LOOKALIKES_AT_MIN, seconds=rng.uniform(3, 50))
    reader = _role_assignment(account.sub, account.camel_id, READER, grantee.oid, rng)
    out = arm_operation(pop, actor, t, reader, rng=rng, scenario=True)
    user = {"user": {"id": actor.oid, "userPrincipalName": actor.upn, "ipAddress": actor.ip}}
    role = {
        "id": new_uuid(rng),
        "displayName": "Security Reader",
        "type": "Role",
        "modifiedProperties": [
            {"displayName": "Role.DisplayName", "oldValue": None, "newValue": '"Security Reader"'}
        ],
    }
    target = {"id": grantee.oid, "type": "User", "userPrincipalName": grantee.upn}
    timebound = directory_record(
        pop,
        t + timedelta(minutes=2),
        "Add member to role in PIM completed (timebound)",
        "PIM",
        "RoleManagement",
        user,
        [role, target],
        rng,
        corr=new_uuid(rng),
        operation_type="Assign",
        ip=actor.ip,
    )
    timebound.scenario = True
    out.append(timebound)
    first, last = span(out)
    return out, Lookalike(
        kind="privilege-near-misses",
        resembles_rule_id=PRIVILEGE_RULE_ID,
        description=f"{actor.upn} assigned Reader on stphiarchive01 and made a time-bound PIM "
        "assignment of Security Reader: neither is a privileged grant outside the process.",
        actor_user_id=actor.oid,
        actor_app_id=actor.admin_app_id,
        src_ip=actor.ip,
        target_resource_id=account.camel_id.lower(),
        start=first,
        end=last,
        details={"changes": ["reader assignment", "pim timebound assignment"]},
    )


def add_exposure_scenarios(
    pop: Population,
    plan: ScenarioPlan,
    seed: int,
    delivered: list[Emitted],
    bodies: list[Body],
    incidents: list[Incident],
    lookalikes: list[Lookalike],
) -> None:
    """Add this rule's records and bodies to the delivered ones and its ground truth to the
    scenario's, in place (`incidents` kept in time order)."""
    for rule_id, make_incident, make_lookalikes in (
        (RULE_ID, exposure_incident, exposure_lookalikes),
        (PRIVILEGE_RULE_ID, privilege_incident, privilege_lookalikes),
    ):
        rng = _rng(seed, rule_id)
        incident_records, incident = make_incident(pop, plan, rng)
        lookalike_records, lookalike = make_lookalikes(pop, plan, rng)
        made = incident_records + lookalike_records
        for e in made:
            e.line = json.dumps(e.record, separators=(",", ":"))
        incidents.append(incident)
        lookalikes.append(lookalike)
        delivered += made
        bodies += pack(made, rng)
    incidents.sort(key=lambda i: i.start)
