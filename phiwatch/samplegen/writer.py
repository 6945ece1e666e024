"""Pack records into Event Hub bodies and write one gzip JSON-lines file per hour."""

from __future__ import annotations

import gzip
import heapq
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from .emitted import Emitted

MAX_RECORDS_PER_BODY = 40
# Azure Monitor flushes a batch within a couple of minutes even when it is not full.
FLUSH_AFTER = timedelta(seconds=120)
FILE_GLOB = "diagnostics-*.jsonl.gz"


@dataclass(slots=True)
class Body:
    first: datetime
    stream: str
    lines: list[str]

    def render(self) -> str:
        return '{"records":[' + ",".join(self.lines) + "]}"


def pack(items: list[Emitted], rng: random.Random) -> list[Body]:
    """One resource per body, 1–40 records, delivery order inside; bodies by first record."""
    by_stream: dict[str, list[Emitted]] = {}
    for e in items:
        by_stream.setdefault(e.stream, []).append(e)
    bodies: list[Body] = []
    for stream in sorted(by_stream):
        recs = sorted(by_stream[stream], key=lambda e: (e.delivered, e.at))
        i = 0
        while i < len(recs):
            target = rng.randint(1, MAX_RECORDS_PER_BODY)
            first = recs[i].delivered
            j = i + 1
            while j < len(recs) and j - i < target and recs[j].delivered - first <= FLUSH_AFTER:
                j += 1
            bodies.append(Body(first, stream, [r.line for r in recs[i:j]]))
            i = j
    bodies.sort(key=lambda b: (b.first, b.stream))
    return bodies


def file_name(hour: datetime) -> str:
    return f"diagnostics-{hour:%Y-%m-%dT%H}.jsonl.gz"


def _hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def write_logs(
    log_dir: Path,
    bodies: list[Body],
    broken_line: Callable[[datetime], str],
    rng: random.Random,
    added: Sequence[Body] = (),
) -> tuple[list[Path], dict[str, object]]:
    """Write the hourly files and slip one truncated body into one of them.

    ``broken_line(t)`` makes that line from records stamped around ``t``, the time of the body
    it follows, so that whatever a lenient reader salvages from it still fits its neighbours.
    ``added`` bodies (the sources added on top of the original scenario) are merged in by
    time without touching where the original bodies and the broken line go or what ``rng``
    draws. Returns the files and where the broken line went (file name, 1-based line number).
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    for stale in sorted(log_dir.glob(FILE_GLOB)):  # a previous run may have covered other hours
        stale.unlink()
    hours: dict[datetime, list[Body]] = {}
    for body in bodies:
        hours.setdefault(_hour(body.first), []).append(body)
    keys = sorted(hours)
    victim = keys[len(keys) // 3]
    at = rng.randint(1, len(hours[victim]))
    broken = broken_line(hours[victim][at - 1].first)
    # Each original body with the lines that follow it (the broken line follows one of them).
    runs: dict[datetime, list[tuple[datetime, str, list[str]]]] = {}
    for hour, hour_bodies in hours.items():
        runs[hour] = [(b.first, b.stream, [b.render()]) for b in hour_bodies]
    runs[victim][at - 1][2].append(broken)
    extra: dict[datetime, list[tuple[datetime, str, list[str]]]] = {}
    for body in sorted(added, key=lambda b: (b.first, b.stream)):
        extra.setdefault(_hour(body.first), []).append((body.first, body.stream, [body.render()]))
    files = []
    broken_at = 0
    for hour in sorted(set(runs) | set(extra)):
        merged = heapq.merge(runs.get(hour, []), extra.get(hour, []), key=lambda r: r[:2])
        lines = [line for run in merged for line in run[2]]
        if hour == victim:
            broken_at = lines.index(broken) + 1
        data = ("\n".join(lines) + "\n").encode()
        path = log_dir / file_name(hour)
        # mtime=0 and no embedded file name keep the archive byte-stable across runs.
        path.write_bytes(gzip.compress(data, compresslevel=9, mtime=0))
        files.append(path)
    return files, {"file": file_name(victim), "line": broken_at}
