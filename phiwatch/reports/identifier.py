"""An identifier (an MRN as `SYSTEM|VALUE`) resolved to FHIR patient ids through the FHIR
service: `GET Patient?identifier=SYSTEM|VALUE&_elements=id`, with the caller's identity.

It reuses the patient-index sync's reader (phiwatch/privacy/fhir_sync.py): azure-core's
pipeline with a bearer-token policy only (no SDK logging policy, which would log the URL
and so the MRN), bounded retries, the token never sent off the service. Nothing here is
logged but counts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlencode

from azure.core.credentials import TokenCredential
from azure.core.pipeline.transport import HttpTransport

from phiwatch.privacy.fhir_sync import (
    FhirSyncError,
    SyncReport,
    _patients,
    _Reader,
    _text,
    check_fhir_url,
)

# A search by an identifier matches one patient, or a few after a merge; more means the
# identifier is not one patient's, and the report would name others.
MAX_MATCHES = 20


class IdentifierNotResolved(FhirSyncError):
    """The service found no patient, or too many, for the identifier."""


def resolve_identifier(
    fhir_url: str,
    identifier: str,
    credential: TokenCredential,
    *,
    transport: HttpTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[str]:
    """The FHIR logical ids of the Patients with this identifier. Raises FhirSyncError
    (FhirAccessDenied for 401/403) or IdentifierNotResolved (too many matches); an empty
    list is a valid answer (no such patient on this service)."""
    base = check_fhir_url(fhir_url)
    if "|" not in identifier or not identifier.rsplit("|", 1)[1].strip():
        raise ValueError("--identifier must be SYSTEM|VALUE (the identifier system and value)")
    query = urlencode({"identifier": identifier, "_elements": "id", "_count": MAX_MATCHES + 1})
    report = SyncReport()
    reader = _Reader(base, credential, transport=transport, sleep=sleep, report=report)
    ids: list[str] = []
    try:
        for resource in _patients(reader, f"{base}/Patient?{query}", report):
            ids.append(_text(resource.get("id")))
            if len(ids) > MAX_MATCHES:
                raise IdentifierNotResolved(
                    f"more than {MAX_MATCHES} patients have this identifier: it names no "
                    "one patient"
                )
    finally:
        reader.close()
    return list(dict.fromkeys(ids))


__all__ = ["MAX_MATCHES", "IdentifierNotResolved", "resolve_identifier"]
