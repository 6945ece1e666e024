"""`phiwatch archive verify`: walk every manifest chain and prove the archive complete and
unaltered, or say exactly what is wrong.

Checks, per stream: manifests form one unbroken chain (indices 0..n, each naming its
predecessor's name and SHA-256, each stored under its own index), every signature is valid
for a *trusted* key, every listed object exists with the listed SHA-256, no Event Hub
sequence numbers or file lines are missing between consecutive batches; and for the whole
archive, no object exists that no manifest lists, and every seal points at a manifest that
lists its batch. Two manifests with one index in one stream (in different hour folders) are
a fork. Index claims (`chain/<stream>/<index>.json`, see `archive.py`) are not required, as
archives from before them have none; each one there is must name a manifest of its stream and
index that exists and is, byte for byte, the manifest the claim carries. What it cannot see:
a stream whose newest manifests *and* objects were all removed (immutable storage prevents
that in Azure; the empty hour shows in `--since`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from phiwatch.archive.manifest import CLAIMS, Claim, index_of, read_claim, signing_payload
from phiwatch.archive.signer import PublicKey, unb64, verify_signature
from phiwatch.archive.store import ObjectMissing, ObjectStore, UnsafeObject, check_name, sha256_hex


@dataclass
class VerifyReport:
    objects: int = 0
    manifests: int = 0
    streams: int = 0
    claims: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.ok:
            return (
                f"archive verified: {self.objects} objects, {self.manifests} manifests, "
                f"{self.streams} stream(s), chain intact"
            )
        return f"archive NOT verified: {len(self.problems)} problem(s)"


def _hour_of(name: str) -> datetime | None:
    parts = name.split("/")
    for i in range(len(parts) - 4):
        chunk = parts[i : i + 4]
        if all(p.isdigit() for p in chunk) and len(chunk[0]) == 4:
            year, month, day, hour = (int(p) for p in chunk)
            try:
                return datetime(year, month, day, hour)
            except ValueError:  # a planted 2026/13/45/99 is no hour: undated
                return None
    return None


def _in_range(name: str, since: datetime | None, until: datetime | None) -> bool:
    hour = _hour_of(name)
    if hour is None:
        return True
    if since and hour < since.replace(tzinfo=None, minute=0, second=0, microsecond=0):
        return False
    return not (until and hour > until.replace(tzinfo=None))


def check_manifest_signature(document: dict[str, Any], trusted: dict[str, PublicKey]) -> str | None:
    """None when the signature is valid for a trusted key, else the problem."""
    key_id = document.get("key_id", "")
    key = trusted.get(key_id) if isinstance(key_id, str) else None
    if key is None:
        return f"signed by untrusted key {key_id!r}"
    signature_text = document.get("signature", "")
    try:
        if not isinstance(signature_text, str):
            raise ValueError("not a string")
        signature = unb64(signature_text)
    except ValueError:  # UnicodeEncodeError and binascii.Error included
        return "signature is not base64"
    if not verify_signature(
        key, document.get("algorithm", ""), signing_payload(document), signature
    ):
        return "bad signature"
    return None


def verify_archive(
    store: ObjectStore,
    trusted: dict[str, PublicKey],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> VerifyReport:
    report = VerifyReport()
    problems = report.problems
    names = list(store.list())
    manifests_by_stream: dict[str, list[str]] = defaultdict(list)
    claims_by_stream: dict[str, list[str]] = defaultdict(list)
    seals: list[str] = []
    data_objects: set[str] = set()
    for name in names:
        if name.startswith("manifests/"):
            manifests_by_stream[name.split("/")[1]].append(name)
        elif name.startswith(CLAIMS):
            claims_by_stream[name.split("/")[1]].append(name)
        elif name.startswith("seals/"):
            seals.append(name)
        else:
            data_objects.add(name)

    listed: dict[str, str] = {}  # object name → manifest listing it
    batches: dict[tuple[str, str], str] = {}  # (stream, batch) → manifest
    stored: dict[str, str] = {}  # manifest name → SHA-256 of what is stored
    for stream in sorted(set(manifests_by_stream) | set(claims_by_stream)):
        try:
            claims = _read_claims(store, claims_by_stream[stream], report)
            if manifests_by_stream[stream]:
                report.streams += 1
                _verify_chain(
                    store,
                    stream,
                    manifests_by_stream[stream],
                    claims,
                    trusted,
                    since,
                    until,
                    report,
                    listed,
                    batches,
                    stored,
                )
            for claim in claims.values():
                _verify_claim(claim, stored, problems)
        except Exception as exc:  # a shape no check below foresaw: report it, go on
            problems.append(f"stream {stream}: could not be checked ({type(exc).__name__})")

    for name in sorted(data_objects - set(listed)):
        if _in_range(name, since, until):
            problems.append(f"{name}: not listed by any manifest")
    for name in seals:
        try:
            _verify_seal(store, name, batches, problems)
        except Exception as exc:
            problems.append(f"{name}: seal could not be checked ({type(exc).__name__})")
    # A link or device inside a local archive is no object: never followed, always reported.
    planted = getattr(store, "planted", None)
    for name in planted() if callable(planted) else ():
        problems.append(f"{name}: a symbolic link or special file inside the archive")
    report.objects = sum(1 for n in data_objects if _in_range(n, since, until))
    return report


class _Unreadable(Exception):
    """An object that cannot be read as one: a refused name, a link, a store error."""


def _get(store: ObjectStore, name: str) -> bytes:
    """The object's bytes; ObjectMissing, or _Unreadable saying why it cannot be read."""
    try:
        return store.get(name)
    except ObjectMissing:
        raise
    except UnsafeObject:
        raise _Unreadable("a symbolic link or special file, not an object (not followed)") from None
    except ValueError:
        raise _Unreadable("not a valid archive object name") from None
    except OSError as exc:
        raise _Unreadable(f"cannot be read ({type(exc).__name__})") from None


def _read_claims(store: ObjectStore, names: list[str], report: VerifyReport) -> dict[int, Claim]:
    claims: dict[int, Claim] = {}
    for name in names:
        try:
            claim = read_claim(name, _get(store, name))
        except ValueError as exc:
            report.problems.append(str(exc))
            continue
        except (ObjectMissing, _Unreadable) as exc:
            report.problems.append(f"{name}: {exc or 'gone while verifying'}")
            continue
        report.claims += 1
        claims[claim.index] = claim
    return claims


def _verify_claim(claim: Claim, stored: dict[str, str], problems: list[str]) -> None:
    where = f"chain/{claim.stream}/{claim.index:012d}.json"
    digest = stored.get(claim.manifest)
    if digest is None:
        problems.append(
            f"{where}: claims index {claim.index} for {claim.manifest}, which does not exist "
            "(deleted, or its writer stopped before it and no batch of the stream came since)"
        )
    elif digest != claim.sha256:
        problems.append(
            f"{where}: {claim.manifest} is not the manifest claimed for index {claim.index} "
            "(SHA-256 differs: altered, or written without a claim)"
        )


def _verify_chain(
    store: ObjectStore,
    stream: str,
    names: list[str],
    claims: dict[int, Claim],
    trusted: dict[str, PublicKey],
    since: datetime | None,
    until: datetime | None,
    report: VerifyReport,
    listed: dict[str, str],
    batches: dict[tuple[str, str], str],
    stored: dict[str, str],
) -> None:
    problems = report.problems
    by_index: dict[int, list[str]] = defaultdict(list)
    for name in names:
        try:
            index = index_of(name)
        except ValueError:
            problems.append(f"{name}: not a manifest name")
            continue
        by_index[index].append(name)
    previous_link: tuple[str, str] | None = None
    previous_last: int | None = None
    expected = 0
    for index in sorted(by_index):
        candidates = by_index[index]
        claim = claims.get(index)
        # Where the chain forked, follow the claimed manifest (or, without a claim, the first
        # by name); the others are checked on their own and their objects count as listed.
        name = claim.manifest if claim and claim.manifest in candidates else candidates[0]
        if index != expected:
            problems.append(
                f"stream {stream}: manifest(s) {expected}..{index - 1} missing before {name}"
            )
            previous_link = None  # the link to check against is gone
        expected = index + 1
        if len(candidates) > 1:
            problems.append(
                f"stream {stream}: {len(candidates)} manifests with index {index} "
                f"({', '.join(candidates)}): the chain forked"
            )
            for other in candidates:
                if other != name:
                    document = _read_manifest(store, other, stream, index, trusted, report, stored)
                    if document is not None:
                        _verify_objects(store, other, document, since, until, listed, problems)
                        batches.setdefault((stream, document.get("batch", "")), other)
        document = _read_manifest(store, name, stream, index, trusted, report, stored)
        if document is None:
            previous_link, previous_last = None, None
            continue
        prev = document.get("previous")
        if index == 0 and prev is not None:
            problems.append(f"{name}: first manifest names a predecessor (chain truncated)")
        elif previous_link is not None and (
            prev is None or (prev.get("name"), prev.get("sha256")) != previous_link
        ):
            problems.append(
                f"{name}: does not chain to {previous_link[0]} (a manifest was altered, "
                "replaced or reordered)"
            )
        first, last = document.get("first"), document.get("last")
        if document.get("kind", "batch") == "batch" and first is not None and last is not None:
            if previous_last is not None and first > previous_last + 1:
                problems.append(
                    f"{name}: positions {previous_last + 1}..{first - 1} of stream {stream} "
                    "were never archived (gap)"
                )
            previous_last = max(last, previous_last) if previous_last is not None else last
        batches[(stream, document.get("batch", ""))] = name
        _verify_objects(store, name, document, since, until, listed, problems)
        previous_link = (name, stored[name])


def _read_manifest(
    store: ObjectStore,
    name: str,
    stream: str,
    index: int,
    trusted: dict[str, PublicKey],
    report: VerifyReport,
    stored: dict[str, str],
) -> dict[str, Any] | None:
    """The manifest's document, checked on its own (place, signature); None if unreadable."""
    try:
        data = _get(store, name)
    except (ObjectMissing, _Unreadable) as exc:
        report.problems.append(f"{name}: {exc or 'gone while verifying'}")
        return None
    stored[name] = sha256_hex(data)
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError:
        report.problems.append(f"{name}: manifest is not valid JSON (altered or truncated)")
        return None
    if (malformed := manifest_shape_problem(document)) is not None:
        report.problems.append(f"{name}: manifest is malformed: {malformed} (altered)")
        return None
    report.manifests += 1
    if document.get("index") != index or document.get("stream") != stream:
        report.problems.append(
            f"{name}: holds manifest {document.get('stream')}#{document.get('index')} "
            "(manifests swapped or moved)"
        )
    problem = check_manifest_signature(document, trusted)
    if problem:
        report.problems.append(f"{name}: {problem}")
    return document


def _verify_objects(
    store: ObjectStore,
    name: str,
    document: dict[str, Any],
    since: datetime | None,
    until: datetime | None,
    listed: dict[str, str],
    problems: list[str],
) -> None:
    for entry in document.get("objects", []):
        listed[entry["name"]] = name
        if _in_range(name, since, until):
            _verify_object(store, entry, name, problems)


def _verify_object(
    store: ObjectStore, entry: dict[str, Any], manifest: str, problems: list[str]
) -> None:
    try:
        data = _get(store, entry["name"])
    except ObjectMissing:
        problems.append(f"{entry['name']}: missing (listed by {manifest})")
        return
    except _Unreadable as exc:
        problems.append(f"{entry['name']!r}: {exc} (listed by {manifest})")
        return
    if sha256_hex(data) != entry["sha256"]:
        what = "truncated" if len(data) < entry.get("bytes", 0) else "altered"
        problems.append(f"{entry['name']}: SHA-256 differs from {manifest} ({what})")


def _verify_seal(
    store: ObjectStore, name: str, batches: dict[tuple[str, str], str], problems: list[str]
) -> None:
    try:
        pointer = orjson.loads(_get(store, name))
        if not isinstance(pointer, dict) or not all(
            isinstance(pointer.get(key), str) for key in ("batch", "manifest", "sha256")
        ):
            raise _Unreadable
        stream = name.split("/")[1]
        if batches.get((stream, pointer["batch"])) is None:
            problems.append(f"{name}: its batch is in no manifest of stream {stream}")
        elif sha256_hex(_get(store, pointer["manifest"])) != pointer["sha256"]:
            problems.append(f"{name}: points at a manifest whose SHA-256 changed")
    except (orjson.JSONDecodeError, ObjectMissing, _Unreadable):
        problems.append(f"{name}: seal is unreadable or points at nothing")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _optional_int(value: Any) -> bool:
    return value is None or _is_int(value)


def _link_shape(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(value.get(key), str) for key in ("name", "sha256")
    )


def _entry_problem(entry: Any) -> str | None:
    if not isinstance(entry, dict):
        return "an object entry is not a JSON object"
    for key in ("name", "sha256", "kind", "merkle_root"):
        if not isinstance(entry.get(key), str):
            return f"an object entry's {key} is not a string"
    for key in ("bytes", "records"):
        if not _is_int(entry.get(key)):
            return f"an object entry's {key} is not an integer"
    try:
        check_name(entry["name"])
    except ValueError:
        return f"lists an object with an invalid name {entry['name']!r}"
    return None


def manifest_shape_problem(document: Any) -> str | None:
    """None when `document` has the shape of a manifest (every field the checks read, of
    the type they read it as), else what is wrong: a manifest is untrusted input until its
    signature is checked, and a wrong type must be a FAIL, never a crash."""
    if not isinstance(document, dict):
        return f"a JSON {type(document).__name__}, not an object"
    for key in ("stream", "batch", "algorithm", "key_id", "signature"):
        if not isinstance(document.get(key), str):
            return f"{key} is not a string"
    if not isinstance(document.get("kind", "batch"), str):
        return "kind is not a string"
    if not _is_int(document.get("index")):
        return "index is not an integer"
    for key in ("first", "last"):
        if not _optional_int(document.get(key)):
            return f"{key} is not an integer"
    previous = document.get("previous")
    if previous is not None and not _link_shape(previous):
        return "previous is not a link (name, sha256)"
    objects = document.get("objects")
    if not isinstance(objects, list):
        return "objects is not a list"
    for entry in objects:
        if (problem := _entry_problem(entry)) is not None:
            return problem
    return None
