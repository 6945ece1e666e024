"""What the patient-privacy detections share (issue #16): the stamps they read, the facts an
alert keeps, the phrases its reasons use, and the one rule the four relationship rules are.

The rules read only what normalise stamped on the event (phiwatch/privacy: the workforce
roster and the patient index in force when the record was read) and the ordinary event
fields: `access_explanation`, `patient_relation` and its basis (set only on unexplained
accesses, one relation per access by the precedence self > family > coworker > neighbour),
`patient_restricted` and `actor_employment_status`. None of them compares a name or an
address; a reason says what matched in words (BASIS_WORDS), never the values.

The relationship rules, `vip-record-access` and `terminated-user-access` raise one alert per
actor (and patient) and UTC day (kinds.Daily): a chart opened a hundred times in a day is one
alert whose counts grow, and the next day is a new alert.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from phiwatch.detect.alert_book import AlertState
from phiwatch.detect.detection import Detection, DetectionParams
from phiwatch.detect.grouping import actor_key, patient_key
from phiwatch.detect.kinds import Daily
from phiwatch.detect.kinds.daily import utc_day
from phiwatch.detect.snapshot import snapshot_class
from phiwatch.detect.times import hhmm
from phiwatch.model import AccessEvent, Alert, PatientRelation, Severity
from phiwatch.privacy.directory import BASIS_WORDS
from phiwatch.sources import fhir, keyvault, signins, sql, storage
from phiwatch.sources.fields import clean_identity

SOURCE_WORDS = {
    fhir.PRODUCT: "FHIR",
    sql.PRODUCT: "SQL",
    storage.PRODUCT: "Blob storage",
    keyvault.PRODUCT: "Key Vault",
}
# How a reason counts accesses by their explanation; "unknown": no patient in the event, or
# no patient index loaded to say.
EXPLANATION_WORDS = {
    "unexplained": "unexplained",
    "care-team": "by a member of the patient's care team",
    "allowed-application": "by an allow-listed application",
    "unknown": "with no patient explanation known",
}


class NoParams(DetectionParams):
    """The rule has no tunables: what it fires on is decided by the privacy inputs."""


@snapshot_class
@dataclass(slots=True)
class PrivacyAccessFacts:
    who: str  # the actor as its first event names it (an application has no UPN)
    day: str  # the UTC day the alert covers
    succeeded: int = 0
    refused: int = 0
    explanations: dict[str, int] = field(default_factory=dict)  # EXPLANATION_WORDS key → n
    bases: dict[str, int] = field(default_factory=dict)  # relation basis → accesses
    sources: dict[str, int] = field(default_factory=dict)  # event product → accesses


def actor_name(event: AccessEvent) -> str:
    name = event.actor_username or event.actor_user_id or event.acting_app_name
    return clean_identity(name or event.acting_app_id) or "an unnamed actor"


def new_facts(event: AccessEvent) -> PrivacyAccessFacts:
    return PrivacyAccessFacts(who=actor_name(event), day=utc_day(event.time_generated.timestamp()))


def _bump(counts: dict[str, int], key: str) -> None:
    counts[key] = counts.get(key, 0) + 1


def fold(facts: PrivacyAccessFacts, event: AccessEvent) -> None:
    if event.event_result == "Failure":
        facts.refused += 1
    else:
        facts.succeeded += 1
    _bump(facts.explanations, event.access_explanation or "unknown")
    if event.patient_relation_basis is not None:
        _bump(facts.bases, event.patient_relation_basis)
    _bump(facts.sources, event.event_product)


def is_patient_access(event: AccessEvent) -> bool:
    """A data-plane access to one patient's record, successful or refused alike: a refused
    attempt on a neighbour's chart is the same question to a privacy officer."""
    return event.patient_ref is not None and event.event_product != signins.PRODUCT


def is_unexplained(event: AccessEvent) -> bool:
    """Neither the care team nor an allow-listed application explains it. None (no patient
    index loaded) is not unexplained: these rules say nothing without the inputs."""
    return is_patient_access(event) and event.access_explanation == "unexplained"


def actor_and_patient(event: AccessEvent) -> str | None:
    actor, patient = actor_key(event), patient_key(event)
    return f"{actor}|{patient}" if actor and patient else None


def counted(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def outcomes(facts: PrivacyAccessFacts) -> str:
    if not facts.refused:
        return "all succeeded" if facts.succeeded > 1 else "it succeeded"
    if not facts.succeeded:
        return "all were refused" if facts.refused > 1 else "it was refused"
    were = "was" if facts.refused == 1 else "were"
    return f"{facts.succeeded} succeeded and {facts.refused} {were} refused"


def span(state: AlertState) -> str:
    return f"between {hhmm(state.first_time)} and {hhmm(state.last_time)}"


def the_patient(state: AlertState) -> str:
    """The patient as alerts name one: the pseudonym (PatientRef), never an identifier."""
    return f"patient {min(state.patients)}" if state.patients else "the patient"


def basis_words(facts: PrivacyAccessFacts) -> str:
    """What matched, in words, most accesses first (a roster change mid-day can give two)."""
    words: dict[str, str] = {str(basis): text for basis, text in BASIS_WORDS.items()}
    bases = sorted(facts.bases, key=lambda b: (-facts.bases[b], b))
    return "; ".join(words[b] for b in bases if b in words)


def explanation_words(facts: PrivacyAccessFacts) -> str:
    counts = facts.explanations
    return ", ".join(
        f"{counts[key]} {words}" for key, words in EXPLANATION_WORDS.items() if counts.get(key)
    )


class DailyPrivacyRule(Detection[NoParams]):
    """A privacy rule whose alerts are one per actor (and patient, `per_patient`) and UTC
    day, each access folded into PrivacyAccessFacts. Subclasses say what `applies`."""

    per_patient: ClassVar[bool] = True
    tactics: ClassVar[tuple[str, ...]] = ("Collection",)
    techniques: ClassVar[tuple[str, ...]] = ("T1213",)  # Data from Information Repositories
    group_by = "actor"
    planes = frozenset({"data"})
    Params = NoParams
    Facts = PrivacyAccessFacts

    def declare(self) -> Daily:
        return Daily(
            where=lambda event: True,
            facts=new_facts,
            alert_key=actor_and_patient if self.per_patient else None,
            fold=fold,
            severity=self.severity_of,
        )

    def severity_of(self, facts: PrivacyAccessFacts) -> Severity:
        return self.severity


class RelationshipRule(DailyPrivacyRule):
    """An unexplained access by an employee to the record of someone they are related to
    (`relation`, as the patient index and the workforce roster say): one alert per actor,
    patient and UTC day. Subclasses name the relation and its words."""

    relation: ClassVar[PatientRelation]
    whose: ClassVar[str]  # in titles: "a coworker's" (patient record)
    record: ClassVar[str]  # in reasons: "the record of a coworker"
    why_wrong: ClassVar[str]  # the description's policy sentence

    def applies(self, event: AccessEvent) -> bool:
        return event.patient_relation == self.relation and is_unexplained(event)

    def render(self, state: AlertState) -> Alert:
        facts: PrivacyAccessFacts = state.facts
        who, n = facts.who, state.event_count
        unexplained = facts.explanations.get("unexplained", 0)
        reasons = [
            f"{who} accessed {self.record} ({the_patient(state)}) {times(n)} on "
            f"{facts.day} UTC, {span(state)}: {outcomes(facts)}.",
            f"The relationship: {basis_words(facts)} (workforce roster and patient index).",
            f"Unexplained accesses: {unexplained} of {n}; the actor is not on the patient's "
            "care team, and no allow-listed application made them.",
            "Check first: a documented work reason (a referral, a shift on the patient's "
            "ward), then what was viewed, with the privacy officer; re-identify the patient "
            "from the pseudonym only through the archive.",
        ]
        return self.base_alert(
            state,
            title=f"{who} opened {self.whose} patient record",
            description=(
                f"{who} opened {self.record} on {facts.day} (UTC), and neither the "
                f"patient's care team nor an allow-listed application explains it. "
                f"{self.why_wrong}"
            ),
            reasons=reasons,
        )
