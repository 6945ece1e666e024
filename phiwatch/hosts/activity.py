"""What `/api/health` knows beyond configuration: when each partition last succeeded (or
failed), when the last canary passed, and a runner that bounds every check in time.

The Event Hubs host records into `ACTIVITY` after each partition's batch (a hook, no I/O);
`phiwatch.hosts.health.health_status` reads it. It is per process: an instance reports the
partitions it owns, which is what a stalled instance needs to say.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class PartitionActivity:
    last_success: datetime | None = None
    failing_since: datetime | None = None  # first failure since the last success
    last_error: str | None = None  # the exception type only: messages can carry content


@dataclass
class Activity:
    """Per stage and partition: the last successful batch and a failure streak; the canary."""

    clock: Clock = utc_now
    _partitions: dict[tuple[str, str], PartitionActivity] = field(default_factory=dict)
    _canary: datetime | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def batch_succeeded(self, stage: str, partition: str) -> None:
        with self._lock:
            entry = self._partitions.setdefault((stage, partition), PartitionActivity())
            entry.last_success, entry.failing_since, entry.last_error = self.clock(), None, None

    def batch_failed(self, stage: str, partition: str, error: BaseException) -> None:
        with self._lock:
            entry = self._partitions.setdefault((stage, partition), PartitionActivity())
            entry.failing_since = entry.failing_since or self.clock()
            entry.last_error = type(error).__name__

    def canary_seen(self) -> None:
        with self._lock:
            self._canary = self.clock()

    def report(self, max_age_seconds: int | None) -> tuple[dict[str, Any], list[str]]:
        """The `batches` body (ages in seconds per stage and partition) and its problems."""
        now = self.clock()
        body: dict[str, Any] = {}
        problems: list[str] = []
        with self._lock:
            items = sorted(self._partitions.items())
            canary = self._canary
        for (stage, partition), entry in items:
            age = _age(now, entry.last_success)
            row: dict[str, Any] = {"last_success_age_seconds": age}
            if entry.failing_since is not None:
                row["failing_for_seconds"] = _age(now, entry.failing_since)
                row["error"] = entry.last_error
                problems.append(
                    f"{stage} partition {partition}: its batch keeps failing "
                    f"({entry.last_error}); the host retries it"
                )
            elif max_age_seconds is not None and (age is None or age > max_age_seconds):
                problems.append(
                    f"{stage} partition {partition}: no successful batch for over "
                    f"{max_age_seconds}s"
                )
            body.setdefault(stage, {})[partition] = row
        body["canary_last_seen"] = canary.isoformat() if canary else None
        body["canary_age_seconds"] = _age(now, canary)
        return body, problems


def _age(now: datetime, then: datetime | None) -> float | None:
    return None if then is None else round((now - then).total_seconds(), 3)


ACTIVITY = Activity()


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check: `ok`, and what to show; `problem` (503) or `warning` (200) when not clean."""

    ok: bool
    detail: Mapping[str, Any] = field(default_factory=dict)
    problem: str | None = None
    warning: str | None = None


def run_checks(
    checks: Mapping[str, Callable[[], CheckResult]], timeout_seconds: float
) -> dict[str, CheckResult]:
    """Run every check at once, each bounded by `timeout_seconds`: a hung dependency makes
    its check a `timeout` problem instead of hanging the health request."""
    if not checks:
        return {}
    pool = ThreadPoolExecutor(max_workers=len(checks), thread_name_prefix="phiwatch-health")
    try:
        futures = {name: pool.submit(check) for name, check in checks.items()}
        wait(futures.values(), timeout=timeout_seconds)  # one budget for all, run at once
        results = {}
        for name, future in futures.items():
            try:
                results[name] = future.result(timeout=0)
            except FutureTimeout:
                results[name] = CheckResult(
                    False, {"status": "timeout"}, f"{name}: no answer within {timeout_seconds}s"
                )
            except Exception as exc:  # a failing dependency is the answer, not a crash
                results[name] = CheckResult(
                    False, {"status": "failed"}, f"{name}: {type(exc).__name__}"
                )
        return results
    finally:
        # A hung check's thread is left to finish on its own; the request does not wait.
        pool.shutdown(wait=False, cancel_futures=True)
