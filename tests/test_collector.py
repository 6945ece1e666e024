"""The collector tuning every host applies once its parts exist (phiwatch/hosts/collector.py)."""

from __future__ import annotations

import gc

from phiwatch.hosts import collector


def test_tune_freezes_what_exists_and_raises_the_thresholds() -> None:
    before = gc.get_threshold()
    try:
        held = [[i] for i in range(1000)]  # long-lived state, as the rules' windows are
        collector.tune()
        assert gc.get_threshold() == collector.THRESHOLDS
        assert gc.get_freeze_count() >= len(held)
        # Young collections are rarer than the default's (700), but cycles made after the
        # freeze are still collected.
        assert collector.THRESHOLDS[0] > 700
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1
    finally:
        gc.set_threshold(*before)


def test_tune_is_idempotent() -> None:
    before = gc.get_threshold()
    try:
        collector.tune()
        frozen = gc.get_freeze_count()
        collector.tune()
        assert gc.get_threshold() == collector.THRESHOLDS
        assert gc.get_freeze_count() >= frozen
    finally:
        gc.set_threshold(*before)
