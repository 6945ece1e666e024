"""What routing costs on `phi-events`: messages published per diagnostic record.

`python -m bench.routing_cost samples/logs` runs `normalize` (the real pipeline and
`PublishingForwarder`) over the files as the replay reads them, with a publisher that counts,
once with the shipped rules and once with the shipped rules plus the test-only rules of every
other grouping (tests/synthetic_rules.py, with its stand-in CredentialId on Key Vault events).
The previous contract, one message per event, is the baseline. Ticks are counted as
broadcasts; each costs one message per phi-events partition (docs/routing.md).
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from bench.pipelines import quiet_logging
from phiwatch.config import Settings
from phiwatch.envelope import discover
from phiwatch.eventhubs.publisher import KeyedMessage, PublishReport
from phiwatch.hosts.replay import DEFAULT_BATCH_BODIES, _batches
from phiwatch.phievents.forwarder import PublishingForwarder
from phiwatch.wiring import build_pipeline
from tests.synthetic_rules import registered, with_credentials


class CountingPublisher:
    def __init__(self) -> None:
        self.messages = 0
        self.broadcasts = 0

    def publish(self, messages: Sequence[KeyedMessage]) -> PublishReport:
        self.messages += len(messages)
        return PublishReport(messages=len(messages))

    def broadcast(self, body: bytes) -> int:
        self.broadcasts += 1
        return 1

    def close(self) -> None:
        pass


def measure(paths: list[Path], scratch: Path) -> dict[str, Any]:
    settings = Settings(pseudonym_key="5e" * 32, archive_signing_key="a7" * 32, home=scratch)
    publisher = CountingPublisher()
    forwarder = PublishingForwarder.for_settings(publisher, settings)
    pipeline = build_pipeline(settings, scratch / "archive", [], forwarder)
    for path in discover(paths):
        for batch in _batches(path, DEFAULT_BATCH_BODIES):
            pipeline.process(batch)
    totals = pipeline.totals
    counts: Counter[str] = forwarder.counts
    return {
        "records": totals.records,
        "events": counts["events"],
        "messages": publisher.messages,
        "messages_per_record": round(publisher.messages / totals.records, 3),
        "messages_per_event": round(publisher.messages / max(1, counts["events"]), 3),
        "previous_contract_messages_per_record": round(counts["events"] / totals.records, 3),
        "events_not_published": counts["unrouted"],
        "by_grouping": {
            k.split(":", 1)[1]: v for k, v in sorted(counts.items()) if k.startswith("messages:")
        },
        "tick_broadcasts": publisher.broadcasts,
        "tick_messages_per_record": {
            p: round(publisher.broadcasts * p / totals.records, 4) for p in (4, 32)
        },
    }


def main(argv: list[str]) -> None:
    quiet_logging()
    paths = [Path(a) for a in argv] or [Path("samples/logs")]
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out["shipped rules"] = measure(paths, Path(tmp) / "shipped")
        with pytest.MonkeyPatch.context() as env, registered(env), with_credentials(env):
            out["shipped + synthetic (every grouping)"] = measure(paths, Path(tmp) / "all")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
