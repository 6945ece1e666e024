"""Verify's problems folded by cause: one root cause is one line, different causes stay apart."""

from __future__ import annotations

from phiwatch.archive.problems import cause_of, group

MANIFESTS = [f"manifests/file-a/2026/11/02/{h:02d}/{i:012d}.json" for h in (8, 9) for i in range(3)]


def test_one_foreign_key_is_one_group():
    problems = [f"{m}: signed by untrusted key 'abc123ef'" for m in MANIFESTS]
    (only,) = group(problems)
    assert (only.cause, only.count) == ("untrusted-key", 6)
    assert only.line() == (
        "6 problems of one cause (untrusted-key): signed by untrusted key 'abc123ef' "
        f"(first {MANIFESTS[0]}, last {MANIFESTS[-1]}; --all lists each)"
    )
    # Two different keys are two causes.
    other = [*problems, f"{MANIFESTS[0]}: signed by untrusted key 'ffff0000'"]
    assert [g.count for g in group(other)] == [6, 1]


def test_a_deleted_hour_folder_is_one_group_per_kind_of_damage():
    missing = [
        f"events/2026/11/02/08/b{i}.jsonl.gz: missing (listed by {MANIFESTS[i]})" for i in range(3)
    ]
    altered = "raw/2026/11/02/09/x.jsonl.gz: SHA-256 differs from manifests/f/1.json (altered)"
    gap = "manifests/s/000000000009.json: positions 100..199 of stream s were never archived (gap)"
    groups = group([*missing, altered, gap])
    assert [(g.cause, g.count) for g in groups] == [
        ("missing-object", 3),
        ("hash-mismatch", 1),
        ("sequence-gap", 1),
    ]
    assert groups[1].line() == altered  # alone, a problem is printed as it is
    assert groups[1].as_dict()["problems"] == [altered]


def test_an_unknown_wording_is_kept_as_other():
    assert cause_of("something no check says today") == "other"
    assert group([]) == []
