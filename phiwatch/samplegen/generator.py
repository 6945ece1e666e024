"""Orchestration: population -> scenarios -> ordinary traffic -> quirks -> files + ground truth."""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .added_sources import added_bodies, added_records
from .clock import DEFAULT_START, WINDOW, iso_seconds
from .emitted import Emitted, Source
from .incidents import build_incidents
from .incidents_exposure import add_exposure_scenarios
from .incidents_fhirblob import fhirblob_scenario
from .incidents_privacy import privacy_scenario
from .incidents_signin import add_signin_incidents
from .incidents_silent import night_lull, silence_incidents
from .incidents_sql import sql_incidents
from .incidents_tamper import tamper_scenarios
from .lookalikes import build_lookalikes, incident_actor_normal_traffic
from .plan import make_plan
from .population import build_population
from .quirks import DUPLICATE_RATE, apply_quirks, redeliver
from .records_bad import bad_records, truncated_body
from .traffic_activity import activity_traffic
from .traffic_fhir import fhir_traffic
from .traffic_keyvault import keyvault_traffic
from .writer import pack, write_logs

MIX: dict[Source, float] = {"fhir": 0.65, "keyvault": 0.25, "activity": 0.10}
BAD_RATE = 0.002
MIN_RECORDS = 2_000  # below this the fixed-size scenarios would swamp ordinary traffic


@dataclass(frozen=True, slots=True)
class GenerationReport:
    files: list[Path]
    records: int
    bodies: int
    bytes: int
    incidents: int


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def generate(
    out_dir: Path, *, seed: int = 7, records: int = 20_000, start: datetime | None = None
) -> GenerationReport:
    """Write ``out_dir/logs/*.jsonl.gz`` and ``out_dir/ground_truth.json``.

    Same seed, records and start give byte-identical output. A naive ``start`` is taken as UTC.
    """
    if records < MIN_RECORDS:
        raise ValueError(f"records must be at least {MIN_RECORDS}, got {records}")
    out_dir = Path(out_dir)
    start = _utc(start or DEFAULT_START)
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
    pop = build_population(rng)
    plan = make_plan(pop, start, start + WINDOW, rng)

    # Scenarios first: they reserve actors and silence streams that ordinary traffic must honour.
    scen_recs, incidents = build_incidents(pop, plan, rng)
    look_recs, lookalikes = build_lookalikes(pop, plan, rng)
    bad, bad_counts = bad_records(pop, plan, rng, max(4, round(records * BAD_RATE)))
    fixed = scen_recs + look_recs
    fixed_by_source = Counter(e.source for e in fixed)

    base = (records - len(bad)) / (1 + DUPLICATE_RATE)
    budgets = {s: max(0, round(base * share) - fixed_by_source[s]) for s, share in MIX.items()}
    normal = (
        fhir_traffic(pop, plan, rng, budgets["fhir"])
        + keyvault_traffic(pop, plan, rng, budgets["keyvault"])
        + activity_traffic(pop, plan, rng, budgets["activity"])
    )
    actor_day = incident_actor_normal_traffic(plan, normal)
    if actor_day is not None:
        lookalikes.append(actor_day)

    everything: list[Emitted] = normal + fixed + bad
    quirk_counts = apply_quirks(everything, rng)
    for e in everything:
        e.line = json.dumps(e.record, separators=(",", ":"))
    duplicates, n_late, n_dup = redeliver(everything, rng)
    everything += duplicates

    bodies = pack(everything, rng)
    # The added sources come last and never touch ``rng``: everything above is unchanged.
    added, added_counts = added_records(pop, plan, seed, records)
    added += sql_incidents(pop, plan, seed, incidents, lookalikes)
    added += tamper_scenarios(pop, plan, seed, incidents, lookalikes)
    params: dict[str, dict[str, object]] = {}  # the deployment's settings the scenario needs
    added += fhirblob_scenario(pop, plan, seed, incidents, lookalikes, params)
    privacy = privacy_scenario(pop, plan, seed)
    added += privacy.records
    incidents += privacy.incidents
    lookalikes += privacy.lookalikes
    added_delivered, added_packed, added_quirks = added_bodies(added, seed)
    add_exposure_scenarios(pop, plan, seed, everything, added_packed, incidents, lookalikes)
    added_delivered, added_packed = add_signin_incidents(
        pop, plan, seed, incidents, lookalikes, added_delivered, added_packed
    )
    log_files, broken_at = write_logs(
        out_dir / "logs", bodies, lambda t: truncated_body(pop, t, rng), rng, added_packed
    )
    original = len(everything)
    everything += added_delivered
    # Read off the records: no random draw, so the logs stay as they were.
    incidents += silence_incidents(plan, everything)
    lull = night_lull(everything, pop.tenant_id)
    if lull is not None:
        lookalikes.append(lull)
    truth = {
        "seed": seed,
        "records": records,
        "start": iso_seconds(start),
        "end": iso_seconds(plan.end),
        "records_written": len(everything),
        "records_by_source": dict(sorted(Counter(e.source for e in everything).items())),
        "bodies": len(bodies) + len(added_packed),
        "incidents": [i.to_json() for i in incidents],
        "benign_lookalikes": [b.to_json() for b in lookalikes],
        "bad_records": {**bad_counts, "truncated_body_line": 1},
        "bad_lines": [broken_at],
        "quirks": {**quirk_counts, "duplicates": n_dup, "late": n_late},
        "added_sources": {
            "records": len(added_delivered),
            "original_records": original,
            "records_by_added_source": added_counts,
            "bodies": len(added_packed),
            "quirks": added_quirks,
        },
        "silenced_streams": {s: iso_seconds(t) for s, t in sorted(plan.silenced.items())},
        "detection_params": params,
        # The privacy inputs beside the logs (raw synthetic values: they are the inputs).
        "privacy": privacy.write(out_dir),
    }
    truth_path = out_dir / "ground_truth.json"
    truth_path.write_text(json.dumps(truth, indent=2) + "\n", encoding="utf-8")
    files = [*log_files, *privacy.files(out_dir), truth_path]
    return GenerationReport(
        files=files,
        records=len(everything),
        bodies=len(bodies) + len(added_packed),
        bytes=sum(p.stat().st_size for p in files),
        incidents=len(incidents),
    )
