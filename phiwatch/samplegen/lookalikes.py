"""Benign traffic shaped like the incidents, sitting just on the safe side of each rule."""

from __future__ import annotations

import random
from datetime import timedelta

from .emitted import Emitted
from .ground_truth import Lookalike, span
from .plan import ScenarioPlan
from .population import Population
from .records_activity import ArmCall, arm_operation, diag_setting_id
from .records_fhir import patient_read
from .records_keyvault import kv_record


def reads_at_threshold(
    pop: Population, plan: ScenarioPlan, rng: random.Random
) -> tuple[list[Emitted], Lookalike]:
    # A clinic list reviewed in one sitting: exactly the limit, which must not exceed it.
    actor = plan.threshold_reader
    svc = pop.fhir[actor.fhir_home]
    t = plan.times["reads_at_threshold"]
    out: list[Emitted] = []
    for i, pid in enumerate(rng.sample(pop.patients, 50)):
        at = t + timedelta(seconds=i * 10.8 + rng.uniform(0, 4))
        out += patient_read(svc, actor, at, pid, status=200, rng=rng, scenario=True)
    first, last = span(out)
    return out, Lookalike(
        kind="patient-reads-at-threshold",
        resembles_rule_id="mass-record-access",
        description=f"{actor.upn} read exactly 50 distinct patients within 10 minutes "
        "(the rule fires only above 50).",
        actor_user_id=actor.oid,
        actor_app_id=actor.app_id,
        src_ip=actor.ip,
        target_resource_id=svc.stream,
        start=first,
        end=last,
        details={"distinct_patients": 50},
    )


def failed_reads_not_counted(
    pop: Population, plan: ScenarioPlan, rng: random.Random
) -> tuple[list[Emitted], Lookalike]:
    actor = plan.failed_reader
    svc = pop.fhir[actor.fhir_home]
    t = plan.times["failed_reads"]
    chosen = rng.sample(pop.patients, 55)
    attempts = [(pid, 200) for pid in chosen[:45]] + [(pid, 403) for pid in chosen[45:]]
    rng.shuffle(attempts)
    out: list[Emitted] = []
    for i, (pid, status) in enumerate(attempts):
        at = t + timedelta(seconds=i * 9.5 + rng.uniform(0, 4))
        out += patient_read(svc, actor, at, pid, status=status, rng=rng, scenario=True)
    first, last = span(out)
    return out, Lookalike(
        kind="failed-patient-reads",
        resembles_rule_id="mass-record-access",
        description=f"{actor.upn} read 45 distinct patients successfully within 10 minutes; "
        "10 further reads of other patients failed with 403 and must not count.",
        actor_user_id=actor.oid,
        actor_app_id=actor.app_id,
        src_ip=actor.ip,
        target_resource_id=svc.stream,
        start=first,
        end=last,
        details={"distinct_patients_succeeded": 45, "distinct_patients_failed": 10},
    )


def keyvault_token_challenges(
    pop: Population, plan: ScenarioPlan, rng: random.Random
) -> tuple[list[Emitted], Lookalike]:
    # The function app scales out: every new instance is challenged once before signing.
    actor = plan.kv_challenger
    vault = pop.vault("kv-phi-prod")
    t = plan.times["kv_challenges"]
    out: list[Emitted] = []
    for i in range(40):
        at = t + timedelta(seconds=i * 7 + rng.uniform(0, 3))
        out.append(
            kv_record(
                vault,
                actor,
                at,
                "Authentication",
                "archive-signing",
                status=401,
                rng=rng,
                scenario=True,
                challenged_op="KeySign",
            )
        )
        sign_at = at + timedelta(milliseconds=rng.randint(30, 400))
        out.append(
            kv_record(
                vault,
                actor,
                sign_at,
                "KeySign",
                "archive-signing",
                status=200,
                rng=rng,
                scenario=True,
            )
        )
    for i in range(3):
        at = t + timedelta(seconds=60 + i * 80 + rng.uniform(0, 10))
        out.append(
            kv_record(
                vault,
                actor,
                at,
                "SecretGet",
                "eventhub-diag-conn",
                status=403,
                rng=rng,
                scenario=True,
            )
        )
    first, last = span(out)
    return out, Lookalike(
        kind="keyvault-token-challenges",
        resembles_rule_id="keyvault-failed-operations",
        description=f"Managed identity {actor.name} got 40 Authentication 401 challenges in 5 "
        "minutes (token challenges, not failures) and only 3 real 403s.",
        actor_user_id=actor.oid,
        actor_app_id=actor.admin_app_id,
        src_ip=actor.ip,
        target_resource_id=vault.stream,
        start=first,
        end=last,
        details={"authentication_401": 40, "forbidden_403": 3},
    )


def storage_delete_cascade(
    pop: Population, plan: ScenarioPlan, rng: random.Random
) -> tuple[list[Emitted], Lookalike]:
    actor = plan.cascade_admin
    res = pop.resource("storage", "stphiscratch02")
    diag = diag_setting_id(res)
    t = plan.times["storage_cascade"]
    out = arm_operation(
        pop,
        actor,
        t,
        ArmCall("MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/DELETE", diag, res.sub),
        rng=rng,
        scenario=True,
    )
    delete = ArmCall("MICROSOFT.STORAGE/STORAGEACCOUNTS/DELETE", res.camel_id, res.sub, "Delete")
    out += arm_operation(pop, actor, t + timedelta(minutes=1), delete, rng=rng, scenario=True)
    plan.gone[res.arm_id.lower()] = t + timedelta(minutes=1)
    first, last = span(out)
    return out, Lookalike(
        kind="diagnostics-deleted-with-resource",
        resembles_rule_id="diagnostics-disabled",
        description=f"{actor.upn} decommissioned storage account stphiscratch02: its diagnostic "
        "setting was deleted one minute before the account itself.",
        actor_user_id=actor.oid,
        actor_app_id=actor.admin_app_id,
        src_ip=actor.ip,
        target_resource_id=diag.lower(),
        start=first,
        end=last,
        details={"parent_resource_id": res.camel_id.lower()},
    )


def incident_actor_normal_traffic(plan: ScenarioPlan, normal: list[Emitted]) -> Lookalike | None:
    """The mass reader's ordinary charting elsewhere in the day: only the evening burst alerts."""
    actor = plan.mass_reader
    mine = [e for e in normal if e.actor == actor.oid and e.source == "fhir"]
    if not mine:
        return None
    first, last = span(mine)
    return Lookalike(
        kind="incident-actor-normal-traffic",
        resembles_rule_id="mass-record-access",
        description=f"{actor.upn} (the mass-record-access actor) also charts a handful of "
        "patients at a time during the day shift; none of that should alert.",
        actor_user_id=actor.oid,
        actor_app_id=actor.app_id,
        src_ip=actor.ip,
        target_resource_id=None,
        start=first,
        end=last,
        details={"records": len(mine)},
    )


def build_lookalikes(
    pop: Population, plan: ScenarioPlan, rng: random.Random
) -> tuple[list[Emitted], list[Lookalike]]:
    records: list[Emitted] = []
    truth: list[Lookalike] = []
    for make in (
        reads_at_threshold,
        failed_reads_not_counted,
        keyvault_token_challenges,
        storage_delete_cascade,
    ):
        recs, item = make(pop, plan, rng)
        records += recs
        truth.append(item)
    return records, truth
