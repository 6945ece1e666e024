"""`phiwatch archive ...`: verify an archive or an evidence bundle, export evidence."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import orjson
import typer
from cryptography.hazmat.primitives import serialization

from phiwatch.archive.evidence import EvidenceError, build_bundle, verify_bundle
from phiwatch.archive.signer import (
    PublicKey,
    SignerError,
    key_id,
    load_public_key,
    local_public_key,
)
from phiwatch.archive.store import ObjectStore
from phiwatch.archive.verify import verify_archive
from phiwatch.commands.output import fail, out
from phiwatch.config import Settings, env_archive_dir
from phiwatch.wiring import ConfigurationError, archive_to_read

app = typer.Typer(no_args_is_help=True, help="Verify the audit archive; export evidence.")

DEFAULT_ARCHIVE = "out/demo/archive"
LocationArg = Annotated[
    str | None,
    typer.Argument(
        help="Archive directory, or a container URL (https://ACCOUNT.blob.core.windows.net/C). "
        "With --connection-string, the container name. Default: PHIWATCH_ARCHIVE_DIR, else "
        f"{DEFAULT_ARCHIVE}."
    ),
]
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


def open_store(location: str | None, connection_string: str | None) -> ObjectStore:
    try:
        return archive_to_read(location or env_archive_dir() or DEFAULT_ARCHIVE, connection_string)
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
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise fail(f"{text!r} is not an ISO 8601 time") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


@app.command("verify")
def verify_command(
    location: LocationArg = None,
    since: Annotated[str | None, typer.Option(help="Only objects from this hour on.")] = None,
    until: Annotated[str | None, typer.Option(help="Only objects up to this hour.")] = None,
    public_key: KeysOpt = None,
    bundle: Annotated[
        Path | None, typer.Option(help="Verify an evidence bundle offline instead.")
    ] = None,
    connection_string: ConnectionOpt = None,
) -> None:
    """Prove the archive complete and unaltered (exit 0), or list what is wrong (exit 1)."""
    if bundle is not None:
        _verify_bundle(bundle, public_key)
        return
    store = open_store(location, connection_string)
    report = verify_archive(store, trusted_keys(public_key), since=_when(since), until=_when(until))
    for problem in report.problems:
        out.print(f"FAIL {problem}", markup=False, highlight=False)
    out.print(report.summary(), markup=False, highlight=False)
    if not report.ok:
        raise typer.Exit(1)


def _verify_bundle(path: Path, public_key: list[Path] | None) -> None:
    try:
        document = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise fail(f"{path}: not a readable evidence bundle ({exc})") from None
    pinned = trusted_keys(public_key) if public_key else None
    report = verify_bundle(document, pinned)
    for problem in report.problems:
        out.print(f"FAIL {problem}", markup=False, highlight=False)
    keys = ", ".join(sorted(report.key_ids))
    if not report.ok:
        out.print(
            f"bundle NOT verified: {len(report.problems)} problem(s)", markup=False, highlight=False
        )
        raise typer.Exit(1)
    pin = "pinned" if pinned else "NOT pinned: compare it with the key your organisation published"
    out.print(
        f"bundle verified: alert {document['alert_id']}, {report.records} records proven "
        f"against signed manifests; signer key {keys} ({pin})",
        markup=False,
        highlight=False,
    )


@app.command("evidence")
def evidence_command(
    alert_id: Annotated[str, typer.Argument(help="The AlertId.")],
    out_file: Annotated[Path, typer.Option("--out", help="Bundle file to write (JSON).")],
    archive: Annotated[str | None, typer.Option(help="Archive location (as for verify).")] = None,
    public_key: KeysOpt = None,
    connection_string: ConnectionOpt = None,
) -> None:
    """Export one alert with its evidence events, raw records and proofs, for offline review."""
    store = open_store(archive, connection_string)
    keys = trusted_keys(public_key)
    pems = {kid: _pem(key) for kid, key in keys.items()}
    try:
        bundle = build_bundle(store, alert_id, pems)
    except EvidenceError as exc:
        raise fail(str(exc), 1) from None
    out_file.write_bytes(orjson.dumps(bundle, option=orjson.OPT_INDENT_2) + b"\n")
    out.print(
        f"wrote {out_file}: alert, {len(bundle['events'])} events, "
        f"{len(bundle['raw_records'])} raw records, {len(bundle['manifests'])} manifests",
        markup=False,
        highlight=False,
    )


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
