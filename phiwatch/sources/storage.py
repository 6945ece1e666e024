"""Storage resource logs (`StorageRead`, `StorageWrite`, `StorageDelete`) → access events.

Fields (Event Hubs form, next-wave.md §2, azure-formats.md §2e): `operationName` (the REST
operation: GetBlob, PutBlob, ...), `statusCode`/`statusText` (no resultType), `callerIpAddress`
(`ip:port`), `identity.{type, tokenHash, requester}`, `properties.{objectKey, userAgentHeader,
responseBodySize}`. Decisions:

* **Result.** The HTTP status decides (below 400 is a success: 206 and 304 are answers); a
  record without one is judged by its `statusText` (`Success`, `SASSuccess`,
  `AnonymousSuccess` or an error code), else NA. The details are the status text (the error
  code an analyst searches for), else the status.
* **Who.** OAuth: `identity.requester` (`objectId` → ActorUserId, `upn` → ActorUsername,
  `appId` → ActingAppId). SAS and account key carry no principal, only a hash of the key or
  signature (`identity.tokenHash`): its keyed hash (`cr_` + 32 hex, never the hash itself,
  which anyone holding the key could recompute) is `CredentialId`, and the actor key when no
  principal is there (phiwatch.detect.grouping.actor_key: object id, app, credential,
  address). `LogonMethod` is the authentication type (OAuth, SAS, AccountKey, Anonymous,
  Kerberos, TrustedAccess).
* **What.** `objectKey` is `/<account>/<container>/<blob path>`. Blob paths name patients
  (`/phistore/discharge/MRN123/summary.pdf`), so the path never leaves: `Object` is
  `<account>/<container>/bh_<keyed hash of the path>` (distinct blobs stay countable), and
  neither `uri` nor `requestUrl` is read. A path one of `PHIWATCH_STORAGE_PATIENT_PATTERNS`
  matches keeps its shape with each identifier replaced by its PatientRef, and the event
  gets that PatientRef (one event per patient, as FHIR searches). PatientRefs are keyed per
  account (namespace `azure-storage/<account>`): blob names are unique per account only, as
  FHIR ids are per server.
* **PHI.** A container `PHIWATCH_STORAGE_PHI_CONTAINERS` names (or every container, when none
  is configured) holds PHI: `clinical`, since the documents kept in blobs (discharge
  summaries, imaging, lab reports, scanned charts) are health records, and a container of
  unknown content must count as the most common kind of PHI, not as none. Operations on the
  account itself (list containers, service properties) touch no container: `none`.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any
from urllib.parse import unquote

from phiwatch.model import (
    AccessEvent,
    ActorUserType,
    EventResult,
    EventType,
    PhiCategory,
    build_event,
)
from phiwatch.sources.base import NormaliseContext
from phiwatch.sources.fields import subscription_of, to_int, to_str
from phiwatch.sources.record import Record

name = "storage"
PRODUCT = "Azure Storage"
# Data plane: who read or wrote which blob; its detections group by the actor.
PLANE = "data"

# Lower-cased category → its canonical spelling (the event's SourceCategory).
CATEGORIES = {c.lower(): c for c in ("StorageRead", "StorageWrite", "StorageDelete")}
# The categories `matches` can accept (lower case): routing asks no other record.
MATCH_CATEGORIES = frozenset(CATEGORIES)

# The REST operations the blob service logs (and the Data Lake ones on the same account).
_TYPES: dict[str, EventType] = {
    **dict.fromkeys(
        [
            "GetBlob",
            "GetBlobProperties",
            "GetBlobMetadata",
            "GetBlobTags",
            "GetBlockList",
            "GetPageRegions",
            "GetPageRegionsDiff",
            "QueryBlobContents",
            "FindBlobsByTags",
            "ListBlobs",
            "ListContainers",
            "GetContainerProperties",
            "GetContainerMetadata",
            "GetContainerACL",
            "GetBlobServiceProperties",
            "GetBlobServiceStats",
            "GetAccountInformation",
            # The read side of a copy: the source blob's content leaves through it.
            "CopyBlobSource",
            "ReadFile",
            "GetPathProperties",
            "GetPathAccessControl",
            "ListFilesystems",
            "ListFilesystemDir",
            "ListFilesystemFile",
        ],
        "Read",
    ),
    **dict.fromkeys(
        [
            "PutBlob",
            "PutBlock",
            "PutBlockList",
            "PutBlockFromURL",
            "PutBlobFromURL",
            "CopyBlob",
            "CopyBlobFromURL",
            "StartCopyBlob",
            "IncrementalCopyBlob",
            "SnapshotBlob",
            "CreateContainer",
            "UndeleteBlob",
            "UndeleteContainer",
            "CreateFilesystem",
            "CreatePathFile",
            "CreatePathDir",
        ],
        "Create",
    ),
    **dict.fromkeys(
        [
            "PutPage",
            "PutPageFromURL",
            "ClearPage",
            "AppendBlock",
            "AppendBlockFromURL",
            "SetBlobProperties",
            "SetBlobMetadata",
            "SetBlobTags",
            "SetBlobTier",
            "SetBlobExpiry",
            "SetBlobImmutabilityPolicy",
            "SetBlobLegalHold",
            "SetContainerMetadata",
            # Who may read a container (public access, stored access policies): a change of
            # exposure, the public-exposure rule's input.
            "SetContainerACL",
            "SetBlobServiceProperties",
            "RenameContainer",
            "AppendFile",
            "FlushFile",
            "RenamePathFile",
            "RenamePathDir",
            "SetPathAccessControl",
            "SetPathProperties",
            "SetFilesystemProperties",
        ],
        "Set",
    ),
    **dict.fromkeys(
        [
            "DeleteBlob",
            "DeleteContainer",
            "DeleteBlobImmutabilityPolicy",
            "DeleteFilesystem",
            "DeletePath",
            "DeleteFile",
            "DeleteDirectory",
        ],
        "Delete",
    ),
    # A user delegation key signs SAS tokens: issuing one is an action, not a read of data.
    "GetUserDelegationKey": "Execute",
    "BlobBatch": "Execute",
    "SubmitBatch": "Execute",
}
_BY_NAME = {key.lower(): value for key, value in _TYPES.items()}
# Operations not in the table (new REST verbs, queue/table/file services) by their verb.
_PREFIXES: tuple[tuple[tuple[str, ...], EventType], ...] = (
    (("delete", "clear"), "Delete"),
    (("get", "list", "read", "query", "find", "peek"), "Read"),
    (("put", "create", "copy", "insert", "snapshot", "undelete", "upload"), "Create"),
    (("set", "update", "merge", "append", "flush", "rename", "patch"), "Set"),
)

_METHODS = {
    "oauth": "OAuth",
    "sas": "SAS",
    "saskey": "SAS",
    "accountkey": "AccountKey",
    "sharedkey": "AccountKey",
    "anonymous": "Anonymous",
    "kerberos": "Kerberos",
    "trustedaccess": "TrustedAccess",
}
# Authentication without a principal: the key or signature is all that ties requests together.
_KEYED_METHODS = {"SAS", "AccountKey"}
_PRINCIPAL_TYPES: dict[str, ActorUserType] = {
    "user": "Regular",
    "serviceprincipal": "ServicePrincipal",
    "managedidentity": "ManagedIdentity",
}
_UPN = re.compile(r"[^\s/\\@]+@[^\s/\\@]+\.[^\s/\\@]+")
_KEY_HASH = re.compile(r"key\d\s*\(", re.IGNORECASE)
# Characters that must not reach a name: controls, format characters (the bidirectional
# overrides U+202E and friends, zero-width joiners), line and paragraph separators.
_INVISIBLE = {"Cc", "Cf", "Zl", "Zp"}
_MAX_METHOD = 64
_MAX_BYTES = 2**63 - 1  # a long in Log Analytics


def matches(record: Record) -> bool:
    # These categories come from Microsoft.Storage only, so the category alone decides (a
    # record without its resource id is still a Storage record, not an unknown category).
    return record.category_lower in CATEGORIES


def event_type_of(operation: str) -> EventType:
    key = operation.strip().lower()
    known = _BY_NAME.get(key)
    if known is not None:
        return known
    for prefixes, event_type in _PREFIXES:
        if key.startswith(prefixes):
            return event_type
    return "Other"  # leases, aborted copies, ...


# ------------------------------------------------------------------ settings


def compile_patient_patterns(patterns: list[str] | tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    """PHIWATCH_STORAGE_PATIENT_PATTERNS, compiled (Settings has checked each has one group)."""
    return tuple(re.compile(p) for p in patterns)


def parse_phi_containers(entries: list[str] | tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """PHIWATCH_STORAGE_PHI_CONTAINERS as (account, container prefix) pairs, lower-cased
    (account and container names are lower case in Azure)."""
    pairs = []
    for entry in entries:
        account, _, prefix = entry.strip().removeprefix("/").rstrip("/").lower().partition("/")
        pairs.append((account, prefix))
    return tuple(pairs)


def is_phi_container(
    account: str | None, container: str | None, configured: tuple[tuple[str, str], ...]
) -> bool:
    if not container:
        return False  # the account itself: no container's content
    if not configured:
        return True  # the safe default: nothing configured, everything is PHI
    return any(account == acct and container.startswith(prefix) for acct, prefix in configured)


# ------------------------------------------------------------------ identity


class _Caller:
    __slots__ = ("app_id", "credential", "method", "object_id", "upn", "user_type")

    def __init__(self) -> None:
        self.method: str | None = None
        self.object_id: str | None = None
        self.upn: str | None = None
        self.app_id: str | None = None
        self.user_type: ActorUserType | None = None
        self.credential: str | None = None  # the raw token hash; never leaves this module


def _as_dict(value: Any) -> dict[str, Any] | None:
    """An object, or JSON text of one; keys lower-cased (casing varies by schema version)."""
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if not isinstance(value, dict):
        return None
    return {str(k).lower(): v for k, v in value.items()}


def clean_name(value: Any) -> str | None:
    text = to_str(value)
    if text is None:
        return None
    if text.isprintable():  # C-speed: no Cc/Cf/Zl/Zp character in it, nothing to remove
        return text
    return "".join(ch for ch in text if unicodedata.category(ch) not in _INVISIBLE) or None


def _method(type_text: str | None) -> str | None:
    if type_text is None:
        return None
    canonical = _METHODS.get(re.sub(r"[\s_-]", "", type_text).lower())
    return canonical or clean_name(type_text[:_MAX_METHOD])


def _caller(identity: Any) -> _Caller:
    caller = _Caller()
    fields = _as_dict(identity)
    if fields is None:
        # `identity` as a plain string: the authentication type, when it names one. Any
        # other text is not copied (it could be anything).
        text = to_str(identity)
        if text is not None:
            caller.method = _METHODS.get(re.sub(r"[\s_-]", "", text).lower())
        return caller
    requester = _as_dict(fields.get("requester")) or {}
    oid = to_str(requester.get("objectid"))
    caller.object_id = oid.lower() if oid else None
    upn = clean_name(requester.get("upn"))
    # ActorUsername is not redacted (who acted must stay readable), so only a UPN-shaped
    # value is taken: one name, one @, a dotted domain, nothing a path could be spliced into.
    caller.upn = upn if upn and _UPN.fullmatch(upn) else None
    app = to_str(requester.get("appid"))
    caller.app_id = app.lower() if app else None
    principal_type = _principal(fields.get("authorization"), caller)
    token_hash = to_str(fields.get("tokenhash"))
    caller.method = _method(to_str(fields.get("type")))
    if caller.method is None:
        caller.method = _inferred_method(token_hash, caller)
    if caller.method in _KEYED_METHODS and token_hash:
        caller.credential = "".join(token_hash.split()).lower()
    if caller.upn:
        caller.user_type = "Regular"
    elif principal_type is not None:
        caller.user_type = principal_type
    elif caller.app_id and caller.object_id:
        caller.user_type = "ServicePrincipal"  # an app's own token: no UPN
    return caller


def _principal(authorization: Any, caller: _Caller) -> ActorUserType | None:
    """The RBAC decision's principal: its type, and its id when the requester gave none."""
    if not isinstance(authorization, list):
        return None
    for item in authorization:
        entry = _as_dict(item)
        principals = entry.get("principals") if entry else None
        if not isinstance(principals, list):
            continue
        for listed in principals:
            principal = _as_dict(listed)
            if not principal:
                continue
            pid = to_str(principal.get("id"))
            if caller.object_id is None and pid:
                caller.object_id = pid.lower()
            kind = to_str(principal.get("type"))
            return _PRINCIPAL_TYPES.get(kind.lower()) if kind else None
    return None


def _inferred_method(token_hash: str | None, caller: _Caller) -> str | None:
    if token_hash and "sassignature(" in token_hash.lower():
        return "SAS"
    if token_hash and _KEY_HASH.match(token_hash.strip()):
        return "AccountKey"
    if caller.object_id or caller.app_id:
        return "OAuth"
    return None


# ------------------------------------------------------------------ object


def _split_key(object_key: str | None) -> tuple[str | None, str | None, str | None]:
    """`/<account>/<container>/<blob path>` → its three parts (any may be missing)."""
    if not object_key:
        return None, None, None
    parts = object_key.strip().lstrip("/").split("/", 2)
    account = parts[0].lower() or None
    container = (parts[1].lower() or None) if len(parts) > 1 else None
    blob = (parts[2] or None) if len(parts) > 2 else None
    return account, container, unquote(blob) if blob else None


def _account_of(resource_id: str) -> str | None:
    marker = "/providers/microsoft.storage/storageaccounts/"
    at = resource_id.find(marker)
    if at < 0:
        return None
    return resource_id[at + len(marker) :].split("/", 1)[0] or None


def _patient_spans(blob: str, patterns: tuple[re.Pattern[str], ...]) -> list[tuple[int, int]]:
    spans = sorted(
        m.span(1)
        for pattern in patterns
        for m in pattern.finditer(blob)
        if m.group(1)  # an optional group that took part in no match names nobody
    )
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _blob_object(
    account: str | None, container: str | None, blob: str, ctx: NormaliseContext
) -> tuple[str, list[str]]:
    """The blob's `Object` and the PatientRefs its path names."""
    prefix = f"{account or ''}/{container or ''}"
    spans = _patient_spans(blob, ctx.storage_patient_patterns)
    if not spans:
        digest = ctx.pseudonymizer.keyed_hash("storage-blob", f"{prefix}/{blob}")
        return f"{prefix}/bh_{digest}", []
    namespace = f"azure-storage/{account or 'unknown-account'}"
    refs: list[str] = []
    out: list[str] = []
    at = 0
    for start, end in spans:
        ref = ctx.pseudonymizer.patient_ref(namespace, blob[start:end])
        out += [blob[at:start], ref]
        at = end
        if ref not in refs:
            refs.append(ref)
    out.append(blob[at:])
    return f"{prefix}/{''.join(out)}", refs


# ------------------------------------------------------------------ result


def _result(status: int | None, text: str | None) -> EventResult:
    if status is not None:
        return "Success" if status < 400 else "Failure"
    if text is not None:
        return "Success" if text.lower().endswith("success") else "Failure"
    return "NA"


def _status(record: Record, props: dict[str, Any]) -> int | None:
    for value in (record.get("statuscode"), props.get("statuscode"), record.get("resultsignature")):
        status = to_int(value)
        if status is not None and 100 <= status <= 999:
            return status
    return None


# ------------------------------------------------------------------ normalise


def _object_key(record: Record, props: dict[str, Any]) -> str | None:
    key = to_str(props.get("objectkey"))
    if key is None:
        # The documentation's example record puts it under identity.properties.
        identity = _as_dict(record.get("identity")) or {}
        key = to_str((_as_dict(identity.get("properties")) or {}).get("objectkey"))
    return key


def normalise(record: Record, ctx: NormaliseContext) -> list[AccessEvent]:
    time = record.time()
    props = {str(k).lower(): v for k, v in record.properties().items()}
    operation = record.operation_name or "Unknown"
    status = _status(record, props)
    status_text = record.text("statustext") or to_str(props.get("statustext"))
    # The documented `metricResponseType` ("Success", "AuthorizationFailure") is the outcome
    # left when a record reaches us without its status code and text.
    metric = to_str(props.get("metricresponsetype"))
    result = _result(status, status_text or metric)
    resource_id = record.resource_id
    caller = _caller(record.get("identity"))

    account, container, blob = _split_key(_object_key(record, props))
    if account is None:
        named = to_str(props.get("accountname"))
        account = named.lower() if named else _account_of(resource_id)
    patient_refs: list[str] = []
    obj: str | None
    if blob is not None:
        obj, patient_refs = _blob_object(account, container, blob, ctx)
        level, object_type = "Blob", "Other"
    elif container is not None:
        obj, level, object_type = f"{account or ''}/{container}", "Container", "Cloud Resource"
    else:
        obj, level, object_type = account, "Account", "Cloud Resource"
    phi: PhiCategory = (
        "clinical" if is_phi_container(account, container, ctx.storage_phi_containers) else "none"
    )
    size = to_int(props.get("responsebodysize"))
    credential = caller.credential
    common = ctx.redacted(
        {
            "time_generated": time,
            "event_original_uid": record.text("correlationid"),
            "event_type": event_type_of(operation),
            "event_sub_type": level,
            "event_result": result,
            "event_result_details": status_text or (str(status) if status is not None else None),
            "event_product": PRODUCT,
            "operation": operation,
            "object": obj,
            "object_type": object_type,
            "actor_user_id": caller.object_id,
            "actor_username": caller.upn,
            "actor_user_type": caller.user_type,
            "acting_app_id": caller.app_id,
            "credential_id": (
                "cr_" + ctx.pseudonymizer.keyed_hash("storage-credential", credential)
                if credential
                else None
            ),
            "logon_method": caller.method,
            "src_ip_addr": record.caller_ip(),
            "http_user_agent": to_str(props.get("useragentheader")),
            "target_resource_id": resource_id or None,
            "dvc_scope_id": subscription_of(resource_id),
            "response_bytes": size if size is not None and 0 <= size <= _MAX_BYTES else None,
            "phi_category": phi,
            "source_category": CATEGORIES.get(record.category_lower, record.category),
            "raw_record_ref": ctx.raw_record_ref,
        }
    )
    refs: list[str | None] = list(patient_refs) or [None]
    return [
        build_event(
            {
                **common,
                "event_uid": record.uid if i == 0 else f"{record.uid}-{i}",
                "patient_ref": ref,
            }
        )
        for i, ref in enumerate(refs)
    ]
