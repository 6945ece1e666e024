"""The rest of the FHIR audit vocabulary on top of the original traffic: bulk ``$export`` at
system, Patient and Group level with its status polls, ``$everything``, identifier searches,
an EHR backend that calls FHIR with its own identity and names the clinician in the
``X-MS-AZUREFHIR-AUDIT-*`` headers, and the less common interactions."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from .clock import sample_time
from .emitted import Emitted
from .ids import new_uuid
from .plan import ScenarioPlan
from .population import Actor, FhirService, Population
from .records_fhir import fhir_operation

MRN_SYSTEM = "urn:oid:2.16.840.1.113883.3.7204.1"  # the hospital's MRN assigning authority
_PURPOSES = ("TREAT", "TREAT", "TREAT", "HPAYMT", "HOPERAT")


def _op(
    svc: FhirService,
    actor: Actor,
    t: datetime,
    path: str,
    interaction: str,
    rtype: str,
    status: int,
    rng: random.Random,
    headers: dict[str, str] | None = None,
) -> list[Emitted]:
    out = fhir_operation(
        svc, actor, t, path, interaction=interaction, resource_type=rtype, status=status, rng=rng
    )
    if headers:
        for e in out:
            assert isinstance(e.record, dict) and isinstance(e.record["properties"], dict)
            e.record["properties"].update(headers)
    return out


def _identifier(pid: str, rng: random.Random) -> str:
    value = f"{MRN_SYSTEM}|MRN{int(pid):08d}"
    # Clients encode the bar about half the time.
    return value.replace("|", "%7C") if rng.random() < 0.5 else value


def fhir_vocab_traffic(
    pop: Population, plan: ScenarioPlan, rng: random.Random, budget: int
) -> list[Emitted]:
    ehr = pop.principal("app-ehr-portal-backend")
    hl7 = pop.principal("app-hl7-interface")
    exporter = pop.principal("app-fhir-bulk-export")
    numeric = [p for p in pop.patients if p.isdigit()]
    out: list[Emitted] = []
    everything_used: dict[str, int] = {}
    for _ in range(budget * 10):
        if len(out) >= budget:
            break
        roll = rng.random()
        t = sample_time(rng, plan.start, flat=0.1, tail=timedelta(minutes=30))
        svc = pop.fhir[0] if rng.random() < 0.55 else pop.fhir[1]
        if plan.is_silenced(svc.stream, t + timedelta(minutes=10)):
            svc = pop.fhir[0]
        if roll < 0.40:  # EHR backend on behalf of a clinician, headers naming them
            who = rng.choice(pop.clinicians)
            if plan.busy(who.oid, t):
                continue
            headers = {"X-MS-AZUREFHIR-AUDIT-USERID": who.oid}
            if rng.random() < 0.7:
                headers["X-MS-AZUREFHIR-AUDIT-USERPRINCIPALNAME"] = who.upn or ""
            headers["X-MS-AZUREFHIR-AUDIT-PURPOSEOFUSE"] = rng.choice(_PURPOSES)
            headers["X-MS-AZUREFHIR-AUDIT-USERLOCATION"] = rng.choice(("4North", "ED", "ICU"))
            pid = rng.choice(who.panel)
            out += _op(svc, ehr, t, f"/Patient/{pid}", "read", "Patient", 200, rng, headers)
            path = f"/Observation?patient={pid}&_count=50"
            out += _op(
                svc,
                ehr,
                t + timedelta(seconds=1),
                path,
                "search-type",
                "Observation",
                200,
                rng,
                headers,
            )
        elif roll < 0.55:  # registration and the interface engine look patients up by MRN
            caller = ehr if rng.random() < 0.5 else hl7
            path = f"/Patient?identifier={_identifier(rng.choice(numeric), rng)}"
            out += _op(svc, caller, t, path, "search-type", "Patient", 200, rng)
        elif roll < 0.62:  # chart transfer: one $everything, rarely more than one a day each
            who = rng.choice(pop.clinicians)
            if plan.busy(who.oid, t) or everything_used.get(who.oid, 0) >= 2:
                continue
            everything_used[who.oid] = everything_used.get(who.oid, 0) + 1
            path = f"/Patient/{rng.choice(who.panel)}/$everything"
            out += _op(svc, who, t, path, "everything", "Patient", 200, rng)
        elif roll < 0.68:  # bulk export: kick-off, status polls, the final manifest
            kick = rng.choice(
                (
                    "/$export?_type=Patient,Encounter",
                    "/Patient/$export?_type=Patient,Observation&_since=2026-10-01T00:00:00Z",
                    f"/Group/{new_uuid(rng)}/$export?_type=Patient,Condition",
                )
            )
            out += _op(svc, exporter, t, kick, "export", "", 202, rng)
            job = f"/_operations/export/{rng.randint(100, 99_999)}"
            for i in range(rng.randint(2, 5)):
                t += timedelta(seconds=30 * (i + 1))
                out += _op(svc, exporter, t, job, "export", "", 202, rng)
            out += _op(svc, exporter, t + timedelta(seconds=60), job, "export", "", 200, rng)
        elif roll < 0.90:  # the interface engine's batches, transactions and patches
            kind, path, rtype, status = rng.choice(
                (
                    ("batch", "/", "Bundle", 200),
                    ("transaction", "/", "Bundle", 200),
                    ("patch", f"/Encounter/{new_uuid(rng)}", "Encounter", 200),
                    (
                        "conditional-update",
                        f"/Observation?identifier=lab|{new_uuid(rng)[:8]}",
                        "Observation",
                        200,
                    ),
                    ("convert-data", "/$convert-data", "", 200),
                    (
                        "history-instance",
                        f"/Patient/{rng.choice(numeric)}/_history",
                        "Patient",
                        200,
                    ),
                )
            )
            out += _op(svc, hl7, t, path, kind, rtype, status, rng)
        else:  # a clinician's own searches and small corrections
            who = rng.choice(pop.clinicians)
            if plan.busy(who.oid, t):
                continue
            kind, path, rtype, status = rng.choice(
                (
                    (
                        "search-type",
                        f"/Encounter?subject=Patient/{rng.choice(who.panel)}&_count=10",
                        "Encounter",
                        200,
                    ),
                    ("history-type", "/Observation/_history?_count=20", "Observation", 200),
                    ("delete", f"/Observation/{new_uuid(rng)}", "Observation", 204),
                    ("validate", "/Observation/$validate", "Observation", 200),
                )
            )
            out += _op(svc, who, t, path, kind, rtype, status, rng)
    return out
