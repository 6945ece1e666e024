"""mass-record-access: one actor opens many distinct patients' records in a short time.

value_count: distinct `PatientRef` per actor over a sliding event-time window, successful
terminal reads only. A burst raises one alert; later reads in the same burst enrich it.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from phiwatch.detect.alert_book import AlertState
from phiwatch.detect.detection import Detection, DetectionParams, actor_label
from phiwatch.detect.kinds import ValueCount
from phiwatch.detect.snapshot import snapshot_class
from phiwatch.detect.times import hhmm
from phiwatch.model import AccessEvent, Alert


class Params(DetectionParams):
    threshold: int = Field(default=50, ge=1, description="alert above this many patients")
    window_minutes: float = Field(default=10, gt=0)


@snapshot_class
@dataclass(slots=True)
class MassAccessFacts:
    threshold: int  # in force when the alert opened


class MassRecordAccess(Detection[Params]):
    rule_id = "mass-record-access"
    rule_name = "Mass patient record access"
    severity = "High"
    tactics = ("Collection", "Exfiltration")
    techniques = ("T1530", "T1213")
    group_by = "actor"
    planes = frozenset({"data"})
    Params = Params
    Facts = MassAccessFacts

    def applies(self, event: AccessEvent) -> bool:
        return (
            event.patient_ref is not None
            and event.event_type == "Read"
            and event.event_result == "Success"
        )

    def declare(self) -> ValueCount:
        params = self.params
        return ValueCount(
            window=params.window_minutes * 60,
            at_least=params.threshold + 1,
            distinct=lambda event: event.patient_ref,
            facts=lambda event: MassAccessFacts(threshold=params.threshold),
        )

    def render(self, state: AlertState) -> Alert:
        facts: MassAccessFacts = state.facts
        who = actor_label(state)
        minutes = max(1, round((state.last_time - state.first_time) / 60))
        width = round(self.params.window_minutes * 60 / 60)
        patients = len(state.patients)
        reasons = [
            f"Opened {patients} distinct patients' records between {hhmm(state.first_time)} "
            f"and {hhmm(state.last_time)} ({minutes} min); the threshold is "
            f"{facts.threshold} patients in any {width}-minute window.",
            f"All {state.event_count} counted reads succeeded; failed reads and "
            "non-patient resources are not counted.",
        ]
        if len(state.src_ips) == 1:
            reasons.append(f"Every read came from one source address, {state.top_ip}.")
        elif state.src_ips:
            reasons.append(f"Reads came from {len(state.src_ips)} source addresses.")
        return self.base_alert(
            state,
            title=f"Mass patient record access by {who}: {patients} patients in {minutes} min",
            description=(
                f"{who} read the records of {patients} distinct patients within {minutes} "
                f"minutes, above the threshold of {facts.threshold} per {width} "
                "minutes. Confirm a treatment or operational reason; otherwise treat it as "
                "possible snooping or exfiltration of PHI."
            ),
            reasons=reasons,
        )


DETECTION = MassRecordAccess
