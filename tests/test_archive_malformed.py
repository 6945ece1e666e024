"""`archive verify` on a malformed archive: every defect is a FAIL line and verify goes on to
report the rest, on both backends; a symbolic link planted in a local archive is never
followed, and reported."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from phiwatch.archive.store import LocalStore, ObjectStore, UnsafeObject
from phiwatch.archive.verify import verify_archive
from phiwatch.commands.app import app
from tests.test_archive_tamper import TRUSTED, Tamper, fill, manifests

Document = dict[str, Any]


def first_manifest(store: ObjectStore) -> tuple[str, Document]:
    name = manifests(store)[0]
    return name, orjson.loads(store.get(name))


def edit(change: Callable[[Document], Any]) -> Callable[[ObjectStore], str]:
    """Rewrite the chain's first manifest as `change` makes it (its return value, if any)."""

    def tamper(store: ObjectStore) -> str:
        name, document = first_manifest(store)
        changed = change(document)
        Tamper(store).write(name, orjson.dumps(document if changed is None else changed))
        return name

    return tamper


def write(data: bytes, which: str = "manifest") -> Callable[[ObjectStore], str]:
    def tamper(store: ObjectStore) -> str:
        name = manifests(store)[0] if which == "manifest" else Tamper(store).names("seals/")[0]
        Tamper(store).write(name, data)
        return name

    return tamper


def _set(path: list[Any], value: Any) -> Callable[[Document], None]:
    def change(document: Document) -> None:
        target: Any = document
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


def _drop(path: list[Any]) -> Callable[[Document], None]:
    def change(document: Document) -> None:
        target: Any = document
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return change


MALFORMED = {
    # The seven of the issue.
    "object named ../../../etc/passwd": edit(_set(["objects", 0, "name"], "../../../etc/passwd")),
    "object entry without sha256": edit(_drop(["objects", 0, "sha256"])),
    "objects as a string": edit(_set(["objects"], "raw/x.jsonl.gz")),
    "previous as a string": edit(_set(["previous"], "manifests/x.json")),
    "manifest as a JSON list": edit(lambda d: [d]),
    "seal as a JSON list": write(b'["batch", "manifest"]', "seal"),
    "manifest is not JSON": write(b"{not json"),
    # And more.
    "previous without sha256": edit(_set(["previous"], {"name": "manifests/x.json"})),
    "index as a string": edit(_set(["index"], "0")),
    "index as a boolean": edit(_set(["index"], False)),
    "first as a string": edit(_set(["first"], "0")),
    "last as null with a first": edit(_set(["last"], None)),
    "objects holding a number": edit(_set(["objects"], [7])),
    "object name a number": edit(_set(["objects", 0, "name"], 12)),
    "object name with a NUL": edit(_set(["objects", 0, "name"], "raw/x\x00y")),
    "object name absolute": edit(_set(["objects", 0, "name"], "/etc/passwd")),
    "object bytes a string": edit(_set(["objects", 0, "bytes"], "many")),
    "signature not base64": edit(_set(["signature"], "é!")),
    "signature a number": edit(_set(["signature"], 5)),
    "key_id a list": edit(_set(["key_id"], ["a"])),
    "huge integer": write(b'{"index": 1' + b"0" * 400 + b"}"),
    "huge float index": edit(_set(["index"], 1e300)),
    "not UTF-8": write(b'{"stream": "\xff\xfe"}'),
    "manifest a JSON string": write(b'"manifest"'),
    "manifest null": write(b"null"),
    "seal not JSON": write(b"\xff", "seal"),
    "seal with a list for its manifest": write(b'{"batch":"b","manifest":[],"sha256":"x"}', "seal"),
    "seal naming ../ as its manifest": write(
        b'{"batch":"b","manifest":"../../etc/passwd","sha256":"x"}', "seal"
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_archive_is_a_fail_and_verify_goes_on(store: ObjectStore, case: str):
    fill(store)
    tampered = MALFORMED[case](store)
    # And a second, unrelated defect that must still be reported.
    planted = "events/undated/planted-000000000000-000000000000.jsonl.gz"
    Tamper(store).write(planted, b"forged")
    report = verify_archive(store, TRUSTED)
    assert not report.ok
    assert any(p.startswith(tampered) for p in report.problems), report.problems
    assert f"{planted}: not listed by any manifest" in report.problems


def test_the_cli_prints_fail_lines_and_exits_1_without_a_traceback(tmp_path: Path):
    store = LocalStore(tmp_path / "archive")
    fill(store)
    for case in ("manifest as a JSON list", "seal as a JSON list"):
        MALFORMED[case](store)
    result = CliRunner().invoke(app, ["archive", "verify", str(tmp_path / "archive")])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    lines = result.stdout.splitlines()
    assert lines[-1].startswith("archive NOT verified: ")
    assert all(line.startswith("FAIL ") for line in lines[:-1]) and len(lines) >= 3
    assert any("manifest is malformed: a JSON list" in line for line in lines)
    assert any("seal is unreadable or points at nothing" in line for line in lines)


# --- any mutation of a valid manifest ---------------------------------------------------------

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def mutated(draw: st.DrawFn, document: Document) -> Any:
    """`document` with one value somewhere in it replaced, or one key dropped or added, or
    the whole document replaced."""
    if draw(st.integers(0, 9)) == 0:
        return draw(JSON)
    copy = orjson.loads(orjson.dumps(document))
    target: Any = copy
    while True:
        keys = list(target) if isinstance(target, dict) else list(range(len(target)))
        if not keys:
            break
        key = draw(st.sampled_from(keys))
        if isinstance(target[key], dict | list) and target[key] and draw(st.booleans()):
            target = target[key]
            continue
        action = draw(st.sampled_from(["replace", "drop", "add"]))
        if action == "replace":
            target[key] = draw(JSON)
        elif action == "drop" and isinstance(target, dict):
            del target[key]
        elif isinstance(target, dict):
            target[draw(st.text(max_size=8))] = draw(JSON)
        else:
            target.append(draw(JSON))
        break
    return copy


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pristine") / "archive"
    fill(LocalStore(root))
    return root


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_mutation_of_a_manifest_is_reported_and_never_raises(pristine: Path, data: Any):
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "archive"
        shutil.copytree(pristine, root)
        store = LocalStore(root)
        name = data.draw(st.sampled_from(manifests(store)))
        document = orjson.loads(store.get(name))
        changed = data.draw(mutated(document))
        assume(changed != document)
        Tamper(store).write(name, orjson.dumps(changed))
        report = verify_archive(store, TRUSTED)
    assert not report.ok
    assert any(p.startswith(name) or "stream" in p for p in report.problems)


# --- planted symbolic links (local store) -------------------------------------------------


def test_a_symlinked_object_is_not_followed_and_is_a_fail(tmp_path: Path):
    store = LocalStore(tmp_path / "archive")
    fill(store)
    victim = Tamper(store).names("events/")[0]
    path = tmp_path / "archive" / victim
    outside = tmp_path / "outside.jsonl.gz"
    outside.write_bytes(path.read_bytes())  # the very bytes: only the link is wrong
    path.unlink()
    path.symlink_to(outside)
    with pytest.raises(UnsafeObject):
        store.get(victim)
    assert victim not in list(store.list())
    found = verify_archive(store, TRUSTED).problems
    assert f"{victim}: a symbolic link or special file inside the archive" in found
    assert any(p.startswith(f"{victim!r}: a symbolic link") for p in found)


def test_a_symlinked_folder_is_not_followed_for_reading_listing_or_writing(tmp_path: Path):
    store = LocalStore(tmp_path / "archive")
    fill(store)
    events = tmp_path / "archive" / "events"
    outside = tmp_path / "outside"
    shutil.copytree(events, outside)
    shutil.rmtree(events)
    events.symlink_to(outside, target_is_directory=True)
    names = list(store.list())
    assert names and not any(n.startswith("events/") for n in names)
    found = verify_archive(store, TRUSTED).problems
    assert "events: a symbolic link or special file inside the archive" in found
    before = sorted(p.name for p in outside.rglob("*"))
    with pytest.raises(UnsafeObject):
        store.put_if_absent("events/undated/new.jsonl.gz", b"x")
    assert sorted(p.name for p in outside.rglob("*")) == before  # nothing written outside


def test_a_planted_pipe_does_not_hang_verify(tmp_path: Path):
    store = LocalStore(tmp_path / "archive")
    fill(store)
    victim = Tamper(store).names("raw/")[0]
    path = tmp_path / "archive" / victim
    path.unlink()
    os.mkfifo(path)
    found = verify_archive(store, TRUSTED).problems
    assert f"{victim}: a symbolic link or special file inside the archive" in found


def test_names_never_escape_the_root(tmp_path: Path):
    store = LocalStore(tmp_path / "archive")
    for bad in ("../x", "/etc/passwd", "a/../../x", "a//b", ""):
        with pytest.raises(ValueError):
            store.put_if_absent(bad, b"x")
        with pytest.raises(ValueError):
            store.get(bad)
    assert not (tmp_path / "x").exists()
