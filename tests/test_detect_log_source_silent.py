"""log-source-silent: a source that has been logging stops, judged on event time against
what it learned of its own gaps; not for irregular or young sources, not for deletions, High
after its diagnostic setting was turned off, and one copy per source-minute routed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

import detections
from detections.log_source_silent import Params, resource_of, source_key
from phiwatch.detect.alert_book import alert_id
from phiwatch.detect.testing import RuleHarness, access
from phiwatch.eventhubs.publisher import PublishReport
from phiwatch.model import AccessEvent
from phiwatch.phievents.forwarder import PublishingForwarder
from phiwatch.phievents.message import decode_message
from phiwatch.phievents.routing import Router
from phiwatch.sources import activity, keyvault, signins
from phiwatch.sources.activity import DIAGNOSTIC_SETTINGS

RULE = "log-source-silent"
T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
SUB = "/subscriptions/0f3c5a1e-0000-4000-8000-000000000001"
RG = f"{SUB}/resourceGroups/rg-phi/providers"
VAULT = f"{RG}/Microsoft.KeyVault/vaults/kv-phi"
OTHER = f"{RG}/Microsoft.KeyVault/vaults/kv-busy"
VAULT_KEY = source_key(VAULT.lower(), "AuditEvent")


def kv(minute: float, target: str = VAULT, n: int = 0) -> AccessEvent:
    when = T0 + timedelta(minutes=minute)
    return access(when, product=keyvault.PRODUCT, target=target, operation=f"SecretGet{n}")


def steady(start: float, end: float, target: str = VAULT, every: float = 1) -> list[AccessEvent]:
    minutes = []
    m = start
    while m < end:
        minutes.append(m)
        m += every
    return [kv(m, target) for m in minutes]


def change(minute: float, event_type: str, target: str, sub_type: str | None) -> AccessEvent:
    return access(
        T0 + timedelta(minutes=minute),
        product=activity.PRODUCT,
        event_type=event_type,  # type: ignore[arg-type]
        sub_type=sub_type,
        target=target,
        operation=f"{event_type} {target}",
    )


def by_minute(events: list[AccessEvent]) -> list[AccessEvent]:
    return sorted(events, key=lambda e: e.time_generated)


def run(events: list[AccessEvent], **params: object) -> RuleHarness:
    rule = RuleHarness(RULE, params)
    for minute in range(0, 24 * 60, 10):  # a batch per 10 minutes of event time
        lo, hi = T0 + timedelta(minutes=minute), T0 + timedelta(minutes=minute + 10)
        batch = [e for e in events if lo <= e.time_generated < hi]
        if batch:
            rule.feed(*batch)
    return rule


def test_a_steady_vault_that_stops_alerts_once_after_its_floor():
    # kv-phi logs every minute for 3 h and stops; kv-busy goes on (the pipeline is fine).
    events = by_minute(steady(0, 180) + steady(0, 600, OTHER))
    rule = run(events)
    (alert,) = rule.alerts
    last = kv(179)
    assert alert.alert_id == alert_id(RULE, f"src:{VAULT_KEY}", last.event_uid)
    assert alert.severity == "Medium"
    assert alert.title == "kv-phi stopped sending AuditEvent records"
    assert alert.target_resource_id == VAULT.lower()
    assert alert.actor_user_id is None
    assert alert.evidence_event_uids == [last.event_uid]
    assert alert.window_start == last.time_generated
    # A busy vault's gaps are a minute: its floor (60 minutes for AuditEvent) decides.
    assert alert.window_end == last.time_generated + timedelta(minutes=60)
    assert alert.detected_at == alert.window_end
    assert "the floor for AuditEvent records (60 minutes)" in alert.reasons[1]
    assert "kept receiving other sources' records" in alert.reasons[0]
    assert alert.tactics == ["DefenseEvasion"] and alert.techniques == ["T1562.008"]


def test_silence_shorter_than_the_threshold_or_a_source_too_young_is_nothing():
    # A 50-minute pause, then logging again: under the 60-minute floor.
    events = by_minute(steady(0, 180) + steady(230, 400) + steady(0, 450, OTHER))
    assert run(events).alerts == []
    # Logged for only an hour: not enough history to call its silence unusual.
    young = by_minute(steady(0, 60) + steady(0, 600, OTHER))
    assert run(young).alerts == []


def test_a_stalled_pipeline_is_not_blamed_on_the_source():
    # Nothing at all arrives after 180 minutes: event time never passes the deadline.
    rule = run(by_minute(steady(0, 180) + steady(0, 180, OTHER)))
    rule.finish()
    assert rule.alerts == []


def test_a_sparse_source_must_miss_as_much_as_a_busy_one():
    # One record every 10 minutes for 10 h: 30 active minutes take it about 6 h to log.
    sparse = steady(0, 600, every=10)
    events = by_minute(sparse + steady(0, 24 * 60 - 10, OTHER))
    rule = run(events)
    (alert,) = rule.alerts
    assert "the time it usually takes to log 30 active minutes" in alert.reasons[1]
    waited = alert.window_end - alert.window_start
    assert timedelta(hours=4) < waited < timedelta(hours=10)
    # The same source resuming within that time raises nothing.
    resumed = by_minute(sparse + steady(800, 1000, every=10) + steady(0, 1000, OTHER))
    assert run(resumed).alerts == []


def test_a_diagnostic_setting_turned_off_first_makes_it_high_and_a_deletion_explains_it():
    setting = VAULT + "/providers/microsoft.insights/diagnosticSettings/to-hub"
    base = steady(0, 180) + steady(0, 600, OTHER)
    deleted = by_minute([*base, change(179.5, "Delete", setting, DIAGNOSTIC_SETTINGS)])
    (alert,) = run(deleted).alerts
    assert alert.severity == "High"
    assert "diagnostic setting was deleted or turned off" in alert.reasons[2]
    # A routine re-write of the setting (logging kept on) leaves it Medium.
    rewritten = by_minute([*base, change(179.5, "Set", setting, DIAGNOSTIC_SETTINGS)])
    assert [a.severity for a in run(rewritten).alerts] == ["Medium"]
    # The vault (or its resource group) deleted: the silence is the deletion.
    for target in (VAULT, f"{SUB}/resourceGroups/rg-phi"):
        gone = by_minute([*base, change(181, "Delete", target, None)])
        assert run(gone).alerts == []


def test_batches_redelivery_and_restarts_change_nothing():
    events = by_minute(steady(0, 180) + steady(0, 600, OTHER))
    (expected,) = run(events).alerts
    one_batch = RuleHarness(RULE).feed(*events)
    assert [a.alert_id for a in one_batch.alerts] == [expected.alert_id]
    assert one_batch.alerts[0].window_end == expected.window_end
    each = RuleHarness(RULE)
    for i, event in enumerate(events):
        each.feed(event, event) if i % 7 == 0 else each.feed(event)
        if i % 97 == 0:
            each.restart()
    assert [a.alert_id for a in each.alerts] == [expected.alert_id]
    assert each.alerts[0] == expected


def test_a_source_resuming_after_its_deadline_in_the_same_batch_is_judged():
    # The deadline passes and the vault resumes within one batch: no tick saw it overdue.
    events = by_minute(steady(0, 180) + steady(0, 400, OTHER) + steady(300, 400))
    rule = RuleHarness(RULE).feed(*events[: len(events) // 3]).feed(*events[len(events) // 3 :])
    (alert,) = rule.alerts
    assert alert.window_start == kv(179).time_generated


def test_irregular_sources_never_fire():
    # A vault read in bursts a day apart: its usual gap is a day, nothing is overdue.
    bursty = [kv(day * 1440 + m) for day in range(2) for m in range(0, 30)]
    rule = RuleHarness(RULE)
    rule.feed(*by_minute(bursty + steady(0, 2900, OTHER, every=5)))
    assert rule.alerts == []


def test_entra_and_activity_count_per_tenant_and_subscription():
    tenant = "/tenants/6513270e-269e-4d37-b2a7-4de452e6b438/providers/microsoft.aadiam"
    assert resource_of(tenant) == tenant
    assert resource_of(VAULT + "/secrets/db") == VAULT.lower()
    fhir = f"{RG}/Microsoft.HealthcareApis/workspaces/ahds/fhirservices/fhir-2"
    assert resource_of(fhir + "/Patient/1") == fhir.lower()
    sign_ins = [
        access(T0 + timedelta(minutes=m), product=signins.PRODUCT, target=tenant, actor=f"u{m}")
        for m in range(0, 180)
    ]
    (alert,) = run(by_minute(sign_ins + steady(0, 600, OTHER))).alerts
    assert alert.title == "microsoft.aadiam stopped sending SignInLogs records"
    # Its floor is 30 minutes; a minute-by-minute source needs a little longer to miss 30.
    assert timedelta(minutes=30) <= alert.window_end - alert.window_start < timedelta(minutes=40)


def test_state_is_bounded():
    rule = RuleHarness(RULE, {"max_sources": 50})
    events = [kv(m, f"{RG}/Microsoft.KeyVault/vaults/kv-{m}") for m in range(200)]
    rule.feed(*events)
    assert rule.rule.state_size() <= 50


def test_params():
    assert dict(Params().floor_minutes)["StorageRead"] == 1440
    custom = Params(floor_minutes={"AuditEvent": 15})  # type: ignore[arg-type]
    assert custom.floor_minutes == (("AuditEvent", 15),)
    with pytest.raises(ValidationError):
        Params(floor_minutes={"AuditEvent": 0})  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Params(gap_factor=1)


class Recorder:
    def __init__(self) -> None:
        self.published: list = []

    def publish(self, messages):
        self.published.extend(messages)
        return PublishReport(messages=len(messages))

    def broadcast(self, body: bytes) -> int:
        return 1

    def close(self) -> None:
        pass


def test_normalize_sends_one_presence_copy_per_source_and_minute():
    rules = detections.load_detections()
    router = Router(rules)
    reads = [kv(m / 10) for m in range(30)]  # 30 reads within 3 minutes
    keys = {router.presence(e, "subscription") for e in reads}
    assert len(keys) == 3
    setting = VAULT + "/providers/microsoft.insights/diagnosticSettings/to-hub"
    turned_off = change(1, "Delete", setting, DIAGNOSTIC_SETTINGS)
    assert router.presence(turned_off, "subscription") is None  # needed in full
    recorder = Recorder()
    forwarder = PublishingForwarder(recorder, router)
    batch = [(e, None) for e in reversed([*reads, turned_off])]
    forwarder.forward(batch, "raw/0")
    sent = [decode_message(m.body) for m in recorder.published]
    in_subscription = [m.event for m in sent if m.grouping == "subscription"]
    # The deletion (for diagnostics-disabled and this rule) and the first read of each minute.
    firsts = [reads[0], reads[10], reads[20]]
    assert sorted(e.event_uid for e in in_subscription) == sorted(
        e.event_uid for e in [turned_off, *firsts]
    )
    assert forwarder.counts["messages:subscription"] == 4
