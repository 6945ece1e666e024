"""Ordinary FHIR traffic: clinicians charting a few patients at a time, integrations syncing."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from .clock import sample_time
from .emitted import Emitted
from .ids import new_uuid
from .plan import ScenarioPlan
from .population import Actor, FhirService, Population
from .records_fhir import fhir_operation, patient_read

# (path template, interaction, resource type) for what a chart view loads after the Patient read.
_FOLLOW_UPS = (
    ("/Patient/{pid}/Observation?_count=50", "search-compartment", "Observation"),
    ("/Observation?patient={pid}&_sort=-date&_count=100", "search-type", "Observation"),
    ("/Condition?subject=Patient/{pid}", "search-type", "Condition"),
    ("/Encounter?patient=Patient/{pid}&_count=20", "search-type", "Encounter"),
    ("/MedicationRequest?patient={pid}&status=active", "search-type", "MedicationRequest"),
    ("/AllergyIntolerance?patient={pid}", "search-type", "AllergyIntolerance"),
    ("/Patient/{pid}/_history/{n}", "vread", "Patient"),
)
_FOLLOW_UP_WEIGHTS = (5, 5, 3, 3, 2, 2, 1)


def _op(
    svc: FhirService,
    actor: Actor,
    t: datetime,
    path: str,
    interaction: str,
    resource_type: str,
    status: int,
    rng: random.Random,
) -> list[Emitted]:
    return fhir_operation(
        svc, actor, t, path, interaction=interaction, resource_type=resource_type,
        status=status, rng=rng,
    )  # fmt: skip


def _status(rng: random.Random, fail_rate: float) -> int:
    if rng.random() >= fail_rate:
        return 200
    return 403 if rng.random() < 0.6 else 404


def clinician_session(
    svc: FhirService, actor: Actor, t: datetime, rng: random.Random
) -> list[Emitted]:
    out: list[Emitted] = []
    if rng.random() < 0.05:
        out += _op(svc, actor, t, "/metadata", "capabilities", "", 200, rng)
        t += timedelta(seconds=rng.uniform(0.5, 3))
    for _ in range(rng.choices((1, 2, 3), weights=(6, 3, 1))[0]):
        pid = rng.choice(actor.panel)
        status = _status(rng, 0.02)
        out += patient_read(svc, actor, t, pid, status=status, rng=rng)
        t += timedelta(seconds=rng.uniform(1, 6))
        if status != 200:
            continue
        for _ in range(rng.randint(1, 5)):
            path, interaction, rtype = rng.choices(_FOLLOW_UPS, weights=_FOLLOW_UP_WEIGHTS)[0]
            path = path.format(pid=pid, n=rng.randint(1, 9))
            out += _op(svc, actor, t, path, interaction, rtype, _status(rng, 0.01), rng)
            t += timedelta(seconds=rng.uniform(0.5, 20))
        if rng.random() < 0.12:
            if rng.random() < 0.6:
                out += _op(svc, actor, t, "/Observation", "create", "Observation", 201, rng)
            else:
                path = f"/Observation/{new_uuid(rng)}"
                out += _op(svc, actor, t, path, "update", "Observation", 200, rng)
        t += timedelta(seconds=rng.uniform(10, 120))
    return out


def principal_session(
    svc: FhirService, actor: Actor, t: datetime, rng: random.Random
) -> list[Emitted]:
    """Integration engines poll by _lastUpdated; the export app runs bulk $export jobs."""
    since = (t - timedelta(minutes=rng.choice((5, 15, 60)))).strftime("%Y-%m-%dT%H:%M:%SZ")
    if "fhir-export" in actor.duties:
        kick_off = f"/$export?_type=Patient,Observation,Encounter&_since={since}"
        out = _op(svc, actor, t, kick_off, "export", "", 202, rng)
        status_url = f"/_operations/export/{rng.randint(100, 99_999)}"
        for i in range(rng.randint(1, 4)):
            poll_at = t + timedelta(seconds=30 * (i + 1))
            out += _op(svc, actor, poll_at, status_url, "export", "", 202, rng)
        return out
    out = []
    for rtype in rng.sample(("Patient", "Encounter", "Observation", "DiagnosticReport"), 2):
        path = f"/{rtype}?_lastUpdated=gt{since}&_count=100"
        out += _op(svc, actor, t, path, "search-type", rtype, 200, rng)
        t += timedelta(seconds=rng.uniform(0.2, 2))
    if rng.random() < 0.3:
        path = f"/?_type=Patient,Encounter&_lastUpdated=gt{since}"
        out += _op(svc, actor, t, path, "search-system", "", 200, rng)
    return out


def fhir_traffic(
    pop: Population, plan: ScenarioPlan, rng: random.Random, budget: int
) -> list[Emitted]:
    principals = [p for p in pop.principals if {"fhir-search", "fhir-export"} & set(p.duties)]
    staff_weights = [c.weight for c in pop.clinicians]
    out: list[Emitted] = []
    for _ in range(budget * 10):  # bounded: a pathological plan must not spin forever
        if len(out) >= budget:
            break
        t = sample_time(rng, plan.start, tail=timedelta(minutes=20))
        if rng.random() < 0.06:
            actor = rng.choice(principals)
            svc = pop.fhir[0] if rng.random() < 0.5 else pop.fhir[1]
            if not plan.is_silenced(svc.stream, t):
                out += principal_session(svc, actor, t, rng)
            continue
        actor = rng.choices(pop.clinicians, weights=staff_weights)[0]
        if plan.busy(actor.oid, t):
            continue
        home = actor.fhir_home if rng.random() < 0.85 else 1 - actor.fhir_home
        serving = next(
            (s for s in (pop.fhir[home], pop.fhir[1 - home]) if not plan.is_silenced(s.stream, t)),
            None,
        )
        if serving is not None:
            out += clinician_session(serving, actor, t, rng)
    return out
