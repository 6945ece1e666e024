"""Broken copies of real rules in a temporary directory (never in kql/)."""

from __future__ import annotations

import shutil
from pathlib import Path

from phiwatch.rules.loader import KQL_DIR


def copy_rule(tmp_path: Path, stem: str, *, cases: bool = True) -> Path:
    """kql/<stem>.yaml (and its cases) copied into tmp_path; returns the rule's new path."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    target = tmp_path / f"{stem}.yaml"
    shutil.copy(KQL_DIR / f"{stem}.yaml", target)
    if cases:
        shutil.copytree(KQL_DIR / "tests" / stem, tmp_path / "tests" / stem)
    return target


def edit(path: Path, old: str, new: str, count: int = 1) -> int:
    """Replace `old` (which must occur) and return the 1-based line of the first edit."""
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    line = text[: text.index(old)].count("\n") + 1
    path.write_text(text.replace(old, new, count), encoding="utf-8")
    return line
