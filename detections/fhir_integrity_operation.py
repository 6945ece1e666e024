"""fhir-integrity-operation: a FHIR operation that rewrites or removes records in bulk.

`$import` loads resources into the store (it can overwrite), `$bulk-delete` removes every
resource a search matches, `$purge-history` erases a resource's earlier versions (the
record of what a chart said before). Each is a rare administrative job and a way to tamper
with or destroy health records (HIPAA 164.312(c), integrity), so any accepted one is an
alert: a single-event match per actor; further operations of the same actor within the
hour enrich it. Job status polls (`import-status`, `bulk-delete-status`) are not the job.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from phiwatch.detect.alert_book import AlertState
from phiwatch.detect.context import DetectionContext, RuleInfo
from phiwatch.detect.detection import Detection, DetectionParams, actor_label
from phiwatch.detect.grouping import key_of
from phiwatch.detect.kinds import StatefulRule
from phiwatch.detect.kinds.base import Fired, enrich, open_alert
from phiwatch.detect.snapshot import snapshot_class
from phiwatch.detect.times import hhmm
from phiwatch.model import AccessEvent, Alert
from phiwatch.sources import fhir

OPERATIONS = {
    "import": "$import (loads resources, may overwrite)",
    "bulk-delete": "$bulk-delete (removes every matching resource)",
    "purge-history": "$purge-history (erases earlier versions)",
}
GAP = 3600.0  # operations of one actor within an hour of its alert join it


class Params(DetectionParams):
    pass


@snapshot_class
@dataclass(slots=True)
class IntegrityFacts:
    operations: dict[str, int] = field(default_factory=dict)  # sub-type → count


def step(
    rule: RuleInfo, fired: Fired, event: AccessEvent, time: float, ctx: DetectionContext
) -> None:
    """Single-event suppression (kinds.base.raise_once) that also counts the sub-types."""
    key = key_of(rule.group_by, event)
    if key is None or not fired.first(event.event_uid, time):
        return
    if not enrich(rule, ctx, key, event, time, GAP, stretch=False):
        open_alert(rule, ctx, key, event, time, anchor=event.event_uid, facts=IntegrityFacts())
    alert = ctx.book.open_for(rule.rule_id, key, time, GAP)
    if alert is not None and event.event_sub_type:
        ops = alert.facts.operations
        ops[event.event_sub_type] = ops.get(event.event_sub_type, 0) + 1


class FhirIntegrityOperation(Detection[Params]):
    rule_id = "fhir-integrity-operation"
    rule_name = "FHIR bulk import, bulk delete or history purge"
    severity = "High"
    tactics = ("Impact",)
    techniques = ("T1485", "T1565.001")
    group_by = "actor"
    planes = frozenset({"data"})
    products = frozenset({fhir.PRODUCT})
    Params = Params
    Facts = IntegrityFacts

    def applies(self, event: AccessEvent) -> bool:
        return (
            event.event_product == fhir.PRODUCT
            and event.event_sub_type in OPERATIONS
            and event.event_result == "Success"
        )

    def declare(self) -> StatefulRule:
        return StatefulRule(state=Fired, step=step, drop_before=lambda s, before: s.expire(before))

    def render(self, state: AlertState) -> Alert:
        who = actor_label(state)
        service = (state.top_target or "").rsplit("/", 1)[-1] or "a FHIR service"
        subtypes = sorted(state.facts.operations) if state.facts.operations else []
        what = ", ".join(OPERATIONS[s] for s in subtypes) or "a bulk FHIR operation"
        reasons = [
            f"{who} ran {what} on {service}; {state.event_count} accepted request(s) "
            f"between {hhmm(state.first_time)} and {hhmm(state.last_time)}.",
            "These operations change or destroy stored health records in bulk and are not "
            "part of clinical use; their status polls are not counted.",
            "Check first whether a change ticket covers it, then compare the store's "
            "resource counts and restore from backup if the operation was not planned.",
        ]
        return self.base_alert(
            state,
            title=f"FHIR {', '.join('$' + s for s in subtypes) or 'bulk operation'} by {who} "
            f"on {service}",
            description=(
                f"{who} ran {what} on {service}. Bulk import, bulk delete and history "
                "purge can rewrite or erase patient records (MITRE T1485, T1565); confirm "
                "it was an approved administrative job."
            ),
            reasons=reasons,
        )


DETECTION = FhirIntegrityOperation
