"""A local HTTPS stand-in for an Azure Health Data Services FHIR service's Patient search
(tests only): `GET /Patient?_count=N&_elements=...`, as `phiwatch roster sync-patients` reads
it.

* TLS on 127.0.0.1, a random port, with the self-signed certificate of the Logs Ingestion
  stand-in (clients trust `ca_file`), because a bearer token is only ever sent over https.
* 401 with a `WWW-Authenticate: Bearer` challenge without `Authorization: Bearer <token>`.
* A searchset Bundle of at most `_count` Patients (`max_count` caps it, as the service caps
  it at 1000), with `_elements` applied (id, resourceType and meta always kept) and a `next`
  link carrying an opaque continuation token (`ct`), as the service pages.
* `identifier=SYSTEM|VALUE` (or `|VALUE`, `VALUE`) keeps only the Patients with that
  identifier, as `phiwatch report patient --identifier` searches.
* Fault injection: `fail_next(status, headers)` answers the next request with `status`.
  Every request is recorded (path, query, Authorization header).
"""

from __future__ import annotations

import base64
import threading
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.https_standin import CHALLENGE, HttpsStandIn, bearer_token, send_json

_ALWAYS = frozenset({"resourceType", "id", "meta"})


@dataclass(frozen=True)
class SeenRequest:
    path: str
    query: dict[str, list[str]]
    authorization: str | None
    status: int


class FhirStandIn(HttpsStandIn):
    thread_name = "fhir-standin"

    def __init__(
        self,
        workdir: Path,
        patients: list[dict[str, Any]],
        *,
        token: str = "standin-token",
        max_count: int = 1000,
    ) -> None:
        super().__init__(workdir)
        self.patients = patients
        self.token = token
        self.max_count = max_count
        self.requests: list[SeenRequest] = []
        self.next_link_host: str | None = None  # set: next links point there instead
        self._faults: deque[tuple[int, dict[str, str]]] = deque()
        self._lock = threading.Lock()

    def fail_next(self, status: int, headers: dict[str, str] | None = None) -> None:
        with self._lock:
            self._faults.append((status, dict(headers or {})))

    def start(self) -> FhirStandIn:
        self._serve(_Handler)
        return self

    # ------------------------------------------------------------------ answers

    def answer(
        self, path: str, query: dict[str, list[str]], authorization: str | None
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
        status, headers, body = self._answer(path, query, authorization, fault)
        with self._lock:
            self.requests.append(SeenRequest(path, query, authorization, status))
        return status, headers, body

    def _answer(
        self,
        path: str,
        query: dict[str, list[str]],
        authorization: str | None,
        fault: tuple[int, dict[str, str]] | None,
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        if bearer_token(authorization) != self.token:
            return 401, CHALLENGE, _outcome("login", "Authentication failed.")
        if fault is not None:
            return fault[0], fault[1], _outcome("throttled", "scripted")
        if path != "/Patient":
            return 404, {}, _outcome("not-found", "unknown route")
        count = min(int(query.get("_count", ["10"])[0]), self.max_count)
        offset = _offset(query.get("ct", [None])[0])
        elements = query.get("_elements", [None])[0]
        patients = self.patients
        if "identifier" in query:
            patients = [p for p in patients if _has_identifier(p, query["identifier"][0])]
        page = patients[offset : offset + count]
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "link": [{"relation": "self", "url": self.url + path}],
            "entry": [
                {
                    "fullUrl": f"{self.url}/Patient/{p.get('id')}",
                    "resource": _subset(p, elements),
                    "search": {"mode": "match"},
                }
                for p in page
            ],
        }
        if offset + count < len(patients):
            following = {k: v[0] for k, v in query.items() if k != "ct"}
            following["ct"] = base64.urlsafe_b64encode(f"o:{offset + count}".encode()).decode()
            host = self.next_link_host or self.url
            bundle["link"].append(
                {"relation": "next", "url": f"{host}/Patient?{urlencode(following)}"}
            )
        return 200, {}, bundle


def _has_identifier(patient: dict[str, Any], token: str) -> bool:
    system, _, value = token.rpartition("|")
    return any(
        i.get("value") == value and (not system or i.get("system") == system)
        for i in patient.get("identifier", [])
        if isinstance(i, dict)
    )


def _offset(ct: str | None) -> int:
    if ct is None:
        return 0
    return int(base64.urlsafe_b64decode(ct.encode()).decode().removeprefix("o:"))


def _subset(resource: dict[str, Any], elements: str | None) -> dict[str, Any]:
    if not elements:
        return resource
    keep = _ALWAYS | {e.strip() for e in elements.split(",")}
    return {k: v for k, v in resource.items() if k in keep}


def _outcome(code: str, text: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": text}],
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FhirStandIn/1"

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        standin: FhirStandIn = self.server.standin  # type: ignore[attr-defined]
        status, headers, body = standin.answer(
            parts.path, parse_qs(parts.query), self.headers.get("Authorization")
        )
        send_json(self, status, body, headers, "application/fhir+json")

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: pytest shows stderr on failure, and the paths hold patient ids
