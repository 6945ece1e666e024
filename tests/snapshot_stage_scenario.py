"""The messages and snapshot behind tests/fixtures/detect_stage_*: one `phi-events` partition
as the detect stage saw it before issue #18 changed how snapshots are encoded.

`freeze()` ran once with that code: a generated day (samplegen, seed 11, 2,000 records)
through normalize with the real forwarder onto four partitions, then partition 0's messages
through `DetectProcessor` in batches of 100, its snapshot kept after CUT messages, and the
alerts of an uninterrupted run of every batch after the cut (and the end-of-run settle)
recorded. The messages are kept as bytes, so the test does not depend on today's normalisers.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures"
MESSAGES = FIXTURES / "detect_stage_messages.jsonl.gz"
SNAPSHOT = FIXTURES / "detect_stage_snapshot.json.gz"
ALERTS = FIXTURES / "detect_stage_alerts.json"
PARTITION = "0"
BATCH = 100
CUT = 500  # messages processed before the snapshot was taken
# The wall clock that bounds message times (the messages carry no enqueued time).
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def messages() -> list[SimpleNamespace]:
    lines = gzip.decompress(MESSAGES.read_bytes()).splitlines()
    return [
        SimpleNamespace(body=body, sequence_number=seq, enqueued_time=None)
        for seq, body in enumerate(lines)
    ]


def batches(stream: list[SimpleNamespace], start: int) -> Iterator[list[SimpleNamespace]]:
    for at in range(start, len(stream), BATCH):
        yield stream[at : at + BATCH]


def alert_versions(detector: Any, stream: list[SimpleNamespace], start: int) -> list[Any]:
    """Every alert version the detector emits from message `start` on, then its settle."""
    out = []
    for batch in batches(stream, start):
        out += [json.loads(a.to_json()) for a in detector.process(PARTITION, batch).alerts]
    out += [json.loads(a.to_json()) for a in detector.finish()]
    return out


def detector(work: Path) -> Any:
    from phiwatch.config import Settings
    from phiwatch.detect.state_store import LocalStateStore
    from phiwatch.wiring import build_detector

    settings = Settings(pseudonym_key="5e" * 32, archive_signing_key="a7" * 32, home=work)
    made = build_detector(settings, work / "archive", LocalStateStore(work / "state"))
    made.clock = lambda: NOW
    return made


def freeze() -> None:  # pragma: no cover - run once with the code before issue #18
    import hashlib
    import tempfile

    from bench.corpus import batches as body_batches
    from bench.corpus import enqueued_times
    from phiwatch.config import Settings
    from phiwatch.phievents.forwarder import PublishingForwarder
    from phiwatch.samplegen import generate
    from phiwatch.samplegen.clock import DEFAULT_START
    from phiwatch.wiring import build_pipeline

    class Hub:
        def __init__(self) -> None:
            self.partitions: dict[str, list[bytes]] = {str(p): [] for p in range(4)}

        def publish(self, sent: Any) -> Any:
            from phiwatch.eventhubs.publisher import PublishReport

            for m in sent:
                digest = hashlib.sha256(m.key.encode()).digest()[:8]
                self.partitions[str(int.from_bytes(digest) % 4)].append(m.body)
            return PublishReport(messages=len(sent))

        def broadcast(self, body: bytes) -> int:
            for part in self.partitions.values():
                part.append(body)
            return 4

        def close(self) -> None:
            pass

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        generate(work / "corpus", seed=11, records=2000)
        files = sorted((work / "corpus" / "logs").glob("*.jsonl.gz"))
        bodies = [line for f in files for line in gzip.decompress(f.read_bytes()).splitlines()]
        times = enqueued_times(bodies, start=DEFAULT_START.timestamp())
        hub = Hub()
        settings = Settings(pseudonym_key="5e" * 32, archive_signing_key="a7" * 32, home=work)
        forwarder = PublishingForwarder.for_settings(hub, settings)
        pipeline = build_pipeline(settings, work / "archive", [], forwarder)
        for batch in body_batches(zip(bodies, times, strict=True)):
            pipeline.process(batch)
        MESSAGES.write_bytes(gzip.compress(b"\n".join(hub.partitions[PARTITION]), mtime=0))

    stream = messages()
    with tempfile.TemporaryDirectory() as tmp:
        first = detector(Path(tmp))
        for batch in batches(stream[:CUT], 0):
            first.process(PARTITION, batch)
        found = first.state_store.load(first._key(PARTITION))
        SNAPSHOT.write_bytes(found.data)
    with tempfile.TemporaryDirectory() as tmp:
        whole = detector(Path(tmp))
        for batch in batches(stream[:CUT], 0):
            whole.process(PARTITION, batch)
        expected = alert_versions(whole, stream, CUT)
    ALERTS.write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    freeze()
