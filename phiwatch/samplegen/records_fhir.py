"""FHIR ``AuditLogs`` records: one Started plus one Succeeded/Failed record per request."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from .clock import fhir_space, iso7
from .emitted import Emitted
from .ids import new_uuid
from .population import Actor, FhirService


def _claims(svc: FhirService, actor: Actor) -> dict[str, str]:
    claims = {"iss": svc.issuer, "oid": actor.oid, "appid": actor.app_id}
    if actor.upn:
        claims["upn"] = actor.upn
    return claims


def fhir_operation(
    svc: FhirService,
    actor: Actor,
    t: datetime,
    path: str,
    *,
    interaction: str,
    resource_type: str,
    status: int,
    rng: random.Random,
    ip: str | None = None,
    scenario: bool = False,
) -> list[Emitted]:
    """The Started/terminal pair for one request; ``path`` is everything after the base URL."""
    uri = svc.base_url + path
    corr = new_uuid(rng)
    duration = rng.randint(12, 380) if status < 400 else rng.randint(3, 45)
    done = t + timedelta(milliseconds=duration)
    base = {
        "resourceId": svc.resource_id,
        "operationName": svc.op_prefix + interaction,
        "category": "AuditLogs",
    }
    tail = {
        "callerIpAddress": ip or actor.ip,
        "correlationId": corr,
        "identity": {"claims": _claims(svc, actor)},
        "location": svc.location,
        "uri": uri,
        "properties": {"fhirResourceType": resource_type, "requestUri": uri},
    }
    stamp = iso7 if svc.iso_time else fhir_space
    # The request has no status yet when Started is logged, so that record carries none.
    started = {"time": stamp(t), **base, "resultType": "Started", "durationMs": 0, **tail}
    terminal = {
        "time": stamp(done),
        **base,
        "resultType": "Succeeded" if status < 400 else "Failed",
        "resultSignature": str(status) if svc.iso_time else status,
        "durationMs": duration,
        **tail,
    }
    return [
        Emitted(t, svc.stream, "fhir", started, actor.oid, scenario),
        Emitted(done, svc.stream, "fhir", terminal, actor.oid, scenario),
    ]


def patient_read(
    svc: FhirService,
    actor: Actor,
    t: datetime,
    patient_id: str,
    *,
    status: int,
    rng: random.Random,
    ip: str | None = None,
    scenario: bool = False,
) -> list[Emitted]:
    return fhir_operation(
        svc,
        actor,
        t,
        f"/Patient/{patient_id}",
        interaction="read",
        resource_type="Patient",
        status=status,
        rng=rng,
        ip=ip,
        scenario=scenario,
    )
