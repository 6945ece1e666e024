"""curious-access on stamped events: distinct viewers off the care team within 24 hours,
against the patient's own median over the 7 UTC days before, one alert per patient and
episode, and state that stays bounded per patient and is forgotten when the chart is idle."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from phiwatch.detect.alert_book import alert_id
from phiwatch.detect.testing import RuleHarness
from tests.privacy_stamps import FHIR_SERVICE, stamped

RULE = "curious-access"
CHART = "pr_c0ffee00000000000000000000000042"
START = date(2026, 3, 9)  # the day the tests look at; history goes back from it


def day(back: int = 0) -> str:
    return (START - timedelta(days=back)).isoformat()


def viewer(n: int, clock: str = "12:00:00", *, on: str | None = None, **kw):
    """An access by user n (a distinct actor) to the chart; n also sets the second, so
    two calls of one user and clock are one event (its redelivery)."""
    kw.setdefault("patient", CHART)
    return stamped(f"{on or day()} {clock}+00:00", actor=f"user{n}@contoso-health.org", **kw)


def viewers(first: int, count: int, *, on: str | None = None, hour: int = 12, **kw):
    return [
        viewer(n, f"{hour:02d}:{(n - first) // 60:02d}:{(n - first) % 60:02d}", on=on, **kw)
        for n in range(first, first + count)
    ]


def test_nine_actors_are_quiet_and_the_tenth_fires():
    harness = RuleHarness(RULE).feed(*viewers(0, 9))
    assert harness.alerts == []
    tenth = viewer(9, "13:00:00")
    (alert,) = harness.feed(tenth).alerts
    assert alert.alert_id == alert_id(RULE, f"pat:{CHART}", day())
    assert (alert.rule_id, alert.severity) == (RULE, "Medium")
    assert alert.title == (
        f"Curious access: 10 actors opened the record of patient {CHART} within 24 hours"
    )
    assert alert.reasons[:3] == [
        f"10 distinct actors off the patient's care team opened the record of patient {CHART} "
        "within 24 hours (accesses between 2026-03-09 12:00:00 UTC and 2026-03-09 13:00:00 "
        "UTC); the rule fires at 10 actors and at 3 times the patient's usual.",
        "The patient's usual: a median of 0 distinct viewers a day over the 7 UTC days "
        "before 2026-03-09 (taken as at least 1), so 10 were needed.",
        "Of the 10, 10 are unexplained by the patient index (not on the care team, no "
        "allow-listed application).",
    ]
    # The chart's many viewers: no account entity, the patient and the resource.
    assert (alert.actor_user_id, alert.actor_username) == (None, None)
    assert alert.target_resource_id == FHIR_SERVICE
    assert (alert.event_count, alert.distinct_patient_count) == (10, 1)
    assert alert.evidence_event_uids[-1] == tenth.event_uid
    assert len(alert.evidence_event_uids) == 10


@pytest.mark.parametrize("explanation", ["care-team", "allowed-application"])
def test_care_team_and_allow_listed_application_viewers_are_not_counted(explanation):
    events = viewers(0, 9) + viewers(100, 6, hour=13, explanation=explanation)
    assert RuleHarness(RULE).feed(*events).finish().alerts == []


def test_viewers_with_no_explanation_known_count_and_the_reasons_say_so():
    events = viewers(0, 6) + viewers(100, 4, hour=13, explanation=None)
    (alert,) = RuleHarness(RULE).feed(*events).finish().alerts
    assert alert.reasons[2] == (
        "Of the 10, 6 are unexplained by the patient index (not on the care team, no "
        "allow-listed application); for 4 no explanation is known."
    )


def test_refused_attempts_count_and_the_same_actor_twice_counts_once():
    events = viewers(0, 8) + [
        viewer(8, "13:00:00", result="Failure", details="403"),
        viewer(0, "13:30:00"),  # a viewer again: still 9 distinct
    ]
    harness = RuleHarness(RULE).feed(*events)
    assert harness.alerts == []
    assert len(harness.feed(viewer(9, "14:00:00")).alerts) == 1


def test_ten_actors_spread_over_more_than_24_hours_are_quiet():
    events = [
        viewer(n, f"{(3 * n) % 24:02d}:00:00", on=day(1) if 3 * n < 24 else day())
        for n in range(10)
    ]  # one every 3 hours: at most 9 in any 24 hours
    assert RuleHarness(RULE).feed(*events).finish().alerts == []


def history(per_day: dict[int, int]) -> list:
    """`per_day[back]` distinct viewers at 08:00 on that many days before START (the same
    users every day, numbered from 500)."""
    return [
        e
        for back in sorted(per_day, reverse=True)
        for e in viewers(500, per_day[back], on=day(back), hour=8)
    ]


def test_ten_actors_on_a_chart_usually_seen_by_four_a_day_are_quiet_twelve_fire():
    harness = RuleHarness(RULE).feed(*history(dict.fromkeys(range(1, 8), 4)))
    harness.feed(*viewers(0, 11))
    assert harness.alerts == []  # a median of 4 a day: 12 needed
    (alert,) = harness.feed(viewer(11, "14:00:00")).alerts
    assert "a median of 4 distinct viewers a day" in alert.reasons[1]
    assert alert.reasons[1].endswith("so 12 were needed.")


def test_days_without_viewers_count_zero_in_the_median():
    # Three busy days and four unseen ones in the week before: the median is 0, so 1.
    harness = RuleHarness(RULE).feed(*history({6: 5, 4: 5, 2: 5}))
    (alert,) = harness.feed(*viewers(0, 10)).alerts
    assert "a median of 0 distinct viewers" in alert.reasons[1]


def test_more_viewers_enrich_the_one_alert_and_a_later_episode_is_another():
    harness = RuleHarness(RULE).feed(*viewers(0, 10))
    harness.feed(*viewers(10, 5, hour=15))
    (alert,) = harness.alerts
    assert alert.title.startswith("Curious access: 15 actors")
    assert alert.event_count == 15
    assert len({v.alert_id for v in harness.versions}) == 1
    # A day and a half later ten new actors: a new episode, its own AlertId (the crossing's
    # day); the week before now has one day of 15 viewers, so the median is still 0.
    harness.feed(*viewers(100, 10, on=day(-2), hour=0))
    first, second = harness.alerts
    assert first.event_count == 15  # unchanged: the new viewers are past its episode
    assert second.alert_id == alert_id(RULE, f"pat:{CHART}", day(-2))
    assert second.event_count == 10


def test_a_redelivery_counts_once_and_state_survives_a_restart():
    events = viewers(0, 9)
    harness = RuleHarness(RULE).feed(*events).restart()
    harness.feed(*events)
    assert harness.alerts == []
    (alert,) = harness.feed(viewer(9, "13:00:00")).alerts
    assert alert.event_count == 10


def test_viewers_kept_per_chart_are_capped_and_the_count_says_at_least():
    params = {"distinct_actors": 10, "max_viewers": 20}
    harness = RuleHarness(RULE, params).feed(*viewers(0, 30))
    (alert,) = harness.alerts
    assert alert.title.startswith("Curious access: at least 20 actors")


def test_state_is_held_only_for_charts_accessed_recently_and_forgotten_when_idle():
    harness = RuleHarness(RULE)
    harness.feed(*[viewer(n, "12:00:00", patient=f"pr_{n:032d}") for n in range(50)])
    rule = harness.rule
    assert rule.state_size() == 50 + 50 + 50  # viewers, daily counts, EventUids
    harness.advance_to(f"{day(-2)} 12:00:00+00:00")
    assert rule.state_size() == 50  # two days on: only the daily counts
    harness.advance_to(f"{day(-9)} 12:00:00+00:00")
    assert rule.state_size() == 0  # more than 8 idle days: forgotten


def test_max_viewers_must_leave_room_for_the_threshold():
    import detections

    with pytest.raises(detections.RegistryError, match="at least twice distinct_actors"):
        RuleHarness(RULE, {"distinct_actors": 20, "max_viewers": 30})
