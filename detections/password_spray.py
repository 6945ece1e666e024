"""password-spray: one address fails password sign-ins for many users within minutes.

Sentinel's "Password spray attack against Entra ID application" (SigninPasswordSpray): the
password failure codes (50126 bad password, 50053 locked or malicious address, 50055
expired password, plus 50056 no password stored and 50034 no such user: sprays run through
lists of guessed names) for at least `distinct_users` distinct users from one address
within `window_minutes`, in event time, from interactive and non-interactive sign-in logs
alike. MFA interrupts (50074, 50076), strong-auth failures (500121) and conditional-access
blocks (53003) are not password failures and never count.

A busy NAT (the hospital's egress: hundreds of staff, a few typos every hour) also has many
failed users: like Sentinel, the address fires only when its failed users outnumber the
distinct users who signed in successfully from it over the day before. A success from the
address after the spray (within an hour of its last failure) raises the alert to High: a
guessed password worked. Later failures and the success enrich the one alert; the alert's
account is the one that succeeded (the accounts sprayed are listed in its reasons).
"""

from __future__ import annotations

from bisect import insort
from collections import Counter
from dataclasses import dataclass, field
from functools import partial

from pydantic import Field, field_validator

from phiwatch.detect.alert_book import AlertState
from phiwatch.detect.context import DetectionContext, RuleInfo
from phiwatch.detect.detection import Detection, DetectionParams
from phiwatch.detect.grouping import source_address_key
from phiwatch.detect.kinds import StatefulRule
from phiwatch.detect.kinds.base import open_alert
from phiwatch.detect.snapshot import snapshot_class
from phiwatch.detect.times import hhmm
from phiwatch.model import AccessEvent, Alert
from phiwatch.sources import signins
from phiwatch.sources.fields import clean_identity

SPRAY_CODES = ("50126", "50053", "50055", "50056", "50034")
SUCCESS_LOOKBACK = 86400.0  # successes that make an address a busy NAT: the day before
FOLLOW = 3600.0  # a success within an hour of the spray's last failure: High
GAP = 3600.0  # failures within an hour of the alert's last one: the same spray
MAX_FAILURES = 512  # kept per address (a spray of thousands needs only the first few)
MAX_SUCCESSES = 256  # distinct successful users kept per address: a NAT saturates it
MAX_NAMED = 20  # sprayed accounts an alert names
MAX_RECENT_OK = 16  # latest successes kept per address with their times


class Params(DetectionParams):
    distinct_users: int = Field(default=5, ge=2, le=1000)
    window_minutes: float = Field(default=20, gt=0, le=24 * 60)
    failure_codes: tuple[str, ...] = SPRAY_CODES

    @field_validator("failure_codes")
    @classmethod
    def _codes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        codes = tuple(v.strip() for v in value)
        bad = [c for c in codes if not c.isdigit() or len(c) > 9]
        if bad or not codes:
            raise ValueError(f"failure codes must be Entra sign-in error numbers: {bad}")
        return codes


@snapshot_class
@dataclass(slots=True)
class AddressSignIns:
    # address key → failures [time, uid, user, code], by time; successes user → latest time
    failures: dict[str, list[list]] = field(default_factory=dict)
    successes: dict[str, dict[str, float]] = field(default_factory=dict)
    # address key → its latest successes [time, uid, user, [object id, UPN]], by time: a
    # success the spray's alert had not opened for yet still raises it.
    recent_ok: dict[str, list[list]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.failures) + len(self.successes) + len(self.recent_ok)


@snapshot_class
@dataclass(slots=True)
class SprayFacts:
    distinct_users: int  # in force when the alert opened
    window_minutes: float
    # Accounts sprayed, first seen first; counting stops at MAX_FAILURES.
    users: list[str] = field(default_factory=list)
    failures: int = 0
    codes: dict[str, int] = field(default_factory=dict)
    successful_users_before: int = 0  # the NAT guard's count when it opened
    counted: list[str] = field(default_factory=list)  # failure uids in the alert
    success_user: str | None = None
    success_time: float | None = None


def user_of(event: AccessEvent) -> str | None:
    """Who the sign-in was for: the object id, else the name typed (a sprayed name that
    does not exist has no object id)."""
    name = event.actor_user_id or clean_identity(event.actor_username)
    return name.lower() if name else None


def is_signin(event: AccessEvent) -> bool:
    return event.event_product == signins.PRODUCT and event.event_type == "Logon"


def step(
    params: Params,
    rule: RuleInfo,
    state: AddressSignIns,
    event: AccessEvent,
    time: float,
    ctx: DetectionContext,
) -> None:
    key = source_address_key(event)
    user = user_of(event)
    if key is None or user is None:
        return
    if event.event_result == "Success":
        success(state, rule, key, user, event, time, ctx)
        return
    code = event.event_result_details or ""
    if code not in params.failure_codes:
        return
    kept = state.failures.setdefault(key, [])
    if any(f[1] == event.event_uid for f in kept):
        return  # redelivered
    insort(kept, [time, event.event_uid, user, code], key=lambda f: (f[0], f[1]))
    del kept[:-MAX_FAILURES]
    alert = ctx.book.open_for(rule.rule_id, key, time, GAP)
    if alert is not None:
        add_failure(alert, time, event.event_uid, user, code, event.src_ip_addr)
        ctx.book.changed(alert)
        return
    width = params.window_minutes * 60
    inside = widest(kept, time, width)
    users = len({f[2] for f in inside})
    if users < params.distinct_users:
        return
    start, end = inside[0][0], inside[-1][0]
    succeeded = successful_users(state, key, start - SUCCESS_LOOKBACK, end)
    if users <= succeeded:
        return  # a busy NAT: more of its users sign in than fail
    open_spray(params, state, rule, key, event, time, ctx, inside, succeeded)


def widest(kept: list[list], time: float, width: float) -> list[list]:
    """The failures of the window (at most `width` seconds) holding the one at `time` with
    the most distinct users, the earliest such window on a tie: one sweep, so a busy
    address's many failures cost linear time, not a scan per window."""
    near = [f for f in kept if time - width <= f[0] <= time + width]
    counts: Counter[str] = Counter()
    best: tuple[int, int, int] = (0, 0, -1)
    left = 0
    for right, failure in enumerate(near):
        counts[failure[2]] += 1
        while failure[0] - near[left][0] > width:
            gone = near[left][2]
            counts[gone] -= 1
            if not counts[gone]:
                del counts[gone]
            left += 1
        if near[left][0] <= time <= failure[0] and len(counts) > best[0]:
            best = (len(counts), left, right)
    return near[best[1] : best[2] + 1]


def successful_users(state: AddressSignIns, key: str, since: float, until: float) -> int:
    return sum(1 for t in state.successes.get(key, {}).values() if since <= t <= until)


def success(
    state: AddressSignIns,
    rule: RuleInfo,
    key: str,
    user: str,
    event: AccessEvent,
    time: float,
    ctx: DetectionContext,
) -> None:
    seen = state.successes.setdefault(key, {})
    if user in seen or len(seen) < MAX_SUCCESSES:
        seen[user] = max(seen.get(user, time), time)
    recent = state.recent_ok.setdefault(key, [])
    entry = [time, event.event_uid, user, [event.actor_user_id, event.actor_username]]
    if not any(r[1] == event.event_uid for r in recent):
        insort(recent, entry, key=lambda r: (r[0], r[1]))
        del recent[:-MAX_RECENT_OK]
    alert = ctx.book.open_for(rule.rule_id, key, time, FOLLOW)
    if alert is None or alert.facts.success_time is not None or time < alert.first_time:
        return
    succeeded(alert, entry, event.src_ip_addr)
    ctx.book.changed(alert)


def succeeded(alert: AlertState, success: list, ip: str | None) -> None:
    """A sign-in from the address ([time, uid, user, [object id, UPN]]) worked during or
    after the spray: High."""
    time, uid, user, (object_id, upn) = success
    facts: SprayFacts = alert.facts
    facts.success_user, facts.success_time = user, time
    alert.severity = "High"
    alert.add_entry(time, uid, ip=ip)
    # The account the guess opened is the one to act on: the alert's account entity.
    alert.actor_user_id, alert.actor_username = object_id, upn


def open_spray(
    params: Params,
    state: AddressSignIns,
    rule: RuleInfo,
    key: str,
    event: AccessEvent,
    time: float,
    ctx: DetectionContext,
    inside: list[list],
    successes_before: int,
) -> None:
    facts = SprayFacts(
        distinct_users=params.distinct_users,
        window_minutes=params.window_minutes,
        successful_users_before=successes_before,
    )
    alert = open_alert(
        rule,
        ctx,
        key,
        event,
        time,
        anchor=inside[0][1],
        facts=facts,
        entries=[(t, uid, (None, None, event.src_ip_addr, None)) for t, uid, _, _ in inside],
        window=(inside[0][0], max(inside[-1][0], time)),
    )
    # The accounts sprayed are victims, not the actor: no account entity until one succeeds.
    alert.actor_user_id = alert.actor_username = None
    for _, uid, user, code in inside:
        note_failure(facts, uid, user, code)
    alert.window_end = max(alert.window_end, time)
    # A success seen already (a late spray record, or a guess that worked mid-spray).
    for success in state.recent_ok.get(key, ()):
        if inside[0][0] <= success[0] <= inside[-1][0] + FOLLOW:
            succeeded(alert, success, event.src_ip_addr)
            break


def add_failure(
    alert: AlertState, time: float, uid: str, user: str, code: str, ip: str | None
) -> None:
    if note_failure(alert.facts, uid, user, code):
        alert.add_entry(time, uid, ip=ip)
        alert.window_end = max(alert.window_end, time)


def note_failure(facts: SprayFacts, uid: str, user: str, code: str) -> bool:
    """Count a failure into the alert's facts; False when it is counted already."""
    if uid in facts.counted:
        return False
    facts.counted.append(uid)
    del facts.counted[:-MAX_FAILURES]
    facts.failures += 1
    facts.codes[code] = facts.codes.get(code, 0) + 1
    if user not in facts.users and len(facts.users) < MAX_FAILURES:
        facts.users.append(user)
    return True


def drop_before(state: AddressSignIns, before: float) -> None:
    """Failures older than any window or alert gap an in-time event can join; successes
    older than the NAT guard's look-back."""
    horizon = before - GAP
    state.failures = {
        k: kept for k, v in state.failures.items() if (kept := [f for f in v if f[0] >= horizon])
    }
    state.recent_ok = {
        k: kept for k, v in state.recent_ok.items() if (kept := [r for r in v if r[0] >= horizon])
    }
    since = before - SUCCESS_LOOKBACK
    state.successes = {
        k: users
        for k, v in state.successes.items()
        if (users := {u: t for u, t in v.items() if t >= since})
    }


class PasswordSpray(Detection[Params]):
    rule_id = "password-spray"
    rule_name = "Password spray from one address"
    severity = "Medium"
    tactics = ("CredentialAccess",)
    techniques = ("T1110.003",)  # Brute Force: Password Spraying
    group_by = "source_address"
    planes = frozenset({"data"})
    products = frozenset({signins.PRODUCT})
    Params = Params
    Facts = SprayFacts

    def applies(self, event: AccessEvent) -> bool:
        return is_signin(event) and event.src_ip_addr is not None

    def declare(self) -> StatefulRule:
        return StatefulRule(
            state=AddressSignIns,
            step=partial(step, self.params),
            drop_before=drop_before,
            name="spray",
        )

    def render(self, state: AlertState) -> Alert:
        facts: SprayFacts = state.facts
        address = state.key.split(":", 1)[-1]
        codes = ", ".join(f"{c} x{n}" for c, n in sorted(facts.codes.items()))
        named = ", ".join(facts.users[:MAX_NAMED])
        more = len(facts.users) - MAX_NAMED
        accounts = named + (f" and {more} more" if more > 0 else "")
        reasons = [
            f"{len(facts.users)} distinct accounts failed password sign-ins from {address} "
            f"between {hhmm(state.first_time)} and {hhmm(state.last_time)} ({facts.failures} "
            f"failures; error codes {codes}); the rule fires at {facts.distinct_users} "
            f"accounts within {facts.window_minutes:g} minutes.",
            f"Not a busy shared address: {facts.successful_users_before} distinct accounts "
            f"signed in successfully from it over the day before, fewer than failed.",
            f"Accounts tried: {accounts}.",
        ]
        title = f"Password spray from {address} against {len(facts.users)} accounts"
        if facts.success_time is not None:
            who = clean_identity(state.actor_username) or facts.success_user
            reasons.append(
                f"Then {who} signed in successfully from the same address at "
                f"{hhmm(facts.success_time)}: a guessed password may have worked, so the "
                "severity is High."
            )
            title += f", then {who} signed in"
        reasons.append(
            "Check first: block the address, reset the password and revoke the sessions of "
            "any account that signed in from it, and check that MFA is enforced for the "
            "accounts tried."
        )
        return self.base_alert(
            state,
            title=title,
            description=(
                f"One address, {address}, tried passwords against {len(facts.users)} accounts "
                "within minutes, the pattern of a password spray: a few common passwords "
                "tried across many accounts to stay under per-account lockout."
            ),
            reasons=reasons,
        )


DETECTION = PasswordSpray
