"""Streaming detections: one per file in this package, each exporting `DETECTION`.

Adding a detection means adding a file here (docs/detections.md); the registry finds it,
checks at load time everything the engine needs (phiwatch.detect.rule_checks) and applies
any parameter overrides from configuration.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from phiwatch.detect.detection import Detection
from phiwatch.detect.rule_checks import RuleCheckError, check_declaration, check_instance
from phiwatch.phievents.routing import RoutingError, check_grouping


class RegistryError(Exception):
    """A detection or its configuration is unusable; raised at load time, not in production."""


def detection_classes() -> list[type[Detection]]:
    classes: list[type[Detection]] = []
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        cls = getattr(module, "DETECTION", None)
        if cls is None:
            raise RegistryError(f"detections/{module_info.name}.py does not export DETECTION")
        classes.append(cls)
    return classes


def build_detection(
    cls: type[Detection], params: Mapping[str, Any], *, lateness: float = 900
) -> Detection:
    """One detection, checked (phiwatch.detect.rule_checks) and configured."""
    try:
        # What routing and the engine's dispatch rely on first (a grouping phi-events routes
        # by, known planes), then the rest of the declaration.
        check_grouping(cls.rule_id, getattr(cls, "planes", ()), getattr(cls, "group_by", None))
        check_declaration(cls)
    except (RuleCheckError, RoutingError) as exc:
        raise RegistryError(str(exc)) from exc
    try:
        parsed = cls.Params(**params)
    except ValidationError as exc:
        raise RegistryError(f"{cls.rule_id}: bad parameters: {exc}") from exc
    try:
        detection = cls(parsed, lateness)
        check_instance(detection)
    except (RuleCheckError, TypeError, ValueError) as exc:
        raise RegistryError(f"{cls.rule_id}: {exc}") from exc
    return detection


def load_detections(
    overrides: Mapping[str, Mapping[str, Any]] | None = None, *, lateness: float = 900
) -> list[Detection]:
    overrides = dict(overrides or {})
    detections: list[Detection] = []
    seen: set[str] = set()
    for cls in detection_classes():
        if cls.rule_id in seen:
            raise RegistryError(f"two detections use rule id '{cls.rule_id}'")
        seen.add(cls.rule_id)
        detections.append(build_detection(cls, overrides.pop(cls.rule_id, {}), lateness=lateness))
    if overrides:
        raise RegistryError(f"parameters given for unknown detections: {sorted(overrides)}")
    return detections
