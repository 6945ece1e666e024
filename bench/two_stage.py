"""The two stages on their own: what one `normalize` and one `detect` instance sustain.

`normalize` forwards every event (a message per grouping the rules need) to an in-memory publisher
that keeps the messages, assigned to partitions by a hash of the key; `detect` then reads
those messages as one instance owning every partition, in batches of `batch_size` per
partition, with its state snapshot saved to a directory after every batch, as in Azure.
Records per second for normalize, events per second for detect, both per core.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bench.pipelines import Scenario
from bench.stages import Prepared, _summary, repeat
from phiwatch.batch import Batch
from phiwatch.config import Settings
from phiwatch.detect.state_store import LocalStateStore
from phiwatch.eventhubs.publisher import PublishReport
from phiwatch.phievents.forwarder import PublishingForwarder
from phiwatch.wiring import build_detector, build_pipeline

PARTITIONS = 4


class _Hub:
    def __init__(self) -> None:
        self.partitions: dict[str, list[SimpleNamespace]] = {str(p): [] for p in range(PARTITIONS)}

    def publish(self, messages: Any) -> PublishReport:
        for m in messages:
            pid = str(int.from_bytes(hashlib.sha256(m.key.encode()).digest()[:8]) % PARTITIONS)
            part = self.partitions[pid]
            part.append(SimpleNamespace(body=m.body, sequence_number=len(part), enqueued_time=None))
        return PublishReport(messages=len(messages))

    def broadcast(self, body: bytes) -> int:
        for part in self.partitions.values():
            part.append(SimpleNamespace(body=body, sequence_number=len(part), enqueued_time=None))
        return PARTITIONS

    def close(self) -> None:
        pass


def _settings(scratch: Path, scenario: Scenario | None) -> Settings:
    return Settings(
        pseudonym_key="5e" * 32,
        archive_signing_key="a7" * 32,
        home=scratch,
        detection_params=scenario.params if scenario else {},
        privacy_allow_applications=sorted(scenario.allow_applications) if scenario else [],
    )


def measure_two_stage(
    batch_list: list[Batch],
    records: int,
    baseline: float,
    reps: int,
    scratch: Path,
    batch_size: int = 100,
    scenario: Scenario | None = None,
) -> dict[str, Any]:
    hub = _Hub()

    def prepare_normalize() -> Prepared:
        work = Path(tempfile.mkdtemp(dir=scratch))
        hub.__init__()  # type: ignore[misc]
        settings = _settings(work, scenario)
        forwarder = PublishingForwarder.for_settings(hub, settings)
        pipeline = build_pipeline(
            settings,
            work / "archive",
            [],
            forwarder,
            roster_file=scenario.roster if scenario else None,
            patients_file=scenario.patients if scenario else None,
        )

        def run() -> None:
            for batch in batch_list:
                pipeline.process(batch)

        return run, lambda: shutil.rmtree(work)

    normalize = _summary(repeat(prepare_normalize, reps), records, baseline)
    messages = {p: list(m) for p, m in hub.partitions.items()}
    events = sum(len(m) for m in messages.values())

    def prepare_detect() -> Prepared:
        work = Path(tempfile.mkdtemp(dir=scratch))
        detector = build_detector(
            _settings(work, scenario), work / "archive", LocalStateStore(work / "s")
        )

        def run() -> None:
            longest = max(len(m) for m in messages.values())
            for start in range(0, longest, batch_size):
                for pid, part in messages.items():
                    if part[start : start + batch_size]:
                        detector.process(pid, part[start : start + batch_size])

        return run, lambda: shutil.rmtree(work)

    detect = _summary(repeat(prepare_detect, reps), events, None)
    detect["events_per_s"] = detect.pop("records_per_s")
    detect["us_per_event"] = detect.pop("us_per_record")
    return {
        "partitions": PARTITIONS,
        "batch_size": batch_size,
        "events": events,
        "normalize_forwarding": normalize,
        "detect": detect,
    }
