"""The four relationship rules (self-, family-, coworker-, neighbour-record-access) on
stamped events: one alert per actor, patient and UTC day, quiet on explained accesses and
on accesses with no relation, the relation in words, and a snapshot round trip."""

from __future__ import annotations

import pytest

from phiwatch.detect.alert_book import alert_id
from phiwatch.detect.grouping import actor_key
from phiwatch.detect.testing import RuleHarness
from phiwatch.privacy.directory import BASIS_WORDS
from tests.privacy_stamps import FHIR_SERVICE, NURSE, stamped

DAY = "2026-03-02"
PATIENT = "pr_5e1f0c2a9b7d4e31"

# rule → (the relation it reads, a basis of it, its severity, the words of its title)
RULES = {
    "self-record-access": ("self", "employee-id", "Low", "their own"),
    "family-record-access": ("family", "surname-and-address", "High", "a family member's"),
    "coworker-record-access": ("coworker", "patient-is-employee", "Medium", "a coworker's"),
    "neighbour-record-access": ("neighbour", "street-and-postcode", "Medium", "a neighbour's"),
}


def opened(clock: str, rule: str, *, day: str = DAY, offset: str = "+00:00", **kw):
    relation, basis = RULES[rule][:2]
    kw.setdefault("patient", PATIENT)
    kw.setdefault("basis", basis)
    return stamped(f"{day} {clock}{offset}", relation=relation, **kw)


@pytest.mark.parametrize("rule", RULES)
def test_an_unexplained_access_to_a_related_record_fires(rule):
    _, basis, severity, whose = RULES[rule]
    event = opened("10:00:00", rule)
    (alert,) = RuleHarness(rule).feed(event).finish().alerts
    key = f"{actor_key(event)}|pat:{PATIENT}|{DAY}"
    assert alert.alert_id == alert_id(rule, key, DAY)
    assert (alert.rule_id, alert.severity) == (rule, severity)
    assert alert.title == f"{NURSE} opened {whose} patient record"
    assert alert.reasons[0].startswith(f"{NURSE} accessed ")
    assert alert.reasons[0].endswith(
        f"(patient {PATIENT}) once on {DAY} UTC, between 2026-03-02 10:00:00 UTC and "
        "2026-03-02 10:00:00 UTC: it succeeded."
    )
    # The relationship in words, never the values the inputs compared.
    assert alert.reasons[1] == (
        f"The relationship: {BASIS_WORDS[basis]} (workforce roster and patient index)."
    )
    assert alert.reasons[2].startswith("Unexplained accesses: 1 of 1;")
    assert (alert.actor_username, alert.target_resource_id) == (NURSE, FHIR_SERVICE)
    assert (alert.event_count, alert.distinct_patient_count) == (1, 1)
    assert alert.evidence_event_uids == [event.event_uid]
    assert (alert.tactics, alert.techniques) == (["Collection"], ["T1213"])


@pytest.mark.parametrize("rule", RULES)
def test_accesses_the_same_day_are_one_alert_and_the_next_utc_day_another(rule):
    harness = RuleHarness(rule)
    harness.feed(
        opened("08:00:00", rule),
        opened("08:00:05", rule, operation="search"),  # another FHIR call on the chart
        opened("08:00:06", rule, result="Failure", details="403"),
        opened("23:59:00", rule),
    )
    (alert,) = harness.alerts
    assert alert.event_count == 4
    assert "4 times on 2026-03-02 UTC" in alert.reasons[0]
    assert alert.reasons[0].endswith(": 3 succeeded and 1 was refused.")
    assert alert.reasons[2].startswith("Unexplained accesses: 4 of 4;")
    # 00:30 in Amsterdam (+01:00) is 23:30 UTC, still the 2nd: the same alert.
    amsterdam = opened("00:30:00", rule, day="2026-03-03", offset="+01:00")
    harness.feed(amsterdam)
    assert [a.event_count for a in harness.alerts] == [5]
    next_day = opened("00:00:01", rule, day="2026-03-03")
    harness.feed(next_day)
    first, second = harness.alerts
    assert (first.event_count, second.event_count) == (5, 1)
    assert second.alert_id == alert_id(
        rule, f"{actor_key(next_day)}|pat:{PATIENT}|2026-03-03", "2026-03-03"
    )


@pytest.mark.parametrize("rule", RULES)
def test_another_patient_or_another_actor_is_another_alert(rule):
    harness = RuleHarness(rule).feed(
        opened("10:00:00", rule),
        opened("10:01:00", rule, patient="pr_0000000000000002"),
        opened("10:02:00", rule, actor="olaf.orderly@contoso-health.org"),
    )
    assert len(harness.alerts) == 3


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("explanation", ["care-team", "allowed-application", None])
def test_an_explained_access_or_one_with_no_index_raises_nothing(rule, explanation):
    event = opened("10:00:00", rule, explanation=explanation)
    assert RuleHarness(rule).feed(event).finish().alerts == []


@pytest.mark.parametrize("rule", RULES)
def test_no_relation_or_another_relation_raises_nothing(rule):
    plain = stamped(f"{DAY} 10:00:00+00:00", patient=PATIENT)  # unexplained, no relation
    others = [opened("10:00:01", other, uid=f"other-{other}") for other in RULES if other != rule]
    no_patient = opened("10:00:02", rule, patient=None)
    assert RuleHarness(rule).feed(plain, *others, no_patient).finish().alerts == []


def test_family_by_a_rare_surname_alone_is_medium_and_a_household_raises_it_high():
    rule = "family-record-access"
    rare = opened("09:00:00", rule, basis="rare-surname")
    harness = RuleHarness(rule).feed(rare)
    (alert,) = harness.alerts
    assert alert.severity == "Medium"
    assert alert.reasons[1] == (
        f"The relationship: {BASIS_WORDS['rare-surname']} (workforce roster and patient index)."
    )
    # A roster reloaded mid-day now shows the household: the same alert, raised to High.
    harness.feed(opened("15:00:00", rule))
    (alert,) = harness.alerts
    assert alert.severity == "High" and alert.event_count == 2
    assert BASIS_WORDS["surname-and-address"] in alert.reasons[1]
    assert BASIS_WORDS["rare-surname"] in alert.reasons[1]


@pytest.mark.parametrize("rule", RULES)
def test_a_redelivered_access_counts_once_and_state_survives_a_restart(rule):
    first = opened("10:00:00", rule)
    harness = RuleHarness(rule).feed(first, first).restart()
    harness.feed(first, opened("11:00:00", rule))
    (alert,) = harness.alerts
    assert alert.event_count == 2
    assert len(harness.versions) == 2  # opened, then enriched under the same id


def test_an_application_actor_is_named_by_its_app_id():
    rule = "coworker-record-access"
    event = opened("10:00:00", rule, actor=None, app_id="app-1234")
    (alert,) = RuleHarness(rule).feed(event).finish().alerts
    assert alert.title == "app-1234 opened a coworker's patient record"
