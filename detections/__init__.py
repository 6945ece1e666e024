"""Streaming detections: one per file in this package, each exporting `DETECTION`.

Adding a detection means adding a file here; the registry finds it, checks it and applies
any parameter overrides from configuration.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from phiwatch.detect.detection import Detection
from phiwatch.phievents.routing import RoutingError, check_grouping

_RULE_ID = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


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


def load_detections(
    overrides: Mapping[str, Mapping[str, Any]] | None = None, *, lateness: float = 900
) -> list[Detection]:
    overrides = dict(overrides or {})
    detections: list[Detection] = []
    seen: set[str] = set()
    for cls in detection_classes():
        rule_id = cls.rule_id
        if not _RULE_ID.match(rule_id):
            raise RegistryError(f"rule id '{rule_id}' is not kebab-case")
        if rule_id in seen:
            raise RegistryError(f"two detections use rule id '{rule_id}'")
        try:
            # What routing and the engine's dispatch rely on, refused here rather than in
            # the detect stage: a grouping phi-events routes by, and known planes.
            check_grouping(
                rule_id, getattr(cls, "planes", frozenset()), getattr(cls, "group_by", None)
            )
        except RoutingError as exc:
            raise RegistryError(str(exc)) from exc
        seen.add(rule_id)
        try:
            params = cls.Params(**overrides.pop(rule_id, {}))
        except ValidationError as exc:
            raise RegistryError(f"{rule_id}: bad parameters: {exc}") from exc
        detections.append(cls(params, lateness))
    if overrides:
        raise RegistryError(f"parameters given for unknown detections: {sorted(overrides)}")
    return detections
