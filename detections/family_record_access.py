"""family-record-access: an employee opens the record of a family member.

Family, as the privacy inputs can tell it: the patient's surname and recorded address match
the employee's (one household: High), or the patient shares a surname the patient index
holds as rare (Medium: a namesake is unlikely, a household is not shown). One alert per
actor, patient and UTC day, at the highest basis seen that day; only unexplained accesses
count (a parent who is also the child's nurse on shift is on the care team).
"""

from __future__ import annotations

from phiwatch.detect.privacy_rules import PrivacyAccessFacts, RelationshipRule
from phiwatch.model import Severity


class FamilyRecordAccess(RelationshipRule):
    rule_id = "family-record-access"
    rule_name = "Employee opened a family member's patient record"
    severity = "High"  # the highest it raises; a rare surname alone is Medium
    relation = "family"
    whose = "a family member's"
    record = "the record of a family member"
    why_wrong = (
        "Relatives' records are opened for treatment only, by the care team; curiosity or a "
        "custody dispute is a privacy breach the patient may have to be told of."
    )

    def severity_of(self, facts: PrivacyAccessFacts) -> Severity:
        return "High" if facts.bases.get("surname-and-address") else "Medium"


DETECTION = FamilyRecordAccess
