"""Bytes sent to Sentinel (Log Analytics bills ingested bytes) per byte of raw diagnostic log.

Rows are what the Sentinel sink sends: `schema.wire_row()` of every event, every alert
version and every batch-health row (the compact form of `phiwatch.schema.wire`: short keys,
packed codes, derived columns the DCR transform rebuilds; no nulls, no constant columns),
serialised with orjson. Log Analytics bills the stored columns instead
(docs/sentinel-ingestion.md).
Raw is the diagnostic records themselves, as they would land in Log Analytics if the tenant
sent the logs directly.
"""

from __future__ import annotations

from typing import Any

from bench.observe import Observer
from phiwatch.batch import Batch
from phiwatch.envelope import decode_body

SENT = ("events", "alerts", "health")


def raw_sizes(batches: list[Batch]) -> dict[str, int]:
    records = [r for b in batches for body in b.bodies for r in decode_body(body)]
    return {
        "records": len(records),
        "record_bytes": sum(len(r.raw) for r in records),
        "body_bytes": sum(len(body.data) for b in batches for body in b.bodies),
    }


def ingest_summary(observer: Observer, raw: dict[str, int]) -> dict[str, Any]:
    sent = sum(observer.wire_bytes[k] for k in SENT)
    rows = {k: observer.rows[k] for k in (*SENT, "dead_letters")}
    return {
        "raw_record_bytes": raw["record_bytes"],
        "raw_body_bytes": raw["body_bytes"],
        "sent_bytes": sent,
        "sent_bytes_by_kind": {k: observer.wire_bytes[k] for k in SENT},
        "rows": rows,
        "ratio_to_raw_records": round(sent / raw["record_bytes"], 4),
        "ratio_to_raw_bodies": round(sent / raw["body_bytes"], 4),
        "avg_raw_record_bytes": round(raw["record_bytes"] / raw["records"], 1),
        "avg_event_bytes": round(observer.wire_bytes["events"] / max(rows["events"], 1), 1),
        # Dead-letters are not sent to Sentinel today; what they would add if they were.
        "dead_letter_bytes_not_sent": observer.wire_bytes["dead_letters"],
    }
