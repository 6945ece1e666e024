"""Shared fixtures: a fixed pseudonym key, an isolated PHIWATCH_HOME, record builders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as settings_profiles

from phiwatch.config import Settings
from phiwatch.pseudonym import Pseudonymizer
from tests import records

pytest_plugins = ["tests.azurite"]

TEST_KEY_HEX = "5e" * 32
TEST_SIGNING_SEED_HEX = "a7" * 32


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory):
    monkeypatch.setenv("PHIWATCH_PSEUDONYM_KEY", TEST_KEY_HEX)
    monkeypatch.setenv("PHIWATCH_ARCHIVE_SIGNING_KEY", TEST_SIGNING_SEED_HEX)
    monkeypatch.setenv("PHIWATCH_HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture
def pseudonymizer() -> Pseudonymizer:
    return Pseudonymizer(bytes.fromhex(TEST_KEY_HEX))


@pytest.fixture
def settings() -> Settings:
    return Settings()


def write_jsonl(path: Path, bodies: list[list[dict]]) -> Path:
    path.write_text("".join(json.dumps({"records": b}) + "\n" for b in bodies))
    return path


__all__ = ["records", "write_jsonl"]


@pytest.fixture
def normalise(pseudonymizer: Pseudonymizer):
    """Route and normalise one record dict the way the pipeline does."""
    from phiwatch.envelope import Body, decode_body
    from phiwatch.sources import NormaliseContext, Record, route

    def run(value: dict):
        (raw,) = decode_body(Body(json.dumps({"records": [value]}).encode(), "t", "t"))
        record = Record(raw.value, raw.content_uid())
        return route(record).normalise(record, NormaliseContext(pseudonymizer, "raw/x#0"))

    return run


# Property-based fuzz (tests/test_fuzz_pipeline.py): a budget that keeps `make test` quick;
# `pytest --hypothesis-profile fuzz-long` digs deeper (1,000 examples: within the 300 s
# per-test timeout).
settings_profiles.register_profile(
    "phiwatch",
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings_profiles.register_profile(
    "fuzz-long", parent=settings_profiles.get_profile("phiwatch"), max_examples=1000
)
settings_profiles.load_profile("phiwatch")
