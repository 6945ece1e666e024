"""The events behind tests/fixtures/detect_snapshot_v1.json.gz: a snapshot written by the
detect engine before rules were declarations (state listed in `state_attrs`, alert facts in
`AlertState.extra`). The fixture was produced once, with that code, by `freeze()`; it is
kept as bytes so the test restores exactly what a partition holds in Blob after an upgrade.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from phiwatch.model import AccessEvent
from tests.harness import batches_of, make_pipeline
from tests.records import KV_ID, activity, fhir, keyvault

FIXTURES = Path(__file__).parent / "fixtures"
SNAPSHOT = FIXTURES / "detect_snapshot_v1.json.gz"
ALERTS = FIXTURES / "detect_snapshot_v1_alerts.json"
LATENESS = 900.0
REORDER = 120.0
CUT = 120  # events processed before the snapshot was taken
REDELIVERED = 40  # events before the cut delivered again after the restore


def events() -> list[AccessEvent]:
    # The cut falls inside the burst (alert open, still growing) and between the failures
    # (alert open, Medium) and the secret read that makes it High.
    burst = [fhir(570 + 2 * i, path=f"Patient/p{i}") for i in range(120)]
    probing = [keyvault(700 + 7 * i, status=403, secret=f"s{i}") for i in range(6)]
    secret_read = [keyvault(900)]
    traffic = [fhir(500 + 10 * i, path="metadata", interaction="capabilities") for i in range(150)]
    turned_off = activity(
        640,
        operation="MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/WRITE",
        resource_id=KV_ID + "/PROVIDERS/MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/OTHER",
        request_body=json.dumps(
            {"properties": {"logs": [{"category": "AuditEvent", "enabled": False}]}}
        ),
    )
    turned_off_again = dict(turned_off, time=turned_off["time"].replace("08:10:40", "08:12:40"))
    turned_off_again["correlationId"] = "corr-act-again"
    records = burst + probing + secret_read + traffic
    records += [activity(650), turned_off, turned_off_again]
    with tempfile.TemporaryDirectory() as tmp:
        pipeline, _ = make_pipeline(Path(tmp))
        out = [e for b in batches_of(records) for e in pipeline.process(b).events]
    return sorted(out, key=lambda e: (e.time_generated, e.event_uid))


def after_cut(stream: list[AccessEvent]) -> list[AccessEvent]:
    """What a restored partition is fed: the rest, after a redelivery of the last events."""
    return stream[CUT - REDELIVERED :]


def freeze() -> None:  # pragma: no cover - run once with the v1 code
    import detections
    from phiwatch.detect import snapshot
    from phiwatch.detect.engine import DetectionEngine

    def engine() -> DetectionEngine:
        return DetectionEngine(detections.load_detections(lateness=LATENESS), LATENESS, REORDER)

    stream = events()
    first = engine()
    for event in stream[:CUT]:
        first.process(event, None)
    first.advance()
    emitted = {a.alert_id: json.loads(a.to_json()) for a in first.changed_alerts()}
    first.commit()
    FIXTURES.mkdir(exist_ok=True)
    SNAPSHOT.write_bytes(snapshot.dumps(first.state()))
    whole = engine()
    for event in stream:
        whole.process(event, None)
    whole.advance()
    whole.finish()
    alerts = {a.alert_id: json.loads(a.to_json()) for a in whole.changed_alerts()}
    restored = engine()  # v1 itself goes on from its snapshot as if never stopped
    restored.load_state(snapshot.loads(SNAPSHOT.read_bytes()))
    for event in after_cut(stream):
        restored.process(event, None)
    restored.advance()
    restored.finish()
    emitted.update({a.alert_id: json.loads(a.to_json()) for a in restored.changed_alerts()})
    assert emitted == alerts
    ALERTS.write_text(json.dumps(alerts, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    freeze()
