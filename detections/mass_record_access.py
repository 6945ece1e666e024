"""mass-record-access: one actor opens many distinct patients' records in a short time.

value_count (Sigma vocabulary): distinct `PatientRef` per actor over a sliding event-time
window, successful terminal reads only. A burst raises one alert; later reads in the same
burst enrich it.
"""

from __future__ import annotations

from pydantic import Field

from phiwatch.detect.alert_book import AlertState
from phiwatch.detect.detection import (
    Detection,
    DetectionContext,
    DetectionParams,
    actor_key,
    actor_label,
    hhmm,
    window_anchor,
)
from phiwatch.detect.windows import KeyedWindows
from phiwatch.model import AccessEvent, Alert


class Params(DetectionParams):
    threshold: int = Field(default=50, ge=1, description="alert above this many patients")
    window_minutes: float = Field(default=10, gt=0)


class MassRecordAccess(Detection):
    rule_id = "mass-record-access"
    rule_name = "Mass patient record access"
    severity = "High"
    tactics = ("Collection", "Exfiltration")
    techniques = ("T1530", "T1213")
    group_by = "actor"
    planes = frozenset({"data"})
    state_attrs = ("windows",)
    Params = Params

    def __init__(self, params: Params, lateness: float) -> None:
        super().__init__(params, lateness)
        self.threshold = params.threshold
        self.width = params.window_minutes * 60
        self.windows = KeyedWindows(self.width)

    def applies(self, event: AccessEvent) -> bool:
        return (
            event.patient_ref is not None
            and event.event_type == "Read"
            and event.event_result == "Success"
        )

    def observe(self, event: AccessEvent, time: float, ctx: DetectionContext) -> None:
        key = actor_key(event)
        if key is None:
            return
        window = self.windows.window(key, time, ctx.watermark - self.lateness)
        kept = (event.patient_ref, event.src_ip_addr, event.target_resource_id)
        if not window.add(time, event.event_uid, kept):
            return  # redelivered: already counted
        open_alert = ctx.book.open_for(self.rule_id, key, time, self.width)
        if open_alert is not None:
            open_alert.add(time, event)
            open_alert.window_end = max(open_alert.window_end, time)
            ctx.book.changed(open_alert)
            return
        # In-order arrival only needs the window ending now; a late event may instead
        # complete the window that starts with it.
        for start, end in ((time - self.width, time), (time - 1e-6, time + self.width)):
            if window.count(start, end) <= self.threshold:
                continue  # fewer reads than the threshold cannot be more patients
            entries = window.span(start, end)
            patients = {kept[0] for _, _, kept in entries}
            if len(patients) > self.threshold:
                self._open(key, entries, event, time, ctx)
                return

    def _open(
        self, key: str, entries: list, event: AccessEvent, time: float, ctx: DetectionContext
    ) -> None:
        state = ctx.book.open(
            self.rule_id,
            key,
            anchor=window_anchor(time, self.width),
            severity=self.severity,
            detected_at=ctx.arrival,
            window=(entries[0][0], entries[-1][0]),
        )
        state.extra["threshold"] = self.threshold
        # The burst so far is the evidence: every read in the window joins the alert.
        for entry_time, uid, (patient, ip, target) in entries:
            if uid != event.event_uid:
                state.add_entry(entry_time, uid, patient=patient, ip=ip, target=target)
        state.add(time, event)

    def expire(self, before: float) -> None:
        self.windows.expire(before)

    def state_size(self) -> int:
        return len(self.windows)

    def render(self, state: AlertState) -> Alert:
        who = actor_label(state)
        minutes = max(1, round((state.last_time - state.first_time) / 60))
        width = round(self.width / 60)
        patients = len(state.patients)
        reasons = [
            f"Opened {patients} distinct patients' records between {hhmm(state.first_time)} "
            f"and {hhmm(state.last_time)} ({minutes} min); the threshold is "
            f"{state.extra['threshold']} patients in any {width}-minute window.",
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
                f"minutes, above the threshold of {state.extra['threshold']} per {width} "
                "minutes. Confirm a treatment or operational reason; otherwise treat it as "
                "possible snooping or exfiltration of PHI."
            ),
            reasons=reasons,
        )


DETECTION = MassRecordAccess
