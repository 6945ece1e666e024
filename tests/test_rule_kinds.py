"""Each rule kind on events, through the rule harness, with small rules declared here."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

import detections
from phiwatch.detect.alert_book import AlertState, alert_id
from phiwatch.detect.detection import Detection, DetectionContext, DetectionParams
from phiwatch.detect.grouping import actor_key
from phiwatch.detect.kinds import (
    Absence,
    Daily,
    EventCount,
    Sequence,
    SingleEvent,
    StatefulRule,
    ValueCount,
)
from phiwatch.detect.kinds.base import enrich, open_alert
from phiwatch.detect.snapshot import snapshot_class
from phiwatch.detect.testing import RuleHarness, access, instant
from phiwatch.detect.times import window_anchor
from phiwatch.model import AccessEvent, Alert

DAY = "2026-03-02"


@snapshot_class
@dataclass(slots=True)
class KindTestFacts:
    label: str


def facts(event: AccessEvent) -> KindTestFacts:
    return KindTestFacts(label=event.operation)


class _TestRule(Detection[DetectionParams]):
    rule_name = "Kind under test"
    severity = "Medium"
    tactics = ("Collection",)
    techniques = ("T1530",)
    group_by = "actor"
    planes = frozenset({"data"})
    Params = DetectionParams
    Facts = KindTestFacts

    def applies(self, event: AccessEvent) -> bool:
        return event.event_product == "FHIR Service"

    def render(self, state: AlertState) -> Alert:
        return self.base_alert(
            state,
            title=f"{state.facts.label}: {state.event_count} events",
            description="test",
            reasons=[f"{len(state.patients)} patients"],
        )


def at(clock: str) -> str:
    return f"{DAY} {clock}+01:00"


def failed(clock: str, **kw) -> AccessEvent:
    return access(at(clock), result="Failure", details="403", **kw)


def key(event: AccessEvent) -> str:
    return actor_key(event) or ""


# ---------------------------------------------------------------- single event


class BreakGlass(_TestRule):
    rule_id = "test-break-glass"

    def declare(self) -> SingleEvent:
        return SingleEvent(where=lambda e: e.operation == "break-glass", facts=facts, gap=600)


def test_single_event_raises_at_once_and_enriches_within_the_gap():
    rule = RuleHarness(BreakGlass)
    first = access(at("10:00:00"), operation="break-glass", patient="p1")
    rule.feed(first, access(at("10:00:30"), operation="read", patient="p2"))
    (alert,) = rule.alerts
    assert alert.alert_id == alert_id("test-break-glass", key(first), first.event_uid)
    rule.feed(first, access(at("10:05:00"), operation="break-glass", patient="p3"))
    (alert,) = rule.alerts  # the redelivered event counts once; the second enriches
    assert (alert.event_count, alert.distinct_patient_count) == (2, 2)
    rule.feed(access(at("10:30:00"), operation="break-glass", patient="p4"))
    assert [a.event_count for a in rule.alerts] == [2, 1]  # past the gap: a new alert


# ---------------------------------------------------------------- daily


class DailyOpens(_TestRule):
    rule_id = "test-daily-opens"

    def declare(self) -> Daily:
        return Daily(where=lambda e: e.operation == "open", facts=facts)


def test_daily_is_one_alert_per_key_and_utc_day_anchored_on_the_day():
    rule = RuleHarness(DailyOpens)
    first = access("2026-03-02 09:00:00+00:00", operation="open", patient="p1")
    late_evening = access("2026-03-02 23:59:00+00:00", operation="open", patient="p2")
    rule.feed(first, late_evening, first)  # the redelivered event counts once
    (alert,) = rule.alerts
    assert alert.alert_id == alert_id("test-daily-opens", f"{key(first)}|2026-03-02", "2026-03-02")
    assert alert.event_count == 2
    next_day = access("2026-03-03 00:01:00+00:00", operation="open", patient="p3")
    rule.feed(next_day)
    assert [a.event_count for a in rule.alerts] == [2, 1]  # the next UTC day: a new alert
    # A late event of the day before (within the lateness) joins that day's alert.
    rule.feed(access("2026-03-02 23:58:00+00:00", operation="open", patient="p4"))
    assert [a.event_count for a in rule.alerts] == [3, 1]
    assert rule.alerts[0].window_start.isoformat() == "2026-03-02T09:00:00+00:00"


def test_daily_keeps_the_day_across_a_restart():
    rule = RuleHarness(DailyOpens)
    rule.feed(access("2026-03-02 09:00:00+00:00", operation="open", patient="p1")).restart()
    rule.feed(access("2026-03-02 17:00:00+00:00", operation="open", patient="p2"))
    (alert,) = rule.alerts
    assert alert.event_count == 2


# ---------------------------------------------------------------- event_count


class FailedReads(_TestRule):
    rule_id = "test-failed-reads"

    def declare(self) -> EventCount:
        return EventCount(
            window=60, at_least=3, where=lambda e: e.event_result == "Failure", facts=facts
        )


def test_event_count_fires_at_the_threshold_within_the_window():
    events = [failed("10:00:00"), failed("10:00:20"), failed("10:00:40")]
    rule = RuleHarness(FailedReads).feed(*events[:2])
    assert rule.alerts == []
    (alert,) = rule.feed(events[2]).alerts
    crossing = instant(at("10:00:40")).timestamp()
    assert alert.alert_id == alert_id(
        "test-failed-reads", key(events[0]), window_anchor(crossing, 60)
    )
    assert alert.evidence_event_uids == [e.event_uid for e in events]
    (alert,) = rule.feed(failed("10:01:10"), *events).alerts  # enriched; copies change nothing
    assert alert.event_count == 4


def test_event_count_below_the_threshold_or_spread_out_is_quiet():
    spread = [failed("10:00:00"), failed("10:00:50"), failed("10:01:40"), failed("10:02:30")]
    assert RuleHarness(FailedReads).feed(*spread).finish().alerts == []
    assert RuleHarness(FailedReads).feed(*spread[:2], *spread[:2]).alerts == []


def test_event_time_in_any_zone_is_one_instant():
    zones = [
        failed("10:00:00"),
        access("2026-03-02T09:00:20Z", result="Failure", details="403"),
        access("2026-03-02 04:00:40-05:00", result="Failure", details="403"),
    ]
    (alert,) = RuleHarness(FailedReads).feed(*zones).alerts
    assert alert.event_count == 3
    with pytest.raises(ValueError, match="no time zone"):
        access("2026-03-02 10:00:00")


# ---------------------------------------------------------------- value_count


class ManyPatients(_TestRule):
    rule_id = "test-many-patients"

    def declare(self) -> ValueCount:
        return ValueCount(window=60, at_least=3, distinct=lambda e: e.patient_ref, facts=facts)


def test_value_count_counts_distinct_values():
    same = [access(at(f"10:00:{s:02d}"), patient="p1") for s in range(0, 50, 10)]
    assert RuleHarness(ManyPatients).feed(*same).alerts == []
    mixed = [access(at(f"10:00:{10 * i:02d}"), patient=f"p{i}") for i in range(3)]
    (alert,) = RuleHarness(ManyPatients).feed(*same, *mixed).alerts
    assert alert.distinct_patient_count == 3


# ---------------------------------------------------------------- sequence


class FailThenSucceed(_TestRule):
    rule_id = "test-fail-then-succeed"

    def declare(self) -> Sequence:
        return Sequence(
            first=lambda e: e.event_result == "Failure",
            then=lambda e: e.event_result == "Success",
            within=120,
            facts=facts,
        )


def test_sequence_a_then_b_within_t():
    a = failed("10:00:00")
    b = access(at("10:01:00"))
    (alert,) = RuleHarness(FailThenSucceed).feed(a, b).alerts
    assert alert.evidence_event_uids == [a.event_uid, b.event_uid]
    assert RuleHarness(FailThenSucceed).feed(b).alerts == []  # B alone
    assert RuleHarness(FailThenSucceed).feed(a, access(at("10:03:00"))).alerts == []  # too late


# ---------------------------------------------------------------- absence

SETTING = "/subscriptions/s/resourcegroups/rg/providers/x/vaults/v/providers/i/settings/one"


class SettingGone(_TestRule):
    rule_id = "test-setting-gone"
    group_by = "subscription"
    planes = frozenset({"control"})

    def applies(self, event: AccessEvent) -> bool:
        return event.event_type == "Delete"

    def declare(self) -> Absence:
        return Absence(
            grace=300,
            expect=lambda e: (
                (e.target_resource_id or "").split("/providers/i/")[0]
                if e.event_sub_type == "setting"
                else None
            ),
            shows=lambda e: None if e.event_sub_type == "setting" else e.target_resource_id,
            explains=lambda deleted, expected: expected.startswith(deleted),
            alert_key=lambda e: e.target_resource_id,
            facts=facts,
        )


def arm_delete(clock: str, target: str, sub_type: str | None = None) -> AccessEvent:
    return access(
        at(clock),
        product="Azure Resource Manager",
        event_type="Delete",
        sub_type=sub_type,
        operation="delete",
        target=target,
    )


def test_absence_fires_once_the_grace_has_passed_unexplained():
    delete = arm_delete("10:00:00", SETTING, "setting")
    rule = RuleHarness(SettingGone).feed(delete).advance_to(at("10:04:00"))
    assert rule.alerts == []
    rule.restart()  # the pending trigger survives a snapshot
    (alert,) = rule.advance_to(at("10:05:01")).alerts
    assert alert.alert_id == alert_id("test-setting-gone", SETTING, delete.event_uid)
    assert alert.detected_at == instant(at("10:00:00"))


def test_absence_explained_by_the_expected_event_is_quiet():
    parent = SETTING.split("/providers/x/", maxsplit=1)[0]
    events = [arm_delete("10:00:00", SETTING, "setting"), arm_delete("10:02:00", parent)]
    assert RuleHarness(SettingGone).feed(*events).advance_to(at("10:30:00")).alerts == []


# ---------------------------------------------------------------- stateful


@snapshot_class
@dataclass(slots=True)
class Whereabouts:
    last: dict[str, list] = field(default_factory=dict)  # actor → [time, country]

    def __len__(self) -> int:
        return len(self.last)


def travel_step(
    rule: Detection, state: Whereabouts, event: AccessEvent, time: float, ctx: DetectionContext
) -> None:
    actor = actor_key(event)
    if actor is None or event.src_geo_country is None:
        return
    before = state.last.get(actor)
    state.last[actor] = [time, event.src_geo_country]
    if before is None or before[1] == event.src_geo_country or time - before[0] > 3600:
        return
    if not enrich(rule, ctx, actor, event, time, 3600):
        anchor = window_anchor(time, 3600)
        open_alert(rule, ctx, actor, event, time, anchor=anchor, facts=facts(event))


def travel_expire(state: Whereabouts, before: float) -> None:
    state.last = {a: v for a, v in state.last.items() if v[0] >= before - 3600}


class Travel(_TestRule):
    rule_id = "test-travel"

    def declare(self) -> StatefulRule:
        return StatefulRule(state=Whereabouts, step=travel_step, drop_before=travel_expire)


def test_a_stateful_rule_gets_snapshots_for_free():
    rule = RuleHarness(Travel).feed(access(at("10:00:00"), country="NL")).restart()
    (alert,) = rule.feed(access(at("10:20:00"), country="BR")).alerts
    assert alert.event_count == 1
    assert rule.rule.state_size() == 1


# ---------------------------------------------------------------- load-time checks


class Unregistered:
    __slots__ = ("n",)


class _Broken(_TestRule):
    rule_id = "test-broken"

    def declare(self) -> SingleEvent:
        return SingleEvent(where=lambda e: True, facts=facts)


def test_the_registry_refuses_facts_not_registered_for_snapshots():
    @dataclass
    class LooseFacts:
        label: str

    class Loose(_Broken):
        Facts = LooseFacts

    with pytest.raises(detections.RegistryError, match="not registered with @snapshot_class"):
        RuleHarness(Loose)


def test_the_registry_refuses_a_rule_whose_render_fails():
    class NoRender(_Broken):
        def render(self, state: AlertState) -> Alert:
            raise KeyError("threshold")

    with pytest.raises(detections.RegistryError, match="render failed: KeyError"):
        RuleHarness(NoRender)


def test_the_registry_refuses_state_a_snapshot_cannot_hold():
    class Opaque(_Broken):
        def declare(self) -> StatefulRule:
            return StatefulRule(state=Unregistered, step=lambda *a: None, measure=lambda s: 0)

    with pytest.raises(detections.RegistryError, match="does not survive a snapshot"):
        RuleHarness(Opaque)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rule_id": "Test_Bad"}, "is not kebab-case"),
        ({"group_by": "resource"}, "group_by 'resource' is not a grouping phi-events routes by"),
        ({"planes": frozenset({"data", "audit"})}, r"unknown plane\(s\) \['audit'\]"),
    ],
)
def test_the_registry_refuses_bad_metadata(change, message):
    bad = type("Bad", (_Broken,), dict(change))
    with pytest.raises(detections.RegistryError, match=message):
        RuleHarness(bad)


def test_the_registry_refuses_two_parts_of_one_name():
    class Twice(_Broken):
        def declare(self) -> tuple[SingleEvent, SingleEvent]:
            part = SingleEvent(where=lambda e: True, facts=facts)
            return (part, part)

    with pytest.raises(detections.RegistryError, match="two parts share a name"):
        RuleHarness(Twice)


def test_a_rule_cannot_keep_state_of_its_own():
    rule = RuleHarness(BreakGlass).rule
    with pytest.raises(AttributeError, match="keeps no state of its own"):
        rule.seen = set()


def test_restored_state_of_another_kind_starts_the_part_empty_with_a_warning():
    from structlog.testing import capture_logs

    rule = RuleHarness(FailedReads).rule
    with capture_logs() as logs:
        rule.load_state({"event_count": {"not": "a window"}})
    assert [e["event"] for e in logs] == [
        "detect snapshot: rule part state of another kind dropped"
    ]
    assert rule.state_size() == 0
