"""Application logging: structlog JSON through stdlib `logging` (which the Functions host
forwards to Application Insights), with a processor that keeps PHI out of every line.

Redaction is by key (fields that carry identifiers, request text, user agents, secret or
resource names) and by value (FHIR references with ids, also behind an operation or
percent-encoded, identifier search parameters, Key Vault object names in URLs, MRN- and
SSN-shaped tokens, e-mail addresses/UPNs), applied to the whole event dict, nested values
included, just before rendering. Long digit runs are left alone here: batch names carry
sequence numbers, which an operator needs.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO
from urllib.parse import unquote

import structlog

REDACTED = "[redacted]"

_SENSITIVE_KEYS = {
    "patient",
    "patient_id",
    "patientid",
    "uri",
    "request_uri",
    "requesturi",
    "url",
    "statement",
    "raw",
    "body",
    "record",
    "claims",
    "identity",
    "name",
    "upn",
    "username",
    "actor_username",
    "query",
    # Copied from the wire and possibly named after a patient (phiwatch.sources.verbatim).
    "user_agent",
    "useragent",
    "http_user_agent",
    "clientinfo",
    "client_info",
    "secret",
    "secret_name",
    "secretname",
    "object_name",
    "resource_name",
    "correlation_id",
    "correlationid",
    "event_original_uid",
}
# `Patient/123`, `Observation/abc-1`, `Patient/$match/123`: a FHIR type and a logical id.
_FHIR_REFERENCE = re.compile(r"\b([A-Z][A-Za-z]{2,})/(\$[A-Za-z-]+/)?([A-Za-z0-9\-.]{1,64})")
_ID_PARAMS = re.compile(
    r"(?i)\b(patient|subject|_id|beneficiary|identifier)([:.][A-Za-z_.]+)?=[^&\s]+"
)
_EMAIL = re.compile(r"[\w.+'-]+@[\w-]+(\.[\w-]+)+")
# A Key Vault object's name in its URL (`.../secrets/patient-MRN12345-key`).
_VAULT_OBJECT = re.compile(r"(?i)(/(?:secrets|keys|certificates|storage)/)[^/\s?#\"']+")
_IDENTIFIER = re.compile(r"(?i)(?<![a-z0-9])mrn[-_:#]?\d+|(?<!\d)\d{3}-\d{2}-\d{4}(?!\d)")
_MAX_DECODE_ROUNDS = 3


def redact_text(text: str) -> str:
    if "%" in text:
        # `Observation?patient%3D123` is `patient=123` to the reader: redact what it says.
        decoded = _decoded(text)
        if _redact_decoded(decoded) != decoded:
            return _redact_decoded(decoded)
    return _redact_decoded(text)


def _decoded(text: str) -> str:
    for _ in range(_MAX_DECODE_ROUNDS):
        decoded = unquote(text)
        if decoded == text:
            break
        text = decoded
    return text


def _redact_decoded(text: str) -> str:
    text = _EMAIL.sub("[upn]", text)
    text = _VAULT_OBJECT.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    text = _ID_PARAMS.sub(lambda m: f"{m.group(1)}{m.group(2) or ''}={REDACTED}", text)
    text = _FHIR_REFERENCE.sub(lambda m: f"{m.group(1)}/{m.group(2) or ''}{REDACTED}", text)
    return _IDENTIFIER.sub("[id]", text)


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {
            k: REDACTED if str(k).lower() in _SENSITIVE_KEYS else _redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set):
        return [_redact(v) for v in value]
    return value


def redact_phi(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if key.lower() in _SENSITIVE_KEYS:
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _redact(event_dict[key])
    return event_dict


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> None:
    """JSON lines to `stream` (stderr by default) via the stdlib root logger."""
    root = logging.getLogger()
    if stream is not None or not root.handlers:
        for handler in list(root.handlers):
            if getattr(handler, "_phiwatch", False):
                root.removeHandler(handler)
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._phiwatch = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level.upper())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_phi,
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
