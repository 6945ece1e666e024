"""The sources added on top of the original scenario (SQL audit, blob logs, Entra sign-ins and
directory audit, the rest of the FHIR vocabulary, Activity writes with bodies).

Each source draws from its own generator, seeded from the seed and the source's name, and
never from the scenario's: the original records, their quirks, packing and the shipped
incidents stay byte-for-byte what they were. Volumes are shares of ``records`` on top of it.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

from .emitted import Emitted
from .plan import ScenarioPlan
from .population import Population
from .quirks import DUPLICATE_RATE
from .traffic_activity_changes import activity_change_traffic
from .traffic_entra import directory_traffic, signin_traffic
from .traffic_fhir_vocab import fhir_vocab_traffic
from .traffic_sql import sql_traffic
from .traffic_storage import storage_traffic
from .writer import Body, pack

Traffic = Callable[[Population, ScenarioPlan, random.Random, int], list[Emitted]]

# name -> (share of ``records`` added on top, traffic); the names seed the generators.
ADDED: dict[str, tuple[float, Traffic]] = {
    "sql": (0.12, sql_traffic),
    "storage": (0.12, storage_traffic),
    "signin": (0.10, signin_traffic),
    "directory": (0.01, directory_traffic),
    "fhir-vocabulary": (0.05, fhir_vocab_traffic),
    "activity-changes": (0.01, activity_change_traffic),
}


def source_rng(seed: int, name: str) -> random.Random:
    # A str seed is hashed with SHA-512 by random.seed: stable across runs and platforms.
    return random.Random(f"phiwatch-samplegen/{seed}/{name}")  # noqa: S311 - test data


def added_records(
    pop: Population, plan: ScenarioPlan, seed: int, records: int
) -> tuple[list[Emitted], dict[str, int]]:
    """Every added source's records, in time order; and their count per added source."""
    out: list[Emitted] = []
    counts: dict[str, int] = {}
    for name, (share, traffic) in ADDED.items():
        made = traffic(pop, plan, source_rng(seed, name), round(records * share))
        counts[name] = len(made)
        out += made
    out.sort(key=lambda e: e.at)
    return out, counts


def added_bodies(
    items: list[Emitted], seed: int
) -> tuple[list[Emitted], list[Body], dict[str, int]]:
    """Serialise, re-send a share (at-least-once delivery) and pack, on their own generator.

    Returns the records as delivered (re-sends included), the bodies and the quirk counts.
    """
    rng = source_rng(seed, "delivery")
    for e in items:
        e.line = json.dumps(e.record, separators=(",", ":"))
    dupes = [
        Emitted(
            at=e.at,
            stream=e.stream,
            source=e.source,
            record=e.record,
            actor=e.actor,
            deliver=e.at + timedelta(seconds=rng.uniform(180, 600)),
            line=e.line,
        )
        for e in rng.sample(items, round(len(items) * DUPLICATE_RATE))
    ]
    delivered = items + dupes
    quirks = Counter[str]({"duplicates": len(dupes)})
    for e in items:
        rec = e.record
        if not isinstance(rec, dict):
            continue
        if isinstance(rec.get("properties"), str):
            quirks["properties_as_string"] += 1
        if "Level" in rec and "level" in rec:
            quirks["level_and_Level"] += 1
        if rec.get("callerIpAddress") == "<null>":
            quirks["caller_ip_null"] += 1
    return delivered, pack(delivered, rng), dict(sorted(quirks.items()))
