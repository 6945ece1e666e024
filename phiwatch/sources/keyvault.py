"""Key Vault `AuditEvent` records → access events.

Failure is decided by `httpStatusCode` (≥ 300): `resultType` says "Success" for most failed
calls, so it is no signal (azure-formats.md §2a).
"""

from __future__ import annotations

import re
from functools import lru_cache

from phiwatch.model import AccessEvent, EventType, build_event
from phiwatch.sources.base import NormaliseContext, actor_fields
from phiwatch.sources.fields import event_result, subscription_of, to_int, to_str
from phiwatch.sources.record import Record

name = "keyvault"
PRODUCT = "Key Vault"
# Data plane: who read or used what; its detections group by the actor.
PLANE = "data"
# The only category `matches` can accept (lower case): routing asks no other record.
MATCH_CATEGORIES = frozenset({"auditevent"})

# Operation names are ObjectVerb: SecretGet, KeyUnwrap, VaultPut, Authentication, ...
_OBJECT_VERB = re.compile(r"^(Vault|Secret|Key|Certificate|Storage|ManagedHsm)(\w+)$")
_READ_VERBS = {
    "Get",
    "List",
    "ListVersions",
    "Backup",
    "Decrypt",
    "Unwrap",
    "Verify",
    "GetDeleted",
    "ListDeleted",
    "Release",
}
_DELETE_VERBS = {"Delete", "Purge"}
_CREATE_VERBS = {"Create", "Import", "Restore", "Recover"}
_EXECUTE_VERBS = {"Sign", "Encrypt", "Wrap", "Rotate"}


def matches(record: Record) -> bool:
    return (
        record.category_lower == "auditevent"
        and "/providers/microsoft.keyvault/" in record.resource_id
    )


def _event_type(operation: str) -> EventType:
    if operation == "Authentication":
        return "Logon"
    match = _OBJECT_VERB.match(operation)
    verb = match.group(2) if match else operation
    if verb in _READ_VERBS:
        return "Read"
    if verb in _DELETE_VERBS:
        return "Delete"
    if verb in _CREATE_VERBS:
        return "Create"
    if verb in _EXECUTE_VERBS:
        return "Execute"
    if verb in {"Set", "Put", "Patch", "Update"}:
        return "Set"
    return "Other"


def _object_kind(operation: str) -> str | None:
    match = _OBJECT_VERB.match(operation)
    return match.group(1) if match else None


def _object_type(operation: str) -> str:
    return "Cloud Resource" if operation.startswith("Vault") else "Configuration Atom"


def _operation_facts(operation: str) -> tuple[EventType, str | None, str]:
    """(event type, object kind, object type) of an operation name: read once per name (a
    vault logs a few dozen), not with three regular expressions per record."""
    if len(operation) > _MAX_CACHED_OPERATION:
        return _event_type(operation), _object_kind(operation), _object_type(operation)
    return _facts_cached(operation)


@lru_cache(maxsize=512)
def _facts_cached(operation: str) -> tuple[EventType, str | None, str]:
    return _event_type(operation), _object_kind(operation), _object_type(operation)


_MAX_CACHED_OPERATION = 256


def normalise(record: Record, ctx: NormaliseContext) -> list[AccessEvent]:
    props = record.properties()
    operation = record.operation_name or "Unknown"
    status = to_int(props.get("httpStatusCode"))
    if status is None:
        status = to_int(record.get("resultsignature"))
    result = event_result(record.text("resulttype"), status, success_below=300, status_decides=True)
    details = str(status) if status is not None else record.text("resultsignature")
    resource_id = record.resource_id
    event_type, object_kind, object_type = _operation_facts(operation)
    fields = {
        "time_generated": record.time(),
        "event_uid": record.uid,
        "event_original_uid": record.text("correlationid"),
        "event_type": event_type,
        "event_sub_type": object_kind,
        "event_result": result,
        "event_result_details": details,
        "event_product": PRODUCT,
        "operation": operation,
        # The object's name stays readable (which secret was read); identifiers in it do not.
        "object": to_str(props.get("id")) or resource_id.rsplit("/", 1)[-1] or None,
        "object_type": object_type,
        "src_ip_addr": record.caller_ip(),
        "http_user_agent": to_str(props.get("clientInfo")),
        "target_resource_id": resource_id or None,
        "dvc_scope_id": subscription_of(resource_id),
        "source_category": "AuditEvent",
        "raw_record_ref": ctx.raw_record_ref,
        **actor_fields(record.claims()),
    }
    return [build_event(ctx.redacted(fields))]
