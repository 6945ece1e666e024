"""Entra ID directory `AuditLogs` (from `microsoft.aadiam`) → change events.

Role assignments (Core Directory and PIM), user, group and application changes
(next-wave.md §4). Envelope: `resourceId` `/tenants/<tid>/providers/Microsoft.aadiam`,
`operationName` the activity's display name, `identity` a display-name string; `properties`
holds `activityDisplayName`, `category` (RoleManagement, UserManagement, ...),
`loggedByService` (Core Directory, PIM, ...), `result`, `initiatedBy.{user|app}` and
`targetResources[].modifiedProperties[]` whose values are JSON-quoted strings.

FHIR's audit records share the category `AuditLogs` (phiwatch/sources/fhir.py): `matches` is
strict (the aadiam provider, or with no resource id at all the directory record's own shape)
and never takes a record of another provider or with a FHIR operation name, and the registry
asks this normaliser first.

Plane: control. A directory change is a change (who granted which role to whom), like the
Activity Log's role assignments, and tenant-level: the `subscription` grouping keys it `sub:`.

Modified properties can carry personal data (phone numbers, addresses, display names of the
workforce): `NewValue`/`OldValue` keep the values of role, group and application properties
only (what privilege rules judge) and the *names* of every other property changed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

from phiwatch.model import AccessEvent, EventResult, EventType, build_event
from phiwatch.sources.base import NormaliseContext, actor_fields
from phiwatch.sources.fields import event_result, to_str
from phiwatch.sources.record import Claims, Record, RecordRejected
from phiwatch.sources.signins import entra_id, known_address, nested_object, record_time

name = "entra_audit"
PRODUCT = "Entra ID Audit"
PLANE = "control"
# The only category `matches` can accept (lower case): routing asks no other record.
MATCH_CATEGORIES = frozenset({"auditlogs"})

_PROVIDER = "microsoft.aadiam"

# Properties whose values are kept (lower-cased names, or prefixes ending in a dot).
_VALUE_PREFIXES = ("role.", "group.", "approle.")
_VALUE_NAMES = frozenset(
    {
        "accountenabled",
        "roledefinitionoriginid",
        "roledefinitionorigintype",
        "roledefinitionid",
        "templateid",
        "starttime",
        "expirationtime",
        "assignmenttype",
        "membertype",
    }
)
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_MAX_VALUE_CHARS = 256  # one value
_MAX_NAMES = 50  # names of changed properties kept
_MAX_JSON_CHARS = 2048  # NewValue / OldValue as a whole
_MAX_ITEMS = 100  # targets, properties, details read from one record (hostile input)

_RESULTS: dict[str, tuple[EventResult, str]] = {
    "success": ("Success", "success"),
    "failure": ("Failure", "failure"),
    "timeout": ("Failure", "timeout"),
}
_OPERATION_TYPES: dict[str, EventType] = {
    "add": "Create",
    "assign": "Create",
    "create": "Create",
    "update": "Set",
    "patch": "Set",
    "delete": "Delete",
    "remove": "Delete",
    "unassign": "Delete",
}
_FIRST_WORDS: dict[str, EventType] = {
    "add": "Create",
    "create": "Create",
    "register": "Create",
    "invite": "Create",
    "restore": "Create",
    "update": "Set",
    "set": "Set",
    "change": "Set",
    "reset": "Set",
    "delete": "Delete",
    "remove": "Delete",
    "hard": "Delete",  # "Hard delete user"
    "enable": "Enable",
    "disable": "Disable",
}


def matches(record: Record) -> bool:
    if record.category_lower != "auditlogs":
        return False
    resource_id = record.resource_id
    if resource_id:
        return _provider(resource_id) == _PROVIDER
    # No resource id: FHIR's operation names are ARM-style, the directory's are sentences;
    # then the properties must look like a directory audit record.
    if record.operation_name.lower().startswith("microsoft."):
        return False
    try:
        props = record.properties()
    except RecordRejected:
        return False
    return isinstance(props.get("loggedByService"), str) and isinstance(
        props.get("activityDisplayName"), str
    )


def _provider(resource_id: str) -> str | None:
    _, found, last = resource_id.rpartition("/providers/")
    return last.split("/", 1)[0] if found else None


def normalise(record: Record, ctx: NormaliseContext) -> list[AccessEvent]:
    props = record.properties()
    activity = to_str(props.get("activityDisplayName")) or record.operation_name or "Unknown"
    result, details = _result(props, record)
    initiated = nested_object(props.get("initiatedBy"))
    actor, ip = _actor(initiated)
    targets = [t for t in _list(props.get("targetResources")) if isinstance(t, dict)]
    user = next((t for t in targets if _type(t) == "user"), None)
    changes = _changes(targets)
    redact = ctx.pseudonymizer.redact_identifiers
    new_value, old_value, role = _values(changes, _list(props.get("additionalDetails")), redact)
    service = to_str(props.get("loggedByService"))
    category = to_str(props.get("category"))
    fields: dict[str, Any] = {
        "time_generated": record_time(record, props.get("activityDateTime")),
        "event_uid": record.uid,
        "event_original_uid": to_str(props.get("id")) or record.text("correlationid"),
        "event_type": _event_type(activity, to_str(props.get("operationType"))),
        # Who logged it and what kind of change: "PIM/RoleManagement",
        # "Core Directory/UserManagement" (rules tell PIM activations from direct grants).
        "event_sub_type": "/".join(p for p in (service, category) if p) or None,
        "event_result": result,
        "event_result_details": details,
        "event_product": PRODUCT,
        "operation": activity,
        "object": role or _object_name(targets),
        "object_type": "Directory Service Object",
        "src_ip_addr": ip or known_address(record.get("calleripaddress")),
        "http_user_agent": to_str(props.get("userAgent")) or _detail(props, "user-agent"),
        "target_user_id": entra_id(user.get("id")) if user else None,
        "target_username": _upn(user.get("userPrincipalName")) if user else None,
        "target_resource_id": record.resource_id or None,
        "source_category": "AuditLogs",
        "raw_record_ref": ctx.raw_record_ref,
        **actor,
    }
    redacted = ctx.redacted(fields)
    # Values were redacted one by one in _values (GUIDs kept whole: a role template id has
    # digit runs the identifier patterns would take for an MRN).
    redacted["new_value"] = new_value
    redacted["old_value"] = old_value
    return [build_event(redacted)]


def _result(props: dict[str, Any], record: Record) -> tuple[EventResult, str | None]:
    word = (to_str(props.get("result")) or "").lower()
    if word in _RESULTS:
        return _RESULTS[word]
    return event_result(record.text("resulttype")), None


def _actor(initiated: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Actor fields and address of `initiatedBy`: a user, else an application."""
    user = nested_object(initiated.get("user"))
    if entra_id(user.get("id")) or to_str(user.get("userPrincipalName")):
        claims = Claims(
            {"oid": entra_id(user.get("id")), "upn": to_str(user.get("userPrincipalName"))}
        )
        fields = actor_fields(claims)
        fields["actor_user_type"] = "Regular"
        return fields, known_address(user.get("ipAddress"))
    app = nested_object(initiated.get("app"))
    principal = entra_id(app.get("servicePrincipalId"))
    app_id = entra_id(app.get("appId"))
    if principal or app_id or to_str(app.get("displayName")):
        fields = actor_fields(Claims({"oid": principal, "appid": app_id}))
        fields["actor_user_type"] = "ServicePrincipal"
        # "MS-PIM" for PIM's own changes: what tells a grant made through PIM.
        fields["acting_app_name"] = to_str(app.get("displayName")) or to_str(
            app.get("servicePrincipalName")
        )
        return fields, None
    return {}, None


def _event_type(activity: str, operation_type: str | None) -> EventType:
    first = activity.split(" ", 1)[0].lower()
    if first in {"enable", "disable"}:  # "Disable account" is operationType Update
        return _FIRST_WORDS[first]
    by_type = _OPERATION_TYPES.get((operation_type or "").lower())
    return by_type or _FIRST_WORDS.get(first, "Other")


def _changes(targets: list[dict[str, Any]]) -> list[tuple[str, Any, Any]]:
    """(property name, old, new) of every target's modified properties, values decoded."""
    changes = []
    for target in targets[:_MAX_ITEMS]:
        for prop in _list(target.get("modifiedProperties"))[:_MAX_ITEMS]:
            if not isinstance(prop, dict):
                continue
            prop_name = to_str(prop.get("displayName"))
            if prop_name:
                changes.append(
                    (prop_name, _decode(prop.get("oldValue")), _decode(prop.get("newValue")))
                )
    return changes


def _values(
    changes: list[tuple[str, Any, Any]], details: list[Any], redact: Callable[[str], str]
) -> tuple[str | None, str | None, str | None]:
    """NewValue and OldValue as bounded compact JSON (every text in them redacted, GUIDs
    kept), and the role's display name (as on the wire: the caller redacts it)."""
    new: dict[str, Any] = {}
    old: dict[str, Any] = {}
    changed: list[str] = []
    for prop_name, before, after in changes:
        if _keeps_value(prop_name):
            if after is not None:
                new.setdefault(prop_name, _bounded(after))
            if before is not None:
                old.setdefault(prop_name, _bounded(before))
        elif prop_name.lower() == "included updated properties":
            # Its value is the list of the other properties' names, comma-separated.
            names = after if isinstance(after, str) else ""
            changed.extend(n.strip() for n in names.split(",") if n.strip())
        else:
            changed.append(prop_name)
    # PIM puts the role's template id and the assignment window in additionalDetails.
    for detail in details[:_MAX_ITEMS]:
        if isinstance(detail, dict):
            key = to_str(detail.get("key"))
            if key and _keeps_value(key) and to_str(detail.get("value")):
                new.setdefault(key, _bounded(to_str(detail.get("value"))))
    if changed:
        unique = list(dict.fromkeys(n[:_MAX_VALUE_CHARS] for n in changed))
        new["ChangedProperties"] = unique[:_MAX_NAMES]
    role = _role_name(new) or _role_name(old)
    return _json(_redacted(new, redact)), _json(_redacted(old, redact)), role


def _redacted(value: Any, redact: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return value if _GUID.fullmatch(value) else redact(value)
    if isinstance(value, list):
        return [_redacted(v, redact) for v in value]
    if isinstance(value, dict):
        return {redact(k): _redacted(v, redact) for k, v in value.items()}
    return value


def _keeps_value(prop_name: str) -> bool:
    lowered = prop_name.lower()
    return lowered.startswith(_VALUE_PREFIXES) or lowered in _VALUE_NAMES


def _role_name(values: dict[str, Any]) -> str | None:
    for key, value in values.items():
        if key.lower() == "role.displayname" and isinstance(value, str) and value:
            return value
    return None


def _object_name(targets: list[dict[str, Any]]) -> str | None:
    """What was changed, named: a role target, else the first target. A user is named by
    its type only: never by display name (a person's name); who it is is in TargetUserId and
    TargetUsername, which the identifier patterns leave whole, where Object would not."""
    ordered = sorted(targets[:_MAX_ITEMS], key=lambda t: _type(t) != "role")
    for target in ordered:
        if _type(target) == "user":
            return "User"
        named = to_str(target.get("displayName")) or entra_id(target.get("id"))
        if named:
            return named[:_MAX_VALUE_CHARS]
    return None


def _type(target: dict[str, Any]) -> str:
    return (to_str(target.get("type")) or "").lower()


def _detail(props: dict[str, Any], key: str) -> str | None:
    for detail in _list(props.get("additionalDetails"))[:_MAX_ITEMS]:
        if isinstance(detail, dict) and (to_str(detail.get("key")) or "").lower() == key:
            return to_str(detail.get("value"))
    return None


def _decode(value: Any) -> Any:
    """A modified property's value: JSON-quoted text (`"\\"Global Administrator\\""`,
    `"[\\"a\\"]"`) decoded; other text as it is; "" and null are no value."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            decoded = json.loads(text)
        except (ValueError, RecursionError):
            return text
        return decoded if decoded not in ("", None, []) else None
    return value


def _bounded(value: Any, depth: int = 0) -> Any:
    """A value small enough to keep: long text cut, lists and objects cut to a few items and
    levels, numbers that JSON cannot carry (NaN, infinities) dropped."""
    if isinstance(value, str):
        return value[:_MAX_VALUE_CHARS]
    if isinstance(value, list | dict) and depth >= 3:
        return None
    if isinstance(value, list):
        return [_bounded(v, depth + 1) for v in value[:10]]
    if isinstance(value, dict):
        return {
            str(k)[:_MAX_VALUE_CHARS]: _bounded(v, depth + 1) for k, v in list(value.items())[:10]
        }
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bool | int):
        return value if abs(value) < 2**53 else str(value)  # JSON numbers stay exact
    return None


def _json(values: dict[str, Any]) -> str | None:
    """Compact JSON within _MAX_JSON_CHARS: entries dropped from the end until it fits."""
    if not values:
        return None
    items = list(values.items())
    while items:
        text = json.dumps(dict(items), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        if len(text) <= _MAX_JSON_CHARS:
            return text
        items.pop()
    return None


def _list(value: Any) -> list[Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            return []
    return value if isinstance(value, list) else []


def _upn(value: Any) -> str | None:
    text = to_str(value)
    return text if text and "@" in text else None
