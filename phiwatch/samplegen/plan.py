"""When scenarios happen and who plays them, so normal traffic can stay out of their way."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .population import Actor, Population

# Minutes after the window start. At least 30 minutes apart so scenarios never overlap.
OFFSETS_MIN = {
    "kv_failures": 130,
    "kv_challenges": 210,
    "reads_at_threshold": 300,
    "failed_reads": 375,
    "diag_delete_kv": 450,
    "storage_cascade": 540,
    "diag_disable_fhir": 630,
    "mass_read": 820,  # late evening: the reader's own traffic is otherwise nil
}


@dataclass(slots=True)
class ScenarioPlan:
    start: datetime
    end: datetime
    mass_reader: Actor
    threshold_reader: Actor
    failed_reader: Actor
    diag_deleter: Actor
    cascade_admin: Actor
    diag_disabler: Actor
    kv_attacker: Actor
    kv_challenger: Actor
    times: dict[str, datetime]
    reservations: dict[str, list[tuple[datetime, datetime]]] = field(default_factory=dict)
    silenced: dict[str, datetime] = field(default_factory=dict)  # stream -> logs stop flowing
    gone: dict[str, datetime] = field(default_factory=dict)  # lower ARM id -> deleted at

    def reserve(self, actor: Actor, at: datetime, before: int, after: int) -> None:
        window = (at - timedelta(minutes=before), at + timedelta(minutes=after))
        self.reservations.setdefault(actor.oid, []).append(window)

    def busy(self, oid: str, t: datetime, span: timedelta = timedelta(minutes=15)) -> bool:
        """True if a session starting at ``t`` would run into one of the actor's scenarios."""
        return any(a <= t + span and t <= b for a, b in self.reservations.get(oid, ()))

    def is_silenced(self, stream: str, t: datetime) -> bool:
        since = self.silenced.get(stream)
        return since is not None and t >= since

    def is_gone(self, arm_id: str, t: datetime) -> bool:
        since = self.gone.get(arm_id.lower())
        return since is not None and t >= since - timedelta(minutes=5)


def make_plan(pop: Population, start: datetime, end: datetime, rng: random.Random) -> ScenarioPlan:
    # Scenario readers need enough ordinary traffic of their own to look like real staff.
    readers = [c for c in pop.clinicians if not c.is_admin and c.weight >= 1.0]
    if len(readers) < 3:
        readers = sorted((c for c in pop.clinicians if not c.is_admin), key=lambda c: -c.weight)
    admins = pop.admins
    plan = ScenarioPlan(
        start=start,
        end=end,
        mass_reader=readers[0],
        threshold_reader=readers[1],
        failed_reader=readers[2],
        diag_deleter=admins[0],
        cascade_admin=admins[1],
        diag_disabler=admins[2],
        kv_attacker=pop.principal("app-hl7-interface"),
        kv_challenger=pop.principal("mi-func-phiwatch"),
        # Off the round minute: nothing real starts at hh:mm:00.0000000.
        times={
            k: start + timedelta(minutes=m, seconds=rng.uniform(3, 50))
            for k, m in OFFSETS_MIN.items()
        },
    )
    t = plan.times
    # The mass reader works days: nothing of theirs from two hours before the burst onwards.
    until_end = int((end - t["mass_read"]).total_seconds() // 60) + 1
    plan.reserve(plan.mass_reader, t["mass_read"], 150, until_end)
    plan.reserve(plan.threshold_reader, t["reads_at_threshold"], 30, 45)
    plan.reserve(plan.failed_reader, t["failed_reads"], 30, 45)
    plan.reserve(plan.kv_attacker, t["kv_failures"], 30, 40)
    plan.reserve(plan.kv_challenger, t["kv_challenges"], 30, 40)
    plan.reserve(plan.diag_deleter, t["diag_delete_kv"], 30, 40)
    plan.reserve(plan.cascade_admin, t["storage_cascade"], 30, 40)
    plan.reserve(plan.diag_disabler, t["diag_disable_fhir"], 30, 40)
    return plan
