"""diagnostics-disabled: audit logging of a monitored resource was switched off.

A successful diagnostic-settings delete, or a write that leaves no log category enabled,
stops the very logs phiwatch and Sentinel depend on (HIPAA 164.312(b)). Deleting a resource
deletes its diagnostic settings too, so a delete explained by the resource itself (or a
parent, such as its resource group) being deleted within the grace period is not an alert.
So a delete is an absence rule (it fires once event time has moved past the grace period
without such a deletion), and a write that turns logging off is a single-event match.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from phiwatch.detect.alert_book import AlertState
from phiwatch.detect.detection import Detection, DetectionParams, actor_label
from phiwatch.detect.kinds import Absence, SingleEvent
from phiwatch.detect.snapshot import snapshot_class
from phiwatch.detect.times import hhmm, utc
from phiwatch.model import AccessEvent, Alert
from phiwatch.sources import activity
from phiwatch.sources.activity import DIAGNOSTIC_SETTINGS, diagnostic_setting_target


class Params(DetectionParams):
    grace_minutes: float = Field(default=10, gt=0)


@snapshot_class
@dataclass(slots=True)
class DiagnosticsFacts:
    monitored: str  # the resource whose logs the setting sent
    turned_off: bool  # a write that left no category enabled (else: a delete)


def is_setting(event: AccessEvent) -> bool:
    return event.event_sub_type == DIAGNOSTIC_SETTINGS


def monitored(event: AccessEvent) -> str:
    target = event.target_resource_id or ""
    return diagnostic_setting_target(target) or target


def setting_deleted(event: AccessEvent) -> str | None:
    return monitored(event) if is_setting(event) and event.event_type == "Delete" else None


def resource_deleted(event: AccessEvent) -> str | None:
    return None if is_setting(event) else event.target_resource_id


def deletion_explains(deleted: str, resource: str) -> bool:
    return resource == deleted or resource.startswith(deleted + "/")


def setting_of(event: AccessEvent) -> str:
    return event.target_resource_id or monitored(event)


class DiagnosticsDisabled(Detection[Params]):
    rule_id = "diagnostics-disabled"
    rule_name = "Diagnostic settings disabled"
    severity = "High"
    tactics = ("DefenseEvasion",)
    techniques = ("T1562.008",)
    # Relates a setting to deletes of its resource and parents: all in one subscription.
    group_by = "subscription"
    planes = frozenset({"control"})
    products = frozenset({activity.PRODUCT})
    Params = Params
    Facts = DiagnosticsFacts

    def applies(self, event: AccessEvent) -> bool:
        return (
            event.event_product == activity.PRODUCT
            and event.event_result == "Success"
            and event.event_type in {"Delete", "Disable"}
            and event.target_resource_id is not None
        )

    def declare(self) -> tuple[Absence, SingleEvent]:
        params = self.params
        return (
            Absence(
                grace=params.grace_minutes * 60,
                expect=setting_deleted,
                shows=resource_deleted,
                explains=deletion_explains,
                alert_key=setting_of,
                facts=lambda event: DiagnosticsFacts(monitored(event), turned_off=False),
            ),
            SingleEvent(
                where=lambda event: is_setting(event) and event.event_type == "Disable",
                alert_key=setting_of,
                facts=lambda event: DiagnosticsFacts(monitored(event), turned_off=True),
            ),
        )

    def render(self, state: AlertState) -> Alert:
        facts: DiagnosticsFacts = state.facts
        who = actor_label(state)
        setting = (state.top_target or "").rsplit("/", 1)[-1]
        resource_name = facts.monitored.rsplit("/", 1)[-1]
        if facts.turned_off:
            what = f"Diagnostic setting '{setting}' on {resource_name} was changed to send no logs"
            cascade = "A settings change is never a side effect of deleting the resource."
        else:
            grace = self.params.grace_minutes * 60
            what = f"Diagnostic setting '{setting}' was deleted from {resource_name}"
            cascade = (
                f"{resource_name} itself was not deleted within {round(grace / 60)} "
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
                f"activity (MITRE T1562.008). Restore the setting on {facts.monitored} and "
                f"review what {who} did next. Detected at "
                f"{utc(state.first_time):%Y-%m-%d %H:%M} UTC."
            ),
            reasons=reasons,
        )


DETECTION = DiagnosticsDisabled
