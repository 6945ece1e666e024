"""log-source-silent in the scenario: the silences the diagnostics incidents cause, and a
night lull that looks like one.

Deleting kv-phi-prod's diagnostic setting and turning fhir-prod2's off (incidents.py) stop
their audit streams (`plan.silenced`); each silence is an incident of its own, from the
stream's last record to the moment it stopped. The look-alike: interactive sign-ins pause
overnight for longer than their 30-minute floor, and a quiet night is not a silent source.
Both are read off the records already generated: nothing here draws a random number, so
the logs stay byte for byte what they were and only the ground truth grows.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import pairwise

from .emitted import Emitted
from .ground_truth import Incident, Lookalike
from .plan import ScenarioPlan

RULE_ID = "log-source-silent"
SIGNIN_FLOOR = timedelta(minutes=30)


def _whole(t: datetime) -> datetime:
    return t.replace(microsecond=0)


def silence_incidents(plan: ScenarioPlan, records: list[Emitted]) -> list[Incident]:
    last: dict[str, datetime] = {}
    for emitted in records:
        at = plan.silenced.get(emitted.stream)
        if at is not None and emitted.source != "activity" and emitted.at < at:
            last[emitted.stream] = max(last.get(emitted.stream, emitted.at), emitted.at)
    incidents = []
    for stream, at in sorted(plan.silenced.items()):
        name = stream.rsplit("/", 1)[-1]
        incidents.append(
            Incident(
                rule_id=RULE_ID,
                description=f"{name}'s audit records stop once its diagnostic setting is "
                "gone or sends no logs, while every other source keeps logging: a silent "
                "source, High for the setting change before it.",
                actor_user_id=None,
                actor_app_id=None,
                src_ip=None,
                target_resource_id=stream,
                start=_whole(last.get(stream, at - timedelta(hours=2))),
                end=_whole(at) + timedelta(seconds=1),
            )
        )
    return incidents


def night_lull(records: list[Emitted], tenant: str) -> Lookalike | None:
    """The longest overnight pause of interactive sign-ins, when it outlasts the floor."""
    times = sorted(
        e.at
        for e in records
        if e.source == "signin"
        and isinstance(e.record, dict)
        and e.record.get("category") == "SignInLogs"
    )
    night = [(b - a, a, b) for a, b in pairwise(times) if a.hour >= 20 or a.hour < 6]
    if not night:
        return None
    gap, start, end = max(night)
    if gap <= SIGNIN_FLOOR:
        return None
    return Lookalike(
        kind="night-lull",
        resembles_rule_id=RULE_ID,
        description=f"Interactive sign-ins pause for {round(gap.total_seconds() / 60)} minutes "
        "overnight, longer than their 30-minute floor; the tenant's sign-ins are sparse at "
        "night, so the pause is within what the source's own rate makes usual.",
        actor_user_id=None,
        actor_app_id=None,
        src_ip=None,
        target_resource_id=f"/tenants/{tenant}/providers/microsoft.aadiam",
        start=_whole(start),
        end=_whole(end) + timedelta(seconds=1),
    )
