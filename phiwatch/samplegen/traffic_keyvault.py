"""Ordinary Key Vault traffic: token challenges, then secret/key calls; rare isolated failures."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from .clock import sample_time
from .emitted import Emitted
from .plan import ScenarioPlan
from .population import Actor, Population
from .records_keyvault import kv_record

MAX_FAILURES_PER_CALLER = 2
FAILURE_GAP = timedelta(minutes=60)  # isolated failures must never look like a burst


def _may_fail(
    plan: ScenarioPlan, failures: dict[str, list[datetime]], actor: Actor, t: datetime
) -> bool:
    past = failures.setdefault(actor.oid, [])
    return (
        len(past) < MAX_FAILURES_PER_CALLER
        and all(abs(t - f) > FAILURE_GAP for f in past)
        and not plan.busy(actor.oid, t - FAILURE_GAP, span=2 * FAILURE_GAP)
    )


def keyvault_traffic(
    pop: Population, plan: ScenarioPlan, rng: random.Random, budget: int
) -> list[Emitted]:
    callers = [a for a in pop.principals + pop.clinicians if a.oid in pop.kv_grants]
    weights = [a.weight * (4.0 if a.kind != "user" else 0.3) for a in callers]
    failures: dict[str, list[datetime]] = {}
    out: list[Emitted] = []
    for _ in range(budget * 10):
        if len(out) >= budget:
            break
        # Apps run around the clock, so half the load ignores the day curve.
        t = sample_time(rng, plan.start, flat=0.5, tail=timedelta(minutes=10))
        actor = rng.choices(callers, weights=weights)[0]
        if plan.busy(actor.oid, t):
            continue
        grants = pop.kv_grants[actor.oid]
        vault = rng.choice(grants).vault
        if plan.is_silenced(vault.stream, t):
            continue
        mine = [g for g in grants if g.vault is vault]
        if rng.random() < 0.7:
            # A fresh client first gets a 401 challenge; many send no token at all then.
            first = mine[0]
            out.append(
                kv_record(
                    vault,
                    actor,
                    t,
                    "Authentication",
                    first.obj,
                    status=401,
                    rng=rng,
                    anonymous=rng.random() < 0.5,
                    challenged_op=first.op,
                )
            )
            t += timedelta(milliseconds=rng.randint(5, 250))
        for _ in range(rng.randint(1, 5)):
            grant = rng.choice(mine)
            status = 200
            if rng.random() < 0.01 and _may_fail(plan, failures, actor, t):
                status = 403 if rng.random() < 0.6 else 404
                failures[actor.oid].append(t)
            out.append(kv_record(vault, actor, t, grant.op, grant.obj, status=status, rng=rng))
            t += timedelta(milliseconds=rng.randint(20, 3000))
    return out
