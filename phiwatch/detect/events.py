"""AccessEvents from readable arguments, for rule tests and the registry's probe run:
`access("2026-03-02 10:00:05+01:00", actor="alice", patient="p1")`. Times are ISO 8601 with
an offset, in any time zone; a naive time is refused (a test must say which instant it means).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from phiwatch.model import AccessEvent, EventResult, EventType
from phiwatch.sources import activity, entra_audit, fhir, keyvault, signins, sql, storage

# Product → (the source category its events carry, the event type of a plain access).
_PRODUCTS: dict[str, tuple[str, EventType]] = {
    fhir.PRODUCT: ("AuditLogs", "Read"),
    keyvault.PRODUCT: ("AuditEvent", "Read"),
    activity.PRODUCT: ("Administrative", "Set"),
    signins.PRODUCT: ("SignInLogs", "Logon"),
    entra_audit.PRODUCT: ("AuditLogs", "Create"),
    sql.PRODUCT: ("SQLSecurityAuditEvents", "Read"),
    storage.PRODUCT: ("StorageRead", "Read"),
}


def instant(at: str | datetime) -> datetime:
    """`at` as an aware datetime: '2026-03-02 10:00:05+01:00', '…T09:00:05Z', a datetime."""
    when = at if isinstance(at, datetime) else datetime.fromisoformat(at)
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"{at!r} has no time zone: give an offset such as +01:00 or Z")
    return when


def access(
    at: str | datetime,
    *,
    actor: str | None = "alice@contoso-health.example",
    actor_id: str | None = None,
    app_id: str | None = None,
    ip: str | None = "10.0.0.1",
    country: str | None = None,
    patient: str | None = None,
    operation: str = "read",
    event_type: EventType | None = None,
    sub_type: str | None = None,
    result: EventResult = "Success",
    details: str | None = None,
    product: str = fhir.PRODUCT,
    target: str | None = "/subscriptions/sub-1/resourcegroups/rg/providers/x/services/one",
    uid: str | None = None,
) -> AccessEvent:
    """One AccessEvent. The actor id defaults to one derived from `actor` (so one actor is
    one key), the EventUid to a hash of everything given: the same call twice is the same
    event delivered twice, pass `uid` (or vary a field) for distinct events."""
    category, default_type = _PRODUCTS.get(product, ("Other", "Other"))
    fields: dict[str, Any] = {
        "time_generated": instant(at),
        "event_type": event_type or default_type,
        "event_sub_type": sub_type,
        "event_result": result,
        "event_result_details": details,
        "event_product": product,
        "operation": operation,
        "actor_user_id": actor_id or (_digest(actor)[:32] if actor else None),
        "actor_username": actor,
        "acting_app_id": app_id,
        "src_ip_addr": ip,
        "src_geo_country": country,
        "target_resource_id": target,
        "patient_ref": patient,
        "source_category": category,
        "raw_record_ref": "harness",
    }
    fields["event_uid"] = uid or _digest(repr(sorted(fields.items(), key=lambda i: i[0])))[:32]
    return AccessEvent(**fields)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
