"""What the registry checks when it loads a rule, so nothing first fails in `detect`.

Beyond its metadata (a kebab-case id, a known grouping and planes a routing key serves,
valid params), a rule must work on the engine: its declared parts have unique names,
their state and its alert facts go through a snapshot and back, and its alerts render.
That is checked by running the rule on a scratch engine over probe events of every
source (bursts of reads, failures, secret reads, setting changes and deletes, then the
same events again), rendering every alert it raises, and restoring a snapshot of the
engine into a fresh one. A rule that holds state the snapshot cannot encode (a facts
class not registered with snapshot_class) fails here, at load time.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import get_args

from phiwatch.detect import snapshot
from phiwatch.detect.detection import Detection, DetectionParams
from phiwatch.detect.engine import DetectionEngine
from phiwatch.detect.events import access
from phiwatch.detect.grouping import GROUPINGS
from phiwatch.detect.kinds.base import Part
from phiwatch.model import AccessEvent, Plane
from phiwatch.sources import activity, keyvault
from phiwatch.sources.activity import DIAGNOSTIC_SETTINGS

RULE_ID = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
PLANES: tuple[Plane, ...] = get_args(Plane)


class RuleCheckError(ValueError):
    """The rule cannot run on the engine as declared."""


def check_declaration(cls: type[Detection]) -> None:
    """The class-level metadata: id, grouping, planes, Params, Facts."""
    rule_id = getattr(cls, "rule_id", "")
    if not RULE_ID.match(rule_id):
        raise RuleCheckError(f"rule id '{rule_id}' is not kebab-case")
    if getattr(cls, "group_by", None) not in GROUPINGS:
        raise RuleCheckError(
            f"{rule_id}: group_by {getattr(cls, 'group_by', None)!r} is not one of {GROUPINGS}"
        )
    planes: frozenset[str] = getattr(cls, "planes", frozenset())
    if not planes:
        raise RuleCheckError(f"{rule_id}: declares no planes (choose from {list(PLANES)})")
    for plane in sorted(set(planes) - set(PLANES)):
        raise RuleCheckError(f"{rule_id}: unknown plane '{plane}' (choose from {list(PLANES)})")
    params = getattr(cls, "Params", None)
    if not (isinstance(params, type) and issubclass(params, DetectionParams)):
        raise RuleCheckError(f"{rule_id}: Params must be a DetectionParams subclass")
    facts = cls.Facts
    if facts is not None and not _is_snapshot_class(facts):
        raise RuleCheckError(
            f"{rule_id}: its Facts class {facts.__name__} is not registered with "
            "@snapshot_class, so an open alert could not be saved"
        )


def check_instance(rule: Detection) -> None:
    """The declared parts, and one run on a scratch engine (cached per rule and params)."""
    names = [part.name for part in rule.parts]
    if not names or not all(isinstance(part, Part) for part in rule.parts):
        raise RuleCheckError(f"{rule.rule_id}: declare() must return one or more parts")
    if len(set(names)) != len(names):
        raise RuleCheckError(f"{rule.rule_id}: two parts share a name: {names}")
    _probe(type(rule), rule.params, rule.lateness)


@lru_cache(maxsize=64)
def _probe(cls: type[Detection], params: DetectionParams, lateness: float) -> None:
    rule_id = cls.rule_id

    def fresh() -> DetectionEngine:
        return DetectionEngine([cls(params, lateness)], lateness)

    engine = fresh()
    _round_trip(rule_id, engine, fresh)
    events = probe_events()
    for event in events + events:  # the second time: every event redelivered
        engine.process(event, None)
    engine.advance()
    _render(rule_id, engine)
    _round_trip(rule_id, engine, fresh)
    engine.finish()
    _render(rule_id, engine)


def _round_trip(
    rule_id: str, engine: DetectionEngine, fresh: Callable[[], DetectionEngine]
) -> None:
    try:
        data = snapshot.dumps(engine.state())
        restored = fresh()
        restored.load_state(snapshot.loads(data))
        again = snapshot.dumps(restored.state())
    except (snapshot.SnapshotError, TypeError, KeyError, AttributeError) as exc:
        raise RuleCheckError(f"{rule_id}: its state does not survive a snapshot: {exc}") from exc
    if again != data:
        raise RuleCheckError(f"{rule_id}: its state changes when restored from a snapshot")


def _render(rule_id: str, engine: DetectionEngine) -> None:
    try:
        alerts = engine.changed_alerts()
    except Exception as exc:  # any error in a rule's render is a load-time error
        raise RuleCheckError(f"{rule_id}: render failed: {type(exc).__name__}: {exc}") from exc
    if any(a.rule_id != rule_id for a in alerts):
        raise RuleCheckError(f"{rule_id}: render produced an alert of another rule")
    engine.commit()


def _is_snapshot_class(cls: type) -> bool:
    return snapshot._CLASSES.get(cls.__name__) is cls


_PROBE_T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
_SUB = "/subscriptions/00000000-0000-4000-8000-000000000001"
_VAULT = f"{_SUB}/resourcegroups/rg/providers/microsoft.keyvault/vaults/kv"
_FHIR = f"{_SUB}/resourcegroups/rg/providers/microsoft.healthcareapis/services/fhir"
_SETTING = f"{_VAULT}/providers/microsoft.insights/diagnosticsettings/to-hub"


@lru_cache(maxsize=1)
def _probes() -> tuple[AccessEvent, ...]:
    events: list[AccessEvent] = []
    for i in range(120):
        at = _PROBE_T0 + timedelta(seconds=5 * i)
        events += [
            access(at, patient=f"probe-{i}", target=_FHIR),
            access(at, patient=f"probe-{i}", result="Failure", details="403", target=_FHIR),
            access(
                at,
                product=keyvault.PRODUCT,
                operation="SecretGet",
                result="Failure",
                details="403",
                target=_VAULT,
            ),
            access(
                at + timedelta(seconds=1),
                product=keyvault.PRODUCT,
                operation="SecretGet",
                target=_VAULT,
                uid=f"probe-kv-{i}",
            ),
        ]
        if i % 40 == 0:
            events += [
                access(
                    at,
                    product=activity.PRODUCT,
                    event_type="Delete",
                    sub_type=DIAGNOSTIC_SETTINGS,
                    operation="delete",
                    target=_SETTING,
                ),
                access(
                    at,
                    product=activity.PRODUCT,
                    event_type="Disable",
                    sub_type=DIAGNOSTIC_SETTINGS,
                    operation="write",
                    target=_SETTING,
                ),
                access(
                    at,
                    product=activity.PRODUCT,
                    event_type="Delete",
                    operation="delete",
                    target=f"{_FHIR}-{i}",
                ),
            ]
    return tuple(events)


def probe_events() -> list[AccessEvent]:
    """Events of every source, in event-time order: what a rule is tried on at load."""
    return list(_probes())
