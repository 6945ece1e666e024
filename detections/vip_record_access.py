"""vip-record-access: a restricted (VIP) patient's record opened without an explanation.

The patient index flags the record restricted (a public figure, a board member, staff who
asked for it, a patient under protection) and the access is unexplained: the actor is not on
the patient's care team and no allow-listed application made it. High. It fires besides any
relationship rule the same access raises (a coworker who is also a VIP is two questions).
One alert per actor, patient and UTC day, successful and refused accesses alike.
"""

from __future__ import annotations

from phiwatch.detect.alert_book import AlertState
from phiwatch.detect.privacy_rules import (
    DailyPrivacyRule,
    PrivacyAccessFacts,
    basis_words,
    is_unexplained,
    outcomes,
    span,
    the_patient,
    times,
)
from phiwatch.model import AccessEvent, Alert


class VipRecordAccess(DailyPrivacyRule):
    rule_id = "vip-record-access"
    rule_name = "Restricted patient record opened without a care relationship"
    severity = "High"

    def applies(self, event: AccessEvent) -> bool:
        return event.patient_restricted is True and is_unexplained(event)

    def render(self, state: AlertState) -> Alert:
        facts: PrivacyAccessFacts = state.facts
        who, n = facts.who, state.event_count
        reasons = [
            f"{who} accessed a restricted record ({the_patient(state)}) {times(n)} on "
            f"{facts.day} UTC, {span(state)}: {outcomes(facts)}.",
            "The patient index marks the record restricted (VIP): it is opened by the "
            "patient's care team only.",
            f"Unexplained accesses: {facts.explanations.get('unexplained', 0)} of {n}; the "
            "actor is not on the patient's care team, and no allow-listed application made "
            "them.",
        ]
        if facts.bases:
            reasons.append(
                f"The actor is also related to the patient ({basis_words(facts)}): the "
                "relationship rule raises its own alert."
            )
        reasons.append(
            "Check first: whether the actor was covering the patient's care (a shift, a "
            "consult, registration), then what was viewed, with the privacy officer."
        )
        return self.base_alert(
            state,
            title=f"{who} opened a restricted patient record",
            description=(
                f"{who} opened a restricted (VIP) patient record on {facts.day} (UTC) without "
                "being on the patient's care team. Restricted records draw curiosity (a "
                "celebrity admitted, a colleague's confidential treatment) and their "
                "disclosure is the most damaging; confirm a treatment reason."
            ),
            reasons=reasons,
        )


DETECTION = VipRecordAccess
