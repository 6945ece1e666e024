"""FHIR service `AuditLogs` (Azure API for FHIR and the Health Data Services FHIR service).

`operationName` is `Microsoft.HealthcareApis/services/fhir-R4/<sub-type>` (Azure API for
FHIR) or `Microsoft.HealthcareApis/workspaces/fhirservices/<sub-type>` (Health Data Services),
any case; the sub-type is one of the FHIR server's audit sub-types (`SUB_TYPES`).

Custom audit headers: an application calling with its own identity on behalf of a clinician
can send `X-MS-AZUREFHIR-AUDIT-<name>` headers, which the service adds to the record's
`properties` property bag as top-level keys (`{"X-MS-AZUREFHIR-AUDIT-USERID": "1234"}`,
repeated headers joined with ", "; at most 10 headers of 2,048 characters). The open-source
server's prefix is configurable and some builds use `X-MS-HEALTHCAREAPIS-AUDIT-`: both are
read, in any case. The headers are the caller's word: the claimed user becomes the actor only
for applications in `PHIWATCH_FHIR_TRUSTED_AUDIT_APPS`; otherwise the application stays the
actor and the claim goes to `ClaimedUserId` / `ClaimedUsername`, the purpose of use to
`PurposeOfUse` in both cases. A record without the headers keeps the token's actor exactly.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Any

from phiwatch.model import AccessEvent, EventType, build_event
from phiwatch.sources.base import NormaliseContext, actor_fields, skip_if_non_terminal
from phiwatch.sources.fhir_uri import (
    ParsedFhirUri,
    parse_fhir_uri,
    redacted_object,
    resource_type_name,
)
from phiwatch.sources.fields import event_result, subscription_of, to_int, to_str
from phiwatch.sources.phi_category import phi_category
from phiwatch.sources.record import Record

name = "fhir"
PRODUCT = "FHIR Service"
# Data plane: who read or used what; its detections group by the actor.
PLANE = "data"
# The only category `matches` can accept (lower case): routing asks no other record.
MATCH_CATEGORIES = frozenset({"auditlogs"})

# Every audit sub-type of the FHIR server (microsoft/fhir-server
# src/Microsoft.Health.Fhir.ValueSets/AuditEventSubType.cs) and its ASIM EventType. Reads
# return PHI (an export or `$everything` in bulk); writes are Create/Set/Delete by what they
# do to resources (an import creates them, purge-history and bulk-delete remove them);
# operations that run something without returning records are Execute; configuration and
# sign-in plumbing is Other.
SUB_TYPES: dict[str, EventType] = {
    "create": "Create",
    "conditional-create": "Create",
    "read": "Read",
    "vread": "Read",
    "update": "Set",
    "conditional-update": "Set",
    "delete": "Delete",
    "conditional-delete": "Delete",
    "history": "Read",
    "history-type": "Read",
    "history-system": "Read",
    "history-instance": "Read",
    "search": "Read",
    "search-type": "Read",
    "search-system": "Read",
    "capabilities": "Read",
    "smart-on-fhir-authorize": "Other",
    "smart-on-fhir-callback": "Other",
    "smart-on-fhir-token": "Other",
    "bundle-post": "Execute",
    "batch": "Execute",
    "transaction": "Execute",
    "patch": "Set",
    "conditional-patch": "Set",
    "export": "Read",
    "reindex": "Execute",
    "convert-data": "Execute",
    "validate": "Execute",
    "import": "Create",
    "member-match": "Read",
    "everything": "Read",
    "purge-history": "Delete",
    "search-parameter-status": "Other",
    "bulk-delete": "Delete",
    "bulk-update": "Set",
}
# A job's status poll or cancel (`/_operations/<kind>/<id>`, logged with the job's sub-type,
# or `export` for a bulk-delete job): sub-type `<kind>-status`, never the job itself.
JOB_STATUS: EventType = "Other"
# One patient's record opened: what the distinct-patient rules count.
_RECORD_READS = {"read", "vread", "everything"}
_SUB_TYPE = re.compile(r"^[a-z][a-z0-9\-]{0,63}$")

_HEADER_PREFIXES = ("x-ms-azurefhir-audit-", "x-ms-healthcareapis-audit-")
_PREFIXES_START = "x-ms-"
assert all(p.startswith(_PREFIXES_START) for p in _HEADER_PREFIXES)
_MAX_HEADERS = 32  # the service accepts 10; more is not its record, and costs nothing more
_MAX_CLAIM_CHARS = 256
# Header names (after the prefix, case and `-`/`_` ignored) an application uses for the end
# user and purpose of use. None is standard; these are the documented example (`USERID`)
# and the names EHR integrations use.
_USER_ID_HEADERS = ("userid", "useroid", "userobjectid", "enduserid", "enduseroid", "oid")
_USERNAME_HEADERS = (
    "username",
    "userprincipalname",
    "upn",
    "user",
    "enduser",
    "endusername",
    "useremail",
    "email",
)
_PURPOSE_HEADERS = ("purposeofuse", "purpose", "pou", "purposeofusecode")
_GUID = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")


def matches(record: Record) -> bool:
    return (
        record.category_lower == "auditlogs"
        and "/providers/microsoft.healthcareapis/" in record.resource_id
    )


def namespace_of(resource_id: str) -> str:
    """The PatientRef namespace of a FHIR service's ARM resource id: the patient index
    loader (phiwatch/privacy/patients.py) calls this too, so its refs match the events'."""
    return resource_id.strip().lower() or "unknown-fhir-service"


def sub_type_of(operation_name: str) -> str:
    """The audit sub-type from either operationName form (`$export` reads as `export`)."""
    if len(operation_name) <= _MAX_CACHED_OPERATION:
        return _sub_type_cached(operation_name)
    return _sub_type(operation_name)


def _sub_type(operation_name: str) -> str:
    text = operation_name.rsplit("/", 1)[-1].strip().lower().removeprefix("$")
    return text or "unknown"


# A service logs a few dozen operation names, on every record: each is read once.
_MAX_CACHED_OPERATION = 256
_sub_type_cached = lru_cache(maxsize=512)(_sub_type)


def event_type_of(sub_type: str) -> EventType:
    known = SUB_TYPES.get(sub_type)
    if known is not None:
        return known
    # Sub-types this table does not know yet keep the family of their name.
    if sub_type.startswith(("search", "history")):
        return "Read"
    return "Other"


def _classify(sub_type: str, parsed: ParsedFhirUri) -> tuple[str, EventType]:
    if parsed.job is not None:
        return f"{parsed.job}-status", JOB_STATUS
    return sub_type, event_type_of(sub_type)


def normalise(record: Record, ctx: NormaliseContext) -> list[AccessEvent]:
    result_type = record.text("resulttype")
    skip_if_non_terminal(result_type)
    props = record.properties()
    time = record.time()
    status = to_int(record.get("resultsignature"))
    if status is None:
        status = to_int(props.get("statusCode") or props.get("StatusCode"))
    result = event_result(result_type, status)
    uri = record.text("uri", "requesturi") or to_str(props.get("requestUri") or props.get("uri"))
    parsed = parse_fhir_uri(uri or "")
    resource_type = (
        resource_type_name(to_str(props.get("fhirResourceType"))) or parsed.resource_type
    )
    logged = sub_type_of(record.operation_name)
    sub_type, event_type = _classify(logged, parsed)
    if not _SUB_TYPE.match(sub_type):
        sub_type = "unknown"  # an odd name is no vocabulary, and may name someone
    resource_id = record.resource_id
    namespace = namespace_of(resource_id)

    def ref(patient_id: str) -> str:
        return ctx.pseudonymizer.patient_ref(namespace, patient_id)

    patient_refs: list[str | None] = [ref(p) for p in parsed.patient_ids]
    # A search by business identifier (an MRN) names the patient in the identifier system's
    # own namespace: the same MRN gives the same PatientRef whichever service was asked.
    patient_refs += [ctx.pseudonymizer.patient_ref(ns, value) for ns, value in parsed.identifiers]
    patient_refs = list(dict.fromkeys(patient_refs)) or [None]
    has_patient = bool(parsed.patient_ids or parsed.identifiers)
    claims = record.claims()
    common = ctx.redacted(
        {
            "time_generated": time,
            "event_original_uid": record.text("correlationid"),
            "event_type": event_type,
            "event_sub_type": sub_type,
            "event_result": result,
            "event_result_details": str(status) if status is not None else result_type,
            "event_product": PRODUCT,
            "operation": record.operation_name or sub_type,
            "object": redacted_object(parsed, ref) or resource_type,
            "object_type": "Other",
            "src_ip_addr": record.caller_ip(),
            "http_user_agent": to_str(props.get("userAgent") or props.get("UserAgent")),
            "target_resource_id": resource_id or None,
            "dvc_scope_id": subscription_of(resource_id),
            "record_count": 1 if sub_type in _RECORD_READS and result == "Success" else None,
            "phi_category": phi_category(resource_type, has_patient),
            "source_category": "AuditLogs",
            "raw_record_ref": ctx.raw_record_ref,
            **actor_fields(claims),
            **_claimed_fields(props, record, claims.app_id, ctx.fhir_trusted_audit_apps),
        }
    )
    # One event per patient named: a search over `_id=a,b,c` is three patients' records,
    # and counting it as one would let a bulk lookup slip under the distinct-patient rule.
    return [
        build_event(
            {
                **common,
                "event_uid": record.uid if i == 0 else f"{record.uid}-{i}",
                "patient_ref": patient,
            }
        )
        for i, patient in enumerate(patient_refs)
    ]


# ------------------------------------------------------------------ audit headers


def audit_headers(props: dict[str, Any], record: Record) -> dict[str, str]:
    """`X-MS-AZUREFHIR-AUDIT-*` values by their lower-cased name after the prefix, with `-`
    and `_` removed: from the property bag (where the service writes them), one nested
    object of it, or the record's top level (a re-shaped export)."""
    found: dict[str, str] = {}
    places: list[dict[str, Any]] = [props]
    places += [v for v in list(props.values())[:64] if isinstance(v, dict)]
    places.append(record.fields)
    for place in places:
        # Nearly every record has no header anywhere: seen without a loop over keys.
        maybe = _may_hold_header(place)
        if maybe is None or maybe:  # a key that is not text: let the key loop judge
            break
    else:
        return found
    for place in places:
        for key, value in list(place.items())[:256]:
            if len(found) >= _MAX_HEADERS:
                return found
            if not isinstance(key, str):
                continue
            lowered = key.lower()
            prefix = next((p for p in _HEADER_PREFIXES if lowered.startswith(p)), None)
            text = to_str(value)
            if prefix is None or text is None:
                continue
            header = re.sub(r"[-_\s]", "", lowered[len(prefix) :])
            found.setdefault(header, text)
    return found


# Whether a set of keys may hold a header, by the keys in order: a service writes a few
# sets (issue #18). Bounded in sets and in keys per set.
_HEADER_KEY_SETS: dict[tuple[str, ...], bool] = {}
_MAX_HEADER_KEY_SETS = 512
_MAX_CACHED_KEYS = 64


def _may_hold_header(place: dict[str, Any]) -> bool | None:
    """True when a key of `place` may start with a header prefix, None when a key is not
    text (the key loop judges those)."""
    if len(place) > _MAX_CACHED_KEYS:
        return _has_prefix_start(place)
    keys = tuple(place)
    found = _HEADER_KEY_SETS.get(keys)
    if found is None:
        found = _has_prefix_start(keys)
        if found is None:
            return None
        if len(_HEADER_KEY_SETS) >= _MAX_HEADER_KEY_SETS:
            _HEADER_KEY_SETS.clear()
        _HEADER_KEY_SETS[keys] = found
    return found


def _has_prefix_start(keys: Any) -> bool | None:
    try:
        joined = "\n".join(keys).lower()
    except TypeError:
        return None
    # A key that starts with a prefix puts the prefixes' common start in the join.
    return _PREFIXES_START in joined


def _clean(text: str | None) -> str | None:
    """A claimed name as an analyst may see it: no control or bidirectional-override
    characters (a U+202E would reverse an alert title), bounded."""
    if text is None:
        return None
    text = "".join(c for c in text if unicodedata.category(c) not in {"Cc", "Cf"})
    return text.strip()[:_MAX_CLAIM_CHARS] or None


def _claimed_fields(
    props: dict[str, Any], record: Record, app_id: str | None, trusted: frozenset[str]
) -> dict[str, Any]:
    headers = audit_headers(props, record)
    if not headers:
        return {}  # no headers: the token's actor and nothing else, exactly as before
    values = [_clean(headers.get(n)) for n in (*_USER_ID_HEADERS, *_USERNAME_HEADERS)]
    guids = [v.lower() for v in values if v and _GUID.match(v)]
    user_id = guids[0] if guids else None
    user_name = next((v for v in values if v and not _GUID.match(v)), None)
    purpose = next((c for n in _PURPOSE_HEADERS if (c := _clean(headers.get(n)))), None)
    fields: dict[str, Any] = {
        "claimed_user_id": user_id,
        "claimed_username": user_name,
        "purpose_of_use": purpose,
    }
    if app_id and app_id in trusted and (user_id or user_name):
        # A trusted application's end user is the actor (its own id stays the acting app):
        # an Entra object id when the app sends one, else the app's own user id, so per-user
        # rules group that user's reads. A sign-in name is kept only with an '@' (a UPN).
        fields |= {
            "actor_user_id": user_id or user_name,
            "actor_username": user_name if user_name and "@" in user_name else None,
            "actor_user_type": "Regular",
        }
    return fields
