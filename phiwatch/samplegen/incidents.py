"""The four injected incidents a correct detector must raise, with their ground truth."""

from __future__ import annotations

import dataclasses
import random
from datetime import timedelta

from .catalog import AZURE_CLI_APP_ID
from .emitted import Emitted
from .ground_truth import Incident, span
from .ids import public_ip
from .plan import ScenarioPlan
from .population import Population
from .records_activity import ArmCall, arm_operation, diag_body, diag_setting_id
from .records_fhir import patient_read
from .records_keyvault import kv_record

MASS_READ_PATIENTS = 220
MASS_READ_SECONDS = 8 * 60
KV_FAILURES = 13


def mass_record_access(
    pop: Population, plan: ScenarioPlan, rng: random.Random
) -> tuple[list[Emitted], Incident]:
    # A scripted pull from home with an Azure CLI token, not the ward's EHR client.
    actor = dataclasses.replace(plan.mass_reader, app_id=AZURE_CLI_APP_ID, ip=public_ip(rng))
    svc = pop.fhir[0]
    t = plan.times["mass_read"]
    step = MASS_READ_SECONDS / MASS_READ_PATIENTS
    out: list[Emitted] = []
    for i, pid in enumerate(rng.sample(pop.patients, MASS_READ_PATIENTS)):
        at = t + timedelta(seconds=i * step + rng.uniform(0, step * 0.4))
        out += patient_read(svc, actor, at, pid, status=200, rng=rng, scenario=True)
    first, last = span(out)
    return out, Incident(
        rule_id="mass-record-access",
        description=f"{actor.upn} read {MASS_READ_PATIENTS} distinct patients in about 8 minutes "
        "from an unfamiliar IP, late in the evening, with an Azure CLI token.",
        actor_user_id=actor.oid,
        actor_app_id=actor.app_id,
        src_ip=actor.ip,
        target_resource_id=svc.resource_id.lower(),
        start=first,
        end=last,
    )


def keyvault_failed_operations(
    pop: Population, plan: ScenarioPlan, rng: random.Random
) -> tuple[list[Emitted], Incident]:
    # A leaked client secret used from outside enumerates secrets the app may not read.
    actor = dataclasses.replace(plan.kv_attacker, ip=public_ip(rng))
    vault = pop.vault("kv-phi-prod")
    t = plan.times["kv_failures"]
    owned = {g.obj for g in pop.kv_grants[actor.oid]}
    foreign = [s for s in vault.secrets if s not in owned]
    out = [
        kv_record(
            vault,
            actor,
            t,
            "Authentication",
            "",
            status=401,
            rng=rng,
            scenario=True,
            challenged_op="SecretList",
        )
    ]
    step = 170 / KV_FAILURES
    for i in range(KV_FAILURES):
        at = t + timedelta(seconds=1 + i * step + rng.uniform(0, step * 0.5))
        op, obj = ("SecretList", "") if i in (0, 6) else ("SecretGet", foreign[i % len(foreign)])
        out.append(kv_record(vault, actor, at, op, obj, status=403, rng=rng, scenario=True))
    at = out[-1].at + timedelta(minutes=1)
    out.append(
        kv_record(
            vault, actor, at, "SecretGet", "fhir-client-secret", status=200, rng=rng, scenario=True
        )
    )
    first, last = span(out)
    return out, Incident(
        rule_id="keyvault-failed-operations",
        description=f"Service principal {actor.name} got {KV_FAILURES} 403s on SecretGet/"
        "SecretList across different secrets in about 3 minutes, then one successful SecretGet "
        "a minute later.",
        actor_user_id=actor.oid,
        actor_app_id=actor.admin_app_id,
        src_ip=actor.ip,
        target_resource_id=vault.stream,
        start=first,
        end=last,
    )


def diagnostics_deleted(
    pop: Population, plan: ScenarioPlan, rng: random.Random
) -> tuple[list[Emitted], Incident]:
    actor = plan.diag_deleter
    res = pop.resource("vault", "kv-phi-prod")
    diag = diag_setting_id(res)
    call = ArmCall("MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/DELETE", diag, res.sub, category="Delete")
    out = arm_operation(pop, actor, plan.times["diag_delete_kv"], call, rng=rng, scenario=True)
    # With the setting gone the vault's audit stream simply stops.
    plan.silenced[pop.vault("kv-phi-prod").stream] = out[-1].at
    first, last = span(out)
    return out, Incident(
        rule_id="diagnostics-disabled",
        description=f"{actor.upn} deleted the diagnostic setting of kv-phi-prod; the vault itself "
        "was not deleted and its audit log stops arriving.",
        actor_user_id=actor.oid,
        actor_app_id=actor.admin_app_id,
        src_ip=actor.ip,
        target_resource_id=diag.lower(),
        start=first,
        end=last,
    )


def diagnostics_logs_off(
    pop: Population, plan: ScenarioPlan, rng: random.Random
) -> tuple[list[Emitted], Incident]:
    actor = plan.diag_disabler
    res = pop.resource("fhir", "fhir-prod2")
    body = diag_body(res, enabled=False)
    call = ArmCall(
        "MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/WRITE",
        diag_setting_id(res),
        res.sub,
        request_body={"properties": body["properties"]},
        response_body=body,
    )
    out = arm_operation(pop, actor, plan.times["diag_disable_fhir"], call, rng=rng, scenario=True)
    plan.silenced[pop.fhir[1].stream] = out[-1].at
    first, last = span(out)
    return out, Incident(
        rule_id="diagnostics-disabled",
        description=f"{actor.upn} rewrote the diagnostic setting of FHIR service fhir-prod2 with "
        "every log category disabled (metrics left on); its audit log stops arriving.",
        actor_user_id=actor.oid,
        actor_app_id=actor.admin_app_id,
        src_ip=actor.ip,
        target_resource_id=diag_setting_id(res).lower(),
        start=first,
        end=last,
    )


def build_incidents(
    pop: Population, plan: ScenarioPlan, rng: random.Random
) -> tuple[list[Emitted], list[Incident]]:
    records: list[Emitted] = []
    truth: list[Incident] = []
    for make in (
        mass_record_access,
        keyvault_failed_operations,
        diagnostics_deleted,
        diagnostics_logs_off,
    ):
        recs, incident = make(pop, plan, rng)
        records += recs
        truth.append(incident)
    truth.sort(key=lambda i: i.start)
    return records, truth
