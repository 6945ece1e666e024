"""Keyed pseudonyms for patient identifiers (HMAC-SHA256).

A `PatientRef` lets detections count distinct patients and lets an investigator with the key
re-identify through the archive, while Sentinel, alerts and logs never see the identifier
itself (HIPAA minimum necessary).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path

from phiwatch.config import DEFAULT_IDENTIFIER_PATTERNS, Settings
from phiwatch.identifier_redaction import IdentifierRedactor
from phiwatch.privacy.tags import Tagger
from phiwatch.storage.files import create_secret_file

KEY_BYTES = 32
KEY_FILE_NAME = "pseudonym.key"


class PseudonymKeyError(Exception):
    """The pseudonymisation key is missing or unusable; the message says what to do."""


class Pseudonymizer:
    def __init__(
        self, key: bytes, identifier_patterns: Iterable[str] = DEFAULT_IDENTIFIER_PATTERNS
    ) -> None:
        if len(key) < KEY_BYTES:
            raise PseudonymKeyError(
                f"pseudonym key must be at least {KEY_BYTES} bytes, got {len(key)}"
            )
        self._key = key
        self.key_id = hashlib.sha256(b"phiwatch-pseudonym-key-id\x00" + key).hexdigest()[:12]
        self._cache: dict[tuple[str, str], str] = {}
        self._redactor = IdentifierRedactor(identifier_patterns, self.identifier_token)
        # `redact_identifiers(text) -> text`: the configured identifier segments of a name or
        # path as tokens (phiwatch.identifier_redaction); blob paths and events share it.
        self.redact_identifiers = self._redactor.redact

    def privacy_tagger(self) -> Tagger:
        """The roster's and patient index's tagger, keyed by this tenant key: one secret for
        every pseudonym (tags are in their own HMAC domains, unrelated to PatientRefs)."""
        return Tagger(self._key)

    def identifier_token(self, identifier: str) -> str:
        """Keyed token of an identifier found inside a name: `pt_` + 16 hex, case-blind.

        A separate HMAC domain from `patient_ref`: the token of `MRN12345` in a secret name
        must not equal the PatientRef of a FHIR patient whose logical id is `MRN12345`.
        """
        msg = b"phiwatch-identifier\x1f" + identifier.lower().encode("utf-8", "surrogatepass")
        return "pt_" + hmac.new(self._key, msg, hashlib.sha256).hexdigest()[:16]

    def keyed_hash(self, domain: str, value: str) -> str:
        """32 hex of a keyed hash of `value` in its own `domain` (a Storage credential, a
        blob path): equal values stay countable, nobody without the key can test a guess.

        Domains are separate HMAC inputs, so a value hashed in two domains (or as a patient
        id) gives unrelated outputs."""
        msg = b"phiwatch-keyed\x1f" + domain.encode() + b"\x1f"
        msg += value.encode("utf-8", "surrogatepass")
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()[:32]

    def patient_ref(self, namespace: str, patient_id: str) -> str:
        """Pseudonym of `patient_id` as known to `namespace`, compared in lower case: for a
        FHIR logical id, the FHIR service's ARM resource id as its records' `resourceId`
        carry it (`sources.fhir.namespace_of`; not the service's host name); for a business
        identifier, `fhir-identifier:<system>` (`sources.fhir_uri.identifier_namespace`).

        FHIR logical ids are unique per server only, so the server is part of the input.
        """
        cache_key = (namespace, patient_id)
        ref = self._cache.get(cache_key)
        if ref is None:
            msg = f"{namespace.lower()}\x1f{patient_id}".encode()
            ref = "pr_" + hmac.new(self._key, msg, hashlib.sha256).hexdigest()[:32]
            if len(self._cache) > 20_000:  # bounded: a cache, not a lookup table
                self._cache.clear()
            self._cache[cache_key] = ref
        return ref

    def patient_refs(self, namespace: str) -> Callable[[str], str]:
        """`patient_ref(namespace, ·)` for a patient index's millions of ids: the same HMAC
        with the namespace absorbed once and copied per id, and no cache (each id is new)."""
        base = hmac.new(self._key, f"{namespace.lower()}\x1f".encode(), hashlib.sha256)

        def ref(patient_id: str) -> str:
            mac = base.copy()
            mac.update(patient_id.encode())
            return "pr_" + mac.hexdigest()[:32]

        return ref


def _parse_key(text: str) -> bytes:
    text = text.strip()
    try:
        return bytes.fromhex(text)
    except ValueError:
        pass
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PseudonymKeyError("PHIWATCH_PSEUDONYM_KEY must be hex or base64") from exc


def load_pseudonymizer(settings: Settings) -> Pseudonymizer:
    if settings.pseudonym_key is not None:
        key = _parse_key(settings.pseudonym_key.get_secret_value())
        return Pseudonymizer(key, settings.identifier_patterns)
    key_file = settings.home / KEY_FILE_NAME
    if key_file.exists():
        return Pseudonymizer(_parse_key(key_file.read_text()), settings.identifier_patterns)
    if not settings.allow_generated_key:
        raise PseudonymKeyError(
            "no pseudonymisation key: set PHIWATCH_PSEUDONYM_KEY (in Azure, a Key Vault "
            "reference to the phiwatch pseudonym secret)"
        )
    return Pseudonymizer(_create_key_file(key_file), settings.identifier_patterns)


def _create_key_file(key_file: Path) -> bytes:
    key = secrets.token_bytes(KEY_BYTES)
    if not create_secret_file(key_file, key.hex() + "\n"):
        return _parse_key(key_file.read_text())  # another first run won the race
    return key
