"""Rule kinds in Sigma's correlation vocabulary, as declarations a rule is made of.

Each is a frozen dataclass (configuration only); the state it needs is created by
`new_state` and held, expired, snapshotted and restored by the rule's Detection base on
behalf of the engine. docs/detections.md describes them.
"""

from phiwatch.detect.kinds.absence import Absence
from phiwatch.detect.kinds.base import Part
from phiwatch.detect.kinds.daily import Daily
from phiwatch.detect.kinds.event_count import EventCount
from phiwatch.detect.kinds.sequence import Sequence, Then
from phiwatch.detect.kinds.single_event import SingleEvent
from phiwatch.detect.kinds.stateful import StatefulRule
from phiwatch.detect.kinds.value_count import ValueCount

__all__ = [
    "Absence",
    "Daily",
    "EventCount",
    "Part",
    "Sequence",
    "SingleEvent",
    "StatefulRule",
    "Then",
    "ValueCount",
]
