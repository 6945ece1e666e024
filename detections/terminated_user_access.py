"""terminated-user-access: an identity past its termination date accesses data.

The workforce roster records the actor terminated at the event's time (past its
termination date, or marked terminated): any data-plane access by it (FHIR, SQL, Blob
storage, Key Vault; successful or refused) fires. Tokens and sessions outlive the account's
disablement, and a leaver's scripts and shared secrets keep working, so every access counts:
one by the care team or through an allow-listed application too, since a terminated identity
has no care role left. Sign-ins are not data accesses and are not counted. High. One alert
per actor and UTC day.
"""

from __future__ import annotations

from phiwatch.detect.alert_book import AlertState
from phiwatch.detect.privacy_rules import (
    SOURCE_WORDS,
    DailyPrivacyRule,
    PrivacyAccessFacts,
    counted,
    explanation_words,
    outcomes,
    span,
)
from phiwatch.model import AccessEvent, Alert
from phiwatch.sources import signins


class TerminatedUserAccess(DailyPrivacyRule):
    rule_id = "terminated-user-access"
    rule_name = "Data accessed by a terminated identity"
    severity = "High"
    tactics = ("InitialAccess", "Collection")
    techniques = ("T1078", "T1213")  # Valid Accounts (a leaver's); the EHR's data
    per_patient = False  # one alert per actor and day, whatever it opened

    def applies(self, event: AccessEvent) -> bool:
        return (
            event.actor_employment_status == "terminated" and event.event_product != signins.PRODUCT
        )

    def render(self, state: AlertState) -> Alert:
        facts: PrivacyAccessFacts = state.facts
        who, n = facts.who, state.event_count
        named = [(SOURCE_WORDS.get(p, p), n) for p, n in facts.sources.items()]
        sources = ", ".join(f"{w} x{n}" for w, n in sorted(named, key=lambda i: (-i[1], i[0])))
        reasons = [
            f"The workforce roster records {who} as terminated at the time of these "
            f"accesses: {counted(n, 'data-plane access')} on {facts.day} UTC, {span(state)} "
            f"({sources}); {outcomes(facts)}.",
            "A terminated identity has no role left: every access counts, also one by the "
            "patient's care team or through an allow-listed application.",
        ]
        if state.patients:
            reasons.append(
                f"{counted(len(state.patients), 'patient record')} opened; accesses "
                f"{explanation_words(facts)}."
            )
        reasons.append(
            "Check first: disable the identity and revoke its sessions and refresh tokens, "
            "rotate the secrets and keys it held, then list what it read."
        )
        return self.base_alert(
            state,
            title=f"Terminated identity {who} accessed data",
            description=(
                f"{who} accessed data {counted(n, 'time')} on {facts.day} (UTC) after its "
                "termination. Tokens outlive the account's disablement; treat it as an "
                "unauthorised access by a former workforce member until shown otherwise."
            ),
            reasons=reasons,
        )


DETECTION = TerminatedUserAccess
