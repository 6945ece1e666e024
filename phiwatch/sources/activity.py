"""Subscription Activity Log, administrative events (diagnostic settings, roles, deletes).

Streamed Activity records carry `category` values such as `Administrative`, `Write`,
`Action` or `Delete`; `properties.eventCategory` is the reliable field (azure-formats.md §1).
"""

from __future__ import annotations

import json
from typing import Any

from phiwatch.model import AccessEvent, EventResult, EventType, build_event
from phiwatch.sources.activity_changes import (
    all_secret,
    body_properties,
    change_key,
    new_value,
)
from phiwatch.sources.base import (
    NON_TERMINAL_RESULTS,
    NormaliseContext,
    actor_fields,
    skip_if_non_terminal,
)
from phiwatch.sources.fields import (
    event_result,
    in_event_range,
    normalise_ip,
    parse_time,
    subscription_of,
    to_str,
)
from phiwatch.sources.record import TIME_KEYS, Record, RecordSkipped

name = "activity"
PRODUCT = "Azure Resource Manager"
# Control plane: changes to resources; its detections group within a subscription.
PLANE = "control"

ACTIVITY_CATEGORIES = {"administrative", "write", "action", "delete"}
# Activity Log categories phiwatch deliberately does not monitor: counted as skips.
UNMONITORED_CATEGORIES = {
    "security",
    "servicehealth",
    "alert",
    "recommendation",
    "policy",
    "autoscale",
    "resourcehealth",
}
DIAGNOSTIC_SETTINGS = "microsoft.insights/diagnosticsettings"
# The categories `matches` can accept (lower case): routing asks no other record.
MATCH_CATEGORIES = frozenset(ACTIVITY_CATEGORIES)


def matches(record: Record) -> bool:
    return record.category_lower in ACTIVITY_CATEGORIES


def diagnostic_setting_target(resource_id: str) -> str | None:
    """The monitored resource of a diagnostic setting id: strip the last 4 segments."""
    marker = "/providers/microsoft.insights/diagnosticsettings/"
    at = resource_id.lower().rfind(marker)
    return resource_id[:at].lower() if at > 0 else None


def _logging_turned_off(props: dict[str, Any]) -> bool:
    """True when a diagnostic-settings write leaves no log category enabled.

    The terminal record carries the resulting settings in `responseBody`; the request body
    usually sits on the `Start` record only, so it is the fallback.
    """
    bodies = {
        k.lower(): v for k, v in props.items() if k.lower() in {"responsebody", "requestbody"}
    }
    body = bodies.get("responsebody") or bodies.get("requestbody")
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return False
    if not isinstance(body, dict):
        return False
    settings = body.get("properties", body)
    logs = settings.get("logs") if isinstance(settings, dict) else None
    # An empty list is normal where the resource has no log categories at that level (a
    # storage account's own setting carries metrics; its logs live on the blob service).
    if not isinstance(logs, list) or not logs:
        return False
    return not any(isinstance(entry, dict) and entry.get("enabled") is True for entry in logs)


def _event_type(verb: str, resource_type: str, props: dict[str, Any]) -> EventType:
    if verb == "DELETE":
        return "Delete"
    if verb == "ACTION":
        return "Execute"
    if verb == "WRITE":
        if resource_type == DIAGNOSTIC_SETTINGS and _logging_turned_off(props):
            return "Disable"
        return "Create" if str(props.get("statusCode", "")).lower() == "created" else "Set"
    return "Other"


def _object_type(resource_type: str) -> str:
    if resource_type == DIAGNOSTIC_SETTINGS:
        return "Configuration Atom"
    if resource_type == "microsoft.authorization/roleassignments":
        return "Policy Rule"
    return "Cloud Resource"


_PRINCIPAL_TYPES = {
    "User": "Regular",
    "ServicePrincipal": "ServicePrincipal",
    "ManagedIdentity": "ManagedIdentity",
}


def _principal_type(identity: Any) -> str | None:
    """`identity.authorization.evidence.principalType` when the claims do not tell."""
    try:
        principal = identity["authorization"]["evidence"]["principalType"]
    except (KeyError, TypeError):
        return None
    return _PRINCIPAL_TYPES.get(principal, "Other") if isinstance(principal, str) else None


def _remember_change(
    record: Record,
    props: dict[str, Any],
    ctx: NormaliseContext,
    operation: str,
    resource_type: str,
) -> None:
    """Leave a Start (or Accept) record's change for its terminal record. Nothing is kept
    without a buffer, a correlation id, a usable body or a valid time (the record is still
    the `non-terminal` skip it always was)."""
    buffer = ctx.changes
    key = change_key(record.text("correlationid"), operation, record.resource_id)
    if buffer is None or key is None:
        return
    when = parse_time(record.get(*TIME_KEYS))
    if when is None or not in_event_range(when):
        return
    secret = all_secret(resource_type, record.resource_id)
    change = body_properties(props, ("requestbody", "responsebody"), secret)
    if change:
        buffer.put(key, change, when.timestamp())


def _terminal_change(
    record: Record,
    props: dict[str, Any],
    ctx: NormaliseContext,
    operation: str,
    resource_type: str,
    result: EventResult,
) -> str | None:
    """NewValue of a terminal record: what its Start left (taken, whatever the result, so a
    failed write's request never reaches a later event) under its own bodies; successes only."""
    buffer = ctx.changes
    key = change_key(record.text("correlationid"), operation, record.resource_id)
    earlier = buffer.take(key) if buffer is not None and key is not None else None
    if result != "Success":
        return None
    secret = all_secret(resource_type, record.resource_id)
    own = body_properties(props, ("requestbody", "responsebody"), secret)
    change, omitted = earlier if earlier is not None else ({}, ())
    return new_value({**change, **own}, omitted)


def normalise(record: Record, ctx: NormaliseContext) -> list[AccessEvent]:
    props = record.properties()
    event_category = to_str(props.get("eventCategory"))
    if event_category and event_category.lower() != "administrative":
        raise RecordSkipped(
            "category-not-monitored", f"activity log category '{event_category}' is not monitored"
        )
    result_type = record.text("resulttype")
    operation = (record.operation_name or "UNKNOWN").upper()
    resource_type, _, verb = operation.lower().rpartition("/")
    verb = verb.upper()
    resource_id = record.resource_id
    if result_type and result_type.lower() in NON_TERMINAL_RESULTS:
        _remember_change(record, props, ctx, operation, resource_type)
    skip_if_non_terminal(result_type)
    result = event_result(result_type)
    claims = record.claims()
    actor = actor_fields(claims)
    if actor["actor_user_type"] is None:
        actor["actor_user_type"] = _principal_type(record.get("identity"))
    ip = record.caller_ip() or normalise_ip(claims.get("ipaddr") or "")
    fields = {
        "time_generated": record.time(),
        "event_uid": record.uid,
        "event_original_uid": record.text("correlationid"),
        "event_type": _event_type(verb, resource_type, props),
        "event_sub_type": resource_type or None,
        "event_result": result,
        "event_result_details": to_str(props.get("statusCode")) or record.text("resultsignature"),
        "event_product": PRODUCT,
        "operation": operation,
        "object": resource_id.rsplit("/", 1)[-1] or None,
        "object_type": _object_type(resource_type),
        "src_ip_addr": ip,
        "target_resource_id": resource_id or None,
        "dvc_scope_id": subscription_of(resource_id),
        "new_value": _terminal_change(record, props, ctx, operation, resource_type, result),
        "source_category": "Administrative",
        "raw_record_ref": ctx.raw_record_ref,
        **actor,
    }
    # A resource can be named after a patient: the resource id and name go through the
    # identifier patterns, the same way in both, so prefix relations between ids still hold.
    return [build_event(ctx.redacted(fields))]
