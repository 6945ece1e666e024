"""audit-tampering in the scenario: one incident and its look-alikes, on their own generator.

The incident: an administrator lowers the Sentinel workspace's retention to 7 days, then
purges its data (one alert, the purge enriching it). The look-alikes: a sandbox resource
group decommissioned with its lock and workspace (each explained by the group's deletion),
and SQL auditing rewritten with auditing kept on. Drawn from a generator seeded from the
seed and the rule id, never the scenario's, so the original records stay byte-for-byte.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from .added_sources import source_rng
from .emitted import Emitted
from .ground_truth import Incident, Lookalike, span
from .plan import ScenarioPlan
from .population import Actor, Population
from .records_activity import ArmCall, arm_operation

RULE_ID = "audit-tampering"
WORKSPACE = "law-sentinel-phi"
SANDBOX_RG = "rg-analytics-sandbox"


def _admin(pop: Population, plan: ScenarioPlan, rng: random.Random, taken: set[str]) -> Actor:
    busy = {plan.diag_deleter.oid, plan.cascade_admin.oid, plan.diag_disabler.oid} | taken
    free = [a for a in pop.admins if a.oid not in busy] or pop.admins
    return rng.choice(free)


# Minutes after the start: late in the day, at least 30 minutes from every other scenario.
AT_MIN = {"incident": 1225, "decommission": 1285, "auditing": 1345}


def _when(plan: ScenarioPlan, rng: random.Random, what: str) -> Any:
    return plan.start + timedelta(
        minutes=AT_MIN[what] + rng.uniform(0, 4), seconds=rng.uniform(3, 50)
    )


def _incident(
    pop: Population, plan: ScenarioPlan, rng: random.Random, actor: Actor
) -> tuple[list[Emitted], Incident]:
    sub = pop.subscriptions[0]
    rg = f"/subscriptions/{sub}/resourceGroups/rg-security-ops"
    law = f"{rg}/providers/Microsoft.OperationalInsights/workspaces/{WORKSPACE}"
    t = _when(plan, rng, "incident")
    request: dict[str, Any] = {"properties": {"retentionInDays": 7}}
    response: dict[str, Any] = {
        "id": law,
        "name": WORKSPACE,
        "type": "Microsoft.OperationalInsights/workspaces",
        "location": "eastus",
        "properties": {
            "provisioningState": "Succeeded",
            "sku": {"name": "PerGB2018"},
            "retentionInDays": 7,
            "features": {"enableLogAccessUsingOnlyResourcePermissions": True},
        },
    }
    write = ArmCall(
        "MICROSOFT.OPERATIONALINSIGHTS/WORKSPACES/WRITE",
        law,
        sub,
        request_body=request,
        response_body=response,
    )
    purge = ArmCall(
        "MICROSOFT.OPERATIONALINSIGHTS/WORKSPACES/PURGE/ACTION",
        law,
        sub,
        category="Action",
        status_code="Accepted",
        request_body={
            "table": "PhiAccessEvents_CL",
            "filters": [{"column": "TimeGenerated", "operator": ">", "value": "2026-10-01"}],
        },
    )
    out = arm_operation(pop, actor, t, write, rng=rng, scenario=True)
    later = t + timedelta(minutes=rng.uniform(2, 4))
    out += arm_operation(pop, actor, later, purge, rng=rng, scenario=True)
    first, last = span(out)
    return out, Incident(
        rule_id=RULE_ID,
        description=f"{actor.upn} lowered the retention of Log Analytics workspace "
        f"{WORKSPACE} (Sentinel's) to 7 days, then purged PhiAccessEvents_CL minutes later.",
        actor_user_id=actor.oid,
        actor_app_id=actor.admin_app_id,
        src_ip=actor.ip,
        target_resource_id=law.lower(),
        start=first,
        end=last,
    )


def _decommission(
    pop: Population, plan: ScenarioPlan, rng: random.Random, actor: Actor
) -> tuple[list[Emitted], Lookalike]:
    sub = pop.subscriptions[1]
    rg = f"/subscriptions/{sub}/resourceGroups/{SANDBOX_RG}"
    lock = f"{rg}/providers/Microsoft.Authorization/locks/do-not-delete"
    law = f"{rg}/providers/Microsoft.OperationalInsights/workspaces/law-sandbox"
    t = _when(plan, rng, "decommission")
    out: list[Emitted] = []
    for minutes, op, rid in (
        (0.0, "MICROSOFT.AUTHORIZATION/LOCKS/DELETE", lock),
        (rng.uniform(1, 2), "MICROSOFT.OPERATIONALINSIGHTS/WORKSPACES/DELETE", law),
        (rng.uniform(4, 6), "MICROSOFT.RESOURCES/SUBSCRIPTIONS/RESOURCEGROUPS/DELETE", rg),
    ):
        call = ArmCall(op, rid, sub, category="Delete")
        out += arm_operation(
            pop, actor, t + timedelta(minutes=minutes), call, rng=rng, scenario=True
        )
    first, last = span(out)
    return out, Lookalike(
        kind="resource-group-deleted-with-its-workspace",
        resembles_rule_id=RULE_ID,
        description=f"{actor.upn} decommissioned {SANDBOX_RG}: its delete lock, then its "
        "workspace, then the resource group itself, within 6 minutes (the group's deletion "
        "explains the others).",
        actor_user_id=actor.oid,
        actor_app_id=actor.admin_app_id,
        src_ip=actor.ip,
        target_resource_id=law.lower(),
        start=first,
        end=last,
    )


def _auditing_kept_on(
    pop: Population, plan: ScenarioPlan, rng: random.Random, actor: Actor
) -> tuple[list[Emitted], Lookalike]:
    server = next(r for r in pop.arm if r.kind == "sql")
    rid = f"{server.camel_id}/auditingSettings/default"
    body: dict[str, Any] = {
        "properties": {
            "state": "Enabled",
            "isAzureMonitorTargetEnabled": True,
            "retentionDays": 0,
            "auditActionsAndGroups": [
                "SUCCESSFUL_DATABASE_AUTHENTICATION_GROUP",
                "FAILED_DATABASE_AUTHENTICATION_GROUP",
                "BATCH_COMPLETED_GROUP",
            ],
        }
    }
    call = ArmCall(
        "MICROSOFT.SQL/SERVERS/AUDITINGSETTINGS/WRITE",
        rid,
        server.sub,
        request_body=body,
        response_body={"id": rid, "name": "default", **body},
    )
    out = arm_operation(pop, actor, _when(plan, rng, "auditing"), call, rng=rng, scenario=True)
    first, last = span(out)
    return out, Lookalike(
        kind="sql-auditing-rewritten-enabled",
        resembles_rule_id=RULE_ID,
        description=f"{actor.upn} rewrote the SQL server's auditing settings with auditing "
        "still Enabled (more action groups): a change, not a weakening.",
        actor_user_id=actor.oid,
        actor_app_id=actor.admin_app_id,
        src_ip=actor.ip,
        target_resource_id=rid.lower(),
        start=first,
        end=last,
    )


def tamper_scenarios(
    pop: Population,
    plan: ScenarioPlan,
    seed: int,
    incidents: list[Incident],
    lookalikes: list[Lookalike],
) -> list[Emitted]:
    """The records; the incident and look-alikes are added to the ground truth lists."""
    rng = source_rng(seed, RULE_ID)
    tamperer = _admin(pop, plan, rng, set())
    decommissioner = _admin(pop, plan, rng, {tamperer.oid})
    records, incident = _incident(pop, plan, rng, tamperer)
    gone, decommissioned = _decommission(pop, plan, rng, decommissioner)
    kept, kept_on = _auditing_kept_on(pop, plan, rng, decommissioner)
    incidents.append(incident)
    incidents.sort(key=lambda i: i.start)
    lookalikes += [decommissioned, kept_on]
    return records + gone + kept
