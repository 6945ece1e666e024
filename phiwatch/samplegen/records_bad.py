"""Records a robust parser must survive: broken properties, no time, foreign kinds, non-objects."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta

from .clock import iso7, sample_time
from .emitted import Emitted
from .ids import new_hex, new_uuid
from .plan import ScenarioPlan
from .population import Population
from .records_fhir import patient_read
from .records_keyvault import kv_record

BAD_KINDS = ("properties_malformed", "missing_time", "unknown_category", "non_object_record")


def _malformed_properties(pop: Population, t: datetime, rng: random.Random) -> Emitted:
    vault = pop.vault("kv-shared-platform")
    actor = pop.principal("app-devops-deploy")
    e = kv_record(vault, actor, t, "SecretGet", "acr-pull-token", status=200, rng=rng)
    assert isinstance(e.record, dict)
    # Single quotes and a bare word, as Function App platform logs ship them.
    e.record["properties"] = (
        f"{{'id': '{vault.url}/secrets/acr-pull-token', clientInfo: {actor.user_agent}, "
        "'httpStatusCode': 200}"
    )
    return e


def _missing_time(pop: Population, plan: ScenarioPlan, t: datetime, rng: random.Random) -> Emitted:
    actor = rng.choice(pop.clinicians)
    while plan.busy(actor.oid, t):  # scenario actors' timelines stay exactly as documented
        actor = rng.choice(pop.clinicians)
    e = patient_read(pop.fhir[0], actor, t, rng.choice(actor.panel), status=200, rng=rng)[1]
    assert isinstance(e.record, dict)
    del e.record["time"]
    return e


def _storage_read(pop: Population, t: datetime, rng: random.Random) -> Emitted:
    res = pop.resource("storage", "stphi01")
    actor = pop.principal("app-fhir-bulk-export")
    blob_service = f"{res.camel_id}/blobServices/default"
    path = f"exports/{new_hex(rng, 8)}/Patient-{rng.randint(1, 40)}.ndjson"
    record = {
        "time": iso7(t),
        "resourceId": blob_service,
        "category": "StorageRead",
        "operationName": "GetBlob",
        "operationVersion": "2021-08-06",
        "schemaVersion": "1.0",
        "statusCode": 200,
        "statusText": "Success",
        "durationMs": rng.randint(3, 90),
        "callerIpAddress": f"{actor.ip}:{rng.randint(1024, 65535)}",
        "correlationId": new_uuid(rng),
        "identity": {
            "type": "OAuth",
            "tokenHash": f"key1({new_hex(rng, 16).upper()})",
            "requester": {"appId": actor.app_id, "objectId": actor.oid, "tenantId": pop.tenant_id},
        },
        "location": "eastus",
        "properties": {
            "accountName": "stphi01",
            "serviceType": "blob",
            "objectKey": f"/stphi01/{path}",
        },
        "uri": f"https://stphi01.blob.core.windows.net/{path}",
        "protocol": "HTTPS",
        "resourceType": "Microsoft.Storage/storageAccounts/blobServices",
    }
    return Emitted(t, blob_service.lower(), "bad", record, actor.oid, scenario=True)


def _sign_in(pop: Population, t: datetime, rng: random.Random) -> Emitted:
    actor = rng.choice(pop.clinicians)
    rid = f"/tenants/{pop.tenant_id}/providers/Microsoft.aadiam"
    record = {
        "time": iso7(t),
        "resourceId": rid,
        "operationName": "Sign-in activity",
        "operationVersion": "1.0",
        "category": "SignInLogs",
        "tenantId": pop.tenant_id,
        "resultType": "0",
        "resultSignature": "None",
        "durationMs": 0,
        "callerIpAddress": actor.ip,
        "correlationId": new_uuid(rng),
        "identity": actor.name,
        "Level": 4,
        "location": "US",
        "properties": {
            "id": new_uuid(rng),
            "createdDateTime": iso7(t),
            "userPrincipalName": actor.upn,
            "userId": actor.oid,
            "appId": actor.app_id,
            "ipAddress": actor.ip,
            "status": {"errorCode": 0},
            "isInteractive": True,
        },
    }
    return Emitted(t, rid.lower(), "bad", record, actor.oid, scenario=True)


def _non_object(pop: Population, t: datetime, rng: random.Random, i: int) -> Emitted:
    vault = pop.vault("kv-clinical-apps")
    if i % 2:
        return Emitted(t, vault.stream, "bad", rng.choice((0, 1, 404)), scenario=True)
    # A record that was JSON-encoded twice upstream: a string holding an object.
    inner = kv_record(
        vault,
        pop.principal("app-ehr-portal-backend"),
        t,
        "SecretGet",
        "ehr-db-conn",
        status=200,
        rng=rng,
    )
    return Emitted(t, vault.stream, "bad", json.dumps(inner.record), scenario=True)


def bad_records(
    pop: Population, plan: ScenarioPlan, rng: random.Random, total: int
) -> tuple[list[Emitted], dict[str, int]]:
    per_kind = max(1, total // len(BAD_KINDS))
    out: list[Emitted] = []
    counts: dict[str, int] = {}
    for kind in BAD_KINDS:
        for i in range(per_kind):
            # Spread over the day; none of the streams used here is ever silenced.
            t = sample_time(rng, plan.start, tail=timedelta(minutes=10))
            if kind == "properties_malformed":
                e = _malformed_properties(pop, t, rng)
            elif kind == "missing_time":
                e = _missing_time(pop, plan, t, rng)
            elif kind == "unknown_category":
                e = (_storage_read if i % 2 == 0 else _sign_in)(pop, t, rng)
            else:
                e = _non_object(pop, t, rng, i)
            e.source, e.scenario = "bad", True
            out.append(e)
        counts[kind] = per_kind
    return out, counts


def truncated_body(pop: Population, t: datetime, rng: random.Random) -> str:
    """An Event Hub body cut off mid-record: the whole line is unparseable JSON."""
    vault = pop.vault("kv-clinical-apps")
    actor = pop.principal("app-ehr-portal-backend")
    recs = [
        kv_record(
            vault,
            actor,
            t + timedelta(milliseconds=40 * i),
            "SecretGet",
            "ehr-db-conn",
            status=200,
            rng=rng,
        ).record
        for i in range(3)
    ]
    body = json.dumps({"records": recs}, separators=(",", ":"))
    return body[: int(len(body) * 0.6)]
