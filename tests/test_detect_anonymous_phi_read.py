"""anonymous-phi-read on events: any successful anonymous read of a PHI container (High),
one alert per container whatever the addresses; failed probes, non-PHI containers,
authenticated reads and configured public containers stay quiet; and from raw records."""

from __future__ import annotations

from phiwatch.detect.alert_book import alert_id
from phiwatch.detect.testing import RuleHarness, access
from phiwatch.model import AccessEvent
from phiwatch.sources import storage
from tests import records
from tests.harness import run

RULE = "anonymous-phi-read"
BLOBS = (
    "/subscriptions/sub-1/resourcegroups/rg/providers/microsoft.storage/storageaccounts/stphi01"
    "/blobservices/default"
)


def anon(at: str, container: str = "discharge", n: int = 1, **kw) -> AccessEvent:
    phi = kw.pop("phi", "clinical")
    method = kw.pop("method", "Anonymous")
    event = access(at, actor=None, product=storage.PRODUCT, operation="GetBlob", target=BLOBS, **kw)
    return event.model_copy(
        update={
            "object": f"stphi01/{container}/bh_{n:032x}",
            "event_sub_type": "Blob",
            "phi_category": phi,
            "logon_method": method,
        }
    )


def test_anonymous_reads_of_one_container_from_two_addresses_are_one_alert():
    first = anon("2026-03-02 03:00:00+00:00", ip="198.51.100.7")
    rule = RuleHarness(RULE).feed(first).restart()
    rule.feed(anon("2026-03-02 03:05:00+00:00", n=2, ip="203.0.113.9"), first).finish()
    (alert,) = rule.alerts
    assert alert.alert_id == alert_id(RULE, "ct:stphi01/discharge", first.event_uid)
    assert alert.severity == "High" and alert.event_count == 2
    assert alert.title == "Anonymous read of PHI container stphi01/discharge"
    assert alert.reasons[0] == (
        "Container stphi01/discharge answered 2 anonymous read(s) between 2026-03-02 "
        "03:00:00 UTC and 2026-03-02 03:05:00 UTC from 2 address(es); the first came from "
        "198.51.100.7."
    )
    assert alert.actor_user_id is None and alert.target_resource_id == BLOBS


def test_two_containers_are_two_alerts():
    rule = RuleHarness(RULE).feed(
        anon("2026-03-02 03:00:00+00:00"), anon("2026-03-02 03:00:01+00:00", "imaging")
    )
    assert sorted(a.title for a in rule.finish().alerts) == [
        "Anonymous read of PHI container stphi01/discharge",
        "Anonymous read of PHI container stphi01/imaging",
    ]


def test_probes_public_and_non_phi_containers_and_oauth_reads_are_quiet():
    rule = RuleHarness(RULE, {"public_containers": ["stphi01/public-assets", "stweb"]})
    rule.feed(
        anon("2026-03-02 03:00:00+00:00", result="Failure", details="409"),
        anon("2026-03-02 03:00:01+00:00", "public-assets"),
        anon("2026-03-02 03:00:02+00:00", "research", phi="none"),
        anon("2026-03-02 03:00:03+00:00", method="OAuth"),
        anon("2026-03-02 03:00:04+00:00").model_copy(update={"object": "stweb/site/bh_1"}),
    )
    assert rule.finish().alerts == []


def test_with_defaults_a_public_assets_container_is_phi_and_fires():
    (alert,) = RuleHarness(RULE).feed(anon("2026-03-02 03:00:00+00:00", "public-assets")).alerts
    assert "add it to public_containers" in alert.description


def test_pipeline_anonymous_record(tmp_path):
    raw = [
        records.storage(0, auth="Anonymous", status_text="AnonymousSuccess"),
        records.storage(5, auth="Anonymous", status=404, status_text="ResourceNotFound"),
    ]
    sink = run(raw, tmp_path, per_body=1, bodies_per_batch=1)
    (alert,) = [a for a in sink.alerts.values() if a.rule_id == RULE]
    assert alert.title == "Anonymous read of PHI container stphi01/discharge"
    assert alert.event_count == 1 and alert.src_ip_addr == "10.3.4.5"
