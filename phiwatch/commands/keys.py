"""The tenant pseudonym key for the commands that must match the archive's pseudonyms
(`report`, `roster watchlists`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr, ValidationError

from phiwatch.commands.output import fail
from phiwatch.config import Settings
from phiwatch.pseudonym import Pseudonymizer, PseudonymKeyError, load_pseudonymizer


def tenant_pseudonymizer(key_file: Path | None, *, missing_hint: str = "") -> Pseudonymizer:
    """The tenant key as replay and the Function App take it (PHIWATCH_PSEUDONYM_KEY, else
    PHIWATCH_HOME's key file), or from `--key-file`. Never a generated one: pseudonyms under
    a new key match no event, so the command's output would silently find nothing.

    `missing_hint` follows "or give --key-file" when there is no key."""
    try:
        if key_file is None:
            settings = Settings(allow_generated_key=False)
        else:
            secret = SecretStr(key_file.read_text(encoding="utf-8").strip())
            settings = Settings(allow_generated_key=False, pseudonym_key=secret)
        return load_pseudonymizer(settings)
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"--key-file: cannot read it ({type(exc).__name__})") from None
    except ValidationError:
        raise fail("bad setting: the PHIWATCH_* environment does not validate") from None
    except PseudonymKeyError as exc:
        raise fail(f"{exc}; or give --key-file{missing_hint}") from None
