"""The patient index built from the FHIR service itself (`phiwatch roster sync-patients`).

Every Patient resource is read with the caller's identity (`GET /Patient?_count=N&_elements=
...`, the Bundle's `next` links followed) and written as one row of the patient index CSV,
in the columns `patients.py` loads. The file holds raw identifying values: it is the input
the loader pseudonymises, so it is written owner-only (0600), under a temporary name until
the last page is in (a sync that fails half-way must not leave a short index that looks
whole), and nothing of it is logged: counts only.

A page at a time is held, never the whole service (a hospital has millions of patients).

The HTTP goes through azure-core's pipeline with a bearer-token policy and nothing else:
no SDK logging policy, which would log URLs, and no stock retry policy, which sleeps
whatever Retry-After says. Throttling (429) and server errors are retried here, a bounded
number of times, each wait capped.
"""

from __future__ import annotations

import csv
import email.utils
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlencode, urlsplit

import orjson
import structlog
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline import Pipeline
from azure.core.pipeline.policies import (
    BearerTokenCredentialPolicy,
    HeadersPolicy,
    UserAgentPolicy,
)
from azure.core.pipeline.transport import HttpTransport, RequestsTransport
from azure.core.rest import HttpRequest

log = structlog.get_logger(__name__)

# The header the loader reads (phiwatch/privacy/patients.py), in its canonical spelling.
HEADER = (
    "FhirService",
    "PatientId",
    "Mrn",
    "Surname",
    "Address",
    "Postcode",
    "EmployeeId",
    "Restricted",
    "CareTeamObjectIds",
)
# What the mapping reads and nothing more (`id` and `resourceType` always come back).
ELEMENTS = "identifier,name,address,meta"
MAX_PAGE_SIZE = 1000  # the largest _count the Azure FHIR service accepts
DEFAULT_PAGE_SIZE = 1000

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_ATTEMPTS = 6  # the first request and five retries
MAX_WAIT_SECONDS = 30.0  # a longer Retry-After is cut to this: bounded, not ignored
BACKOFF_SECONDS = 1.0  # doubled each retry when the server names no wait

# HL7 code systems, R4 URIs first; the STU3-era URIs are still found in migrated data.
_IDENTIFIER_TYPE_SYSTEMS = frozenset(
    {"http://terminology.hl7.org/CodeSystem/v2-0203", "http://hl7.org/fhir/v2/0203"}
)
_CONFIDENTIALITY_SYSTEMS = frozenset(
    {
        "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
        "http://hl7.org/fhir/v3/Confidentiality",
    }
)
MRN_TYPE = "MR"  # v2-0203 "Medical record number"
# v2-0203 "Employee number". Its neighbour "EN" is the *employer* number, which names the
# patient's employer (the hospital, for every staff patient) and not the person.
EMPLOYEE_TYPE = "EI"
RESTRICTED_CODES = frozenset({"R", "V"})  # restricted, very restricted

# The ARM id a FHIR service's diagnostic records carry: Azure Health Data Services
# (`workspaces/<w>/fhirservices/<f>`) or Azure API for FHIR (`services/<s>`).
_FHIR_SERVICE_ID = re.compile(
    r"^/subscriptions/[^/]+/resourcegroups/[^/]+/providers/microsoft\.healthcareapis/"
    r"(workspaces/[^/]+/fhirservices|services)/[^/]+$",
    re.IGNORECASE,
)


class FhirSyncError(Exception):
    """The sync cannot go on; the message names no patient value (and no response body,
    which can quote one)."""


class FhirAccessDenied(FhirSyncError):
    """401/403: the identity has no token the service accepts, or no data-plane role."""


def check_fhir_url(url: str) -> str:
    """The service's base URL without a trailing slash; raises ValueError for anything but
    a bare https URL (the token is sent there)."""
    parts = urlsplit(url.strip())
    if parts.scheme != "https" or not parts.netloc:
        raise ValueError("--fhir-url must be the FHIR service's https URL")
    if parts.query or parts.fragment:
        raise ValueError("--fhir-url takes no query or fragment")
    return url.strip().rstrip("/")


def check_fhir_service(resource_id: str) -> str:
    if not _FHIR_SERVICE_ID.match(resource_id.strip()):
        raise ValueError(
            "--fhir-service must be the FHIR service's ARM resource id (/subscriptions/.../"
            "providers/Microsoft.HealthcareApis/workspaces/<w>/fhirservices/<f>, or "
            ".../services/<s> for Azure API for FHIR): the id its diagnostic records carry"
        )
    return resource_id.strip()


@dataclass(slots=True)
class SyncReport:
    """Counts only: what the sync read and wrote."""

    pages: int = 0
    patients: int = 0
    skipped: int = 0  # entries that are not a Patient with an id (an OperationOutcome)
    with_mrn: int = 0
    with_employee_id: int = 0
    restricted: int = 0
    retries: int = 0

    def summary(self) -> str:
        return (
            f"{self.patients} patients from {self.pages} pages ({self.with_mrn} with an MRN, "
            f"{self.with_employee_id} with an employee id, {self.restricted} restricted"
            f"{f', {self.skipped} entries skipped' if self.skipped else ''})"
        )


# ------------------------------------------------------------------ mapping


def patient_row(resource: Mapping[str, Any], fhir_service: str) -> list[str]:
    """One Patient resource as a patient index row (HEADER's order). A missing element is
    an empty cell: the loader treats empty as unknown."""
    identifiers = _dicts(resource.get("identifier"))
    address, postcode = _address(_dicts(resource.get("address")))
    return [
        fhir_service,
        _text(resource.get("id")),
        _identifier(identifiers, MRN_TYPE),
        _surname(_dicts(resource.get("name"))),
        address,
        postcode,
        _identifier(identifiers, EMPLOYEE_TYPE),
        "true" if _restricted(resource.get("meta")) else "false",
        "",  # care teams are not on the Patient resource: the EHR extract supplies them
    ]


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _text(value: Any) -> str:
    # One line per cell: a line break in a value would only be noise to the normaliser.
    return " ".join(value.split()) if isinstance(value, str) else ""


def _identifier(identifiers: list[dict[str, Any]], code: str) -> str:
    """The value of the first identifier typed `code` in v2-0203, preferring one not marked
    `use: old` (a superseded MRN after a merge)."""
    typed = [i for i in identifiers if _has_coding(i.get("type"), _IDENTIFIER_TYPE_SYSTEMS, {code})]
    current = [i for i in typed if i.get("use") != "old"] or typed
    for identifier in current:
        value = _text(identifier.get("value"))
        if value:
            return value
    return ""


def _has_coding(concept: Any, systems: frozenset[str], codes: set[str] | frozenset[str]) -> bool:
    if not isinstance(concept, dict):
        return False
    return any(
        c.get("system") in systems and c.get("code") in codes for c in _dicts(concept.get("coding"))
    )


def _surname(names: list[dict[str, Any]]) -> str:
    chosen = next((n for n in names if n.get("use") == "official"), names[0] if names else None)
    if chosen is None:
        return ""
    family = chosen.get("family")
    if isinstance(family, list):  # STU3 had family as a list
        family = " ".join(f for f in family if isinstance(f, str))
    return _text(family)


def _address(addresses: list[dict[str, Any]]) -> tuple[str, str]:
    chosen = next(
        (a for a in addresses if a.get("use") == "home"), addresses[0] if addresses else None
    )
    if chosen is None:
        return "", ""
    lines = chosen.get("line")
    parts = (
        [_text(line) for line in lines if isinstance(line, str)] if isinstance(lines, list) else []
    )
    # ", " so a second line (`Apt 4`) reads as the unit the normaliser strips.
    return ", ".join(p for p in parts if p), _text(chosen.get("postalCode"))


def _restricted(meta: Any) -> bool:
    if not isinstance(meta, dict):
        return False
    return any(
        c.get("system") in _CONFIDENTIALITY_SYSTEMS and c.get("code") in RESTRICTED_CODES
        for c in _dicts(meta.get("security"))
    )


# ------------------------------------------------------------------ reading


class _Reader:
    """GETs of one FHIR service's pages, authorised and retried."""

    def __init__(
        self,
        base_url: str,
        credential: TokenCredential,
        *,
        transport: HttpTransport | None,
        sleep: Callable[[float], None],
        report: SyncReport,
    ) -> None:
        origin = urlsplit(base_url)
        self._origin = (origin.scheme, origin.netloc.lower())
        self._scope = f"{base_url}/.default"
        self._sleep = sleep
        self._report = report
        self._transport = transport or RequestsTransport()
        self._pipeline: Pipeline[Any, Any] = Pipeline(
            transport=self._transport,
            policies=[
                HeadersPolicy({"Accept": "application/fhir+json"}),
                UserAgentPolicy("phiwatch-roster-sync"),
                BearerTokenCredentialPolicy(credential, self._scope),
            ],
        )

    def close(self) -> None:
        self._transport.close()

    def page(self, url: str) -> dict[str, Any]:
        """One Bundle. Raises FhirSyncError once the retries are spent."""
        parts = urlsplit(url)
        if (parts.scheme, parts.netloc.lower()) != self._origin:
            # Paging must not send the service's token to another host.
            raise FhirSyncError("a next link points off the FHIR service; refusing to follow it")
        for attempt in range(1, MAX_ATTEMPTS + 1):
            status, headers, body = self._get(url, attempt)
            if status == 200:
                return _bundle(body)
            if status in (401, 403):
                raise FhirAccessDenied(
                    f"the FHIR service refused the identity ({status}): it needs the "
                    "'FHIR Data Reader' role on the service, and a token for "
                    f"{self._scope}"
                )
            if status not in RETRY_STATUSES:
                raise FhirSyncError(f"the FHIR service answered {status} to a Patient search")
            if attempt == MAX_ATTEMPTS:
                break
            wait = _wait(headers, attempt)
            self._report.retries += 1
            log.warning("fhir request retried", status=status, attempt=attempt, wait_seconds=wait)
            self._sleep(wait)
        raise FhirSyncError(
            f"the FHIR service still answered {status} after {MAX_ATTEMPTS} attempts"
        )

    def _get(self, url: str, attempt: int) -> tuple[int, Mapping[str, str], bytes]:
        """(status, headers, body); a connection failure counts as a 503 to retry."""
        try:
            response = self._pipeline.run(HttpRequest("GET", url)).http_response
            return response.status_code, response.headers, response.read()
        except ClientAuthenticationError as exc:
            raise FhirAccessDenied(f"no token for {self._scope}: {_first_line(exc)}") from None
        except (ServiceRequestError, ServiceResponseError) as exc:
            if attempt == MAX_ATTEMPTS:
                raise FhirSyncError(
                    f"cannot reach the FHIR service ({type(exc).__name__})"
                ) from None
            return 503, {}, b""


def _bundle(body: bytes) -> dict[str, Any]:
    try:
        bundle = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise FhirSyncError("a Patient search answered something that is not JSON") from None
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise FhirSyncError("a Patient search answered something that is not a Bundle")
    return bundle


def _wait(headers: Mapping[str, str], attempt: int) -> float:
    """The server's wait when it names one (the FHIR service's `x-ms-retry-after-ms`,
    else Retry-After in seconds or as a date), else exponential back-off; capped."""
    wait = _named_wait(headers)
    if wait is None:
        wait = BACKOFF_SECONDS * 2 ** (attempt - 1)
    return max(0.0, min(wait, MAX_WAIT_SECONDS))


def _named_wait(headers: Mapping[str, str]) -> float | None:
    millis = headers.get("x-ms-retry-after-ms")
    after = (headers.get("Retry-After") or "").strip()
    try:
        if millis:
            return float(millis) / 1000
        if not after:
            return None
        if after.replace(".", "", 1).isdigit():
            return float(after)
        when = email.utils.parsedate_to_datetime(after)
    except (ValueError, TypeError):
        return None  # unreadable: back off instead
    return when.timestamp() - time.time() if when.tzinfo is not None else None


def _first_line(exc: Exception) -> str:
    # DefaultAzureCredential's message is many lines, one per credential tried.
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _next_link(bundle: Mapping[str, Any]) -> str | None:
    for link in _dicts(bundle.get("link")):
        if link.get("relation") == "next" and isinstance(link.get("url"), str):
            return str(link["url"])
    return None


def _patients(reader: _Reader, first_url: str, report: SyncReport) -> Iterator[Mapping[str, Any]]:
    """Every Patient of the search, a page at a time."""
    url: str | None = first_url
    while url is not None:
        bundle = reader.page(url)
        report.pages += 1
        for entry in _dicts(bundle.get("entry")):
            resource = entry.get("resource")
            if (
                isinstance(resource, dict)
                and resource.get("resourceType") == "Patient"
                and _text(resource.get("id"))
            ):
                yield resource
            else:
                report.skipped += 1
        following = _next_link(bundle)
        if following == url:  # a server that pages onto itself would never end
            raise FhirSyncError("the FHIR service's next link repeats the page just read")
        url = following


# ------------------------------------------------------------------ writing


def sync_patients(
    fhir_url: str,
    out: Path,
    fhir_service: str,
    credential: TokenCredential,
    *,
    page_size: int = DEFAULT_PAGE_SIZE,
    transport: HttpTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> SyncReport:
    """Write the patient index of every Patient at `fhir_url` to `out` (0600). Raises
    FhirSyncError (FhirAccessDenied for 401/403) and leaves `out` as it was."""
    base = check_fhir_url(fhir_url)
    service = check_fhir_service(fhir_service)
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"--page-size must be 1 to {MAX_PAGE_SIZE}")
    query = urlencode({"_count": page_size, "_elements": ELEMENTS}, safe=",")
    report = SyncReport()
    reader = _Reader(base, credential, transport=transport, sleep=sleep, report=report)
    partial = out.with_name(f".{out.name}.partial")
    try:
        with _owner_only(partial) as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(HEADER)
            for resource in _patients(reader, f"{base}/Patient?{query}", report):
                row = patient_row(resource, service)
                writer.writerow(row)
                report.patients += 1
                report.with_mrn += bool(row[2])
                report.with_employee_id += bool(row[6])
                report.restricted += row[7] == "true"
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        reader.close()
    log.info(
        "patient index written",
        patients=report.patients,
        pages=report.pages,
        skipped=report.skipped,
        with_mrn=report.with_mrn,
        with_employee_id=report.with_employee_id,
        restricted=report.restricted,
        retries=report.retries,
    )
    return report


def _owner_only(path: Path) -> IO[str]:
    """`path` opened for writing, readable by its owner only whatever was there before (a
    stale partial from a killed run is truncated and its mode reset; a symlink refused)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        return os.fdopen(fd, "w", encoding="utf-8", newline="")
    except BaseException:
        os.close(fd)
        raise
