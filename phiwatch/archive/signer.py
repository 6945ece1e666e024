"""Who signs archive manifests, and how a verifier checks them.

Locally (and wherever a key can be held in configuration) the signer is Ed25519. In Azure the
key can stay in Key Vault and sign through `CryptographyClient`; Key Vault has no Ed25519
keys, so that signer uses ES256 (ECDSA P-256, SHA-256). Every manifest names its algorithm
and the signer's key id (the SHA-256 of the public key), and a verifier accepts only keys it
was given: a key found inside the archive proves nothing.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from pathlib import Path
from typing import Any, Protocol

from azure.identity import DefaultAzureCredential
from azure.keyvault.keys import KeyClient, KeyVaultKeyIdentifier
from azure.keyvault.keys.crypto import CryptographyClient, SignatureAlgorithm
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from phiwatch.config import Settings
from phiwatch.storage.files import create_secret_file

SIGNING_KEY_FILE = "archive-signing.key"
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey


class SignerError(Exception):
    """The signing key is missing or unusable; the message says what to set."""


class Signer(Protocol):
    algorithm: str  # "Ed25519" or "ES256"
    key_id: str

    def sign(self, data: bytes) -> bytes: ...

    def public_key_pem(self) -> str: ...


def key_id(public_key: PublicKey) -> str:
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()[:16]


def _pem(public_key: PublicKey) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


class Ed25519Signer:
    algorithm = "Ed25519"

    def __init__(self, private_key: ed25519.Ed25519PrivateKey) -> None:
        self._key = private_key
        self.key_id = key_id(private_key.public_key())

    @classmethod
    def from_seed(cls, seed: bytes) -> Ed25519Signer:
        return cls(ed25519.Ed25519PrivateKey.from_private_bytes(seed))

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def public_key_pem(self) -> str:
        return _pem(self._key.public_key())


class KeyVaultSigner:
    """ES256 through Key Vault: the private key never leaves the vault, and every signature
    is itself audited by Key Vault (`KeySign`).

    `client` is an `azure.keyvault.keys.crypto.CryptographyClient` for an EC P-256 key (with
    `DefaultAzureCredential`); the public key comes from the key's JWK.
    """

    algorithm = "ES256"

    def __init__(self, client: Any, public_key: ec.EllipticCurvePublicKey) -> None:
        self._client = client
        self._public_key = public_key
        self.key_id = key_id(public_key)

    @classmethod
    def from_key_url(cls, key_url: str, credential: Any = None) -> KeyVaultSigner:
        credential = credential or DefaultAzureCredential()
        ident = KeyVaultKeyIdentifier(key_url)
        key = KeyClient(ident.vault_url, credential).get_key(ident.name, ident.version)
        # JsonWebKey sets its fields (crv, x, y) per key type at run time: not in its stubs.
        jwk: Any = key.key
        if jwk.crv != "P-256":
            raise SignerError(f"{key_url} is not an EC P-256 key (ES256 needs one)")
        numbers = ec.EllipticCurvePublicNumbers(
            int.from_bytes(jwk.x, "big"), int.from_bytes(jwk.y, "big"), ec.SECP256R1()
        )
        return cls(CryptographyClient(key, credential), numbers.public_key())

    def sign(self, data: bytes) -> bytes:
        digest = hashlib.sha256(data).digest()
        raw = self._client.sign(SignatureAlgorithm.es256, digest).signature
        # Key Vault returns r||s (JWS); store DER like any other ECDSA signature.
        half = len(raw) // 2
        return encode_dss_signature(
            int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
        )

    def public_key_pem(self) -> str:
        return _pem(self._public_key)


def load_public_key(pem: str | bytes) -> PublicKey:
    key = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
    if not isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey):
        raise SignerError("only Ed25519 and EC P-256 public keys sign phiwatch manifests")
    return key


def verify_signature(public_key: PublicKey, algorithm: str, data: bytes, signature: bytes) -> bool:
    try:
        if algorithm == "Ed25519" and isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(signature, data)
            return True
        if algorithm == "ES256" and isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
            return True
    except InvalidSignature:
        return False
    return False


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _parse_seed(text: str) -> bytes:
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text.encode(), password=None)
        except ValueError:
            raise SignerError("PHIWATCH_ARCHIVE_SIGNING_KEY is not a readable PEM key") from None
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise SignerError("PHIWATCH_ARCHIVE_SIGNING_KEY must be an Ed25519 private key")
        return key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
    try:
        seed = bytes.fromhex(text)
    except ValueError:
        try:
            seed = base64.b64decode(text, validate=True)
        except ValueError:
            raise SignerError(
                "PHIWATCH_ARCHIVE_SIGNING_KEY is neither hex, base64 nor PEM"
            ) from None
    if len(seed) != 32:
        raise SignerError("PHIWATCH_ARCHIVE_SIGNING_KEY must be a 32-byte Ed25519 seed")
    return seed


def load_signer(settings: Settings) -> Signer:
    """Key Vault key if configured, else an Ed25519 key from configuration, else (local
    embedded default only) one generated on first run and kept in PHIWATCH_HOME."""
    if settings.archive_signing_key_url:
        return KeyVaultSigner.from_key_url(settings.archive_signing_key_url)
    if settings.archive_signing_key is not None:
        return Ed25519Signer.from_seed(_parse_seed(settings.archive_signing_key.get_secret_value()))
    path = settings.home / SIGNING_KEY_FILE
    if path.exists():
        return Ed25519Signer.from_seed(_parse_seed(path.read_text()))
    if not settings.allow_generated_key:
        raise SignerError(
            "no archive signing key: set PHIWATCH_ARCHIVE_SIGNING_KEY_URL (a Key Vault EC "
            "P-256 key) or PHIWATCH_ARCHIVE_SIGNING_KEY (an Ed25519 seed)"
        )
    return Ed25519Signer.from_seed(_create_seed_file(path))


def local_public_key(settings: Settings) -> tuple[str, str] | None:
    """(key id, PEM) of the locally configured signer, without creating one."""
    try:
        signer = load_signer(settings.model_copy(update={"allow_generated_key": False}))
    except SignerError:
        return None
    return signer.key_id, signer.public_key_pem()


def _create_seed_file(path: Path) -> bytes:
    seed = secrets.token_bytes(32)
    if not create_secret_file(path, seed.hex() + "\n"):
        return _parse_seed(path.read_text())  # another first run won the race
    return seed
