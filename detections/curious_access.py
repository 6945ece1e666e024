"""curious-access: many people who do not treat a patient open the chart in one day.

Keyed by patient (`group_by` "patient": every access to one chart reaches one partition). A
viewer is an actor whose access is not explained: not by a member of the patient's care team
and not by an allow-listed application (an access with no explanation known, as without a
patient index, counts as a viewer: nothing says it was care). The rule fires when at least
`distinct_actors` (10) distinct viewers opened the patient within 24 hours of event time and
that count is at least `baseline_factor` (3) times the patient's usual: the median of its
daily distinct viewers over the `baseline_days` (7) UTC days before the day of the crossing,
a day without viewers counting 0, and the median taken as at least 1 (a patient with no
history counts as 1). Successful and refused accesses count alike. Medium.

One alert per patient and 24-hour episode: from the crossing, for 24 hours either side,
further viewers enrich the alert (its count is the highest 24-hour count seen) instead of
raising more; the AlertId anchors on the crossing's UTC day, and episodes are at least 24
hours apart, so each has its own.

State, per patient with recent accesses only (a hospital has millions of charts): the
viewers of the last 24 hours, at most `max_viewers` of them (the least recently seen goes
first, and the count then says "at least"), dropped once the chart is 24 hours idle; and a
distinct-viewer count per UTC day, forgotten after `baseline_days` + 1 idle days. Both are
kept in last-touched order, so expiry costs only the patients that expire.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from statistics import median
from typing import Self

from pydantic import Field, model_validator

from phiwatch.detect.alert_book import AlertState
from phiwatch.detect.context import DetectionContext, RuleInfo
from phiwatch.detect.detection import Detection, DetectionParams
from phiwatch.detect.grouping import actor_key, patient_key
from phiwatch.detect.kinds import StatefulRule
from phiwatch.detect.kinds.base import Fired
from phiwatch.detect.kinds.daily import DAY, utc_day
from phiwatch.detect.privacy_rules import is_patient_access
from phiwatch.detect.snapshot import snapshot_class
from phiwatch.detect.times import hhmm
from phiwatch.detect.windows import KeyedState
from phiwatch.model import AccessEvent, Alert

WINDOW = DAY  # distinct viewers within 24 hours


class Params(DetectionParams):
    distinct_actors: int = Field(default=10, ge=2, le=1000)
    baseline_factor: float = Field(default=3, ge=1, le=100)
    baseline_days: int = Field(default=7, ge=1, le=28)
    max_viewers: int = Field(default=100, ge=2, le=5000, description="kept per patient")

    @model_validator(mode="after")
    def _room_for_the_threshold(self) -> Self:
        if self.max_viewers < 2 * self.distinct_actors:
            raise ValueError("max_viewers must be at least twice distinct_actors")
        return self


# A viewer kept: [time of its latest access, that access's EventUid, UTC day numbers it was
# counted in (the last two), whether that access was unexplained by the patient index].
Viewer = list


@snapshot_class
@dataclass(slots=True)
class ChartViewers:
    actors: dict[str, Viewer] = field(default_factory=dict)  # actor key → viewer
    # Until when a count may miss a viewer dropped at max_viewers (its latest access plus
    # 24 hours): a count before then is "at least".
    undercount_until: float = 0.0


@snapshot_class
@dataclass(slots=True)
class ChartHistory:
    days: dict[int, int] = field(default_factory=dict)  # UTC day number → distinct viewers


def _viewers() -> KeyedState[ChartViewers]:
    return KeyedState(ChartViewers)


def _histories() -> KeyedState[ChartHistory]:
    return KeyedState(ChartHistory)


@snapshot_class
@dataclass(slots=True)
class CuriousState:
    viewers: KeyedState[ChartViewers] = field(default_factory=_viewers)
    history: KeyedState[ChartHistory] = field(default_factory=_histories)
    fired: Fired = field(default_factory=Fired)

    def __len__(self) -> int:
        return len(self.viewers) + len(self.history) + len(self.fired)


@snapshot_class
@dataclass(slots=True)
class CuriousFacts:
    distinct_actors: int  # in force when the alert opened
    baseline_factor: float
    baseline_days: int
    baseline: float  # the median daily viewers before the crossing's day (before max 1)
    need: int  # viewers the crossing needed: the threshold or the factor times the usual
    crossed_at: float
    day: str  # the crossing's UTC day
    viewers: int = 0  # the highest 24-hour count of distinct viewers in the episode
    unexplained: int = 0  # of those, unexplained by the patient index
    saturated: bool = False


def is_viewer(event: AccessEvent) -> bool:
    return is_patient_access(event) and event.access_explanation not in (
        "care-team",
        "allowed-application",
    )


def usual(history: ChartHistory, day: int, days: int) -> float:
    """The median of the patient's daily distinct viewers over the `days` days before
    `day`, a day without any counting 0."""
    return float(median(history.days.get(day - back, 0) for back in range(1, days + 1)))


def in_window(views: ChartViewers, time: float) -> list[Viewer]:
    return [v for v in views.actors.values() if v[0] > time - WINDOW]


def see(
    params: Params,
    views: ChartViewers,
    history: ChartHistory,
    actor: str,
    event: AccessEvent,
    time: float,
    horizon: float,
) -> bool:
    """Note the viewer; True when it is new in the 24 hours before `time` (only then can
    the count have grown)."""
    stale = [a for a, v in views.actors.items() if v[0] <= horizon - WINDOW]
    for stale_actor in stale:
        del views.actors[stale_actor]
    day = int(time // DAY)
    unexplained = event.access_explanation == "unexplained"
    viewer = views.actors.get(actor)
    new = viewer is None or viewer[0] <= time - WINDOW
    if viewer is None:
        if len(views.actors) >= params.max_viewers:
            dropped = min(views.actors, key=lambda a: (views.actors[a][0], a))
            evicted = views.actors.pop(dropped)
            views.undercount_until = max(views.undercount_until, evicted[0] + WINDOW)
        viewer = views.actors[actor] = [time, event.event_uid, [], unexplained]
    elif time >= viewer[0]:
        viewer[0], viewer[1], viewer[3] = time, event.event_uid, unexplained
    # A viewer dropped at max_viewers and back the same day counts twice in that day's
    # count: only a saturated chart's usual can be too high, never too low.
    if day not in viewer[2]:
        viewer[2] = sorted([*viewer[2], day])[-2:]
        history.days[day] = history.days.get(day, 0) + 1
        history.days = {d: n for d, n in history.days.items() if d >= day - params.baseline_days}
    return new


def step(
    params: Params,
    rule: RuleInfo,
    state: CuriousState,
    event: AccessEvent,
    time: float,
    ctx: DetectionContext,
) -> None:
    key, actor = patient_key(event), actor_key(event)
    if key is None or actor is None or not state.fired.first(event.event_uid, time):
        return
    views = state.viewers.touch(key, time)
    history = state.history.touch(key, time)
    new = see(params, views, history, actor, event, time, ctx.watermark - rule.lateness)
    alert = ctx.book.open_for(rule.rule_id, key, time, WINDOW)
    if alert is not None and abs(time - alert.facts.crossed_at) < WINDOW:
        alert.add_entry(
            time, event.event_uid, patient=event.patient_ref, target=event.target_resource_id
        )
        alert.window_start = min(alert.window_start, time)
        alert.window_end = max(alert.window_end, time)
        if new:
            note_peak(alert.facts, views, time)
        ctx.book.changed(alert)
        return
    if not new:
        return
    inside = in_window(views, time)
    if len(inside) < params.distinct_actors:
        return
    day = int(time // DAY)
    baseline = usual(history, day, params.baseline_days)
    need = max(params.distinct_actors, math.ceil(params.baseline_factor * max(baseline, 1.0)))
    if len(inside) < need:
        return
    open_episode(params, rule, ctx, key, event, time, inside, baseline, need, views)


def note_peak(facts: CuriousFacts, views: ChartViewers, time: float) -> None:
    inside = in_window(views, time)
    undercount = time < views.undercount_until
    if len(inside) > facts.viewers or (undercount and len(inside) == facts.viewers):
        facts.viewers = len(inside)
        facts.unexplained = sum(1 for v in inside if v[3])
        facts.saturated = undercount


def open_episode(
    params: Params,
    rule: RuleInfo,
    ctx: DetectionContext,
    key: str,
    event: AccessEvent,
    time: float,
    inside: list[Viewer],
    baseline: float,
    need: int,
    views: ChartViewers,
) -> None:
    entries = sorted((v[0], v[1]) for v in inside if v[1] != event.event_uid)
    start = entries[0][0] if entries else time
    # The chart's viewers are many: the alert names no one of them as its account (the
    # evidence lists each one's latest access), only the patient and the resource.
    alert = ctx.book.open(
        rule.rule_id,
        key,
        anchor=utc_day(time),
        severity=rule.severity,
        detected_at=ctx.arrival,
        window=(min(start, time), time),
    )
    for entry_time, uid in entries:
        alert.add_entry(entry_time, uid, patient=event.patient_ref)
    alert.add_entry(
        time, event.event_uid, patient=event.patient_ref, target=event.target_resource_id
    )
    alert.facts = CuriousFacts(
        distinct_actors=params.distinct_actors,
        baseline_factor=params.baseline_factor,
        baseline_days=params.baseline_days,
        baseline=baseline,
        need=need,
        crossed_at=time,
        day=utc_day(time),
    )
    note_peak(alert.facts, views, time)


def drop_before(params: Params, state: CuriousState, before: float) -> None:
    """Charts idle for longer than any in-time event's 24 hours lose their viewers; idle
    for longer than the look-back, their daily counts (all would be 0 by then)."""
    state.viewers.expire(before - WINDOW)
    state.history.expire(before - (params.baseline_days + 1) * DAY)
    state.fired.expire(before)


class CuriousAccess(Detection[Params]):
    rule_id = "curious-access"
    rule_name = "Many actors off the care team opened one patient's record"
    severity = "Medium"
    tactics = ("Collection",)
    techniques = ("T1213",)  # Data from Information Repositories: the EHR
    group_by = "patient"
    planes = frozenset({"data"})
    Params = Params
    Facts = CuriousFacts

    def horizon(self) -> float:
        # A chart's viewers for a day, its daily counts for the baseline days after.
        return WINDOW + (self.params.baseline_days + 1) * DAY

    def applies(self, event: AccessEvent) -> bool:
        return is_viewer(event)

    def declare(self) -> StatefulRule:
        return StatefulRule(
            state=CuriousState,
            step=partial(step, self.params),
            drop_before=partial(drop_before, self.params),
            name="curious",
        )

    def render(self, state: AlertState) -> Alert:
        facts: CuriousFacts = state.facts
        patient = f"patient {min(state.patients)}" if state.patients else "one patient"
        at_least = "at least " if facts.saturated else ""
        unknown = facts.viewers - facts.unexplained
        reasons = [
            f"{at_least}{facts.viewers} distinct actors off the patient's care team opened "
            f"the record of {patient} within 24 hours (accesses between "
            f"{hhmm(state.first_time)} and {hhmm(state.last_time)}); the rule fires at "
            f"{facts.distinct_actors} actors and at {facts.baseline_factor:g} times the "
            "patient's usual.",
            f"The patient's usual: a median of {facts.baseline:g} distinct viewers a day over "
            f"the {facts.baseline_days} UTC days before {facts.day} (taken as at least 1), so "
            f"{facts.need} were needed.",
            f"Of the {facts.viewers}, {facts.unexplained} are unexplained by the patient index "
            "(not on the care team, no allow-listed application)"
            + (f"; for {unknown} no explanation is known." if unknown else "."),
            "Check first: whether the patient was moved (a transfer, an emergency, a ward "
            "round) or is in the news, then who opened the chart without a treatment reason "
            "(the evidence lists each viewer's access).",
        ]
        return self.base_alert(
            state,
            title=(
                f"Curious access: {at_least}{facts.viewers} actors opened the record of "
                f"{patient} within 24 hours"
            ),
            description=(
                f"{at_least}{facts.viewers} people not on the care team of {patient} opened "
                f"the chart within 24 hours, {facts.viewers / max(facts.baseline, 1):.1f} "
                "times as many as usually do: the pattern of curiosity about a patient in the "
                "news, a colleague or a public figure."
            ),
            reasons=reasons,
        )


DETECTION = CuriousAccess
