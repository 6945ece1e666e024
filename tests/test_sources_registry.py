"""Every source file is registered, and what a new source must also give (docs/architecture.md,
"Adding a source") is there: records in the pipeline fuzz, and events the rule harness can
build."""

from __future__ import annotations

import importlib
import pkgutil
from typing import get_args

import phiwatch.sources
from phiwatch.detect.events import _PRODUCTS
from phiwatch.model import Plane
from phiwatch.sources import NORMALISERS, Record, route
from tests.test_fuzz_pipeline import source_records


def _source_modules() -> list[str]:
    """Modules of phiwatch/sources/ that declare a PRODUCT: a normaliser."""
    found = []
    for info in pkgutil.iter_modules(phiwatch.sources.__path__):
        module = importlib.import_module(f"phiwatch.sources.{info.name}")
        if hasattr(module, "PRODUCT"):
            found.append(module.__name__)
    return sorted(found)


def test_every_source_file_is_a_registered_normaliser():
    registered = sorted(n.__name__ for n in NORMALISERS)  # type: ignore[attr-defined]
    assert registered, "no normaliser registered: the check cannot fail"
    assert _source_modules() == registered


def test_every_normaliser_declares_a_product_and_a_known_plane():
    planes = set(get_args(Plane))
    for normaliser in NORMALISERS:
        assert isinstance(normaliser.PRODUCT, str) and normaliser.PRODUCT
        assert normaliser.PLANE in planes, normaliser.name
    products = [n.PRODUCT for n in NORMALISERS]
    assert len(set(products)) == len(products), "two sources share an EventProduct"


def test_the_pipeline_fuzz_has_records_of_every_source():
    covered = {route(Record(r, "uid")).name for r in source_records()}
    assert covered == {n.name for n in NORMALISERS}


def test_the_rule_harness_can_build_events_of_every_source():
    assert set(_PRODUCTS) == {n.PRODUCT for n in NORMALISERS}


def _route_by_asking_all(record: Record) -> str | None:
    return next((n.name for n in NORMALISERS if n.matches(record)), None)


def test_a_normaliser_matches_no_category_outside_its_match_categories():
    # Routing asks a source only for its MATCH_CATEGORIES (sources/__init__.py): that is only
    # the same routing if `matches` refuses every other category.
    records = [Record(r, "uid") for r in source_records()]
    for normaliser in NORMALISERS:
        declared = getattr(normaliser, "MATCH_CATEGORIES", None)
        if declared is None:
            continue
        assert all(c == c.lower() for c in declared), normaliser.name
        for record in records:
            if record.category_lower not in declared:
                assert not normaliser.matches(record), (normaliser.name, record.category)
        for record in records:
            if normaliser.matches(record):
                # Any casing of a declared category reaches the same normaliser.
                value = dict(record.fields, category=record.category.upper())
                assert route(Record(value, "uid")) is normaliser


def test_routing_by_category_picks_what_asking_every_normaliser_picks():
    for value in source_records():
        record = Record(value, "uid")
        assert route(record).name == _route_by_asking_all(record)
