"""Patient identifiers and a PHI-free object name from a FHIR request URI.

The FHIR audit log has no patient field (azure-formats.md §2b): the patient is in the URI,
as `Patient/<id>` (read, compartment `Patient/<id>/Observation`, history) or in search
parameters (`patient=<id>`, `patient=Patient/<id>`, `subject=Patient/<id>`,
`subject:Patient=<id>`, `Patient?_id=a,b`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

_RESOURCE_TYPE = re.compile(r"^[A-Z][A-Za-z]+$")
_PATIENT_PARAMS = {"patient", "beneficiary"}


@dataclass(slots=True, frozen=True)
class ParsedFhirUri:
    resource_type: str | None  # the type the request addresses (compartment: the inner one)
    patient_ids: tuple[str, ...]
    path_segments: tuple[str, ...]
    query_params: tuple[str, ...]  # parameter names only


def parse_fhir_uri(uri: str) -> ParsedFhirUri:
    parts = urlsplit(uri)
    segments = tuple(unquote(s) for s in parts.path.split("/") if s)
    # Skip any base path ("/fhir/") to the first resource type.
    start = next((i for i, s in enumerate(segments) if _RESOURCE_TYPE.match(s)), len(segments))
    segments = segments[start:]
    ids: list[str] = []
    resource_type = None
    for i, segment in enumerate(segments):
        if _RESOURCE_TYPE.match(segment) and (i == 0 or segments[i - 1] != "_history"):
            resource_type = segment
            if segment == "Patient" and i + 1 < len(segments) and _is_id(segments[i + 1]):
                ids.append(segments[i + 1])
    names: list[str] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        base, _, modifier = key.partition(":")
        names.append(base)
        is_patient_id_search = base == "_id" and resource_type == "Patient" and len(segments) == 1
        for item in value.split(","):
            patient = _patient_from_param(base, modifier, item.strip(), is_patient_id_search)
            if patient:
                ids.append(patient)
    return ParsedFhirUri(
        resource_type=resource_type,
        patient_ids=tuple(dict.fromkeys(ids)),
        path_segments=segments,
        query_params=tuple(dict.fromkeys(names)),
    )


def _is_id(segment: str) -> bool:
    return bool(segment) and segment[0] not in "_$"


def _patient_from_param(base: str, modifier: str, value: str, id_search: bool) -> str | None:
    if not value:
        return None
    if id_search:
        return value
    if base in _PATIENT_PARAMS or (base == "subject" and modifier == "Patient"):
        return _reference_id(value, allow_bare=True)
    if base == "subject":
        # A bare `subject=123` may name a Group or Device; only typed references count.
        return _reference_id(value, allow_bare=False)
    return None


def _reference_id(value: str, *, allow_bare: bool) -> str | None:
    marker = value.rfind("Patient/")
    if marker >= 0:
        rest = value[marker + len("Patient/") :].split("/", 1)[0]
        return rest or None
    if "/" in value:
        return None
    return value if allow_bare else None


def redacted_object(parsed: ParsedFhirUri, patient_ref: Callable[[str], str]) -> str:
    """The URI path with patient ids as pseudonyms and other ids as `{id}`; no query values."""
    out: list[str] = []
    previous = ""
    for segment in parsed.path_segments:
        if _RESOURCE_TYPE.match(previous) and _is_id(segment):
            out.append(patient_ref(segment) if previous == "Patient" else "{id}")
        elif previous == "_history":
            out.append("{version}")
        else:
            out.append(segment)
        previous = segment
    text = "/".join(out)
    if parsed.query_params:
        text += "?" + "&".join(parsed.query_params)
    return text
