"""Patient identifiers and a PHI-free object name from a FHIR request URI.

The FHIR audit log has no patient field (azure-formats.md §2b): the patient is in the URI,
as `Patient/<id>` (read, compartment `Patient/<id>/Observation`, history, `$everything`,
`Patient/$match/<id>`) or in search parameters (`patient=<id>`, `patient=Patient/<id>`,
`subject=Patient/<id>`, `subject:Patient=<id>`, `patient._id=<id>`, `Patient?_id=a,b`, a
bare `?Patient/<id>`).

A search by business identifier names a patient too, by `system|value` rather than by FHIR
id: `Patient?identifier=<system>|<value>` (and `Patient/_search?...`, conditional update and
delete on the same URI), the chained `patient.identifier=`, `subject:Patient.identifier=`,
`patient:Patient.identifier=`, `beneficiary.identifier=`, the reference modifier
`patient:identifier=` (the identifier written in the reference), and
`Patient?identifier:of-type=<type system>|<type code>|<value>`. These are `identifiers` (system,
value), kept apart from FHIR ids because they live in another namespace (see
`identifier_namespace`). A bare `subject.identifier=` is not one: `subject` may be a Group or
a Device, and only typed references count (as for `subject=<id>`).

Bulk operations and their job status: `$export` (system), `Patient/$export`,
`Group/<id>/$export` are `operation` `$export`; `/_operations/<kind>/<id>` (the status poll
or cancel of an export, import, reindex or bulk-delete job) is a `job` of that kind, never
the operation itself.

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
from functools import lru_cache
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
# System-level paths with no resource type in front: `/$export`, `/_history`, `/metadata`,
# `/_operations/export/<id>`. The base path (`/fhir/`, `/R4/`) is skipped up to one of these
# or to the first resource type.
_SYSTEM_KEYWORDS = {"_history", "_search", "_operations", "metadata"}
_JOB_KIND = re.compile(r"^[a-z][a-z\-]{0,31}$")
# A URI names at most this many identifiers: a search for thousands is one bulk lookup, and
# the bound keeps a hostile query from costing more than a page of pseudonyms.
_MAX_IDENTIFIERS = 1000
# FHIR token search escapes `|`, `,` and `$` with a backslash (R4 §3.1.1.5.7 "escaping").
_UNESCAPED_COMMA = re.compile(r"(?<!\\),")
_UNESCAPED_BAR = re.compile(r"(?<!\\)\|")
_ESCAPE = re.compile(r"\\([\\|,$])")

SegmentKind = Literal["type", "operation", "keyword", "patient", "id", "version", "job"]


@dataclass(slots=True, frozen=True)
class ParsedFhirUri:
    resource_type: str | None  # the type the request addresses (compartment: the inner one)
    patient_ids: tuple[str, ...]
    path_segments: tuple[tuple[SegmentKind, str], ...]  # text kept only for types/operations
    query_params: tuple[tuple[str, str | None], ...]  # (parameter name, patient id it names)
    # (namespace, value) of each patient business identifier searched for; the namespace is
    # `identifier_namespace(system)` (never the FHIR service's).
    identifiers: tuple[tuple[str, str], ...] = ()
    operation: str | None = None  # the last `$operation` in the path (`$export`, `$everything`)
    job: str | None = None  # `export` for `/_operations/export/<id>`: a job's status, not a start


def identifier_namespace(system: str) -> str:
    """The pseudonym namespace of a patient identifier system: `fhir-identifier:<system>`
    with the system exactly as the search wrote it (empty when it names none: `value` or
    `|value`); `of-type` searches use `fhir-identifier-type:<type system>|<type code>`.
    Pseudonymizer.patient_ref lower-cases namespaces; the value is kept as written."""
    return f"fhir-identifier:{system}"


def resource_type_name(text: str | None) -> str | None:
    """A resource type as logged (`fhirResourceType`), or None when it is not a type name."""
    if not text or not _LOGGED_TYPE.match(text):
        return None
    return "Patient" if text.lower() == "patient" else text


def parse_fhir_uri(uri: str) -> ParsedFhirUri:
    # Cached: the result is immutable, and a chart opened is often opened again (a read
    # and its retries, a clinician's session, every page of one search). Long URIs (a
    # search for a thousand identifiers) are parsed afresh: the cache's size stays bounded.
    if len(uri) <= _MAX_CACHED_URI:
        return _parse_cached(uri)
    return _parse(uri)


def _parse(uri: str) -> ParsedFhirUri:
    text = _decoded(uri).split("#", 1)[0]
    path, _, query = text.partition("?")
    if "://" in path:
        path = path.split("://", 1)[1].partition("/")[2]  # drop scheme and host
    segments = [s.split(";", 1)[0].strip() for s in path.split("/")]
    segments = [s for s in segments if s]
    # Skip any base path ("/fhir/", "/R4/") to the first resource type or system path.
    start = next((i for i, s in enumerate(segments) if _starts_path(s)), len(segments))
    ids: list[str] = []
    job = None
    if start < len(segments) and segments[start] == "_operations":
        job, path_segments = _job_path(segments[start + 1 :])
        resource_type = None
    else:
        resource_type, path_segments = _walk_path(segments[start:], ids)
    type_level = bool(path_segments) and path_segments[-1] in (
        ("type", resource_type),
        ("keyword", "_search"),
    )
    id_search = resource_type == "Patient" and type_level
    params: list[tuple[str, str | None]] = []
    identifiers: list[tuple[str, str]] = []
    # Most requests have no query: parse_qsl of nothing is nothing, without its setup.
    for key, value in _query_pairs(query) if query else ():
        params.append(_query_param(key.strip(), value, id_search, ids, identifiers))
    operations = [text for kind, text in path_segments if kind == "operation"]
    return ParsedFhirUri(
        resource_type=resource_type,
        patient_ids=tuple(dict.fromkeys(ids)),
        path_segments=tuple(path_segments),
        query_params=tuple(dict.fromkeys(params)),
        identifiers=tuple(dict.fromkeys(identifiers))[:_MAX_IDENTIFIERS],
        operation=operations[-1] if operations else None,
        job=job,
    )


def _query_pairs(query: str) -> list[tuple[str, str]]:
    """`parse_qsl(query, keep_blank_values=True)`: without a `%` or a `+` there is nothing
    for it to decode, and its split is the one below (issue #18)."""
    if "%" in query or "+" in query:
        return parse_qsl(query, keep_blank_values=True)
    return [(name, value) for name, _, value in (p.partition("=") for p in query.split("&") if p)]


_MAX_CACHED_URI = 2048
_parse_cached = lru_cache(maxsize=8192)(_parse)


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


def _starts_path(segment: str) -> bool:
    return bool(_path_type(segment)) or segment.startswith("$") or segment in _SYSTEM_KEYWORDS


def _job_path(segments: list[str]) -> tuple[str, list[tuple[SegmentKind, str]]]:
    """`_operations/<kind>/<id>`: the kind is kept when it is a plain word, the id never."""
    kind = segments[0].lower() if segments else ""
    kind = kind if _JOB_KIND.match(kind) else "operation"
    out: list[tuple[SegmentKind, str]] = [("keyword", "_operations"), ("job", kind)]
    out.extend(("id", "") for _ in segments[1:2])
    return kind, out


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
        elif _KEYWORD.match(segment) or (segment == "metadata" and not out):
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


def _query_param(
    key: str,
    value: str,
    id_search: bool,
    ids: list[str],
    identifiers: list[tuple[str, str]],
) -> tuple[str, str | None]:
    """Record the patient ids and identifiers one search parameter names; return how it is
    shown (its name only: the value, an id or an MRN, never is)."""
    if "/" in key or not _PARAM_NAME.match(key.partition(":")[0]):
        # Not a parameter name: a bare reference (`?Patient/1`) or something unknown.
        found = _reference_ids(key)
        ids.extend(found)
        return ("Patient", found[0]) if found else ("{param}", None)
    head, _, chain = key.partition(".")
    base, _, modifier = head.partition(":")
    base, modifier, chain = base.lower(), modifier.lower(), chain.lower()
    names_patient = base in _PATIENT_PARAMS or (base == "subject" and modifier == "patient")
    if _names_identifier(base, modifier, chain, names_patient, id_search):
        if len(identifiers) < _MAX_IDENTIFIERS:
            identifiers.extend(_identifiers(value, of_type=modifier == "of-type"))
        return (key.partition(":")[0], None)
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


def _names_identifier(
    base: str, modifier: str, chain: str, names_patient: bool, id_search: bool
) -> bool:
    if base == "identifier":
        # `Patient?identifier=`; on any other type it is that resource's own identifier.
        return id_search and modifier in {"", "of-type"}
    if not names_patient:
        return False
    # `patient.identifier`, `subject:Patient.identifier`: a chain to the patient's identifier;
    # `patient:identifier`: the identifier written in the reference itself.
    return chain == "identifier" or (modifier == "identifier" and not chain)


def _identifiers(value: str, *, of_type: bool) -> list[tuple[str, str]]:
    """(namespace, value) per comma-separated token (`system|value`, `|value`, `value`)."""
    found = []
    for item in _UNESCAPED_COMMA.split(value)[:_MAX_IDENTIFIERS]:
        parts = [_ESCAPE.sub(r"\1", p).strip() for p in _UNESCAPED_BAR.split(item)]
        if of_type:
            if len(parts) != 3:
                continue
            namespace = f"fhir-identifier-type:{parts[0]}|{parts[1]}"
        elif len(parts) == 1:
            namespace = identifier_namespace("")
        elif len(parts) == 2:
            namespace = identifier_namespace(parts[0])
        else:
            continue  # not a token: `a|b|c` searches nothing
        if parts[-1]:
            found.append((namespace, parts[-1]))
    return found


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
        elif kind == "job":
            out.append(text)
        else:
            out.append(text)
    rendered = "/".join(out)
    if parsed.query_params:
        names = (f"Patient/{patient_ref(p)}" if p else name for name, p in parsed.query_params)
        rendered += "?" + "&".join(dict.fromkeys(names))
    return rendered
