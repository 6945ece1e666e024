"""Patient identifiers and a PHI-free object name from a FHIR request URI.

The FHIR audit log has no patient field (azure-formats.md §2b): the patient is in the URI,
as `Patient/<id>` (read, compartment `Patient/<id>/Observation`, history, `$everything`,
`Patient/$match/<id>`) or in search parameters (`patient=<id>`, `patient=Patient/<id>`,
`subject=Patient/<id>`, `subject:Patient=<id>`, `patient._id=<id>`, `Patient?_id=a,b`, a
bare `?Patient/<id>`).

The URI is percent-decoded until it no longer changes (bounded) before it is split, so an
encoded `=`, `?`, `&` or `/` (`patient%3D1`, `Patient%252F1`) is read the way the service
read it. The object name is built from what was recognised, never copied: resource types,
operations and keywords stay, patient ids become pseudonyms, other ids `{id}`, unknown
parameter names `{param}`, and query values, fragments and matrix parameters are dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, unquote

# FHIR resource types are CamelCase (`Patient`, `DocumentReference`); an upper-case base
# path such as `FHIR` or `R4` is not one. `PATIENT` is accepted: it names a patient anyway.
_RESOURCE_TYPE = re.compile(r"^[A-Z][a-z][A-Za-z]*$")
_LOGGED_TYPE = re.compile(r"^[A-Za-z]{1,64}$")
_OPERATION = re.compile(r"^\$[A-Za-z][A-Za-z0-9\-]{0,63}$")
_KEYWORD = re.compile(r"^(_[a-z]{1,32}|\*)$")
# A search parameter name that can name no one: letters, `_`, `-`, `.` (chains), no digits.
_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z_.\-]{0,63}$")
_PATIENT_REFERENCE = re.compile(r"(?i)(?<![a-z])patient/")
_PATIENT_PARAMS = {"patient", "beneficiary"}
_MAX_DECODE_ROUNDS = 5

SegmentKind = Literal["type", "operation", "keyword", "patient", "id", "version"]


@dataclass(slots=True, frozen=True)
class ParsedFhirUri:
    resource_type: str | None  # the type the request addresses (compartment: the inner one)
    patient_ids: tuple[str, ...]
    path_segments: tuple[tuple[SegmentKind, str], ...]  # text kept only for types/operations
    query_params: tuple[tuple[str, str | None], ...]  # (parameter name, patient id it names)


def resource_type_name(text: str | None) -> str | None:
    """A resource type as logged (`fhirResourceType`), or None when it is not a type name."""
    if not text or not _LOGGED_TYPE.match(text):
        return None
    return "Patient" if text.lower() == "patient" else text


def parse_fhir_uri(uri: str) -> ParsedFhirUri:
    text = _decoded(uri).split("#", 1)[0]
    path, _, query = text.partition("?")
    if "://" in path:
        path = path.split("://", 1)[1].partition("/")[2]  # drop scheme and host
    segments = [s.split(";", 1)[0].strip() for s in path.split("/")]
    segments = [s for s in segments if s]
    # Skip any base path ("/fhir/", "/R4/") to the first resource type.
    start = next((i for i, s in enumerate(segments) if _path_type(s)), len(segments))
    ids: list[str] = []
    resource_type, path_segments = _walk_path(segments[start:], ids)
    type_level = bool(path_segments) and path_segments[-1] in (
        ("type", resource_type),
        ("keyword", "_search"),
    )
    id_search = resource_type == "Patient" and type_level
    params: list[tuple[str, str | None]] = []
    for key, value in parse_qsl(query, keep_blank_values=True):
        params.append(_query_param(key.strip(), value, id_search, ids))
    return ParsedFhirUri(
        resource_type=resource_type,
        patient_ids=tuple(dict.fromkeys(ids)),
        path_segments=tuple(path_segments),
        query_params=tuple(dict.fromkeys(params)),
    )


def _decoded(text: str) -> str:
    # Double encoding (`%253D`) is still an `=` to a client that decodes twice; the bound
    # keeps a hostile `%252525...` from costing more than a few passes.
    for _ in range(_MAX_DECODE_ROUNDS):
        if "%" not in text:
            break
        decoded = unquote(text)
        if decoded == text:
            break
        text = decoded
    return text


def _path_type(segment: str) -> str | None:
    if segment.lower() == "patient":
        return "Patient"
    return segment if _RESOURCE_TYPE.match(segment) else None


def _walk_path(
    segments: list[str], ids: list[str]
) -> tuple[str | None, list[tuple[SegmentKind, str]]]:
    """FHIR paths alternate type and id (`Patient/1/Observation/2`); an operation or a
    keyword may follow either, `_history` is followed by a version. Anything in an id
    position is an id of the last type, whatever it looks like."""
    out: list[tuple[SegmentKind, str]] = []
    context: str | None = None
    expect: Literal["type", "id", "version"] = "type"
    for segment in segments:
        if segment.startswith("$"):
            out.append(("operation", segment if _OPERATION.match(segment) else "$operation"))
            expect = "id"  # `Patient/$match/<id>`
        elif segment == "_history":
            out.append(("keyword", segment))
            expect = "version"
        elif _KEYWORD.match(segment):
            out.append(("keyword", segment))
            expect = "id"
        elif expect == "version":
            out.append(("version", ""))
            expect = "type"
        elif expect == "type" and (name := _path_type(segment)):
            context = name
            out.append(("type", name))
            expect = "id"
        elif context == "Patient":
            ids.append(segment)
            out.append(("patient", segment))
            expect = "type"
        else:
            out.append(("id", ""))
            expect = "type"
    return context, out


def _query_param(key: str, value: str, id_search: bool, ids: list[str]) -> tuple[str, str | None]:
    """Record the patient ids one search parameter names; return how it is shown."""
    if "/" in key or not _PARAM_NAME.match(key.partition(":")[0]):
        # Not a parameter name: a bare reference (`?Patient/1`) or something unknown.
        found = _reference_ids(key)
        ids.extend(found)
        return ("Patient", found[0]) if found else ("{param}", None)
    head, _, chain = key.partition(".")
    base, _, modifier = head.partition(":")
    base, modifier, chain = base.lower(), modifier.lower(), chain.lower()
    names_patient = base in _PATIENT_PARAMS or (base == "subject" and modifier == "patient")
    for raw_item in value.split(","):
        item = raw_item.strip()
        if not item:
            continue
        if names_patient and chain in {"", "_id"}:
            patient = _reference_id(item, allow_bare=True)
        elif base == "subject" and not chain:
            # A bare `subject=123` may name a Group or Device; only typed references count.
            patient = _reference_id(item, allow_bare=False)
        elif base == "_id" and id_search:
            patient = item
        else:
            patient = None
            ids.extend(_reference_ids(item))  # `focus=Patient/1`, `link=Patient/2`, ...
        if patient:
            ids.append(patient)
    return (key.partition(":")[0], None)


def _reference_ids(text: str) -> list[str]:
    found = []
    for match in _PATIENT_REFERENCE.finditer(text):
        rest = re.split(r"[/,\s|]", text[match.end() :], maxsplit=1)[0]
        if rest:
            found.append(rest)
    return found


def _reference_id(value: str, *, allow_bare: bool) -> str | None:
    found = _reference_ids(value)
    if found:
        return found[-1]
    if "/" in value:
        return None
    return value if allow_bare else None


def redacted_object(parsed: ParsedFhirUri, patient_ref: Callable[[str], str]) -> str:
    """The URI path with patient ids as pseudonyms and other ids `{id}`; no query values."""
    out: list[str] = []
    for kind, text in parsed.path_segments:
        if kind == "patient":
            out.append(patient_ref(text))
        elif kind == "id":
            out.append("{id}")
        elif kind == "version":
            out.append("{version}")
        else:
            out.append(text)
    rendered = "/".join(out)
    if parsed.query_params:
        names = (f"Patient/{patient_ref(p)}" if p else name for name, p in parsed.query_params)
        rendered += "?" + "&".join(dict.fromkeys(names))
    return rendered
