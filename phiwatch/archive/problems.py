"""Verify's problems grouped by cause, for a report an auditor can read and a script can act on.

One root cause (a foreign key, a deleted hour folder, a re-compressed container) shows up as
one problem per manifest or object: `group` folds them into one line per cause, with the
count and the first and last name it concerns. The problems themselves stay plain strings
(what `VerifyReport.problems` and `BundleReport.problems` hold); the cause is read from the
wording verify uses, in one table here, so a new kind of problem falls back to "other" rather
than being lost.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# (cause, what the problem's text says), first match wins: the more specific phrases first.
_CAUSES: tuple[tuple[str, str], ...] = (
    ("untrusted-key", "signed by untrusted key"),
    ("bad-signature", "bad signature"),
    ("bad-signature", "signature is not base64"),
    ("hash-mismatch", "SHA-256 differs"),
    ("proof-fails", "not what the archive holds"),
    ("missing-object", ": missing (listed by"),
    ("unlisted-object", "not listed by any manifest"),
    ("unlisted-object", "no signed manifest lists"),
    ("missing-manifests", "missing before"),
    ("chain-broken", "does not chain to"),
    ("chain-truncated", "first manifest names a predecessor"),
    ("sequence-gap", "were never archived (gap)"),
    ("chain-forked", "the chain forked"),
    ("manifest-moved", "manifests swapped or moved"),
    ("manifest-malformed", "manifest is malformed"),
    ("manifest-malformed", "manifest is not valid JSON"),
    ("manifest-malformed", "not a manifest name"),
    ("claim", "claims index"),
    ("claim", "is not the manifest claimed"),
    ("seal", "seal"),
    ("planted-file", "a symbolic link or special file"),
    ("unreadable", "cannot be read"),
    ("unreadable", "could not be checked"),
    ("evidence-missing", "is missing from the bundle"),
    ("evidence-missing", "its raw record is missing"),
    ("not-evidence", "not evidence of this alert"),
    ("wrong-alert", "the proven alert is not the one"),
    ("bundle-format", "bundle"),
)

# Archive names inside a message: what differs between problems of one cause.
_NAME = re.compile(
    r"(?:raw|events|deadletter|alerts|manifests|chain|seals)/[^\s,)'\"]+|#\d+|(?<![\w-])\d+(?![\w-])"
)


def cause_of(problem: str) -> str:
    for cause, phrase in _CAUSES:
        if phrase in problem:
            return cause
    return "other"


def _subject(problem: str) -> str:
    """What the problem is about: the name before its first ": ", or the whole text."""
    head, sep, _ = problem.partition(": ")
    return head if sep else problem


def _pattern(problem: str) -> str:
    """The problem's wording without the names it concerns (its subject and the names it
    cites), so problems of one cause and wording fold together."""
    head, sep, rest = problem.partition(": ")
    text = rest if sep and ("/" in head or head.startswith(("stream ", "event "))) else problem
    return _NAME.sub("…", text)


@dataclass
class ProblemGroup:
    cause: str
    pattern: str
    problems: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.problems)

    def line(self) -> str:
        """One line for the group: the problem itself when it is alone."""
        if self.count == 1:
            return self.problems[0]
        first, last = _subject(self.problems[0]), _subject(self.problems[-1])
        return (
            f"{self.count} problems of one cause ({self.cause}): {self.pattern} "
            f"(first {first}, last {last}; --all lists each)"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "cause": self.cause,
            "count": self.count,
            "summary": self.line(),
            "problems": list(self.problems),
        }


def group(problems: list[str]) -> list[ProblemGroup]:
    """Problems folded by (cause, wording), in the order each group first appears."""
    groups: dict[tuple[str, str], ProblemGroup] = {}
    for problem in problems:
        cause = cause_of(problem)
        pattern = _pattern(problem)
        groups.setdefault((cause, pattern), ProblemGroup(cause, pattern)).problems.append(problem)
    return list(groups.values())


__all__ = ["ProblemGroup", "cause_of", "group"]
