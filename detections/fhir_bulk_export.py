"""fhir-bulk-export: a FHIR bulk export by a principal not on the export allow-list, or
`$everything` over many patients by one actor.

Two ways out of a FHIR store in bulk, one incident per actor:

* a `$export` kick-off (sub-type `export`; `/_operations/export/<id>` status polls are
  `export-status` and never start one) by a principal in neither `export_allow` list entry
  (object id or application id): system level (`/$export`) High, `Patient/$export` or
  `Group/<id>/$export` Medium. Its status polls enrich the alert (the job was followed to its
  manifest), never multiply it;
* `$everything` (a patient's whole record) over at least `everything_patients` distinct
  patients within `everything_window_minutes` by one actor: Medium.

Both are the same RuleId because both are the same question to an analyst (who took the
store out in bulk); an actor who does both raises one alert, High when a system export is in it.
The allow-list applies to `$export` only: sanctioned exporters are configured apps, while
`$everything` over many patients is unusual for anyone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import Field

from phiwatch.detect.alert_book import AlertState
from phiwatch.detect.context import DetectionContext, RuleInfo
from phiwatch.detect.detection import Detection, DetectionParams, actor_label
from phiwatch.detect.grouping import key_of
from phiwatch.detect.kinds import StatefulRule
from phiwatch.detect.kinds.base import Fired, count_in, enrich, open_alert
from phiwatch.detect.snapshot import snapshot_class
from phiwatch.detect.times import hhmm, window_anchor
from phiwatch.detect.windows import KeyedWindows
from phiwatch.model import AccessEvent, Alert, Severity
from phiwatch.sources import fhir

GAP = 3600.0  # events of one actor within an hour of its alert join it


class Params(DetectionParams):
    export_allow: tuple[str, ...] = Field(
        default=(), description="object or app ids allowed to run $export"
    )
    everything_patients: int = Field(default=5, ge=2, le=10_000)
    everything_window_minutes: float = Field(default=60, gt=0, le=24 * 60)


@snapshot_class
@dataclass(slots=True)
class BulkExportFacts:
    everything_patients: int  # the threshold in force when the alert opened
    everything_minutes: float
    exports: dict[str, int] = field(default_factory=dict)  # "system"/"Patient"/"Group" → n
    polls: int = 0
    everything: int = 0  # $everything calls in the alert


@snapshot_class
@dataclass(slots=True)
class BulkExportState:
    width: float
    fired: Fired = field(default_factory=Fired)
    windows: KeyedWindows | None = None  # $everything per actor: (time, uid, patient)

    def everything(self) -> KeyedWindows:
        if self.windows is None or self.windows.width != self.width:
            windows = self.windows or KeyedWindows(self.width)
            windows.width = self.width
            self.windows = windows
        return self.windows


def export_level(event: AccessEvent) -> str:
    """`system`, `Patient` or `Group` from the object (`$export`, `Patient/$export`,
    `Group/{id}/$export`; the query after `?` ignored)."""
    first = (event.object or "").split("?", 1)[0].split("/", 1)[0]
    return first if first in {"Patient", "Group"} else "system"


def is_kickoff(event: AccessEvent) -> bool:
    return event.event_sub_type == "export" and event.event_result == "Success"


def is_poll(event: AccessEvent) -> bool:
    return event.event_sub_type == "export-status"


def is_everything(event: AccessEvent) -> bool:
    return (
        event.event_sub_type == "everything"
        and event.event_result == "Success"
        and event.patient_ref is not None
    )


def severity_of(facts: BulkExportFacts) -> Severity:
    return "High" if facts.exports.get("system") else "Medium"


class FhirBulkExport(Detection[Params]):
    rule_id = "fhir-bulk-export"
    rule_name = "FHIR bulk export"
    severity = "High"  # the highest it raises; each alert's own follows its evidence
    tactics = ("Collection", "Exfiltration")
    techniques = ("T1530", "T1567")
    group_by = "actor"
    planes = frozenset({"data"})
    products = frozenset({fhir.PRODUCT})
    Params = Params
    Facts = BulkExportFacts

    def applies(self, event: AccessEvent) -> bool:
        return event.event_product == fhir.PRODUCT and (
            is_kickoff(event) or is_poll(event) or is_everything(event)
        )

    def allowed(self, event: AccessEvent) -> bool:
        allow = self.params.export_allow
        return bool(allow) and any(
            i in allow for i in (event.actor_user_id, event.acting_app_id) if i
        )

    def new_facts(self) -> BulkExportFacts:
        return BulkExportFacts(
            self.params.everything_patients, self.params.everything_window_minutes
        )

    def declare(self) -> StatefulRule:
        width = self.params.everything_window_minutes * 60
        return StatefulRule(
            state=lambda: BulkExportState(width),
            step=self.step,
            drop_before=self.drop_before,
            measure=lambda s: len(s.fired) + len(s.everything()),
        )

    def drop_before(self, state: BulkExportState, before: float) -> None:
        state.fired.expire(before)
        state.everything().expire(before)

    def step(
        self,
        rule: RuleInfo,
        state: BulkExportState,
        event: AccessEvent,
        time: float,
        ctx: DetectionContext,
    ) -> None:
        key = key_of(rule.group_by, event)
        if key is None:
            return
        if is_everything(event):
            self._everything(rule, state, key, event, time, ctx)
            return
        if self.allowed(event) or not state.fired.first(event.event_uid, time):
            return
        if is_poll(event):
            alert = ctx.book.open_for(rule.rule_id, key, time, GAP)
            if alert is not None and enrich(rule, ctx, key, event, time, GAP):
                alert.facts.polls += 1
            return
        level = export_level(event)
        if not enrich(rule, ctx, key, event, time, GAP):
            open_alert(rule, ctx, key, event, time, anchor=event.event_uid, facts=self.new_facts())
        alert = ctx.book.open_for(rule.rule_id, key, time, GAP)
        if alert is not None:
            alert.facts.exports[level] = alert.facts.exports.get(level, 0) + 1
            alert.severity = severity_of(alert.facts)

    def _everything(
        self,
        rule: RuleInfo,
        state: BulkExportState,
        key: str,
        event: AccessEvent,
        time: float,
        ctx: DetectionContext,
    ) -> None:
        width = state.width
        horizon = ctx.watermark - rule.lateness
        window = count_in(state.everything(), key, event, time, event.patient_ref, horizon)
        if window is None:
            return  # redelivered
        alert = ctx.book.open_for(rule.rule_id, key, time, GAP)
        if alert is not None:
            enrich(rule, ctx, key, event, time, GAP)
            alert.facts.everything += 1
            return
        need = self.params.everything_patients
        for start, end in ((time - width, time), (time - 1e-6, time + width)):
            entries = window.span(start, end)
            if len({kept[0] for _, _, kept in entries}) < need:
                continue
            alert = open_alert(
                rule,
                ctx,
                key,
                event,
                time,
                anchor=window_anchor(time, width),
                facts=self.new_facts(),
                entries=entries,
                window=(entries[0][0], entries[-1][0]),
            )
            alert.facts.everything = len(entries)
            alert.severity = severity_of(alert.facts)
            return

    def render(self, state: AlertState) -> Alert:
        facts: BulkExportFacts = state.facts
        who = actor_label(state)
        service = (state.top_target or "").rsplit("/", 1)[-1] or "a FHIR service"
        levels = sorted(facts.exports, key=lambda lv: (lv != "system", lv))
        reasons: list[str] = []
        if facts.exports:
            kinds = ", ".join(
                f"{'system-level' if lv == 'system' else lv + '-level'} x{facts.exports[lv]}"
                for lv in levels
            )
            reasons.append(
                f"Started a FHIR bulk $export on {service} at {hhmm(state.first_time)} "
                f"({kinds}); {who} is not on the export allow-list "
                f"({len(self.params.export_allow)} principal(s) configured)."
            )
            if "system" in facts.exports:
                reasons.append(
                    "A system-level export copies every resource of every patient in the "
                    "store, so severity is High."
                )
            if facts.polls:
                reasons.append(
                    f"Then polled the export job's status {facts.polls} time(s): the job "
                    "was followed towards its download manifest."
                )
        if facts.everything and not facts.exports:
            reasons.append(
                f"Called $everything for {len(state.patients)} distinct patients "
                f"({facts.everything} call(s)); the threshold is "
                f"{facts.everything_patients} patients within "
                f"{round(facts.everything_minutes)} minutes, where a chart transfer "
                "needs one or two."
            )
        elif facts.everything:
            reasons.append(
                f"Also called $everything for {len(state.patients)} distinct patient(s) "
                "while the export was open."
            )
        reasons.append(
            "Check first whether this principal runs a sanctioned export (a research or "
            "payer feed), then where the NDJSON files were written and who read them."
        )
        if facts.exports:
            what = (
                "System-level FHIR bulk export"
                if "system" in facts.exports
                else ("FHIR bulk export")
            )
        else:
            what = f"FHIR $everything over {len(state.patients)} patients"
        return self.base_alert(
            state,
            title=f"{what} by {who} on {service}",
            description=(
                f"{who} took patient data out of {service} in bulk between "
                f"{hhmm(state.first_time)} and {hhmm(state.last_time)}. Bulk export and "
                "$everything return whole records at once (MITRE T1530); confirm the "
                "purpose and the destination of the data."
            ),
            reasons=reasons,
        )


DETECTION = FhirBulkExport
