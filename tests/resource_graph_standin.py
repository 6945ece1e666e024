"""A local HTTPS stand-in for Azure Resource Graph's query API (tests only):
`POST /providers/Microsoft.ResourceGraph/resources?api-version=2021-03-01`, as
`phiwatch.attest.inventory.inventory_from_graph` calls it through the SDK.

* TLS on 127.0.0.1, a random port, with the Logs Ingestion stand-in's self-signed
  certificate (clients trust `ca_file`): a bearer token is only sent over https.
* 401 with a `WWW-Authenticate: Bearer` challenge without `Authorization: Bearer <token>`.
* The body is a QueryRequest (`query`, `subscriptions`, `options.$top`,
  `options.$skipToken`, `options.resultFormat`). The stand-in runs no KQL: it answers the
  rows of the resource type the query names (`type =~ '<type>'`, the first one), filtered
  to `subscriptions` when given, at most `$top` (and `max_page`) per page, with an opaque
  `$skipToken` while rows remain, and `totalRecords`, `count`, `resultTruncated`, as the
  service does.
* Every request is recorded (body, Authorization header, api-version).
"""

from __future__ import annotations

import base64
import json
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.https_standin import CHALLENGE, HttpsStandIn, bearer_token, send_json

PATH = "/providers/Microsoft.ResourceGraph/resources"
_TYPE = re.compile(r"type\s*=~\s*'([^']+)'")


@dataclass(frozen=True)
class SeenQuery:
    body: dict[str, Any]
    authorization: str | None
    api_version: str | None
    status: int


class ResourceGraphStandIn(HttpsStandIn):
    thread_name = "resource-graph-standin"

    def __init__(
        self,
        workdir: Path,
        rows: dict[str, list[dict[str, Any]]],
        *,
        token: str = "standin-token",
        max_page: int = 1000,
    ) -> None:
        super().__init__(workdir)
        self.rows = {k.lower(): v for k, v in rows.items()}  # resource type → result rows
        self.token = token
        self.max_page = max_page
        self.requests: list[SeenQuery] = []
        self._lock = threading.Lock()

    def start(self) -> ResourceGraphStandIn:
        self._serve(_Handler)
        return self

    def answer(
        self, path: str, query: dict[str, list[str]], authorization: str | None, body: bytes
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            request = {}
        status, headers, answer = self._answer(path, authorization, request)
        with self._lock:
            self.requests.append(
                SeenQuery(request, authorization, query.get("api-version", [None])[0], status)
            )
        return status, headers, answer

    def _answer(
        self, path: str, authorization: str | None, request: dict[str, Any]
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        if bearer_token(authorization) != self.token:
            return 401, CHALLENGE, _error("AuthenticationFailed", "no valid bearer token")
        if path.rstrip("/").lower() != PATH.lower():
            return 404, {}, _error("NotFound", "unknown route")
        found = _TYPE.search(str(request.get("query") or ""))
        if found is None:
            return 400, {}, _error("BadRequest", "the stand-in needs a type =~ '...' filter")
        rows = self.rows.get(found.group(1).lower(), [])
        subscriptions = {s.lower() for s in request.get("subscriptions") or []}
        if subscriptions:
            rows = [r for r in rows if str(r["id"]).lower().split("/")[2] in subscriptions]
        options = request.get("options") or {}
        top = min(int(options.get("$top") or self.max_page), self.max_page)
        offset = _offset(options.get("$skipToken"))
        page = rows[offset : offset + top]
        answer: dict[str, Any] = {
            "totalRecords": len(rows),
            "count": len(page),
            "resultTruncated": "false",
            "data": page,
            "facets": [],
        }
        if offset + top < len(rows):
            answer["$skipToken"] = base64.urlsafe_b64encode(f"o:{offset + top}".encode()).decode()
        return 200, {}, answer


def _offset(token: str | None) -> int:
    if not token:
        return 0
    return int(base64.urlsafe_b64decode(token.encode()).decode().removeprefix("o:"))


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ResourceGraphStandIn/1"

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        standin: ResourceGraphStandIn = self.server.standin  # type: ignore[attr-defined]
        status, headers, answer = standin.answer(
            parts.path, parse_qs(parts.query), self.headers.get("Authorization"), body
        )
        send_json(self, status, answer, headers)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: pytest shows stderr on failure
