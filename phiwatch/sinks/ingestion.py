"""The Logs Ingestion API as the Sentinel sink meets it: the request size limit and how rows
are grouped under it, the retry policy the client is built with, and how a failed upload is
classified (transient, stream, permanent, too large) without keeping the service's message,
which can quote row content."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import HttpResponseError
from azure.core.pipeline.policies import RetryPolicy

# The documented limit is "1 MB" per call, compressed and uncompressed; the service reports
# 1,048,576. Stay under the stricter reading, separators included.
MAX_REQUEST_BYTES = 1_000_000

CLIENT_CHUNK_BYTES = 1024 * 1024  # azure-monitor-ingestion's MAX_CHUNK_SIZE_BYTES

# What the production client is built with (sentinel_sink_from). Per request: the first
# attempt plus 3 retries; back-off 0 s, 1.6 s, 3.2 s (azure-core's exponential schedule with
# factor 0.8), or the server's Retry-After when it is at most 30 s; the whole call gives up
# after 60 s. After that the rows wait in the outbox, which is the real long-term retry.
RETRY_DEFAULTS: dict[str, Any] = {
    "retry_total": 3,
    "retry_backoff_factor": 0.8,
    "retry_backoff_max": 30,
    "max_retry_after": 30.0,
    "timeout": 60,
}

RETRY_KEYS = frozenset(
    {
        "retry_total",
        "retry_connect",
        "retry_read",
        "retry_status",
        "retry_backoff_factor",
        "retry_backoff_max",
        "retry_mode",
        "timeout",
        "max_retry_after",
    }
)

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class IngestionRetryPolicy(RetryPolicy):
    """azure-core's RetryPolicy, adjusted for the ingestion POST.

    * POST is retried like the idempotent methods: on connection/read errors and on 408,
      429, 500, 502, 503, 504 (stock azure-core retries a POST only on 500/503/504, or on
      any status that carries Retry-After). A retried POST may be accepted twice; delivery is
      at-least-once anyway.
    * Only those statuses are retried: a 400 or 413 carrying Retry-After is not.
    * Retry-After is honoured up to `max_retry_after` seconds. A longer one is not waited
      for: the request fails at once and its rows go to the outbox (stock azure-core sleeps
      whatever the header says, which would stall the Functions invocation).
    * No retry starts whose wait would end past the call's `timeout` (azure-core bounds
      only the connect timeout by it and would sleep a Retry-After or back-off regardless):
      the sink passes what is left of its time budget as `timeout`.
    """

    def __init__(self, *, max_retry_after: float = 30.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_retry_after = max_retry_after
        self._method_whitelist = frozenset(self._method_whitelist | {"POST"})

    def configure_retries(self, options: dict[str, Any]) -> dict[str, Any]:
        settings = super().configure_retries(options)
        settings["deadline"] = time.monotonic() + settings["timeout"]
        return settings

    def increment(self, settings: dict[str, Any], response: Any = None, error: Any = None) -> bool:
        if not super().increment(settings, response=response, error=error):
            return False
        wait = None if error is not None else self.get_retry_after(response)
        if wait is None:
            wait = self.get_backoff_time(settings)
        return bool(time.monotonic() + wait < settings["deadline"])

    def is_retry(self, settings: dict[str, Any], response: Any) -> bool:
        status = response.http_response.status_code
        if status not in RETRY_STATUSES:
            return False
        retry_after = self.get_retry_after(response)
        if retry_after is not None and retry_after > self.max_retry_after:
            return False
        return bool(settings["total"])


@dataclass(frozen=True)
class Failure:
    kind: str  # "transient" (block all), "stream" (block this stream), "permanent", "too_large"
    label: str  # "HTTP 503", "HTTP 400 InvalidStream", "ServiceRequestError": safe to log


def classify(error: BaseException) -> Failure:
    status = getattr(error, "status_code", None)
    if isinstance(error, HttpResponseError) and isinstance(status, int):
        code = getattr(getattr(error, "error", None), "code", None)
        # The service's message is never kept: a 400's can echo row content.
        label = f"HTTP {status}" + (f" {code}" if _is_code(code) else "")
        if status == 413:
            return Failure("too_large", label)
        if status == 400:
            return Failure("permanent", label)
        if status == 404:
            return Failure("stream", label)
        return Failure("transient", label)
    return Failure("transient", type(error).__name__)


def _is_code(code: object) -> bool:
    """An error code is an identifier ("InvalidStream"), never free text."""
    return isinstance(code, str) and 0 < len(code) <= 64 and code.isascii() and code.isalnum()


def json_size(row: Mapping[str, Any]) -> int:
    """Bytes of `row` as the client serialises it (json.dumps, ASCII)."""
    return len(json.dumps(row).encode("utf-8"))


def request_groups(
    rows: list[tuple[dict[str, Any], int]], limit: int
) -> Iterator[list[dict[str, Any]]]:
    """Consecutive rows whose JSON array (brackets and ", " separators included) fits."""
    group: list[dict[str, Any]] = []
    size = 2
    for row, row_size in rows:
        extra = row_size + (2 if group else 0)
        if group and size + extra > limit:
            yield group
            group, size, extra = [], 2, row_size
        group.append(row)
        size += extra
    if group:
        yield group
