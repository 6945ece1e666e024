"""coworker-record-access: an employee opens the record of a coworker.

The patient index gives the patient an employee id (the patient is on the staff) and it is
not the actor's own. Medium. One alert per actor, patient and UTC day; only unexplained
accesses count (a colleague treated on the actor's ward is explained by the care team).
"""

from __future__ import annotations

from phiwatch.detect.privacy_rules import RelationshipRule


class CoworkerRecordAccess(RelationshipRule):
    rule_id = "coworker-record-access"
    rule_name = "Employee opened a coworker's patient record"
    severity = "Medium"
    relation = "coworker"
    whose = "a coworker's"
    record = "the record of a coworker"
    why_wrong = (
        "Coworkers' charts are the commonest target of workplace snooping; without a "
        "treatment reason it is a privacy breach."
    )


DETECTION = CoworkerRecordAccess
