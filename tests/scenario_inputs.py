"""What a generated scenario's deployment runs with: the settings its ground truth names
(detection parameters, the allow-listed integrations) and its privacy input files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from phiwatch.config import Settings


def scenario_settings(truth: dict[str, Any], **overrides: Any) -> Settings:
    privacy = truth.get("privacy", {})
    values: dict[str, Any] = {
        "detection_params": truth.get("detection_params", {}),
        "privacy_allow_applications": privacy.get("allow_applications", []),
    }
    return Settings(**{**values, **overrides})


def privacy_files(gen_dir: Path, truth: dict[str, Any]) -> dict[str, Path]:
    """`roster` and `patients` for `replay` and `build_pipeline` (as `*_file`)."""
    privacy = truth.get("privacy", {})
    return {name: gen_dir / privacy[name] for name in ("roster", "patients") if name in privacy}
