"""Application logging: structlog JSON through stdlib `logging` (which the Functions host
forwards to Application Insights), with a processor that keeps PHI out of every line.

Redaction is by key (fields that carry identifiers or request text) and by value (FHIR
references with ids, identifier search parameters, e-mail addresses/UPNs), applied to the
whole event dict, nested values included, just before rendering.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

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
}
# `Patient/123`, `Observation/abc-1`: a FHIR type followed by a logical id.
_FHIR_REFERENCE = re.compile(r"\b([A-Z][A-Za-z]{2,})/([A-Za-z0-9\-.]{1,64})")
_ID_PARAMS = re.compile(r"(?i)\b(patient|subject|_id|beneficiary|identifier)(:[A-Za-z]+)?=[^&\s]+")
_EMAIL = re.compile(r"[\w.+'-]+@[\w-]+(\.[\w-]+)+")


def redact_text(text: str) -> str:
    text = _EMAIL.sub("[upn]", text)
    text = _ID_PARAMS.sub(lambda m: f"{m.group(1)}{m.group(2) or ''}={REDACTED}", text)
    return _FHIR_REFERENCE.sub(lambda m: f"{m.group(1)}/{REDACTED}", text)


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
