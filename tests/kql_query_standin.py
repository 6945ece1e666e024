"""Local stand-ins for the Log Analytics query API and the Azure Data Explorer query endpoint
(tests only), executing the posted KQL with duckdb-kql on fixture rows (local-azure.md §4).

* Log Analytics: `POST /v1/workspaces/{id}/query`, body `{"query", "timespan"}`, over HTTPS with
  a self-signed certificate (so `LogsQueryClient` is used as in production, trusting
  `ca_file` through `connection_verify`). 401 without a bearer token, 404 for another
  workspace, 400 `BadArgumentError` when the query fails. Only rows inside the timespan are
  visible (as in the service); `now()` is the stand-in's `now`.
  Answer: `{"tables": [{"name": "PrimaryResult", "columns": [{"name", "type"}], "rows"}]}`.
* ADX: `POST /v2/rest/query`, body `{"db", "csl", "properties"}`, over plain HTTP; `now()` is
  the request's `query_now` option, else the stand-in's `now`. Answer: v2 frames
  (DataSetHeader, DataTable PrimaryResult, DataSetCompletion); 400 when the query fails.

Every request is recorded in `requests` (path, parsed body, headers).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import isodate

from phiwatch.rules.engine import KqlEngine, QueryFailed, UnsupportedConstruct
from tests.https_standin import HttpsStandIn, bearer_token, send_json


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value


def _time(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class KqlQueryStandIn(HttpsStandIn):
    thread_name = "kql-query-standin"

    def __init__(
        self,
        rows: Mapping[str, list[dict[str, Any]]],
        now: datetime,
        workdir: Path,
        *,
        tls: bool,
        workspace_id: str = "ws-0001",
    ) -> None:
        super().__init__(workdir, tls=tls)
        self.tables = {table: list(r) for table, r in rows.items()}
        self.now = now
        self.workspace_id = workspace_id
        self.requests: list[dict[str, Any]] = []

    @property
    def endpoint(self) -> str:
        return self.url

    def execute(
        self, query: str, now: datetime, start: datetime | None, end: datetime | None
    ) -> tuple[list[str], list[str], list[list[Any]]]:
        with KqlEngine() as engine:
            for table, rows in self.tables.items():
                engine.load_rows(
                    table,
                    [
                        r
                        for r in rows
                        if (start is None or _time(r["TimeGenerated"]) > start)
                        and (end is None or _time(r["TimeGenerated"]) <= end)
                    ],
                )
            result = engine.run(query, now)
        rows = [[_jsonable(v) for v in row] for row in result.rows]
        return result.columns, result.types, rows

    def start(self) -> KqlQueryStandIn:
        standin = self

        class Handler(_Handler):
            owner = standin

        self._serve(Handler)
        return self


class _Handler(BaseHTTPRequestHandler):
    owner: KqlQueryStandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: Any) -> None:
        send_json(self, status, body, content_type="application/json; charset=utf-8")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        owner = self.owner
        owner.requests.append({"path": self.path, "body": body, "headers": dict(self.headers)})
        path = self.path.split("?", 1)[0]
        if path.startswith("/v1/workspaces/") and path.endswith("/query"):
            self._log_analytics(path, body)
        elif path == "/v2/rest/query":
            self._kusto(body)
        else:
            self._answer(404, {"error": {"code": "PathNotFoundError", "message": path}})

    def _log_analytics(self, path: str, body: dict[str, Any]) -> None:
        owner = self.owner
        if not bearer_token(self.headers.get("Authorization")):
            self._answer(401, {"error": {"code": "AuthorizationRequiredError", "message": ""}})
            return
        if path != f"/v1/workspaces/{owner.workspace_id}/query":
            self._answer(404, {"error": {"code": "WorkspaceNotFoundError", "message": path}})
            return
        start = end = None
        timespan = body.get("timespan")
        if timespan and "/" in timespan:
            first, second = timespan.split("/")
            start, end = _time(first), _time(second)
        elif timespan:
            end = owner.now
            start = end - isodate.parse_duration(timespan)
        try:
            columns, types, rows = owner.execute(body["query"], owner.now, start, end)
        except (QueryFailed, UnsupportedConstruct) as exc:
            self._answer(400, {"error": {"code": "BadArgumentError", "message": str(exc)}})
            return
        self._answer(
            200,
            {
                "tables": [
                    {
                        "name": "PrimaryResult",
                        "columns": [
                            {"name": c, "type": t} for c, t in zip(columns, types, strict=True)
                        ],
                        "rows": rows,
                    }
                ]
            },
        )

    def _kusto(self, body: dict[str, Any]) -> None:
        owner = self.owner
        properties = body.get("properties") or {}
        if isinstance(properties, str):
            properties = json.loads(properties)
        query_now = (properties.get("Options") or {}).get("query_now")
        now = _time(query_now) if query_now else owner.now
        try:
            columns, types, rows = owner.execute(body["csl"], now, None, None)
        except (QueryFailed, UnsupportedConstruct) as exc:
            self._answer(400, {"error": {"code": "General_BadRequest", "message": str(exc)}})
            return
        self._answer(
            200,
            [
                {"FrameType": "DataSetHeader", "IsProgressive": False, "Version": "v2.0"},
                {
                    "FrameType": "DataTable",
                    "TableId": 1,
                    "TableKind": "PrimaryResult",
                    "TableName": "PrimaryResult",
                    "Columns": [
                        {"ColumnName": c, "ColumnType": t}
                        for c, t in zip(columns, types, strict=True)
                    ],
                    "Rows": rows,
                },
                {"FrameType": "DataSetCompletion", "HasErrors": False, "Cancelled": False},
            ],
        )
