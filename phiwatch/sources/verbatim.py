"""The one allow-list of what a normaliser may copy from a diagnostic record into an event.

Every text field of `AccessEvent` is in exactly one of the two tables below (a test walks
the model, so a new field cannot slip past). `VERBATIM` fields carry text from the wire
and are copied as they came except for identifier segments, which the configured patterns
(`PHIWATCH_IDENTIFIER_PATTERNS`, phiwatch.identifier_redaction) turn into keyed `pt_`
tokens: a secret, a resource or a user agent can be named after a patient. `IDS_AND_ENUMS`
fields are never wire text copied as is, or are identities an analyst must see unchanged.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

VERBATIM: dict[str, str] = {
    "target_resource_id": "ARM resource id of the monitored resource",
    "dvc_scope_id": "subscription id, taken from the resource id",
    "event_original_uid": "the service's correlation id",
    "operation": "operation name",
    "event_sub_type": "part of the operation name (resource type, FHIR interaction)",
    "event_result_details": "HTTP status or result signature",
    "object": "Key Vault object name, ARM resource name, FHIR URI shape (ids as pseudonyms)",
    "http_user_agent": "user agent / client info",
    "actor_user_id": "Entra object id (a GUID, which the patterns never touch)",
    "acting_app_id": "Entra application id (a GUID, which the patterns never touch)",
    "acting_app_name": "application display name",
    "src_geo_country": "country of the caller address",
    "src_geo_region": "region of the caller address, as the sign-in record gives it",
    "src_geo_city": "city of the caller address, as the sign-in record gives it",
    "logon_method": "authentication type or sign-in method",
    "claimed_username": "the end user an application claims to act for (audit header)",
    "purpose_of_use": "purpose of use an application claims (audit header)",
    "risk_level": "Entra ID Protection risk level",
    "risk_state": "Entra ID Protection risk state",
    "conditional_access_status": "conditional access outcome",
    "target_app_name": "display name of the application signed in to",
    "new_value": "a change's properties (request/response body, modified properties), JSON",
    "old_value": "a change's previous properties (directory change), JSON",
    "sensitivity_labels": "data classification labels the source reports (SQL)",
}

IDS_AND_ENUMS: dict[str, str] = {
    "event_uid": "hash of the record's content (phiwatch.envelope)",
    "event_schema": "constant",
    "event_schema_version": "constant",
    "event_type": "enum",
    "event_result": "enum",
    "event_product": "constant per normaliser",
    "event_vendor": "constant",
    "object_type": "constant per normaliser",
    "actor_user_type": "enum",
    "actor_username": (
        "the caller's sign-in name (UPN, accepted only with an '@'): who acted is what an "
        "analyst needs, and the e-mail pattern would otherwise replace it"
    ),
    "src_ip_addr": "a parsed IP address (phiwatch.sources.fields.normalise_ip)",
    "patient_ref": "keyed pseudonym (phiwatch.pseudonym)",
    "credential_id": "keyed hash of a SAS signature or account key, never the secret itself",
    "claimed_user_id": "Entra object id an application claims to act for (a GUID)",
    "target_app_id": "Entra application id signed in to (a GUID)",
    "target_user_id": "Entra object id of the user acted on (a GUID)",
    "target_username": (
        "sign-in name of the user acted on (directory change, role assignment; a UPN, accepted "
        "only with an '@'): as for actor_username, the e-mail pattern would otherwise replace it"
    ),
    "phi_category": "enum",
    "access_explanation": "enum, stamped by phiwatch/privacy, never from the wire",
    "patient_relation": "enum, stamped by phiwatch/privacy, never from the wire",
    "patient_relation_basis": "enum, stamped by phiwatch/privacy, never from the wire",
    "actor_employment_status": "enum, stamped by phiwatch/privacy, never from the wire",
    "source_category": "constant per normaliser",
    "raw_record_ref": "pointer into the archive, made by the pipeline",
}


# VERBATIM fields holding a JSON document: redacted value by value, so the result stays JSON
# (the digit-run pattern would turn `"maxSizeBytes":268435456` into an unquoted token).
JSON_FIELDS = frozenset({"new_value", "old_value"})


def redact_verbatim(fields: dict[str, Any], redact: Callable[[str], str]) -> dict[str, Any]:
    """`fields` (AccessEvent keyword arguments) with every allow-listed text redacted."""
    for name in VERBATIM:
        value = fields.get(name)
        if isinstance(value, str):
            fields[name] = redact_json(value, redact) if name in JSON_FIELDS else redact(value)
        elif isinstance(value, list):
            fields[name] = [redact(v) if isinstance(v, str) else v for v in value]
    return fields


def _not_json(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def redact_json(text: str, redact: Callable[[str], str]) -> str:
    """A JSON document with every key and string redacted, and every number whose digits an
    identifier pattern matches replaced by its token (a string); text that is not JSON is
    redacted as text."""
    try:
        value = json.loads(text, parse_constant=_not_json)
    except (ValueError, RecursionError):
        return redact(text)

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            return redact(item)
        if isinstance(item, dict):
            return {redact(k): walk(v) for k, v in item.items()}
        if isinstance(item, list):
            return [walk(v) for v in item]
        if isinstance(item, float) and not math.isfinite(item):
            return None  # `1e400` reads as infinity, which JSON cannot write
        if isinstance(item, int | float) and not isinstance(item, bool):
            digits = str(item)
            token = redact(digits)
            return item if token == digits else token
        return item

    try:
        return json.dumps(walk(value), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (ValueError, RecursionError):
        return redact(text)
