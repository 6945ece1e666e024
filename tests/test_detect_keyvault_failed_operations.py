"""keyvault-failed-operations: thresholds, token-challenge noise, escalation, keys."""

from __future__ import annotations

from phiwatch.detect.alert_book import alert_id
from phiwatch.detect.times import window_anchor
from tests.harness import run
from tests.records import KV_ID, at, fhir, keyvault

OID = "11111111-aaaa-4bbb-8ccc-000000000001"
APP = "22222222-aaaa-4bbb-8ccc-000000000002"


def failures(n: int, *, start: float = 0, spacing: float = 10, **kw):
    return [keyvault(start + i * spacing, status=403, secret=f"s{i}", **kw) for i in range(n)]


def test_five_failures_raise_a_medium_alert_then_a_secret_read_makes_it_high(tmp_path):
    # Unrelated reads move event time on, so the Medium alert goes out (past the reorder
    # delay) before the secret read arrives and escalates it.
    traffic = [fhir(55 + 5 * i, path="metadata", interaction="capabilities") for i in range(45)]
    records = failures(6) + traffic + [keyvault(280, secret="db-password")]
    sink = run(records, tmp_path, per_body=1, bodies_per_batch=1)
    (alert,) = sink.alerts.values()
    assert alert.alert_id == alert_id(
        "keyvault-failed-operations", f"oid:{OID}", window_anchor(at(40).timestamp(), 300)
    )
    assert alert.severity == "High"
    assert alert.title == (
        f"Repeated failed Key Vault operations by {OID} on kv-phi, then a successful secret read"
    )
    assert alert.reasons == [
        "6 failed Key Vault operations between 2026-11-02 08:00:00 UTC and 2026-11-02 "
        "08:00:50 UTC; the threshold is 5 within 5 minutes.",
        "Failed operations: SecretGet (403) x6. Authentication 401 token challenges are "
        "not counted.",
        "Then succeeded at SecretGet at 2026-11-02 08:04:40 UTC: the probing may have "
        "reached secret material, so severity is High.",
        # Which secrets, through which application, and what the success read: the secret
        # to rotate first.
        "Secrets and keys tried: secret s0 x1, secret s1 x1, secret s2 x1, secret s3 x1, "
        "secret s4 x1, secret s5 x1.",
        f"Through application: {APP} x6.",
        f"The successful read was of secret db-password through {APP}.",
    ]
    assert alert.event_count == 6
    assert (alert.actor_user_id, alert.src_ip_addr, alert.target_resource_id) == (
        OID,
        "10.1.2.3",
        KV_ID.lower(),
    )
    assert len(alert.evidence_event_uids) == 7
    first = next(a for a in sink.alert_versions if a.alert_id == alert.alert_id)
    assert first.severity == "Medium"


def test_without_the_success_it_stays_medium(tmp_path):
    (alert,) = run(failures(5), tmp_path).alerts.values()
    assert alert.severity == "Medium"
    assert len(alert.reasons) == 4  # counts, operations, secrets tried, application
    assert not any("successful read" in r for r in alert.reasons)


def test_the_names_kept_are_bounded(tmp_path):
    (alert,) = run(failures(30, spacing=5), tmp_path).alerts.values()
    (tried,) = [r for r in alert.reasons if r.startswith("Secrets and keys tried: ")]
    assert tried.count("secret s") == 20 and tried.endswith(" and 10 more.")


def test_four_failures_or_five_spread_out_do_not_alert(tmp_path):
    assert run(failures(4), tmp_path).alerts == {}
    assert run(failures(5, spacing=90), tmp_path).alerts == {}


def test_authentication_401_challenges_are_noise(tmp_path):
    challenges = [
        keyvault(i * 7, operation="Authentication", status=401, secret=f"c{i}") for i in range(40)
    ]
    real = failures(3, start=100)
    assert run(challenges + real, tmp_path).alerts == {}


def test_an_authentication_403_does_count(tmp_path):
    denied = [keyvault(i, operation="Authentication", status=403, secret=f"d{i}") for i in range(5)]
    (alert,) = run(denied, tmp_path).alerts.values()
    assert "Authentication (403) x5" in alert.reasons[1]


def test_a_success_before_the_failures_does_not_escalate(tmp_path):
    records = [keyvault(0, secret="early")] + failures(5, start=10)
    (alert,) = run(records, tmp_path).alerts.values()
    assert alert.severity == "Medium"


def test_caller_falls_back_to_app_id_then_ip(tmp_path):
    by_app = failures(5, oid=None)
    (alert,) = run(by_app, tmp_path).alerts.values()
    assert alert.alert_id == alert_id(
        "keyvault-failed-operations",
        "app:22222222-aaaa-4bbb-8ccc-000000000002",
        window_anchor(at(40).timestamp(), 300),
    )
    mixed = failures(3, ip="10.9.9.9") + failures(
        2, start=30, oid="99999999-0000-0000-0000-000000000009"
    )
    assert run(mixed, tmp_path).alerts == {}


def test_a_burst_of_failures_is_one_alert(tmp_path):
    sink = run(failures(50, spacing=2), tmp_path)
    (alert,) = sink.alerts.values()
    assert alert.event_count == 50
