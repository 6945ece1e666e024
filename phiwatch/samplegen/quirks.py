"""Real-world mess applied to ordinary traffic: odd field shapes, re-sends and stragglers."""

from __future__ import annotations

import json
import random
from datetime import timedelta

from .emitted import Emitted

DUPLICATE_RATE = 0.01
LATE_RATE = 0.004


def apply_quirks(items: list[Emitted], rng: random.Random) -> dict[str, int]:
    """Mutate a small share of ordinary records in place; scenario records are left alone so
    the ground truth never depends on how a parser copes with a quirk."""
    counts = {
        "properties_as_string": 0,
        "ip_port": 0,
        "ipv4_mapped_ipv6": 0,
        "http_status_as_string": 0,
        "level_capitalised": 0,
    }
    for e in items:
        rec = e.record
        if e.scenario or not isinstance(rec, dict):
            continue
        if e.source == "fhir":
            if rng.random() < 0.015:
                rec["properties"] = json.dumps(rec["properties"], separators=(",", ":"))
                counts["properties_as_string"] += 1
            if rng.random() < 0.01:
                rec["callerIpAddress"] = f"{rec['callerIpAddress']}:{rng.randint(1024, 65535)}"
                counts["ip_port"] += 1
        elif e.source == "keyvault":
            if rng.random() < 0.08:
                rec["callerIpAddress"] = f"::ffff:{rec['callerIpAddress']}"
                counts["ipv4_mapped_ipv6"] += 1
            props = rec["properties"]
            if rng.random() < 0.05 and isinstance(props, dict):
                props["httpStatusCode"] = str(props["httpStatusCode"])
                counts["http_status_as_string"] += 1
        elif e.source == "activity" and rng.random() < 0.03:
            # Rebuild rather than add, so the record never holds both spellings.
            e.record = {("Level" if k == "level" else k): v for k, v in rec.items()}
            counts["level_capitalised"] += 1
    return counts


def redeliver(items: list[Emitted], rng: random.Random) -> tuple[list[Emitted], int, int]:
    """Mark some ordinary records late and re-send others. Returns (duplicates, late, dupes).

    Call after serialising: a duplicate shares its original's exact line.
    """
    ordinary = [e for e in items if not e.scenario]
    n_late = round(len(ordinary) * LATE_RATE)
    n_dup = round(len(ordinary) * DUPLICATE_RATE)
    picked = rng.sample(ordinary, n_late + n_dup)
    for e in picked[:n_late]:
        # Shipped 3–12 minutes after it happened, next to records that are that much newer.
        e.deliver = e.at + timedelta(seconds=rng.uniform(180, 720))
    duplicates = [
        Emitted(
            at=e.at,
            stream=e.stream,
            source=e.source,
            record=e.record,
            actor=e.actor,
            deliver=e.delivered + timedelta(seconds=rng.uniform(180, 600)),
            line=e.line,
        )
        for e in picked[n_late:]
    ]
    return duplicates, n_late, n_dup
