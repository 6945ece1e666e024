"""`phiwatch archive ...`: verify an archive or an evidence bundle, export evidence, show a
raw record.

Exit codes an auditor can script on: 0 verified, 1 problems found (or a bundle whose signer
is not pinned, unless --allow-unpinned), 2 usage (a bad option, no archive there), 3 no data
in the range asked for.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import orjson
import typer
from cryptography.hazmat.primitives import serialization
from rich.markup import escape

from phiwatch.archive.evidence import EvidenceError, build_bundle, verify_bundle
from phiwatch.archive.locate import RawRecordError, last_replay_archive, proven_raw
from phiwatch.archive.problems import group
from phiwatch.archive.signer import (
    PublicKey,
    SignerError,
    key_id,
    load_public_key,
    local_public_key,
)
from phiwatch.archive.store import ObjectStore
from phiwatch.archive.verify import verify_archive
from phiwatch.commands.output import err, fail, out
from phiwatch.config import Settings, env_archive_dir
from phiwatch.reports.timespec import TimeSpecError, parse_time
from phiwatch.wiring import ConfigurationError, archive_to_read

app = typer.Typer(no_args_is_help=True, help="Verify the audit archive; export evidence.")

VERIFIED, PROBLEMS, NO_DATA = 0, 1, 3
PHI_WARNING = (
    "warning: {what} raw PHI (patient identifiers, names, clinical details): keep it where "
    "PHI may be kept, share it only with who may see it, delete it when the case closes"
)
LocationArg = Annotated[
    str | None,
    typer.Argument(
        help="Archive directory, or a container URL (https://ACCOUNT.blob.core.windows.net/C). "
        "With --connection-string, the container name. Default: PHIWATCH_ARCHIVE_DIR, else "
        "the archive of the last `phiwatch replay`."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")]
ConnectionOpt = Annotated[
    str | None,
    typer.Option(
        "--connection-string",
        envvar="PHIWATCH_ARCHIVE_CONNECTION_STRING",
        help="Storage connection string (Azurite); LOCATION is then the container name.",
    ),
]
KeysOpt = Annotated[
    list[Path] | None,
    typer.Option("--public-key", help="Trusted signer public key (PEM); repeatable."),
]
ArchiveOpt = Annotated[
    str | None,
    typer.Option(help="Archive location (as for verify; default the last replay's)."),
]


def default_archive() -> str:
    """PHIWATCH_ARCHIVE_DIR, else where the last local replay wrote its archive."""
    chosen = env_archive_dir() or last_replay_archive(Settings().home)
    if chosen is None:
        raise fail(
            "no archive named: give LOCATION (or --archive), set PHIWATCH_ARCHIVE_DIR, or run "
            "`phiwatch replay` first (its archive is then the default)"
        )
    return chosen


def open_store(location: str | None, connection_string: str | None) -> ObjectStore:
    if location is None and connection_string is not None:
        raise fail("with --connection-string, name the container (LOCATION or --archive)")
    if location is None:
        location = default_archive()
        err.print(f"archive: {escape(location)}", highlight=False)
    try:
        return archive_to_read(location, connection_string)
    except ConfigurationError as exc:
        raise fail(str(exc)) from None


def trusted_keys(files: list[Path] | None) -> dict[str, PublicKey]:
    if files:
        keys = {}
        for path in files:
            try:
                key = load_public_key(path.read_bytes())
            except (OSError, ValueError, SignerError) as exc:
                raise fail(f"{path}: not a usable public key ({exc})") from None
            keys[key_id(key)] = key
        return keys
    local = local_public_key(Settings())
    if local is None:
        raise fail("no trusted public key: pass --public-key FILE (the signer's published key)")
    return {local[0]: load_public_key(local[1])}


def _when(text: str | None) -> datetime | None:
    """ISO 8601 (no zone: UTC) or a span back from now (`30d`), as every command takes."""
    if text is None:
        return None
    try:
        return parse_time(text, datetime.now(UTC))
    except TimeSpecError as exc:
        raise fail(str(exc)) from None


def _say(text: str) -> None:
    out.print(text, markup=False, highlight=False)


def _print_problems(problems: list[str], every: bool) -> None:
    """One FAIL line per cause (the problem itself when it is alone), or every problem."""
    if every:
        for problem in problems:
            _say(f"FAIL {problem}")
        return
    for grouped in group(problems):
        _say(f"FAIL {grouped.line()}")


def _json(document: dict[str, object]) -> None:
    _say(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())


@app.command("verify")
def verify_command(
    location: LocationArg = None,
    since: Annotated[str | None, typer.Option(help="Only objects from this hour on.")] = None,
    until: Annotated[str | None, typer.Option(help="Only objects up to this hour.")] = None,
    public_key: KeysOpt = None,
    bundle: Annotated[
        Path | None, typer.Option(help="Verify an evidence bundle offline instead.")
    ] = None,
    allow_unpinned: Annotated[
        bool,
        typer.Option(
            "--allow-unpinned",
            help="With --bundle and no --public-key: accept the bundle's own key (its id is "
            "printed, to compare with the published one). Without it that exits 1.",
        ),
    ] = False,
    every: Annotated[
        bool, typer.Option("--all", help="One FAIL line per problem, not per cause.")
    ] = False,
    as_json: JsonOpt = False,
    connection_string: ConnectionOpt = None,
) -> None:
    """Prove the archive complete and unaltered. Exit 0 verified, 1 problems found, 3 no data
    in the range; problems of one cause are one line (--all lists each)."""
    if bundle is not None:
        _verify_bundle(
            bundle, public_key, allow_unpinned=allow_unpinned, every=every, as_json=as_json
        )
        return
    store = open_store(location, connection_string)
    start, end = _when(since), _when(until)
    report = verify_archive(store, trusted_keys(public_key), since=start, until=end)
    empty = report.ok and report.objects == 0
    code = PROBLEMS if not report.ok else NO_DATA if empty else VERIFIED
    if as_json:
        _json(
            {
                "archive": store.location,
                "range": {
                    "since": start.isoformat() if start else None,
                    "until": end.isoformat() if end else None,
                },
                "status": {VERIFIED: "verified", PROBLEMS: "problems", NO_DATA: "no-data"}[code],
                "verified": code == VERIFIED,
                "exit_code": code,
                "objects": report.objects,
                "manifests": report.manifests,
                "streams": report.streams,
                "claims": report.claims,
                "problem_count": len(report.problems),
                "causes": [g.as_dict() for g in group(report.problems)],
            }
        )
    else:
        _print_problems(report.problems, every)
        if empty:
            _say(
                f"archive has no data in the range: 0 objects (its {report.manifests} "
                f"manifests in {report.streams} stream(s) check out); nothing to verify"
            )
        else:
            causes = len(group(report.problems))
            suffix = f" from {causes} cause(s)" if not report.ok else ""
            _say(report.summary() + suffix)
    if code:
        raise typer.Exit(code)


def _verify_bundle(
    path: Path,
    public_key: list[Path] | None,
    *,
    allow_unpinned: bool,
    every: bool,
    as_json: bool,
) -> None:
    try:
        document = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise fail(f"{path}: not a readable evidence bundle ({exc})") from None
    pinned = trusted_keys(public_key) if public_key else None
    report = verify_bundle(document, pinned)
    keys = ", ".join(sorted(report.key_ids))
    # An unpinned bundle proves only that it agrees with itself: whoever made it could have
    # signed it with their own key. That is a failure unless the auditor says otherwise.
    unpinned_refused = report.ok and pinned is None and not allow_unpinned
    code = PROBLEMS if not report.ok or unpinned_refused else VERIFIED
    alert_id = document.get("alert_id") if isinstance(document, dict) else None
    if as_json:
        _json(
            {
                "bundle": str(path),
                "alert_id": alert_id,
                "status": "verified" if code == VERIFIED else "problems",
                "verified": code == VERIFIED,
                "exit_code": code,
                "records": report.records,
                "signer_key_ids": sorted(report.key_ids),
                "pinned": pinned is not None,
                "problem_count": len(report.problems) + int(unpinned_refused),
                "causes": [g.as_dict() for g in group(report.problems)]
                + (
                    [{"cause": "unpinned-key", "count": 1, "summary": _UNPINNED, "problems": []}]
                    if unpinned_refused
                    else []
                ),
            }
        )
    elif not report.ok:
        _print_problems(report.problems, every)
        _say(f"bundle NOT verified: {len(report.problems)} problem(s)")
    elif unpinned_refused:
        _say(f"FAIL {_UNPINNED}")
        _say(
            f"bundle NOT verified: its proofs hold, but against its own key {keys}, which "
            "nothing pins"
        )
    else:
        pin = (
            "pinned"
            if pinned
            else "NOT pinned: compare it with the key your organisation published"
        )
        _say(
            f"bundle verified: alert {alert_id}, {report.records} records proven "
            f"against signed manifests; signer key {keys} ({pin})"
        )
    if code:
        raise typer.Exit(code)


_UNPINNED = (
    "no --public-key: the bundle's signer key is not pinned (pass the key your organisation "
    "published, or --allow-unpinned to accept the bundle's own and compare its id)"
)


@app.command("evidence")
def evidence_command(
    alert_id: Annotated[str, typer.Argument(help="The AlertId.")],
    out_file: Annotated[Path, typer.Option("--out", help="Bundle file to write (JSON).")],
    archive: ArchiveOpt = None,
    public_key: KeysOpt = None,
    connection_string: ConnectionOpt = None,
) -> None:
    """Export one alert with its evidence events, raw records and proofs, for offline review.
    The bundle holds raw PHI: it is written readable by its owner only."""
    store = open_store(archive, connection_string)
    keys = trusted_keys(public_key)
    pems = {kid: _pem(key) for kid, key in keys.items()}
    try:
        bundle = build_bundle(store, alert_id, pems)
    except EvidenceError as exc:
        raise fail(str(exc), 1) from None
    _write_private(out_file, orjson.dumps(bundle, option=orjson.OPT_INDENT_2) + b"\n")
    err.print(escape(PHI_WARNING.format(what=f"{out_file} holds")), highlight=False)
    alert = orjson.loads(bundle["alert"]["line"])
    patients = len(alert.get("PatientRefs") or [])
    _say(
        f"wrote {out_file}: alert, {len(bundle['events'])} events, "
        f"{len(bundle['raw_records'])} raw records, {len(bundle['manifests'])} manifests"
        + (f"; {patients} patients" if patients else "")
    )
    if alert.get("EvidenceComplete") is False or alert.get("PatientRefsComplete") is False:
        err.print(
            "warning: the alert's lists stopped at their bound (phiwatch.model.MAX_ALERT_REFS); "
            "the archive's events over its window hold the rest",
            highlight=False,
        )


@app.command("raw")
def raw_command(
    ref: Annotated[
        str,
        typer.Argument(
            help="A RawRecordRef (raw/yyyy/mm/dd/hh/<batch>.jsonl.gz#<line>), as a "
            "dead-letter or an event gives it."
        ),
    ],
    archive: ArchiveOpt = None,
    public_key: KeysOpt = None,
    connection_string: ConnectionOpt = None,
) -> None:
    """Print the exact raw record behind a RawRecordRef, once its object's SHA-256 matches a
    manifest signed by a trusted key (exit 1 and nothing printed otherwise). It is raw PHI."""
    store = open_store(archive, connection_string)
    try:
        proven = proven_raw(store, ref, trusted_keys(public_key))
    except RawRecordError as exc:
        raise fail(str(exc), 1) from None
    err.print(
        escape(
            f"{ref}: SHA-256 {proven.record_hash}, listed by {proven.manifest} "
            f"(signer key {proven.key_id}, trusted)"
        ),
        highlight=False,
    )
    err.print(escape(PHI_WARNING.format(what="the record on stdout is")), highlight=False)
    # The exact bytes, not a re-rendering: what the hash above proves.
    stdout = typer.get_binary_stream("stdout")
    stdout.write(proven.raw + b"\n")
    stdout.flush()


def _write_private(path: Path, data: bytes) -> None:
    """Create (or replace) `path` readable by its owner only: it holds PHI."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
    with os.fdopen(fd, "wb") as file:
        file.write(data)


@app.command("public-key")
def public_key_command() -> None:
    """Print the local signer's public key (PEM), for auditors to pin."""
    local = local_public_key(Settings())
    if local is None:
        raise fail("no local archive signing key yet (run phiwatch replay once)")
    out.print(local[1].rstrip(), markup=False, highlight=False)


def _pem(key: PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
