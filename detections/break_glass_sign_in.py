"""break-glass-sign-in: an emergency-access account is used or changed.

Microsoft's guidance for emergency ("break-glass") accounts is to alert on *any* sign-in of
them. The accounts are configured by Entra object id (`object_ids`), never by UPN, which can
be renamed. Every sign-in of one of them fires, successful or not (password guessing against
an emergency account is the attack), from any sign-in log, and so does every Entra directory
change whose target is one of them (a password reset, a new authentication method, a role
removed). High.

One account's events within an hour of each other are one alert. The alert is keyed by the
account, so a sign-in and the change an administrator made to it are one incident; the rule
groups by subscription (every Entra record is tenant-level, so all of them share one key and
one partition) and selects only the configured accounts' events, so the routing carries
nothing else. Without `object_ids` the rule is off, and says so once when it loads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache

import structlog
from pydantic import field_validator

from phiwatch.detect.alert_book import AlertState
from phiwatch.detect.context import DetectionContext, RuleInfo
from phiwatch.detect.detection import Detection, DetectionParams
from phiwatch.detect.kinds import StatefulRule
from phiwatch.detect.kinds.base import Fired, enrich, open_alert
from phiwatch.detect.snapshot import snapshot_class
from phiwatch.detect.times import hhmm
from phiwatch.model import AccessEvent, Alert
from phiwatch.sources import entra_audit, signins
from phiwatch.sources.fields import clean_identity

log = structlog.get_logger("phiwatch.detect")
GAP = 3600.0  # one account's events within an hour of each other: one alert
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class BreakGlassParams(DetectionParams):
    object_ids: tuple[str, ...] = ()  # Entra object ids of the emergency-access accounts

    @field_validator("object_ids")
    @classmethod
    def _guids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        ids = tuple(v.strip().lower() for v in value)
        bad = [v for v in ids if not _GUID.match(v)]
        if bad:
            raise ValueError(f"not Entra object ids (GUIDs): {bad}")
        return ids


@snapshot_class
@dataclass(slots=True)
class BreakGlassFacts:
    account_id: str
    account_name: str | None = None  # the UPN the records gave (for the title only)
    signins_ok: int = 0
    signins_failed: int = 0
    failure_codes: dict[str, int] = field(default_factory=dict)
    changes: dict[str, int] = field(default_factory=dict)  # directory activity → count
    changed_by: list[str] = field(default_factory=list)  # who made the changes


def account_of(event: AccessEvent) -> tuple[str | None, str | None]:
    """The emergency account an event concerns: (object id, UPN)."""
    if event.event_product == signins.PRODUCT:
        return event.actor_user_id, event.actor_username
    if event.event_product == entra_audit.PRODUCT:
        return event.target_user_id, event.target_username
    return None, None


def fold(facts: BreakGlassFacts, event: AccessEvent) -> None:
    facts.account_name = facts.account_name or account_of(event)[1]
    if event.event_product == signins.PRODUCT:
        if event.event_result == "Success":
            facts.signins_ok += 1
        else:
            facts.signins_failed += 1
            code = event.event_result_details or "unknown"
            facts.failure_codes[code] = facts.failure_codes.get(code, 0) + 1
        return
    facts.changes[event.operation] = facts.changes.get(event.operation, 0) + 1
    who = clean_identity(event.actor_username or event.actor_user_id or event.acting_app_name)
    if who and who not in facts.changed_by and len(facts.changed_by) < 8:
        facts.changed_by.append(who)


def step(
    rule: RuleInfo, state: Fired, event: AccessEvent, time: float, ctx: DetectionContext
) -> None:
    account = account_of(event)[0]
    if account is None or not state.first(event.event_uid, time):
        return
    key = f"oid:{account}"
    if not enrich(rule, ctx, key, event, time, GAP, value=event, fold=fold):
        open_alert(
            rule,
            ctx,
            key,
            event,
            time,
            anchor=event.event_uid,
            facts=BreakGlassFacts(account_id=account),
            value=event,
            fold=fold,
        )


@cache
def _say_off() -> None:
    log.warning(
        "detection off until configured: set object_ids to the emergency-access accounts' "
        "Entra object ids",
        rule="break-glass-sign-in",
    )


def counted(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


class BreakGlassSignIn(Detection[BreakGlassParams]):
    rule_id = "break-glass-sign-in"
    rule_name = "Emergency-access account used or changed"
    severity = "High"
    tactics = ("InitialAccess", "Persistence")
    techniques = ("T1078", "T1098")  # Valid Accounts; Account Manipulation
    group_by = "subscription"
    planes = frozenset({"data", "control"})
    products = frozenset({signins.PRODUCT, entra_audit.PRODUCT})
    Params = BreakGlassParams
    Facts = BreakGlassFacts

    def __init__(self, params: BreakGlassParams, lateness: float) -> None:
        super().__init__(params, lateness)
        if not params.object_ids:
            _say_off()

    def applies(self, event: AccessEvent) -> bool:
        ids = self.params.object_ids
        if not ids:
            return False
        if event.event_product == signins.PRODUCT:
            return event.actor_user_id in ids
        return event.event_product == entra_audit.PRODUCT and event.target_user_id in ids

    def declare(self) -> StatefulRule:
        return StatefulRule(
            state=Fired,
            step=step,
            drop_before=lambda state, before: state.expire(before),
            name="break_glass",
        )

    def render(self, state: AlertState) -> Alert:
        facts: BreakGlassFacts = state.facts
        account = clean_identity(facts.account_name) or facts.account_id
        what: list[str] = []
        if facts.signins_ok:
            what.append(counted(facts.signins_ok, "successful sign-in"))
        if facts.signins_failed:
            what.append(counted(facts.signins_failed, "failed sign-in"))
        n_changes = sum(facts.changes.values())
        if n_changes:
            what.append(counted(n_changes, "directory change"))
        reasons = [
            f"{account} (object id {facts.account_id}) is a configured emergency-access "
            f"account: {', '.join(what)} between {hhmm(state.first_time)} and "
            f"{hhmm(state.last_time)}.",
            "Emergency accounts are kept for outages and normally never sign in, so any use "
            "is an alert, whatever its outcome.",
        ]
        if facts.failure_codes:
            codes = ", ".join(f"{c} x{n}" for c, n in sorted(facts.failure_codes.items()))
            reasons.append(f"Failed sign-ins (error codes): {codes}; password guessing?")
        if facts.changes:
            changes = ", ".join(f"{a} x{n}" for a, n in sorted(facts.changes.items()))
            by = f" by {', '.join(facts.changed_by)}" if facts.changed_by else ""
            reasons.append(f"Directory changes to the account{by}: {changes}.")
        reasons.append(
            "Check first: whether a declared emergency or a scheduled test explains it, who "
            "holds the credentials, and the sign-ins' addresses and MFA details."
        )
        if facts.signins_ok:
            title = f"Emergency-access account {account} signed in"
        elif facts.signins_failed:
            title = f"Failed sign-ins to emergency-access account {account}"
        else:
            title = f"Emergency-access account {account} was changed"
        return self.base_alert(
            state,
            title=title,
            description=(
                f"The emergency-access (break-glass) account {account} was used or changed: "
                f"{', '.join(what)}. Confirm it was a sanctioned emergency or test; otherwise "
                "reset its credentials, review its sign-ins and role assignments, and treat "
                "the tenant as possibly compromised."
            ),
            reasons=reasons,
        )


DETECTION = BreakGlassSignIn
