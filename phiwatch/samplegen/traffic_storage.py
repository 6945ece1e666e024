"""Blob service logs (``StorageRead``/``StorageWrite``/``StorageDelete``) as a storage account's
blob-service diagnostic setting streams them: OAuth (user and app), SAS, account key and
anonymous callers, ``callerIpAddress`` with its port, MRNs inside blob paths."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from .clock import iso7, sample_time
from .emitted import Emitted
from .ids import new_hex, new_uuid, public_ip
from .plan import ScenarioPlan
from .population import Actor, ArmResource, Population

_CATEGORY = {
    "GetBlob": "StorageRead",
    "GetBlobProperties": "StorageRead",
    "ListBlobs": "StorageRead",
    "PutBlob": "StorageWrite",
    "PutBlock": "StorageWrite",
    "PutBlockList": "StorageWrite",
    "AppendBlock": "StorageWrite",
    "DeleteBlob": "StorageDelete",
}
_READ_ROLE = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"  # Storage Blob Data Reader
_WRITE_ROLE = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"  # Storage Blob Data Contributor
_AGENTS = {
    "viewer": "azsdk-net-Storage.Blobs/12.22.2 (.NET 8.0.10; Microsoft Windows 10.0.22631)",
    "explorer": "Microsoft Azure Storage Explorer, 1.36.0, win32, AzCopy-Version/10.27.0",
    "python": "azsdk-python-storage-blob/12.23.1 Python/3.11.9 (Linux-5.15.0-azure)",
    "lab": "AzCopy/10.26.0 linux amd64",
    "browser": "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) Safari/604.1",
    "fhir": "Microsoft.Health.Fhir/4.0 azsdk-net-Storage.Blobs/12.19.1",
}


@dataclass(frozen=True, slots=True)
class Caller:
    kind: str  # OAuth | SAS | AccountKey | Anonymous
    ip: str
    agent: str
    actor: Actor | None = None
    key_hash: str = ""  # key1(<sha256>) or key1(..),SasSignature(<sha256>)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest().upper()


def _identity(pop: Population, caller: Caller, op: str, rng: random.Random) -> dict[str, object]:
    if caller.kind == "Anonymous":
        return {"type": "Anonymous"}
    if caller.kind != "OAuth":
        return {"type": caller.kind, "tokenHash": caller.key_hash}
    actor = caller.actor
    assert actor is not None
    role = _READ_ROLE if _CATEGORY[op] == "StorageRead" else _WRITE_ROLE
    requester: dict[str, object] = {
        "appId": actor.app_id,
        "audience": "https://storage.azure.com/",
        "objectId": actor.oid,
        "tenantId": pop.tenant_id,
        "tokenIssuer": f"https://sts.windows.net/{pop.tenant_id}/",
    }
    if actor.upn:
        requester["upn"] = actor.upn
    return {
        "type": "OAuth",
        "tokenHash": f"{_sha(actor.oid + op)}",
        "authorization": [
            {
                "action": "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/"
                + ("read" if _CATEGORY[op] == "StorageRead" else "write"),
                "roleAssignmentId": new_uuid(rng),
                "roleDefinitionId": role,
                "principals": [
                    {
                        "id": actor.oid,
                        "type": "User" if actor.kind == "user" else "ServicePrincipal",
                    }
                ],
                "denyAssignmentId": "",
                "type": "RBAC",
                "result": "Granted",
                "reason": "Policy",
            }
        ],
        "requester": requester,
    }


def blob_record(
    pop: Population,
    account: ArmResource,
    t: datetime,
    caller: Caller,
    op: str,
    key: str,
    rng: random.Random,
    *,
    status: int = 200,
    size: int = 0,
) -> Emitted:
    """``key`` is ``container/blob path`` (or ``container`` for ListBlobs)."""
    name = account.camel_id.rsplit("/", 1)[-1]
    texts = {
        200: "Success",
        201: "Success",
        202: "Success",
        403: "AuthorizationPermissionMismatch",
        404: "BlobNotFound",
        409: "PublicAccessNotPermitted",
    }
    metric = {
        200: "Success",
        201: "Success",
        202: "Success",
        403: "AuthorizationError",
        404: "ClientOtherError",
        409: "ClientOtherError",
    }
    query = "?restype=container&comp=list" if op == "ListBlobs" else ""
    if caller.kind == "SAS":
        expiry = (t + timedelta(hours=rng.choice((1, 8, 24)))).strftime("%Y-%m-%dT%H:%M:%SZ")
        sp = "r" if _CATEGORY[op] == "StorageRead" else "cw"
        query += ("&" if query else "?") + f"sv=2022-11-02&sr=b&sp={sp}&se={expiry}&sig=XXXXX"
    uri = f"https://{name}.blob.core.windows.net:443/{key}{query}"
    resource_id = f"{account.camel_id}/blobServices/default"
    duration = rng.randint(2, 60) + size // 400_000
    props = {
        "accountName": name,
        "requestUrl": uri,
        "userAgentHeader": caller.agent,
        "clientRequestId": new_uuid(rng),
        "etag": f"0x8DD{new_hex(rng, 12).upper()}" if status < 300 else "",
        "serverLatencyMs": max(1, duration - rng.randint(0, 2)),
        "serviceType": "blob",
        "operationCount": 0,
        "requestHeaderSize": rng.randint(380, 2600),
        "requestBodySize": size if _CATEGORY[op] == "StorageWrite" else 0,
        "responseHeaderSize": rng.randint(240, 420),
        "responseBodySize": size if _CATEGORY[op] == "StorageRead" and status < 300 else 0,
        "contentLengthHeader": size if _CATEGORY[op] == "StorageWrite" else 0,
        "tlsVersion": "TLS 1.2" if rng.random() < 0.7 else "TLS 1.3",
        "accessTier": "Hot" if op in ("GetBlob", "PutBlob") else "None",
        "objectKey": f"/{name}/{key}",
        "metricResponseType": metric[status],
    }
    record = {
        "time": iso7(t),
        "resourceId": resource_id,
        "category": _CATEGORY[op],
        "operationName": op,
        "operationVersion": "2023-11-03",
        "schemaVersion": "1.0",
        "statusCode": str(status) if rng.random() < 0.02 else status,
        "statusText": texts[status],
        "durationMs": duration,
        "callerIpAddress": f"{caller.ip}:{rng.randint(1024, 65535)}",
        "correlationId": new_uuid(rng),
        "identity": _identity(pop, caller, op, rng),
        "location": "eastus",
        "uri": uri,
        "protocol": "HTTPS",
        "resourceType": "Microsoft.Storage/storageAccounts/blobServices",
        "properties": props,
    }
    actor = caller.actor.oid if caller.actor else None
    return Emitted(t, resource_id.lower(), "storage", record, actor)


def storage_traffic(
    pop: Population, plan: ScenarioPlan, rng: random.Random, budget: int
) -> list[Emitted]:
    phi = pop.resource("storage", "stphi01")
    archive = pop.resource("storage", "stphiarchive01")
    mrns = [f"MRN{int(p):08d}" for p in pop.patients if p.isdigit()]
    ehr = pop.principal("app-ehr-portal-backend")
    func = pop.principal("mi-func-phiwatch")
    exporter = pop.principal("app-fhir-bulk-export")
    key = f"key1({_sha(pop.tenant_id + 'key1')})"
    lab = Caller(
        "SAS",
        public_ip(rng),
        _AGENTS["lab"],
        key_hash=f"{key},SasSignature({_sha(pop.tenant_id + 'lab-sas')})",
    )
    backup = Caller("AccountKey", "10.20.8.14", _AGENTS["lab"], key_hash=key)
    out: list[Emitted] = []

    def doc(mrn: str) -> str:
        kind = rng.choice(("discharge", "imaging-reports", "referrals"))
        return f"{kind}/{mrn}/{rng.choice(('summary', 'report', 'letter'))}-{rng.randint(1, 9)}.pdf"

    for _ in range(budget * 10):
        if len(out) >= budget:
            break
        roll = rng.random()
        t = sample_time(rng, plan.start, flat=0.15, tail=timedelta(minutes=10))
        if roll < 0.5:  # a clinician opens a document through the viewer (delegated OAuth)
            who = rng.choice(pop.clinicians)
            if plan.busy(who.oid, t):
                continue
            caller = Caller("OAuth", who.ip, _AGENTS["viewer"], who)
            mrn = rng.choice(mrns)
            path = f"{doc(mrn)}"
            out.append(blob_record(pop, phi, t, caller, "GetBlobProperties", path, rng))
            status = 200 if rng.random() < 0.97 else rng.choice((403, 404))
            out.append(
                blob_record(
                    pop,
                    phi,
                    t + timedelta(milliseconds=rng.randint(20, 300)),
                    caller,
                    "GetBlob",
                    path,
                    rng,
                    status=status,
                    size=rng.randint(40_000, 2_500_000),
                )
            )
        elif roll < 0.6:  # the EHR backend renders thumbnails with its own identity
            caller = Caller("OAuth", ehr.ip, _AGENTS["viewer"], ehr)
            out.append(
                blob_record(
                    pop,
                    phi,
                    t,
                    caller,
                    "GetBlob",
                    doc(rng.choice(mrns)),
                    rng,
                    size=rng.randint(20_000, 400_000),
                )
            )
        elif roll < 0.7:  # the partner lab drops results with a SAS
            path = f"lab-results/{rng.choice(mrns)}/{t:%Y%m%d}-{new_hex(rng, 6)}.hl7"
            out.append(
                blob_record(
                    pop,
                    phi,
                    t,
                    lab,
                    "PutBlob",
                    path,
                    rng,
                    status=201,
                    size=rng.randint(2_000, 30_000),
                )
            )
        elif roll < 0.8:  # the archive writer appends audit objects (managed identity)
            caller = Caller("OAuth", func.ip, _AGENTS["python"], func)
            path = f"audit-archive/raw/{t:%Y/%m/%d/%H}/{new_hex(rng, 16)}.jsonl.gz"
            out.append(
                blob_record(
                    pop,
                    archive,
                    t,
                    caller,
                    "PutBlob",
                    path,
                    rng,
                    status=201,
                    size=rng.randint(4_000, 900_000),
                )
            )
        elif roll < 0.86:  # FHIR $export writes NDJSON with the export app's identity
            caller = Caller("OAuth", exporter.ip, _AGENTS["fhir"], exporter)
            job = new_hex(rng, 8)
            for part in ("Patient", "Observation", "Encounter")[: rng.randint(1, 3)]:
                path = f"fhir-export/{job}/{part}-1.ndjson"
                out.append(
                    blob_record(
                        pop,
                        archive,
                        t,
                        caller,
                        "PutBlob",
                        path,
                        rng,
                        status=201,
                        size=rng.randint(50_000, 3_000_000),
                    )
                )
                t += timedelta(seconds=rng.uniform(1, 10))
        elif roll < 0.92:  # analysts browse the de-identified research container
            who = rng.choice(pop.clinicians[6:10])
            if plan.busy(who.oid, t):
                continue
            caller = Caller("OAuth", who.ip, _AGENTS["explorer"], who)
            out.append(
                blob_record(
                    pop,
                    phi,
                    t,
                    caller,
                    "ListBlobs",
                    "research-deid",
                    rng,
                    size=rng.randint(2_000, 20_000),
                )
            )
            for _ in range(rng.randint(1, 3)):
                t += timedelta(seconds=rng.uniform(2, 40))
                path = f"research-deid/cohort-{rng.randint(1, 12):02d}/extract.parquet"
                out.append(
                    blob_record(
                        pop,
                        phi,
                        t,
                        caller,
                        "GetBlob",
                        path,
                        rng,
                        size=rng.randint(200_000, 8_000_000),
                    )
                )
        elif roll < 0.95:  # nightly copy job with the account key; retention deletes
            op = "DeleteBlob" if rng.random() < 0.4 else "GetBlob"
            path = f"staging/{t:%Y%m%d}/{new_hex(rng, 8)}.csv"
            out.append(
                blob_record(
                    pop,
                    phi,
                    t,
                    backup,
                    op,
                    path,
                    rng,
                    status=202 if op == "DeleteBlob" else 200,
                    size=0 if op == "DeleteBlob" else rng.randint(1_000, 90_000),
                )
            )
        else:  # the public web assets container, and anonymous probes of private ones
            anon = Caller("Anonymous", public_ip(rng), _AGENTS["browser"])
            if rng.random() < 0.6:
                asset = rng.choice(("logo.svg", "visitor-map.pdf", "parking.png"))
                out.append(
                    blob_record(
                        pop,
                        phi,
                        t,
                        anon,
                        "GetBlob",
                        f"public-assets/{asset}",
                        rng,
                        size=rng.randint(3_000, 300_000),
                    )
                )
            else:
                out.append(
                    blob_record(pop, phi, t, anon, "ListBlobs", "discharge", rng, status=409)
                )
    return out
