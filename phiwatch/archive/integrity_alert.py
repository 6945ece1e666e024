"""The `archive-integrity` alert: an archive name already held other raw bytes.

Not a streaming detection over events: the archive itself reports it, at write time.
"""

from __future__ import annotations

from datetime import UTC, datetime

from phiwatch.archive.archive import IntegrityConflict
from phiwatch.detect.system_alert import system_alert
from phiwatch.model import Alert

RULE_ID = "archive-integrity"


def integrity_alert(conflict: IntegrityConflict, when: datetime | None) -> Alert:
    # Without a batch time, now: an incident rule looks back hours, never to 1970.
    at = when or datetime.now(UTC)
    return system_alert(
        rule_id=RULE_ID,
        key=conflict.name,
        anchor=conflict.kept_as,
        rule_name="Audit archive integrity",
        severity="High",
        tactics=["DefenseEvasion", "Impact"],
        techniques=["T1565.001"],
        title=f"Archive object {conflict.name} already held different raw records",
        description=(
            "A batch was archived under a name that already held other raw bytes. Names are "
            "derived from the batch, so either the stored object was altered or replaced "
            "outside phiwatch, or two different inputs claimed the same position. Nothing was "
            "overwritten: compare the two objects and run `phiwatch archive verify`."
        ),
        reasons=[
            f"{conflict.name} holds SHA-256 {conflict.existing_sha256[:16]}…, which is not what "
            "this batch derives.",
            f"The new bytes were kept as {conflict.kept_as}.",
        ],
        at=at,
    )


__all__ = ["RULE_ID", "integrity_alert"]
