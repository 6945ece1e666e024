"""FHIR reads by many distinct actors, shaped like the Health Data Services `AuditLogs` records
the sample generator writes (a Started record plus a Succeeded record per request)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import orjson

from bench.corpus import SHIP_DELAY, Message

_NS = uuid.UUID("0b3f2a6e-5c1d-4e8f-9a7b-6d5c4b3a2f10")
SUB = "D23F0824-128B-4F33-8C5C-7FD0A6A3A450"
TENANT = "7a1c3e5f-2b4d-4f6a-8c9e-0d1f2a3b4c5d"
RESOURCE_ID = (
    f"/SUBSCRIPTIONS/{SUB}/RESOURCEGROUPS/RG-CLINICAL-PROD/PROVIDERS/MICROSOFT.HEALTHCAREAPIS/"
    "WORKSPACES/AHDS-BENCH/FHIRSERVICES/FHIR-BENCH"
)
BASE_URL = "https://ahds-bench-fhir-bench.fhir.azurehealthcareapis.com"
OP_PREFIX = "Microsoft.HealthcareApis/workspaces/fhirservices/"
EHR_APP_ID = "5b2c9d4e-1f3a-4b6c-8d7e-9f0a1b2c3d4e"
PATIENTS = 250_000
PER_BODY = 40  # the most records Azure Monitor puts in one body


def _iso7(t: float) -> str:
    dt = datetime.fromtimestamp(t, tz=UTC)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{dt.microsecond:06d}0Z"


def actor_oid(i: int) -> str:
    return str(uuid.uuid5(_NS, f"actor-{i}"))


def read_pair(i: int, t: float, patient: int) -> list[dict]:
    """Actor `i` reads Patient/`patient` at `t`: the Started and the Succeeded record."""
    oid = actor_oid(i)
    uri = f"{BASE_URL}/Patient/{patient:08d}"
    tail = {
        "callerIpAddress": f"10.{40 + i // 65536 % 16}.{i // 256 % 256}.{i % 254 + 1}",
        "correlationId": str(uuid.uuid5(_NS, f"corr-{i}-{patient}-{t}")),
        "identity": {
            "claims": {
                "iss": f"https://sts.windows.net/{TENANT}/",
                "oid": oid,
                "appid": EHR_APP_ID,
                "upn": f"clinician{i:06d}@contoso-health.org",
            }
        },
        "location": "eastus",
        "uri": uri,
        "properties": {"fhirResourceType": "Patient", "requestUri": uri},
    }
    base = {"resourceId": RESOURCE_ID, "operationName": OP_PREFIX + "read", "category": "AuditLogs"}
    duration = 12 + (i * 37 + patient) % 300
    started = {"time": _iso7(t), **base, "resultType": "Started", "durationMs": 0, **tail}
    done = {
        "time": _iso7(t + duration / 1000),
        **base,
        "resultType": "Succeeded",
        "resultSignature": "200",
        "durationMs": duration,
        **tail,
    }
    return [started, done]


def _bodies(records: list[tuple[float, dict]], per_body: int = PER_BODY) -> Iterator[Message]:
    for k in range(0, len(records), per_body):
        chunk = records[k : k + per_body]
        data = orjson.dumps({"records": [r for _, r in chunk]})
        yield data, round(max(t for t, _ in chunk) + SHIP_DELAY, 3)


def burst(actors: int, start: float, seconds: float = 300.0) -> Iterator[Message]:
    """`actors` distinct actors each read one patient within `seconds` from `start` (one
    detection window), in time order. Lazy: the bodies are not held in memory."""
    step = seconds / max(actors, 1)
    per_body = PER_BODY // 2
    for first in range(0, actors, per_body):
        records = [
            (start + i * step, record)
            for i in range(first, min(first + per_body, actors))
            for record in read_pair(i, start + i * step, (i * 7919) % PATIENTS)
        ]
        yield from _bodies(records)


def trickle(
    start: float, seconds: float, every: float = 20.0, actors: int = 8, patients: int = PATIENTS
) -> list[Message]:
    """A few actors keep reading (`patients` charts) from `start` for `seconds`: moves event
    time forward."""
    records: list[tuple[float, dict]] = []
    n = int(seconds // every)
    for k in range(n):
        t = start + k * every
        for record in read_pair(10_000_000 + k % actors, t, k % patients):
            records.append((t, record))
    return list(_bodies(records, per_body=8))
