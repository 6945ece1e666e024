"""Deterministic corpora from the sample generator, delivered as an Event Hub partition would.

Each corpus is one generated day (`samplegen.generate` with its own seed and a start shifted by
whole days), so event time keeps moving forward from one corpus to the next. The generator
writes bodies without an enqueued time; a sidecar gives each body one (its newest record time
plus a shipping delay, never going backwards), computed once when the corpus is generated.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from phiwatch.batch import Batch
from phiwatch.eventhubs.batches import build_batch
from phiwatch.eventhubs.message import EventHubMessage
from phiwatch.samplegen import generate
from phiwatch.samplegen.clock import DEFAULT_START
from phiwatch.samplegen.generator import MIN_RECORDS
from phiwatch.sources.fields import parse_time

HUB = "phiwatch-diagnostics"
PARTITION = "0"
BATCH_BODIES = 100  # host.json maxEventBatchSize
RECORDS_PER_DAY = 20_000
FIRST_SEED = 7
# Azure Monitor → Event Hubs: a body is enqueued about this long after its newest record.
SHIP_DELAY = 60.0
SIDECAR = "enqueued.json"

Message = tuple[bytes, float]  # body bytes, enqueued time (epoch seconds)


@dataclass(frozen=True, slots=True)
class CorpusSpec:
    seed: int
    records: int
    day: int

    @property
    def start(self) -> datetime:
        return DEFAULT_START + timedelta(days=self.day)

    @property
    def name(self) -> str:
        return f"seed{self.seed}-n{self.records}-day{self.day}"


def day_specs(total_records: int, first_day: int = 0) -> list[CorpusSpec]:
    """Days of RECORDS_PER_DAY records (the last one smaller) adding up to `total_records`."""
    total = max(total_records, MIN_RECORDS)
    days = math.ceil(total / RECORDS_PER_DAY)
    specs = []
    for i in range(days):
        n = min(RECORDS_PER_DAY, total - i * RECORDS_PER_DAY)
        specs.append(CorpusSpec(FIRST_SEED + first_day + i, max(n, MIN_RECORDS), first_day + i))
    return specs


def _generate_one(spec: CorpusSpec, root: Path) -> Path:
    out = root / spec.name
    if (out / SIDECAR).exists():  # same spec → byte-identical output: reuse it
        return out
    generate(out, seed=spec.seed, records=spec.records, start=spec.start)
    times = enqueued_times((body for body, _ in _lines(out)), start=spec.start.timestamp())
    (out / SIDECAR).write_text(json.dumps(times) + "\n", encoding="utf-8")
    return out


def generate_all(specs: Iterable[CorpusSpec], root: Path, workers: int) -> list[Path]:
    specs = list(dict.fromkeys(specs))
    root.mkdir(parents=True, exist_ok=True)
    if workers <= 1 or len(specs) == 1:
        return [_generate_one(s, root) for s in specs]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(_generate_one, specs, [root] * len(specs)))


def enqueued_times(bodies: Iterable[bytes], start: float) -> list[float]:
    """Per body: newest record time + SHIP_DELAY, monotonic (one partition's enqueue order)."""
    out: list[float] = []
    last = start
    for data in bodies:
        newest = None
        try:
            records = orjson.loads(data).get("records", [])
        except (orjson.JSONDecodeError, AttributeError):
            records = []
        for record in records:
            when = parse_time(record.get("time")) if isinstance(record, dict) else None
            if when is not None and (newest is None or when.timestamp() > newest):
                newest = when.timestamp()
        if newest is not None:
            last = max(last, newest + SHIP_DELAY)
        out.append(round(last, 3))
    return out


def _lines(corpus: Path) -> Iterator[tuple[bytes, str]]:
    for path in sorted((corpus / "logs").glob("*.jsonl.gz")):
        for line in gzip.decompress(path.read_bytes()).split(b"\n"):
            if line.strip():
                yield line, path.name


def read_messages(corpus: Path) -> Iterator[Message]:
    """One corpus's bodies with their enqueued times, streamed file by file."""
    times = json.loads((corpus / SIDECAR).read_text(encoding="utf-8"))
    count = 0
    for count, (line, _) in enumerate(_lines(corpus), start=1):
        yield line, times[count - 1]
    if count != len(times):
        raise RuntimeError(f"{corpus}: {count} bodies but {len(times)} enqueued times")


def stream(corpora: Iterable[Path]) -> Iterator[Message]:
    for corpus in corpora:
        yield from read_messages(corpus)


def batches(
    messages: Iterable[Message], bodies_per_batch: int = BATCH_BODIES, first_seq: int = 0
) -> Iterator[Batch]:
    """Functions invocations of `bodies_per_batch` events, sequence numbers from `first_seq`."""
    chunk: list[EventHubMessage] = []
    for seq, (data, enqueued) in enumerate(messages, start=first_seq):
        when = datetime.fromtimestamp(enqueued, tz=UTC)
        chunk.append(EventHubMessage(data, seq, when, PARTITION))
        if len(chunk) == bodies_per_batch:
            yield build_batch(HUB, PARTITION, chunk)
            chunk = []
    if chunk:
        yield build_batch(HUB, PARTITION, chunk)


def ground_truth(corpus: Path) -> dict:
    return json.loads((corpus / "ground_truth.json").read_text(encoding="utf-8"))
