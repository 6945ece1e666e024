"""diagnostics-disabled: audit logging of a monitored resource was switched off.

A successful diagnostic-settings delete, or a write that leaves no log category enabled,
stops the very logs phiwatch and Sentinel depend on (HIPAA 164.312(b)). Deleting a resource
deletes its diagnostic settings too, so a delete explained by the resource itself (or a
parent, such as its resource group) being deleted within the grace period is not an alert.
That makes this an absence rule: a delete waits until event time has moved past the grace
period before it fires.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from pydantic import Field

from phiwatch.detect.alert_book import AlertState
from phiwatch.detect.detection import (
    Detection,
    DetectionContext,
    DetectionParams,
    actor_label,
    hhmm,
    utc,
)
from phiwatch.detect.snapshot import snapshot_class
from phiwatch.model import AccessEvent, Alert
from phiwatch.sources.activity import DIAGNOSTIC_SETTINGS, diagnostic_setting_target


class Params(DetectionParams):
    grace_minutes: float = Field(default=10, gt=0)


@snapshot_class
@dataclass(slots=True)
class _Pending:
    time: float
    event: AccessEvent
    monitored: str
    arrival: datetime


class DiagnosticsDisabled(Detection):
    rule_id = "diagnostics-disabled"
    rule_name = "Diagnostic settings disabled"
    severity = "High"
    tactics = ("DefenseEvasion",)
    techniques = ("T1562.008",)
    # Relates a setting to deletes of its resource and parents: all in one subscription.
    group_by = "subscription"
    planes = frozenset({"control"})
    state_attrs = ("pending", "deleted")
    Params = Params

    def __init__(self, params: Params, lateness: float) -> None:
        super().__init__(params, lateness)
        self.grace = params.grace_minutes * 60
        self.pending: dict[str, _Pending] = {}  # by EventUid of the delete
        self.deleted: dict[str, float] = {}  # resource id → delete time

    def applies(self, event: AccessEvent) -> bool:
        return (
            event.event_product == "Azure Resource Manager"
            and event.event_result == "Success"
            and event.event_type in {"Delete", "Disable"}
            and event.target_resource_id is not None
        )

    def observe(self, event: AccessEvent, time: float, ctx: DetectionContext) -> None:
        target = event.target_resource_id or ""
        if event.event_sub_type != DIAGNOSTIC_SETTINGS:
            self.deleted[target] = max(time, self.deleted.get(target, time))
            return
        monitored = diagnostic_setting_target(target) or target
        if event.event_type == "Disable":
            self._raise(event, time, monitored, ctx, turned_off=True)
        elif event.event_uid not in self.pending:
            self.pending[event.event_uid] = _Pending(time, event, monitored, ctx.arrival)

    def _explained(self, pending: _Pending) -> bool:
        for resource, when in self.deleted.items():
            if abs(when - pending.time) <= self.grace and (
                pending.monitored == resource or pending.monitored.startswith(resource + "/")
            ):
                return True
        return False

    def on_watermark(self, ctx: DetectionContext) -> None:
        self._settle(ctx, lambda p: ctx.watermark >= p.time + self.grace)

    def on_end(self, ctx: DetectionContext) -> None:
        self._settle(ctx, lambda p: True)

    def _settle(self, ctx: DetectionContext, due: Callable[[_Pending], bool]) -> None:
        for uid in sorted(u for u, p in self.pending.items() if due(p)):
            pending = self.pending.pop(uid)
            if not self._explained(pending):
                arrival_ctx = DetectionContext(ctx.book, ctx.watermark, pending.arrival)
                self._raise(pending.event, pending.time, pending.monitored, arrival_ctx)

    def _raise(
        self,
        event: AccessEvent,
        time: float,
        monitored: str,
        ctx: DetectionContext,
        *,
        turned_off: bool = False,
    ) -> None:
        setting = event.target_resource_id or monitored
        state = ctx.book.open_for(self.rule_id, setting, time, 3600)
        if state is None:
            state = ctx.book.open(
                self.rule_id,
                setting,
                anchor=event.event_uid,
                severity=self.severity,
                detected_at=ctx.arrival,
                window=(time, time),
            )
            state.extra.update(monitored=monitored, turned_off=turned_off, uids=set())
        if event.event_uid in state.extra["uids"]:
            return  # the same event again (a retried batch): nothing new
        state.extra["uids"].add(event.event_uid)
        state.add(time, event)
        ctx.book.changed(state)

    def expire(self, before: float) -> None:
        horizon = before - 2 * self.grace
        self.deleted = {r: t for r, t in self.deleted.items() if t >= horizon}

    def state_size(self) -> int:
        return len(self.pending) + len(self.deleted)

    def render(self, state: AlertState) -> Alert:
        who = actor_label(state)
        setting = (state.top_target or "").rsplit("/", 1)[-1]
        monitored = state.extra["monitored"]
        resource_name = monitored.rsplit("/", 1)[-1]
        if state.extra["turned_off"]:
            what = f"Diagnostic setting '{setting}' on {resource_name} was changed to send no logs"
            cascade = "A settings change is never a side effect of deleting the resource."
        else:
            what = f"Diagnostic setting '{setting}' was deleted from {resource_name}"
            cascade = (
                f"{resource_name} itself was not deleted within {round(self.grace / 60)} "
                "minutes, so this is not the cascade of a resource deletion."
            )
        reasons = [
            f"{what} by {who} at {hhmm(state.first_time)}.",
            cascade,
            "Audit logs of this resource no longer reach phiwatch or Sentinel: access to it "
            "goes unrecorded until the setting is restored.",
        ]
        return self.base_alert(
            state,
            title=f"{what} by {who}",
            description=(
                f"{what}. Turning off diagnostic logging is a known way to hide later "
                f"activity (MITRE T1562.008). Restore the setting on {monitored} and review "
                f"what {who} did next. Detected at {utc(state.first_time):%Y-%m-%d %H:%M} UTC."
            ),
            reasons=reasons,
        )


DETECTION = DiagnosticsDisabled
