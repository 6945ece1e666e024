"""Rule tests on events: feed AccessEvents to one rule and read the alerts it raises.

The full-pipeline harness (tests/harness.py) drives raw diagnostic records through
normalise, archive and detect, for end-to-end tests. This one starts at the AccessEvent:

    rule = RuleHarness("mass-record-access", {"threshold": 2})
    rule.feed(access("2026-03-02 10:00:05+01:00", actor="alice", patient="p1"), ...)
    rule.finish()
    (alert,) = rule.alerts

Times are read as ISO 8601 with an offset, in any time zone (a naive time is refused: a
rule test must say which instant it means). The events go through the real engine (the
watermark, the reorder buffer, late events, EventUid dedupe, the rule's registry checks),
configured with one rule only.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from phiwatch.detect import snapshot
from phiwatch.detect.detection import Detection
from phiwatch.detect.engine import DetectionEngine
from phiwatch.detect.events import access, instant
from phiwatch.model import AccessEvent, Alert

__all__ = ["RuleHarness", "access", "instant"]


class RuleHarness:
    """One rule on a real engine. `rule` is a rule id from the registry or a Detection
    class (a rule under test that is not registered); `params` override its defaults."""

    def __init__(
        self,
        rule: str | type[Detection],
        params: Mapping[str, Any] | None = None,
        *,
        lateness: float = 900.0,
        reorder: float = 0.0,
    ) -> None:
        import detections  # noqa: PLC0415 - the registry imports this module (rule_checks)

        cls = rule if isinstance(rule, type) else _registered(rule)
        self.rule = detections.build_detection(cls, dict(params or {}), lateness=lateness)
        self.lateness, self.reorder = lateness, reorder
        self.engine = DetectionEngine([self.rule], lateness, reorder)
        self._alerts: dict[str, Alert] = {}
        self.versions: list[Alert] = []  # every version emitted, in order

    def feed(self, *events: AccessEvent, arrival: str | datetime | None = None) -> RuleHarness:
        """Events in arrival order, as one batch; then the batch's timeouts run."""
        when = instant(arrival) if arrival is not None else None
        for event in events:
            self.engine.process(event, when)
        return self._batch_end()

    def advance_to(self, at: str | datetime) -> RuleHarness:
        """Event time reaches `at` without events (a tick from the sources)."""
        self.engine.tick(instant(at), "harness")
        return self._batch_end()

    def finish(self) -> RuleHarness:
        """The input is over (a local replay): pending rules settle."""
        self.engine.finish()
        return self._collect()

    def restart(self) -> RuleHarness:
        """Snapshot the engine to bytes and go on from a fresh one restored from them, as
        the `detect` stage does when a partition moves or the host restarts."""
        import detections  # noqa: PLC0415 - as in __init__

        data = snapshot.dumps(self.engine.state())
        fresh = detections.build_detection(
            type(self.rule), self.rule.params.model_dump(), lateness=self.lateness
        )
        self.rule = fresh
        self.engine = DetectionEngine([fresh], self.lateness, self.reorder)
        self.engine.load_state(snapshot.loads(data))
        return self

    @property
    def alerts(self) -> list[Alert]:
        """The latest version of each alert raised, in the order they were first raised."""
        return list(self._alerts.values())

    def _batch_end(self) -> RuleHarness:
        self.engine.advance()
        return self._collect()

    def _collect(self) -> RuleHarness:
        for alert in self.engine.changed_alerts():
            self.versions.append(alert)
            self._alerts[alert.alert_id] = alert
        self.engine.commit()
        return self


def _registered(rule_id: str) -> type[Detection]:
    import detections  # noqa: PLC0415 - as in RuleHarness.__init__

    for cls in detections.detection_classes():
        if cls.rule_id == rule_id:
            return cls
    raise KeyError(f"no detection has rule id '{rule_id}'")
