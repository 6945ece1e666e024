"""Entra ID sign-in logs (`SignInLogs`, `NonInteractiveUserSignInLogs`,
`ServicePrincipalSignInLogs`, `ManagedIdentitySignInLogs`) → `Logon` events.

Envelope (azure-formats.md §2f): `resourceId` `/tenants/<tid>/providers/Microsoft.aadiam`,
`operationName` "Sign-in activity", top-level `resultType` the error code as a string ("0" is
success), `identity` a display-name string (never used: it is a person's name, not an id),
`Level` an int or a string; `properties` is the Graph signIn object.

Names follow the ASIM Authentication schema where the event model has one: the one signing in
is the event's actor (every phiwatch rule and the `actor` grouping key on the actor; ASIM
calls the same identity TargetUser*), the application signed in to is `TargetApp*`, the
method is `LogonMethod`, the code is `EventResultDetails`.

Plane: data. Sign-in detections (password spray, brute force, impossible travel, break-glass
use, risky sign-ins) group by the actor or by the source address, which are the data plane's
groupings; a sign-in is not a change to a resource, so the control plane (grouped by
subscription, and tenant-level here) fits worse. Data-plane rules written so far select their
events by product or by patient, so sign-ins reach none of them by accident.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

from phiwatch.model import AccessEvent, ActorUserType, EventResult, build_event
from phiwatch.sources.base import NormaliseContext, actor_fields
from phiwatch.sources.fields import (
    TimeOutOfRange,
    event_result,
    normalise_ip,
    parse_event_time,
    to_int,
    to_str,
)
from phiwatch.sources.record import TIME_KEYS, Claims, Record, RecordRejected

name = "signins"
PRODUCT = "Entra ID"
PLANE = "data"

# Lower-cased category → (canonical name, ASIM EventSubType, kind of principal).
_CATEGORIES: dict[str, tuple[str, str, str]] = {
    "signinlogs": ("SignInLogs", "Interactive", "user"),
    "noninteractiveusersigninlogs": ("NonInteractiveUserSignInLogs", "NonInteractive", "user"),
    "serviceprincipalsigninlogs": ("ServicePrincipalSignInLogs", "ServicePrincipal", "sp"),
    # Sign-ins of Microsoft's own first-party service principals into the tenant.
    "microsoftserviceprincipalsigninlogs": (
        "MicrosoftServicePrincipalSignInLogs",
        "ServicePrincipal",
        "sp",
    ),
    "managedidentitysigninlogs": ("ManagedIdentitySignInLogs", "ManagedIdentity", "mi"),
}
# The categories `matches` can accept (lower case): routing asks no other record.
MATCH_CATEGORIES = frozenset(_CATEGORIES)

# Graph enums, lower-cased → the documented spelling (anything else is dropped: these fields
# are enums in the schema, and free text there would be a surprise, not a fact).
_RISK_LEVELS = {v.lower(): v for v in ("none", "low", "medium", "high", "hidden")}
_RISK_RANK = {"none": 0, "low": 1, "medium": 2, "high": 3}
_RISK_STATES = {
    v.lower(): v
    for v in ("none", "confirmedSafe", "remediated", "dismissed", "atRisk", "confirmedCompromised")
}
_CA_STATUSES = {v.lower(): v for v in ("success", "failure", "notApplied")}

# ASIM LogonMethod values.
MFA = "Multi factor authentication"
USERNAME_PASSWORD = "Username & Password"  # noqa: S105 (an ASIM method name)
PASSWORDLESS = "Passwordless"
PKI = "PKI"
SERVICE_PRINCIPAL = "Service Principal"
MANAGED_IDENTITY = "Managed Identity"
# authenticationDetails[].authenticationMethod (lower-cased) → what it proves on its own.
_PASSWORDLESS_METHODS = (
    "fido2",
    "passkey",
    "windows hello",
    "passwordless",
    "temporary access pass",
)
_CERTIFICATE_METHODS = ("certificate", "x.509")

# Entra writes the all-zero id for a user it could not resolve (a mistyped or unknown name):
# as an actor id it would make every such failure one actor.
_NIL_GUID = "00000000-0000-0000-0000-000000000000"
_UNSPECIFIED = frozenset({"0.0.0.0", "::"})  # noqa: S104 (compared against, never bound)
_MAX_ASN = 2**32 - 1  # AS numbers are 32-bit


def matches(record: Record) -> bool:
    return record.category_lower in _CATEGORIES


def normalise(record: Record, ctx: NormaliseContext) -> list[AccessEvent]:
    canonical, sub_type, kind = _CATEGORIES[record.category_lower]
    props = record.properties()
    code = _result_code(record, props)
    result: EventResult
    if code is not None:
        result = "Success" if code == 0 else "Failure"
    else:
        result = event_result(record.text("resulttype"))
    location = nested_object(props.get("location"))
    latitude, longitude = _coordinates(nested_object(location.get("geoCoordinates")))
    app_id = entra_id(props.get("appId"))
    app_name = to_str(props.get("appDisplayName"))
    if kind == "user":
        actor = actor_fields(Claims({"oid": entra_id(props.get("userId")), "upn": _upn(props)}))
        actor["actor_user_type"] = _user_type(props, actor)
        target_app_id, target_app_name = app_id, app_name
    else:
        principal = entra_id(props.get("servicePrincipalId"))
        actor = actor_fields(Claims({"oid": principal, "appid": app_id}))
        actor["actor_user_type"] = "ManagedIdentity" if kind == "mi" else "ServicePrincipal"
        actor["acting_app_name"] = to_str(props.get("servicePrincipalName")) or app_name
        # A service principal signs in to a resource (Microsoft Graph, ARM, Key Vault).
        target_app_id = entra_id(props.get("resourceId"))
        target_app_name = to_str(props.get("resourceDisplayName"))
    asn = to_int(props.get("autonomousSystemNumber"))
    fields: dict[str, Any] = {
        "time_generated": record_time(record, props.get("createdDateTime")),
        "event_uid": record.uid,
        "event_original_uid": to_str(props.get("id")) or record.text("correlationid"),
        "event_type": "Logon",
        "event_sub_type": sub_type,
        "event_result": result,
        "event_product": PRODUCT,
        "operation": record.operation_name or "Sign-in activity",
        "object": target_app_name or app_name,
        "object_type": "Service",
        "src_ip_addr": known_address(props.get("ipAddress"))
        or known_address(record.get("calleripaddress")),
        "src_geo_country": to_str(location.get("countryOrRegion")) or record.text("location"),
        "src_geo_region": to_str(location.get("state")),
        "src_geo_city": to_str(location.get("city")),
        "src_geo_latitude": latitude,
        "src_geo_longitude": longitude,
        "src_asn": asn if asn is not None and 0 < asn <= _MAX_ASN else None,
        "http_user_agent": to_str(props.get("userAgent")),
        "is_interactive": _interactive(canonical, props.get("isInteractive")),
        "risk_level": _risk_level(props),
        "risk_state": _enum(props.get("riskState"), _RISK_STATES),
        "conditional_access_status": _enum(props.get("conditionalAccessStatus"), _CA_STATUSES),
        "logon_method": _logon_method(kind, props),
        "target_app_id": target_app_id,
        "target_app_name": target_app_name,
        "target_resource_id": record.resource_id or None,
        "source_category": canonical,
        "raw_record_ref": ctx.raw_record_ref,
        **actor,
    }
    redacted = ctx.redacted(fields)
    # The code only: failureReason and additionalDetails are free text that can quote what
    # the user typed. The code is what the sign-in rules select on (50126, 50053, 7000222);
    # set after redaction because it is a parsed number, not wire text, and a 7-digit code
    # would otherwise read as an identifier.
    redacted["event_result_details"] = str(code) if code is not None else None
    return [build_event(redacted)]


def record_time(record: Record, own_time: Any) -> datetime:
    """The envelope's time, else the record's own (`createdDateTime`, `activityDateTime`):
    Entra sends both, and a record that lost the envelope's still has the same instant."""
    if record.get(*TIME_KEYS) is not None or own_time is None:
        return record.time()
    try:
        parsed = parse_event_time(own_time)
    except TimeOutOfRange as exc:
        raise RecordRejected("time-out-of-range", str(exc)) from None
    if parsed is None:
        raise RecordRejected("bad-timestamp", "timestamp is not a recognisable date/time")
    return parsed


def _result_code(record: Record, props: dict[str, Any]) -> int | None:
    """The sign-in error code: top-level `resultType` ("0", "50126"), else `status.errorCode`
    (records without `resultType` exist). Negative or non-numeric codes are no code."""
    code = to_int(record.get("resulttype"))
    if code is None:
        code = to_int(nested_object(props.get("status")).get("errorCode"))
    return code if code is not None and code >= 0 else None


def nested_object(value: Any) -> dict[str, Any]:
    """A nested object that may come as a dict, as JSON text, or not at all."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            return {}
    return value if isinstance(value, dict) else {}


def _coordinates(geo: dict[str, Any]) -> tuple[float | None, float | None]:
    """(latitude, longitude) when both are real coordinates; 0,0 is Entra's "unknown"."""
    latitude = _number(geo.get("latitude"))
    longitude = _number(geo.get("longitude"))
    if latitude is None or longitude is None:
        return None, None
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        return None, None
    if latitude == 0 and longitude == 0:
        return None, None
    return latitude, longitude


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, int | float):
        number = float(value)
        return number if math.isfinite(number) else None
    return None


def entra_id(value: Any) -> str | None:
    text = to_str(value)
    if not text or text == _NIL_GUID:
        return None
    return text.lower()


def _upn(props: dict[str, Any]) -> str | None:
    # Non-interactive records sometimes carry the user's object id as the UPN; Claims keeps
    # a UPN only with an '@', so that case becomes no username rather than a wrong one.
    return to_str(props.get("userPrincipalName"))


def _user_type(props: dict[str, Any], actor: dict[str, Any]) -> ActorUserType | None:
    # Members and guests are both people signing in; a guest is told by its UPN (#EXT#).
    if to_str(props.get("userType")) or actor.get("actor_user_id") or actor.get("actor_username"):
        return "Regular"
    return None


def known_address(value: Any) -> str | None:
    text = to_str(value)
    address = normalise_ip(text) if text else None
    # 0.0.0.0 / :: say "no address" (managed identities, some first-party flows).
    return None if address in _UNSPECIFIED else address


def _to_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        return {"true": True, "false": False, "1": True, "0": False}.get(value.strip().lower())
    return None


def _interactive(category: str, value: Any) -> bool:
    # The category decides for the three non-interactive logs, whatever the field says or
    # when it is missing; interactive sign-ins say so in the field, and are by default.
    if category != "SignInLogs":
        return False
    flag = _to_bool(value)
    return True if flag is None else flag


def _enum(value: Any, known: dict[str, str]) -> str | None:
    text = to_str(value)
    return known.get(text.lower()) if text else None


def _risk_level(props: dict[str, Any]) -> str | None:
    """The higher of the risk during the sign-in and the user's aggregated risk.

    Both are what public risky-sign-in rules test (`during == high or aggregated == high`), so
    one field carrying the higher keeps that rule a single comparison; `hidden` (no Entra ID P2)
    only when neither level is known."""
    levels = [
        _enum(props.get(key), _RISK_LEVELS)
        for key in ("riskLevelDuringSignIn", "riskLevelAggregated")
    ]
    ranked = [level for level in levels if level in _RISK_RANK]
    if ranked:
        return max(ranked, key=_RISK_RANK.__getitem__)
    return next((level for level in levels if level), None)


def _logon_method(kind: str, props: dict[str, Any]) -> str | None:
    """The ASIM LogonMethod of the sign-in: the principal kind for workload identities; for
    users what the authentication steps show (any second factor → MFA)."""
    if kind == "mi":
        return MANAGED_IDENTITY
    if kind == "sp":
        return SERVICE_PRINCIPAL
    requirement = (to_str(props.get("authenticationRequirement")) or "").lower()
    mfa = nested_object(props.get("mfaDetail"))
    if requirement == "multifactorauthentication" or to_str(mfa.get("authMethod")):
        return MFA
    methods = _methods(props.get("authenticationDetails"))
    if any(any(m in method for m in _PASSWORDLESS_METHODS) for method in methods):
        return PASSWORDLESS
    if any(any(m in method for m in _CERTIFICATE_METHODS) for method in methods):
        return PKI
    if "password" in methods or requirement == "singlefactorauthentication":
        return USERNAME_PASSWORD
    return None


def _methods(value: Any) -> list[str]:
    """authenticationDetails[].authenticationMethod, lower-cased (a list, or JSON text)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            return []
    if not isinstance(value, list):
        return []
    methods = []
    for step in value[:20]:  # a sign-in has a handful of steps; a bound for hostile input
        method = to_str(step.get("authenticationMethod")) if isinstance(step, dict) else None
        if method:
            methods.append(method.lower())
    return methods
