"""What a correct detector should and should not find in the generated logs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .clock import iso_seconds
from .emitted import Emitted


def span(records: list[Emitted]) -> tuple[datetime, datetime]:
    """Whole-second bounds that contain every record, however its time is spelled."""
    first = min(e.at for e in records).replace(microsecond=0)
    last = max(e.at for e in records)
    last_s = last.replace(microsecond=0)
    if last != last_s:
        last_s += timedelta(seconds=1)
    return first, last_s


@dataclass(frozen=True, slots=True)
class Incident:
    rule_id: str
    description: str
    actor_user_id: str | None
    actor_app_id: str | None
    src_ip: str | None
    target_resource_id: str | None
    start: datetime
    end: datetime

    def to_json(self) -> dict[str, object]:
        return {
            "rule_id": self.rule_id,
            "description": self.description,
            "actor_user_id": self.actor_user_id,
            "actor_app_id": self.actor_app_id,
            "src_ip": self.src_ip,
            "target_resource_id": self.target_resource_id,
            "start": iso_seconds(self.start),
            "end": iso_seconds(self.end),
        }


@dataclass(frozen=True, slots=True)
class Lookalike:
    kind: str
    resembles_rule_id: str
    description: str
    actor_user_id: str | None
    actor_app_id: str | None
    src_ip: str | None
    target_resource_id: str | None
    start: datetime
    end: datetime
    details: dict[str, object] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "resembles_rule_id": self.resembles_rule_id,
            "description": self.description,
            "actor_user_id": self.actor_user_id,
            "actor_app_id": self.actor_app_id,
            "src_ip": self.src_ip,
            "target_resource_id": self.target_resource_id,
            "start": iso_seconds(self.start),
            "end": iso_seconds(self.end),
            **self.details,
        }
