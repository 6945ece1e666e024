"""A local HTTPS stand-in for the Azure Monitor Logs Ingestion API (tests only).

`POST /dataCollectionRules/{dcr immutable id}/streams/{stream}?api-version=2023-01-01`, as
the real `LogsIngestionClient` sends it (azure-formats.md §5, local-azure.md §3):

* TLS on 127.0.0.1 with a self-signed certificate (SAN IP:127.0.0.1, tests/https_standin.py)
  generated at start; clients trust it with `connection_verify=standin.ca_file`, so product
  code needs no `enforce_https=False`.
* 401 without `Authorization: Bearer <token>`; 404 for an unknown DCR id or stream; 400 for
  another api-version; 415 for a Content-Type other than application/json.
* The body is gunzipped when `Content-Encoding: gzip`. Over `max_body_bytes` (1,048,576, the
  limit the service reports) as sent *or* decompressed → 413 ContentLengthLimitExceeded.
* The body must be a JSON array of objects whose keys are a subset of the stream's declared
  columns (from `phiwatch.schema.stream_columns`) with values of the declared types (string,
  long, real, boolean, datetime as an ISO string, dynamic; null is allowed) → else
  400 `{"error": {"code": "InvalidStream", ...}}`. Success: 204, rows appended to `store`.

Fault injection: `fail_next(status, count, headers)` queues scripted answers (429 with
Retry-After, 503, 400, ...) consumed by the next ingestion requests, and `outage(True)` answers
503 to everything until `outage(False)`. `hang(True)` makes every request wait without an
answer (an endpoint that accepts and never replies) until `hang(False)` or stop, then answer
503. Every request is recorded (`requests`) once answered; `arrivals` counts them on arrival.

Fixture: `logs_ingestion` (function scope) — a started stand-in for one random DCR id
declaring the three phiwatch streams; stopped afterwards.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from phiwatch.schema.tables import TABLES, plan_for, stream_columns
from tests.https_standin import HttpsStandIn, StandInServer, bearer_token, send_json

API_VERSION = "2023-01-01"
MAX_BODY_BYTES = 1024 * 1024  # "Maximum allowed content length: 1048576 bytes (1 MB)"
_READ_CAP = 64 * 1024 * 1024  # refuse to buffer more than this at all


def declared_streams() -> dict[str, dict[str, str]]:
    """phiwatch's DCR stream declarations: stream → {column: type}."""
    return {spec.stream: {c["name"]: c["type"] for c in stream_columns(spec)} for spec in TABLES}


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body_bytes: int  # as sent
    raw_bytes: int | None  # decompressed (None when the body could not be read)
    rows: int | None  # array length when the body parsed as an array
    stream: str | None
    status: int
    at: float  # time.monotonic() on arrival


@dataclass
class _Scripted:
    status: int
    headers: dict[str, str]
    body: dict[str, Any] | None


_TYPE_CHECKS = {
    "string": lambda v: isinstance(v, str),
    "long": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "real": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "dynamic": lambda v: True,
}


def _is_datetime(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _check_rows(rows: Any, columns: dict[str, str]) -> str | None:
    """Why `rows` does not match the stream declaration, or None."""
    if not isinstance(rows, list):
        return "the body must be a JSON array"
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            return f"row {index} is not an object"
        for key, value in row.items():
            kind = columns.get(key)
            if kind is None:
                return f"row {index}: column {key!r} is not declared in the stream"
            if value is None:
                continue
            ok = _is_datetime(value) if kind == "datetime" else _TYPE_CHECKS[kind](value)
            if not ok:
                return f"row {index}: column {key!r} is not of type {kind}"
    return None


class _Server(StandInServer):
    def handle_error(self, request, client_address):  # type: ignore[no-untyped-def]
        # Kept for the tests to assert on: a handler that raised must not pass unseen.
        standin: LogsIngestionStandIn = self.standin  # type: ignore[assignment]
        standin.handler_errors.append(repr(sys.exc_info()[1]))


class LogsIngestionStandIn(HttpsStandIn):
    thread_name = "logs-ingestion-standin"
    server_class = _Server

    def __init__(
        self,
        workdir: Path,
        *,
        dcr_id: str | None = None,
        streams: dict[str, dict[str, str]] | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        token: str | None = None,  # when set, only this bearer token is accepted
    ) -> None:
        super().__init__(workdir)
        self.workdir = workdir
        self.dcr_id = dcr_id or f"dcr-{uuid.uuid4().hex}"
        self.streams = streams if streams is not None else declared_streams()
        self.max_body_bytes = max_body_bytes
        self.token = token
        self.store: dict[str, list[dict[str, Any]]] = {s: [] for s in self.streams}
        self.requests: list[RecordedRequest] = []
        self._faults: deque[_Scripted] = deque()
        self._outage = False
        self._hanging = False
        self._release = threading.Event()
        self.arrivals = 0
        self._lock = threading.Lock()
        self.handler_errors: list[str] = []

    # ------------------------------------------------------------------ control

    @property
    def endpoint(self) -> str:
        return self.url

    def fail_next(
        self,
        status: int,
        count: int = 1,
        headers: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        """The next `count` ingestion requests get `status` (default bodies by status)."""
        with self._lock:
            for _ in range(count):
                self._faults.append(_Scripted(status, dict(headers or {}), body))

    def outage(self, on: bool) -> None:
        """While on, every request gets 503 ServiceUnavailable."""
        with self._lock:
            self._outage = on

    def hang(self, on: bool) -> None:
        """While on, requests wait unanswered; switching off (or stop) releases them."""
        with self._lock:
            self._hanging = on
            if on:
                self._release.clear()
            else:
                self._release.set()

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def rows(self, stream: str) -> list[dict[str, Any]]:
        """The rows received, in their full wire form (compact rows expanded by the DCR
        transform's rules, `phiwatch.schema.wire`): what the table holds, by stream column."""
        plan = plan_for(next(spec for spec in TABLES if spec.stream == stream))
        return [plan.expand(row) for row in self.wire_rows(stream)]

    def wire_rows(self, stream: str) -> list[dict[str, Any]]:
        """The rows as they were posted."""
        with self._lock:
            return list(self.store[stream])

    def ingest_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.stream is not None]

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> LogsIngestionStandIn:
        self._serve(_Handler)
        return self

    def stop(self) -> None:
        self.hang(False)
        super().stop()

    # ------------------------------------------------------------------ requests

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _next_fault(self) -> _Scripted | None:
        with self._lock:
            self.arrivals += 1
            hanging = self._hanging
        if hanging:
            self._release.wait(120)
            return _Scripted(503, {}, None)
        with self._lock:
            if self._outage:
                return _Scripted(503, {}, None)
            return self._faults.popleft() if self._faults else None

    def _append(self, stream: str, rows: list[dict[str, Any]]) -> None:
        with self._lock:
            self.store[stream].extend(rows)


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


_DEFAULT_FAULT_BODIES = {
    400: _error("InvalidStream", "scripted: the stream rejected the data"),
    401: _error("InvalidAuthenticationToken", "scripted"),
    403: _error("OperationFailed", "scripted: the caller lacks permission on the DCR"),
    408: _error("RequestTimeout", "scripted"),
    413: _error("ContentLengthLimitExceeded", "scripted"),
    429: _error("TooManyRequests", "scripted: throttled"),
    500: _error("InternalServerError", "scripted"),
    503: _error("ServiceUnavailable", "scripted: the service is unavailable"),
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # an idle keep-alive connection ends after this
    server_version = "LogsIngestionStandIn/1"

    def setup(self) -> None:
        super().setup()
        self.request.do_handshake()

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: tests read `requests`

    @property
    def standin(self) -> LogsIngestionStandIn:
        return self.server.standin  # type: ignore[attr-defined]

    def do_GET(self) -> None:
        self._drain_body()
        self._reply(405, _error("MethodNotAllowed", "only POST"))

    def do_POST(self) -> None:
        arrived = time.monotonic()
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        headers = {k.lower(): v for k, v in self.headers.items()}
        body = self._drain_body()
        parts = url.path.split("/")
        stream: str | None = None
        raw_size: int | None = None
        row_count: int | None = None

        def finish(status: int, payload: dict[str, Any] | None = None, extra=None) -> None:
            self.standin._record(
                RecordedRequest(
                    method="POST",
                    path=url.path,
                    query=query,
                    headers=headers,
                    body_bytes=len(body) if body is not None else -1,
                    raw_bytes=raw_size,
                    rows=row_count,
                    stream=stream,
                    status=status,
                    at=arrived,
                )
            )
            self._reply(status, payload, extra)

        # /dataCollectionRules/{id}/streams/{stream}
        if (
            len(parts) != 5
            or parts[0] != ""
            or parts[1] != "dataCollectionRules"
            or parts[3] != "streams"
        ):
            finish(404, _error("NotFound", "no such route"))
            return
        dcr_id, stream = unquote(parts[2]), unquote(parts[4])
        if body is None:
            finish(413 if self._too_long else 411, _error("ContentLengthRequired", "no body"))
            return
        fault = self.standin._next_fault()
        if fault is not None:
            payload = (
                fault.body
                if fault.body is not None
                else _DEFAULT_FAULT_BODIES.get(
                    fault.status, _error("Scripted", f"scripted {fault.status}")
                )
            )
            finish(fault.status, payload, fault.headers)
            return
        token = bearer_token(headers.get("authorization"))
        if not token or (self.standin.token is not None and token != self.standin.token):
            finish(401, _error("InvalidAuthenticationToken", "a bearer token is required"))
            return
        if query.get("api-version") != [API_VERSION]:
            finish(400, _error("InvalidApiVersion", f"api-version must be {API_VERSION}"))
            return
        if dcr_id != self.standin.dcr_id:
            finish(404, _error("NotFound", "unknown data collection rule"))
            return
        columns = self.standin.streams.get(stream)
        if columns is None:
            finish(404, _error("NotFound", "the stream is not declared in the rule"))
            return
        if headers.get("content-type", "").split(";")[0].strip() != "application/json":
            finish(415, _error("UnsupportedMediaType", "Content-Type must be application/json"))
            return
        limit = self.standin.max_body_bytes
        too_large = (
            "ContentLengthLimitExceeded",
            f"Maximum allowed content length: {limit} bytes (1 MB). Provided content length: "
            "{} bytes.",
        )
        if len(body) > limit:
            finish(413, _error(too_large[0], too_large[1].format(len(body))))
            return
        raw = body
        if headers.get("content-encoding", "").lower() == "gzip":
            try:
                decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
                raw = decompressor.decompress(body, limit + 1)
                if decompressor.unconsumed_tail:
                    raw_size = (
                        limit + 1 + len(decompressor.decompress(decompressor.unconsumed_tail))
                    )
                    finish(413, _error(too_large[0], too_large[1].format(raw_size)))
                    return
            except (zlib.error, OSError, EOFError):
                finish(400, _error("InvalidContentEncoding", "the body is not valid gzip"))
                return
        raw_size = len(raw)
        if raw_size > limit:
            finish(413, _error(too_large[0], too_large[1].format(raw_size)))
            return
        try:
            rows = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            finish(400, _error("InvalidPayload", "the body is not JSON"))
            return
        row_count = len(rows) if isinstance(rows, list) else None
        problem = _check_rows(rows, columns)
        if problem is not None:
            finish(400, _error("InvalidStream", problem))
            return
        self.standin._append(stream, rows)
        finish(204)

    # ------------------------------------------------------------------ plumbing

    _too_long = False

    def _drain_body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        if length is None:
            return None
        size = int(length)
        if size > _READ_CAP:
            self._too_long = True
            self.close_connection = True
            return None
        return self.rfile.read(size)

    def _reply(
        self,
        status: int,
        payload: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if status != 204:
            code = (payload or {}).get("error", {}).get("code", "")
            send_json(self, status, payload or {}, {**(headers or {}), "x-ms-error-code": code})
            return
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()


@pytest.fixture
def logs_ingestion(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LogsIngestionStandIn]:
    """A started stand-in (random DCR id, the three phiwatch streams), stopped afterwards."""
    standin = LogsIngestionStandIn(tmp_path_factory.mktemp("logs-ingestion")).start()
    try:
        yield standin
    finally:
        standin.stop()
