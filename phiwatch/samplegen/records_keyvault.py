"""Key Vault ``AuditEvent`` records, with the singular ``identity.claim`` and string durations."""

from __future__ import annotations

import random
from datetime import datetime

from .clock import iso7
from .emitted import Emitted
from .ids import new_uuid
from .population import Actor, Vault

API = "7.4"
ARM_API = "2023-07-01"
STATUS_TEXT = {200: "OK", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}
LONG_OID = "http://schemas.microsoft.com/identity/claims/objectidentifier"
LONG_UPN = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"

# operation -> (object collection, URL suffix after the versioned object, or None if unversioned)
_TARGETS = {
    "SecretGet": ("secrets", None),
    "SecretList": ("secrets", None),
    "KeyGet": ("keys", None),
    "KeyUnwrap": ("keys", "unwrapkey"),
    "KeySign": ("keys", "sign"),
}


def claim(actor: Actor) -> dict[str, str]:
    acr = "0" if actor.kind == "user" else "2"
    if actor.claim_style == "long":
        out = {LONG_OID: actor.oid, "appid": actor.admin_app_id, "appidacr": acr}
        if actor.upn:
            out[LONG_UPN] = actor.upn
        return out
    out = {"oid": actor.oid, "appid": actor.admin_app_id, "appidacr": acr}
    if actor.upn:
        out["upn"] = actor.upn
    return out


def _uris(vault: Vault, op: str, obj: str, arm_path: str) -> tuple[str, str, str]:
    """(properties.id, properties.requestUri, operationVersion) for one operation."""
    if op == "VaultGet":
        mgmt = f"https://management.azure.com{arm_path}?api-version={ARM_API}"
        return f"{vault.url}/", mgmt, ARM_API
    coll, action = _TARGETS[op]
    if op == "SecretList":
        return f"{vault.url}/secrets", f"{vault.url}/secrets?api-version={API}&maxresults=25", API
    version = vault.versions.get(obj, "")
    object_id = f"{vault.url}/{coll}/{obj}/{version}"
    if action is None:
        return object_id, f"{vault.url}/{coll}/{obj}?api-version={API}", API
    return object_id, f"{vault.url}/{coll}/{obj}/{version}/{action}?api-version={API}", API


def kv_record(
    vault: Vault,
    actor: Actor,
    t: datetime,
    op: str,
    obj: str,
    *,
    status: int,
    rng: random.Random,
    anonymous: bool = False,
    scenario: bool = False,
    challenged_op: str = "SecretGet",
) -> Emitted:
    """One Key Vault request. ``op == "Authentication"`` with 401 is the bearer-token challenge
    on a ``challenged_op`` request; its identity is absent when no (expired) token was sent."""
    target_op = challenged_op if op == "Authentication" else op
    object_id, request_uri, version = _uris(vault, target_op, obj or "", vault.camel_id)
    fast = op == "Authentication" or status >= 400
    record: dict[str, object] = {
        "time": iso7(t),
        "resourceId": vault.resource_id,
        "operationName": op,
        "operationVersion": version,
        "category": "AuditEvent",
        "resultType": "Success",  # Key Vault says Success even for 403s; status is what counts
        "resultSignature": STATUS_TEXT[status],
        "resultDescription": "",
        "durationMs": str(rng.randint(1, 12) if fast else rng.randint(8, 140)),
        "callerIpAddress": actor.ip,
        "correlationId": new_uuid(rng),
    }
    if not anonymous:
        record["identity"] = {"claim": claim(actor)}
    record["properties"] = {
        "id": object_id,
        "clientInfo": actor.user_agent,
        "requestUri": request_uri,
        "httpStatusCode": status,
        "isRbacAuthorized": True,
        "tlsVersion": "TLS1_2",
    }
    return Emitted(t, vault.stream, "keyvault", record, actor.oid, scenario)
