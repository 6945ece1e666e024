"""`phiwatch report patient`: every archived access to one patient's record in a range
(HIPAA 164.528, accounting of disclosures), after verifying the archive for the range.

The patient is found by `PatientRef`, computed with the tenant's Pseudonymizer exactly as
the FHIR normaliser computes it (sources/fhir.py): the FHIR logical id in the namespace of
the service's ARM resource id (any case), and a business identifier (`SYSTEM|VALUE`) in its
system's namespace, as a search by identifier is pseudonymised. An event names at most one
patient (a search over several is one event per patient), so keeping events by `PatientRef`
keeps no other patient's access; and what an access was is shown with every other
patient's pseudonym in it replaced (`{other}`), never the search string itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from phiwatch.archive.signer import PublicKey
from phiwatch.archive.store import ObjectStore
from phiwatch.pseudonym import Pseudonymizer
from phiwatch.reports.render import Table, to_csv, to_html
from phiwatch.reports.source import alerts, events, verify_range
from phiwatch.reports.timespec import TimeRange
from phiwatch.sources.fhir import namespace_of
from phiwatch.sources.fhir_uri import identifier_namespace, parse_fhir_uri

# The fields of each access, in the order the issue lists them (JSON keys as the archive's).
ACCESS_FIELDS = (
    "TimeGenerated",
    "ActorUserId",
    "ActorUsername",
    "ActingAppId",
    "Operation",
    "EventResult",
    "SrcIpAddr",
    "EventUid",
    "RawRecordRef",
)
NOT_RECORDED = "not recorded"
# The accounting's columns: 164.528(b)(2)'s date, recipient (who viewed, and the person an
# application said it acted for), what, and purpose, plus where to find the record.
DISCLOSURE_FIELDS = (
    "Date",
    "WhoViewed",
    "ActorUserId",
    "OnBehalfOf",
    "ActingApp",
    "What",
    "Product",
    "Result",
    "Purpose",
    "SourceAddress",
    "EventUid",
    "RawRecordRef",
)
_PATIENT_REF = re.compile(r"pr_[0-9a-f]{32}")


def fhir_id_ref(pseudonymizer: Pseudonymizer, service_id: str, fhir_id: str) -> str:
    """The PatientRef events carry for `fhir_id` on the service `service_id` (ARM id)."""
    return pseudonymizer.patient_ref(namespace_of(service_id), fhir_id)


def identifier_refs(pseudonymizer: Pseudonymizer, identifier: str) -> list[str]:
    """The PatientRefs a search by this `SYSTEM|VALUE` identifier gives: the identifier's
    own (its system's namespace), parsed by the very code that parses a logged search, and
    the system-less one (`identifier=VALUE`, `|VALUE`), a search by the same value.
    Empty when the text is no identifier."""
    parsed = parse_fhir_uri("Patient?identifier=" + quote(identifier, safe=""))
    refs = [pseudonymizer.patient_ref(ns, value) for ns, value in parsed.identifiers]
    refs += [pseudonymizer.patient_ref(identifier_namespace(""), v) for _, v in parsed.identifiers]
    return list(dict.fromkeys(refs))


@dataclass
class PatientReport:
    patient: str
    refs: list[str]
    range: TimeRange
    verified: bool
    problems: list[str]
    accesses: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The JSON object issue 17 specifies, and nothing more."""
        return {
            "patient": self.patient,
            "range": self.range.as_dict(),
            "verified": self.verified,
            "problems": self.problems,
            "accesses": [{k: a.get(k) for k in ACCESS_FIELDS} for a in self.accesses],
            "alerts": self.alerts,
        }

    def disclosure_rows(self) -> list[dict[str, str]]:
        """The accounting's rows (164.528(b)(2)): date, who received or viewed, what,
        purpose (from the FHIR audit headers when the caller sent one)."""
        return [disclosure_row(a, set(self.refs)) for a in self.accesses]

    def to_csv(self) -> str:
        return to_csv(DISCLOSURE_FIELDS, [list(r.values()) for r in self.disclosure_rows()])

    def to_html(self) -> str:
        rows = [list(r.values()) for r in self.disclosure_rows()]
        summary = [
            ("Patient (pseudonym)", self.patient),
            ("Also searched as", ", ".join(self.refs[1:]) or "-"),
            ("Range", f"{self.range.as_dict()['since']} to {self.range.as_dict()['until']}"),
            ("Accesses", str(len(self.accesses))),
            ("Alerts", ", ".join(self.alerts) or "none"),
            ("Problems", "; ".join(self.problems) or "none"),
        ]
        table = Table("Accesses (HIPAA 164.528(b))", DISCLOSURE_FIELDS, rows)
        return to_html("Patient access report", summary, [table], verified=self.verified)


def what_of(event: dict[str, Any], ours: set[str]) -> str:
    """What was accessed: the sub-type and the PHI-free object, this patient's pseudonym
    shown as `{patient}` and any other patient's as `{other}`."""
    obj = event.get("Object") or ""
    obj = _PATIENT_REF.sub(lambda m: "{patient}" if m.group(0) in ours else "{other}", str(obj))
    sub_type = event.get("EventSubType") or event.get("EventType") or ""
    return " ".join(p for p in (str(sub_type), obj) if p)


def disclosure_row(event: dict[str, Any], ours: set[str]) -> dict[str, str]:
    def text(name: str) -> str:
        value = event.get(name)
        return "" if value is None else str(value)

    viewer = text("ActorUsername") or text("ActorUserId") or text("ActingAppName")
    return {
        "Date": text("TimeGenerated"),
        "WhoViewed": viewer,
        "ActorUserId": text("ActorUserId"),
        "OnBehalfOf": text("ClaimedUsername") or text("ClaimedUserId"),
        "ActingApp": text("ActingAppName") or text("ActingAppId"),
        "What": what_of(event, ours),
        "Product": text("EventProduct"),
        "Result": text("EventResult"),
        "Purpose": text("PurposeOfUse") or NOT_RECORDED,
        "SourceAddress": text("SrcIpAddr"),
        "EventUid": text("EventUid"),
        "RawRecordRef": text("RawRecordRef"),
    }


def _sort_key(event: dict[str, Any]) -> tuple[str, str]:
    return str(event.get("TimeGenerated", "")), str(event.get("EventUid", ""))


def alerts_involving(
    store: ObjectStore,
    uids: set[str],
    since: datetime,
    until: datetime,
    refs: set[str] | frozenset[str] = frozenset(),
) -> list[str]:
    """AlertIds of archived alerts whose evidence cites one of these events or whose
    patient list names one of `refs` (any version of the alert), in first-seen order."""
    found: dict[str, None] = {}
    if not uids and not refs:
        return []
    for alert in alerts(store, since, until):
        evidence = alert.get("EvidenceEventUids") or []
        patients = alert.get("PatientRefs") or []
        if (isinstance(evidence, list) and uids.intersection(evidence)) or (
            isinstance(patients, list) and refs.intersection(patients)
        ):
            found.setdefault(str(alert.get("AlertId")), None)
    return list(found)


def patient_report(
    store: ObjectStore,
    trusted: dict[str, PublicKey],
    refs: Iterable[str],
    span: TimeRange,
) -> PatientReport:
    """Verify the range, then keep every event naming one of `refs` (the first is the
    pseudonym the report is titled with)."""
    wanted = list(dict.fromkeys(refs))
    if not wanted:
        raise ValueError("a patient report needs at least one PatientRef")
    check = verify_range(store, trusted, span.since, span.until)
    ours = set(wanted)
    accesses = sorted(
        events(
            store, span.since, span.until, keys=wanted, keep=lambda e: e.get("PatientRef") in ours
        ),
        key=_sort_key,
    )
    uids = {str(a["EventUid"]) for a in accesses if a.get("EventUid")}
    found = alerts_involving(store, uids, span.since, span.until, ours)
    return PatientReport(
        patient=wanted[0],
        refs=wanted,
        range=span,
        verified=check.verified,
        problems=check.problems,
        accesses=accesses,
        alerts=found,
    )


__all__ = [
    "ACCESS_FIELDS",
    "DISCLOSURE_FIELDS",
    "NOT_RECORDED",
    "PatientReport",
    "disclosure_row",
    "fhir_id_ref",
    "identifier_refs",
    "patient_report",
    "what_of",
]
