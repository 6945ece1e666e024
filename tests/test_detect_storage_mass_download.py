"""storage-mass-download on events: 50 distinct PHI blobs or 1 GiB per identity in 15 minutes,
one alert per burst; runtime containers, allow-listed identities, non-PHI containers,
metadata reads and failures stay quiet; and through the pipeline with a SAS credential."""

from __future__ import annotations

from phiwatch.detect.alert_book import alert_id
from phiwatch.detect.testing import RuleHarness, access
from phiwatch.model import AccessEvent
from phiwatch.sources import storage
from tests import records
from tests.harness import run

RULE = "storage-mass-download"
ACCOUNT = (
    "/subscriptions/sub-1/resourcegroups/rg/providers/microsoft.storage/storageaccounts/stphi01"
)
GIB = 1024**3


def blob(at: str, n: int, *, container: str = "discharge", size: int = 1000, **kw) -> AccessEvent:
    operation = kw.pop("operation", "GetBlob")
    phi = kw.pop("phi", "clinical")
    event = access(at, product=storage.PRODUCT, operation=operation, target=ACCOUNT, **kw)
    return event.model_copy(
        update={
            "object": f"stphi01/{container}/bh_{n:032x}",
            "event_sub_type": "Blob",
            "response_bytes": size,
            "phi_category": phi,
            "logon_method": "OAuth",
        }
    )


def burst(n: int, start_minute: int = 0, **kw) -> list[AccessEvent]:
    return [
        blob(f"2026-03-02 22:{start_minute + i * 10 // n:02d}:{i % 60:02d}+00:00", i, **kw)
        for i in range(n)
    ]


def test_fifty_distinct_blobs_in_ten_minutes_is_one_high_alert():
    events = burst(60)
    rule = RuleHarness(RULE).feed(*events[:30]).restart().feed(*events[30:], events[3]).finish()
    (alert,) = rule.alerts
    crossing = events[49]
    key = f"oid:{crossing.actor_user_id}"
    assert alert.alert_id == alert_id(RULE, key, "2026-03-02T22:00:00+00:00")
    assert alert.severity == "High" and alert.event_count == 60
    assert (
        alert.title
        == "Mass download from stphi01 by alice@contoso-health.example: 60 blobs in 10 min"
    )
    assert alert.reasons[0].startswith(
        "Downloaded 60 distinct blobs (0.00 GiB) from 1 PHI container(s) of stphi01 with OAuth"
    )
    assert "thresholds are 50 blobs or 1.00 GiB within 15 minutes" in alert.reasons[0]
    assert alert.target_resource_id == ACCOUNT


def test_one_gib_of_few_blobs_fires():
    events = [blob(f"2026-03-02 10:0{i}:00+00:00", i, size=300 * 1024**2) for i in range(4)]
    (alert,) = RuleHarness(RULE).feed(*events).finish().alerts
    assert "4 distinct blobs (1.17 GiB)" in alert.reasons[0]


def test_near_misses_stay_quiet():
    rule = RuleHarness(RULE)
    rule.feed(*burst(49))  # one short, the same blob read again
    rule.feed(blob("2026-03-02 22:09:59+00:00", 1))
    rule.feed(*burst(60, actor="func@x", container="azure-webjobs-eventhub"))
    rule.feed(*burst(60, actor="etl@x", phi="none"))
    rule.feed(*burst(60, actor="meta@x", operation="GetBlobProperties"))
    rule.feed(*burst(60, actor="denied@x", result="Failure"))
    assert rule.finish().alerts == []


def test_fifty_blobs_over_more_than_fifteen_minutes_is_quiet():
    events = [
        blob(f"2026-03-02 10:{i * 20 // 60:02d}:{i * 20 % 60:02d}+00:00", i) for i in range(50)
    ]
    assert RuleHarness(RULE).feed(*events).finish().alerts == []  # 49 x 20 s = 16 min 20 s


def test_allow_listed_backup_identity_is_quiet():
    events = burst(60)
    rule = RuleHarness(RULE, {"allow_identities": [events[0].actor_user_id]})
    assert rule.feed(*events).finish().alerts == []


def test_pipeline_sas_credential_is_the_actor(tmp_path):
    raw = [
        records.storage(
            i * 5,
            auth="SAS",
            object_key=f"/stphi01/discharge/MRN{i:05d}/summary.pdf",
            ip=f"203.0.113.{i % 3 + 1}:4{i:04d}",
        )
        for i in range(55)
    ]
    sink = run(raw, tmp_path, per_body=10, bodies_per_batch=2)
    (alert,) = [a for a in sink.alerts.values() if a.rule_id == RULE]
    assert alert.actor_user_id is None and alert.event_count == 55
    assert "with SAS" in alert.reasons[0]
    assert alert.title.startswith("Mass download from stphi01 by ")
