"""Our rules on other detection-as-code projects' labelled test records (issue #15).

Each file in tests/reference_cases/ holds one project's cases: the raw record(s), that
project's expected result, our rule and our expected result, and a `note` where we
deliberately judge otherwise. Every case runs through the real pipeline (Event Hub body,
normalise, detect) and must come out as `ours` says; a case of the same meaning must also
agree with `theirs`. Adding a case is adding data: no code here names a rule or a case.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from detections import detection_classes
from phiwatch.sources.fields import parse_time
from tests.harness import run

CASES_DIR = Path(__file__).parent / "reference_cases"
CASE_KEYS = {
    "id",
    "source",
    "theirs",
    "rule",
    "ours",
    "same_meaning",
    "records",
    "note",
    "restated",
    "repeat",
    "params",
}


def _load() -> list[tuple[str, dict[str, Any]]]:
    cases = []
    for path in sorted(CASES_DIR.glob("*.json")):
        project = json.loads(path.read_text(encoding="utf-8"))
        for case in project["cases"]:
            cases.append((project["project"], case))
    return cases


CASES = _load()


def _records(case: dict[str, Any]) -> list[dict[str, Any]]:
    """The case's records, each repeated `repeat.count` times when the rule counts: one
    value (`repeat.vary`, a path) gets `-<n>` appended and the time moves `step_seconds`."""
    repeat = case.get("repeat")
    if repeat is None:
        return case["records"]
    out = []
    for record in case["records"]:
        start = parse_time(record["time"])
        assert start is not None
        for n in range(repeat["count"]):
            copied = copy.deepcopy(record)
            *parents, leaf = repeat["vary"]
            holder = copied
            for key in parents:
                holder = holder[key]
            holder[leaf] = f"{holder[leaf]}-{n}"
            when = start + timedelta(seconds=n * repeat["step_seconds"])
            copied["time"] = when.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"
            out.append(copied)
    return out


def _fired(case: dict[str, Any], tmp_path: Path, **split: int) -> list[Any]:
    sink = run(_records(case), tmp_path, params=case.get("params"), **split)
    assert not sink.dead, f"records dead-lettered: {[d.reason for d in sink.dead]}"
    return [a for a in sink.alerts.values() if a.rule_id == case["rule"]]


def test_cases_are_well_formed():
    rules = {d.rule_id for d in detection_classes()}
    ids = Counter(case["id"] for _, case in CASES)
    assert [i for i, n in ids.items() if n > 1] == []
    for _, case in CASES:
        assert set(case) <= CASE_KEYS, case["id"]
        assert case["rule"] in rules, case["id"]
        assert case["source"]["path"] and case["source"]["test"], case["id"]
        assert isinstance(case["theirs"], bool) and isinstance(case["ours"], bool)
        # Only a deliberate disagreement says why, and it must.
        disagrees = case["ours"] != case["theirs"]
        assert disagrees == (not case["same_meaning"]), case["id"]
        assert bool(case.get("note")) == disagrees, case["id"]
        # Records are the diagnostic records, never the other project's enrichment.
        for record in case["records"]:
            assert not [k for k in record if k.startswith("p_")], case["id"]


@pytest.mark.parametrize(("project", "case"), CASES, ids=[c["id"] for _, c in CASES])
def test_case(project: str, case: dict[str, Any], tmp_path: Path):
    fired = _fired(case, tmp_path)
    assert bool(fired) == case["ours"], f"{project} {case['source']}: {[a.title for a in fired]}"
    if case["same_meaning"]:
        assert bool(fired) == case["theirs"]
    if fired:
        # One finding per case, and its entities are the record's resource and address.
        (alert,) = fired
        first = case["records"][0]
        assert alert.target_resource_id == first["resourceId"].lower()
        assert alert.src_ip_addr == first["callerIpAddress"].rsplit(":", 1)[0]
    # Redelivery (every body sent twice) and a split into one-record bodies change nothing.
    again = dict(case, records=case["records"] * 2) if "repeat" not in case else case
    twice = _fired(again, tmp_path)
    split = _fired(case, tmp_path, per_body=1, bodies_per_batch=1)
    assert sorted(a.alert_id for a in twice) == sorted(a.alert_id for a in fired)
    assert sorted(a.alert_id for a in split) == sorted(a.alert_id for a in fired)


def test_agreement_is_counted():
    """Every case of the same meaning agrees; the disagreements are the noted ones."""
    same = [c for _, c in CASES if c["same_meaning"]]
    noted = [c for _, c in CASES if not c["same_meaning"]]
    assert all(c["ours"] == c["theirs"] for c in same)
    assert all(c["ours"] != c["theirs"] and c["note"] for c in noted)
    assert len(same) >= 40
