"""neighbour-record-access: an employee opens the record of a neighbour.

The patient's recorded address is on the employee's street, in the same postcode block, and
not in the employee's own household (that would be family or self, which take precedence).
Medium. One alert per actor, patient and UTC day; only unexplained accesses count.
"""

from __future__ import annotations

from phiwatch.detect.privacy_rules import RelationshipRule


class NeighbourRecordAccess(RelationshipRule):
    rule_id = "neighbour-record-access"
    rule_name = "Employee opened a neighbour's patient record"
    severity = "Medium"
    relation = "neighbour"
    whose = "a neighbour's"
    record = "the record of a neighbour"
    why_wrong = (
        "Looking up the people next door is the textbook curiosity breach; without a "
        "treatment reason it is a privacy incident."
    )


DETECTION = NeighbourRecordAccess
