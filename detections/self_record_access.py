"""self-record-access: an employee opens their own patient record.

The patient index gives the patient's employee id and it is the actor's own (the roster's
row for the actor's Entra object id). Employees obtain their own records through health
information management, like any patient, not by opening them with their work access: a
policy breach more than a privacy one, so Low. One alert per actor, patient and UTC day; only
unexplained accesses count (a clinician on their own care team is explained).
"""

from __future__ import annotations

from phiwatch.detect.privacy_rules import RelationshipRule


class SelfRecordAccess(RelationshipRule):
    rule_id = "self-record-access"
    rule_name = "Employee opened their own patient record"
    severity = "Low"
    relation = "self"
    whose = "their own"
    record = "their own record"
    why_wrong = (
        "Employees request their own records through health information management; opening "
        "them with work access bypasses the record of the disclosure and may change the chart."
    )


DETECTION = SelfRecordAccess
