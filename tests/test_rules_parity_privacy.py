"""Parity of the seven patient-privacy rules with their KQL twins, on stamped events.

The generated scenario behind tests/test_rules_parity.py has no roster or patient index yet,
so its events carry no privacy stamps and these rules are quiet there. Here the events are
built with the stamps normalise would set (tests/privacy_stamps.py): each rule's incident and
its near-misses (an explained access, no relation stamped, a second access the same UTC day,
the next day, a terminated identity beside an active one and one on leave, 10 viewers beside
9, care-team viewers, a patient with a high baseline). The stream runs each rule on them
(the rule harness, the real engine); the twins run on the same events as PhiAccessEvents_CL
rows in the offline engine on an hourly schedule. Both must give the same (entity key,
severity) set per rule: actor, patient and UTC day for the relationship and VIP rules, actor
and day for terminated-user-access, the patient for curious-access.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from phiwatch.detect.grouping import actor_key, patient_key
from phiwatch.detect.testing import RuleHarness, access
from phiwatch.model import AccessEvent, Alert
from phiwatch.rules.engine import KqlEngine
from phiwatch.rules.loader import RuleFile, discover, load_rule
from phiwatch.sources import keyvault, signins
from tests.privacy_stamps import stamped

DAILY = {
    "self-record-access",
    "family-record-access",
    "coworker-record-access",
    "neighbour-record-access",
    "vip-record-access",
}
PER_ACTOR = {"terminated-user-access"}
PER_PATIENT = {"curious-access"}
RULES = DAILY | PER_ACTOR | PER_PATIENT

D = date(2026, 3, 9)  # the day the incidents happen on; curious-access's history is before it
KEY_VAULT = "/subscriptions/sub-1/resourcegroups/rg/providers/microsoft.keyvault/vaults/kv"


def at(day: date, clock: str) -> str:
    return f"{day.isoformat()} {clock}+00:00"


def user(name: str) -> str:
    return f"{name}@contoso-health.org"


def relationship_events() -> list[AccessEvent]:
    """The four relationship rules and the VIP rule: incidents and near-misses."""
    nora, ann, bea, carl, nick, dan, vic = (
        user(n) for n in ("nora", "ann", "bea", "carl", "nick", "dan", "vic")
    )
    next_day = D + timedelta(days=1)
    return [
        # self: twice on D (once refused, once delivered twice) is one alert; D+1 is another.
        stamped(
            at(D, "09:00:00"), actor=nora, patient="pat-nora", relation="self", basis="employee-id"
        ),
        stamped(
            at(D, "09:00:00"), actor=nora, patient="pat-nora", relation="self", basis="employee-id"
        ),
        stamped(
            at(D, "13:00:00"),
            actor=nora,
            patient="pat-nora",
            relation="self",
            basis="employee-id",
            result="Failure",
        ),
        stamped(
            at(next_day, "08:00:00"),
            actor=nora,
            patient="pat-nora",
            relation="self",
            basis="employee-id",
        ),
        # family: a household (High), a rare namesake (Medium), and a day that turns High.
        stamped(
            at(D, "10:00:00"),
            actor=ann,
            patient="pat-ann-kid",
            relation="family",
            basis="surname-and-address",
        ),
        stamped(
            at(D, "10:30:00"),
            actor=ann,
            patient="pat-namesake",
            relation="family",
            basis="rare-surname",
        ),
        stamped(
            at(D, "10:00:00"),
            actor=bea,
            patient="pat-bea-mum",
            relation="family",
            basis="rare-surname",
        ),
        stamped(
            at(D, "15:00:00"),
            actor=bea,
            patient="pat-bea-mum",
            relation="family",
            basis="surname-and-address",
        ),
        # coworker, and its explained look-alikes: the colleague's care team, an allow-listed
        # application (whatever relation a stale stamp names).
        stamped(
            at(D, "11:00:00"),
            actor=carl,
            patient="pat-colleague",
            relation="coworker",
            basis="patient-is-employee",
        ),
        stamped(at(D, "11:10:00"), actor=nora, patient="pat-colleague", explanation="care-team"),
        stamped(
            at(D, "11:20:00"),
            actor=None,
            app_id="app-integration",
            patient="pat-colleague",
            explanation="allowed-application",
            relation="coworker",
            basis="patient-is-employee",
        ),
        # neighbour.
        stamped(
            at(D, "12:00:00"),
            actor=nick,
            patient="pat-next-door",
            relation="neighbour",
            basis="street-and-postcode",
        ),
        # no relation stamped (a common surname elsewhere): nothing; a sign-in naming a
        # patient is not an access.
        stamped(at(D, "12:30:00"), actor=dan, patient="pat-smith"),
        stamped(
            at(D, "12:40:00"),
            actor=dan,
            patient="pat-smith",
            relation="self",
            basis="employee-id",
            product=signins.PRODUCT,
        ),
        # vip: unexplained (and a coworker besides), the care team's, an unrestricted one's.
        stamped(
            at(D, "14:00:00"),
            actor=vic,
            patient="pat-vip",
            restricted=True,
            relation="coworker",
            basis="patient-is-employee",
        ),
        stamped(
            at(D, "14:10:00"),
            actor=nora,
            patient="pat-vip",
            restricted=True,
            explanation="care-team",
        ),
        stamped(at(D, "14:20:00"), actor=dan, patient="pat-plain", restricted=False),
    ]


def terminated_events() -> list[AccessEvent]:
    lee, mo, liv = user("lee"), user("mo"), user("liv")
    return [
        # lee, terminated: a care-team read (no care role left), a Key Vault read without a
        # patient, a sign-in (not a data access); the next day again.
        stamped(
            at(D, "09:00:00"),
            actor=lee,
            patient="pat-a",
            explanation="care-team",
            status="terminated",
        ),
        stamped(
            at(D, "09:30:00"),
            actor=lee,
            explanation=None,
            status="terminated",
            product=keyvault.PRODUCT,
            target=KEY_VAULT,
        ),
        stamped(
            at(D, "08:55:00"),
            actor=lee,
            explanation=None,
            status="terminated",
            product=signins.PRODUCT,
        ),
        stamped(
            at(D + timedelta(days=1), "01:00:00"), actor=lee, patient="pat-b", status="terminated"
        ),
        # active, on leave, and a terminated identity that only signs in: nothing.
        stamped(at(D, "10:00:00"), actor=mo, patient="pat-a", status="active"),
        stamped(at(D, "10:05:00"), actor=liv, patient="pat-a", status="leave"),
        stamped(
            at(D, "10:10:00"),
            actor=user("ex"),
            explanation=None,
            status="terminated",
            product=signins.PRODUCT,
        ),
    ]


def viewer(n: int, patient: str, when: str, explanation: str | None = "unexplained") -> AccessEvent:
    return stamped(when, actor=user(f"viewer{n:02d}"), patient=patient, explanation=explanation)


def curious_events() -> list[AccessEvent]:
    events: list[AccessEvent] = []
    # pat-star: 10 viewers off the care team (3 with no explanation known) and 2 care-team
    # members on D: fires. pat-nine: 9 and 3 care-team members: quiet.
    for n in range(10):
        events.append(
            viewer(n, "pat-star", at(D, f"16:{n * 5:02d}:00"), None if n < 3 else "unexplained")
        )
    for n in range(9):
        events.append(viewer(n, "pat-nine", at(D, f"17:{n * 5:02d}:00")))
    for n in range(3):
        events.append(viewer(50 + n, "pat-star", at(D, f"16:{n:02d}:30"), "care-team"))
        events.append(viewer(50 + n, "pat-nine", at(D, f"17:{n:02d}:30"), "care-team"))
    # pat-busy: 5 viewers on each of the 7 days before (median 5, 15 needed), 12 on D: quiet.
    for back in range(1, 8):
        for n in range(5):
            events.append(viewer(60 + n, "pat-busy", at(D - timedelta(days=back), f"03:0{n}:00")))
    for n in range(12):
        events.append(viewer(n, "pat-busy", at(D, f"18:{n * 4:02d}:00")))
    return events


def scenario() -> list[AccessEvent]:
    return sorted(
        relationship_events() + terminated_events() + curious_events(),
        key=lambda e: e.time_generated,
    )


def day_of(when: datetime) -> str:
    return when.date().isoformat()


def stream_key(rule_id: str, evidence: AccessEvent) -> str:
    if rule_id in PER_PATIENT:
        return patient_key(evidence) or ""
    key = f"{actor_key(evidence)}|{day_of(evidence.time_generated)}"
    if rule_id in DAILY:
        key = f"{actor_key(evidence)}|{patient_key(evidence)}|{day_of(evidence.time_generated)}"
    return key


def streaming_keys(events: list[AccessEvent]) -> dict[str, set[tuple[str, str]]]:
    """rule id → {(entity key, severity)} from each rule's alerts (their latest version)."""
    by_uid = {event.event_uid: event for event in events}
    found: dict[str, set[tuple[str, str]]] = {}
    for rule_id in sorted(RULES):
        alerts: list[Alert] = RuleHarness(rule_id).feed(*events).finish().alerts
        found[rule_id] = {
            (stream_key(rule_id, by_uid[a.evidence_event_uids[0]]), a.severity) for a in alerts
        }
    return found


def twin_key(rule_id: str, row: dict) -> str:
    if rule_id in PER_PATIENT:
        return str(row["PatientKey"])
    day = day_of(row["Day"])
    if rule_id in DAILY:
        return f"{row['ActorKey']}|pat:{row['PatientRef']}|{day}"
    return f"{row['ActorKey']}|{day}"


def twins() -> dict[str, RuleFile]:
    found = {}
    for rule in (load_rule(path) for path in discover()):
        if rule.template.rule_id in RULES:
            found[rule.template.rule_id] = rule
    assert set(found) == RULES
    return found


def scheduled_keys(
    rules: dict[str, RuleFile], events: list[AccessEvent]
) -> dict[str, set[tuple[str, str]]]:
    """rule id → {(entity key, severity)} over hourly runs, each seeing the rows up to its
    `now`; a key's severity is the latest run's (which has seen the most of its day). Every
    twin reports only what has an access in the 2 hours before its run, so runs with none
    are skipped: they would return nothing."""
    times = [e.time_generated for e in events]
    hour = timedelta(hours=1)
    first = times[0].replace(minute=0, second=0, microsecond=0)
    runs = [
        first + n * hour
        for n in range(int((times[-1] - first) / hour) + 4)
        if any(first + n * hour - 2 * hour < t <= first + n * hour for t in times)
    ]
    latest: dict[str, dict[str, str]] = {rule_id: {} for rule_id in rules}
    with KqlEngine() as engine:
        prepared = {rule_id: engine.prepare(r.template.query) for rule_id, r in rules.items()}
        loaded = 0
        for now in runs:
            visible = loaded
            while visible < len(events) and events[visible].time_generated <= now:
                visible += 1
            engine.load_records(events[loaded:visible])
            loaded = visible
            for rule_id, rule in rules.items():
                for row in prepared[rule_id].run(now).records():
                    severity = row.get("Severity") or rule.template.severity
                    latest[rule_id][twin_key(rule_id, row)] = severity
    return {rule_id: set(keys.items()) for rule_id, keys in latest.items()}


@pytest.fixture(scope="module")
def events() -> list[AccessEvent]:
    return scenario()


@pytest.fixture(scope="module")
def stream(events) -> dict[str, set[tuple[str, str]]]:
    return streaming_keys(events)


def oid(name: str) -> str:
    return f"{actor_key(access(at(D, '00:00:00'), actor=user(name)))}"


def test_the_stream_raises_each_incident_and_none_of_the_near_misses(stream):
    day, next_day = D.isoformat(), (D + timedelta(days=1)).isoformat()
    assert stream["self-record-access"] == {
        (f"{oid('nora')}|pat:pat-nora|{day}", "Low"),
        (f"{oid('nora')}|pat:pat-nora|{next_day}", "Low"),
    }
    assert stream["family-record-access"] == {
        (f"{oid('ann')}|pat:pat-ann-kid|{day}", "High"),
        (f"{oid('ann')}|pat:pat-namesake|{day}", "Medium"),
        (f"{oid('bea')}|pat:pat-bea-mum|{day}", "High"),
    }
    # vic's restricted patient is a coworker too: both rules fire.
    assert stream["coworker-record-access"] == {
        (f"{oid('carl')}|pat:pat-colleague|{day}", "Medium"),
        (f"{oid('vic')}|pat:pat-vip|{day}", "Medium"),
    }
    assert stream["neighbour-record-access"] == {
        (f"{oid('nick')}|pat:pat-next-door|{day}", "Medium")
    }
    assert stream["vip-record-access"] == {(f"{oid('vic')}|pat:pat-vip|{day}", "High")}
    assert stream["terminated-user-access"] == {
        (f"{oid('lee')}|{day}", "High"),
        (f"{oid('lee')}|{next_day}", "High"),
    }
    assert stream["curious-access"] == {("pat:pat-star", "Medium")}


def test_the_twins_alert_on_the_same_keys_with_the_same_severity(events, stream):
    scheduled = scheduled_keys(twins(), events)
    for rule_id in sorted(RULES):
        assert scheduled[rule_id] == stream[rule_id], rule_id


def test_a_twin_that_drifts_from_its_detection_breaks_parity(events, stream):
    rule = twins()["curious-access"]
    query = rule.template.query.replace("let distinct_actors = 10;", "let distinct_actors = 11;")
    drifted = RuleFile(rule.path, rule.document, rule.template.model_copy(update={"query": query}))
    assert scheduled_keys({"curious-access": drifted}, events)["curious-access"] == set()
    assert stream["curious-access"]
