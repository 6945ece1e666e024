"""Who signs archive manifests: where the key comes from (`load_signer`), and the Key Vault
ES256 signer through its `client` seam, down to a verified manifest chain."""

from __future__ import annotations

import base64
import hashlib
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
from azure.keyvault.keys.crypto import SignatureAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature

from phiwatch.archive import signer as signer_module
from phiwatch.archive.archive import Archive
from phiwatch.archive.signer import (
    SIGNING_KEY_FILE,
    Ed25519Signer,
    KeyVaultSigner,
    SignerError,
    key_id,
    load_public_key,
    load_signer,
    local_public_key,
    verify_signature,
)
from phiwatch.archive.store import LocalStore
from phiwatch.archive.verify import verify_archive
from phiwatch.config import Settings
from phiwatch.wiring import build_pipeline
from tests.conftest import TEST_SIGNING_SEED_HEX
from tests.harness import CollectingSink, batches_of
from tests.records import activity, fhir, keyvault

SEED = bytes.fromhex(TEST_SIGNING_SEED_HEX)
# key_id = first 16 hex digits of SHA-256(SubjectPublicKeyInfo DER) of the seed's public key.
SEED_KEY_ID = "a4b21eec12c1fc87"
NO_KEY = (
    "no archive signing key: set PHIWATCH_ARCHIVE_SIGNING_KEY_URL (a Key Vault EC P-256 key) "
    "or PHIWATCH_ARCHIVE_SIGNING_KEY (an Ed25519 seed)"
)


@pytest.fixture
def empty_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No configured key at all: PHIWATCH_ARCHIVE_SIGNING_KEY(_URL) unset, PHIWATCH_HOME empty."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("PHIWATCH_HOME", str(home))
    monkeypatch.delenv("PHIWATCH_ARCHIVE_SIGNING_KEY", raising=False)
    monkeypatch.delenv("PHIWATCH_ARCHIVE_SIGNING_KEY_URL", raising=False)
    return home


def pkcs8_pem(seed: bytes) -> str:
    return (
        ed25519.Ed25519PrivateKey.from_private_bytes(seed)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )


# --- load_signer --------------------------------------------------------------------------


def test_the_test_seed_has_the_documented_key_id():
    expected = hashlib.sha256(
        ed25519.Ed25519PrivateKey.from_private_bytes(SEED)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    ).hexdigest()[:16]
    assert expected == SEED_KEY_ID
    assert Ed25519Signer.from_seed(SEED).key_id == SEED_KEY_ID


@pytest.mark.parametrize(
    "encoding",
    [
        pytest.param(lambda s: s.hex(), id="hex"),
        pytest.param(lambda s: s.hex().upper() + "\n", id="hex-upper-newline"),
        pytest.param(lambda s: base64.b64encode(s).decode(), id="base64"),
        pytest.param(pkcs8_pem, id="pkcs8-pem"),
    ],
)
def test_signing_key_from_configuration(monkeypatch, empty_home, encoding):
    monkeypatch.setenv("PHIWATCH_ARCHIVE_SIGNING_KEY", encoding(SEED))
    signer = load_signer(Settings())
    assert (signer.algorithm, signer.key_id) == ("Ed25519", SEED_KEY_ID)
    data = b"manifest payload"
    assert verify_signature(
        load_public_key(signer.public_key_pem()), "Ed25519", data, signer.sign(data)
    )
    assert list(empty_home.iterdir()) == []  # a configured key never writes a key file


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(bytes(31).hex(), id="hex-31-bytes"),
        pytest.param(bytes(33).hex(), id="hex-33-bytes"),
        pytest.param(base64.b64encode(bytes(16)).decode(), id="base64-16-bytes"),
    ],
)
def test_wrong_length_seed_is_refused(monkeypatch, empty_home, text):
    monkeypatch.setenv("PHIWATCH_ARCHIVE_SIGNING_KEY", text)
    with pytest.raises(SignerError) as caught:
        load_signer(Settings(allow_generated_key=True))
    assert str(caught.value) == "PHIWATCH_ARCHIVE_SIGNING_KEY must be a 32-byte Ed25519 seed"
    assert list(empty_home.iterdir()) == []


def test_a_pem_of_another_key_type_is_refused(monkeypatch, empty_home):
    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    monkeypatch.setenv("PHIWATCH_ARCHIVE_SIGNING_KEY", pem)
    with pytest.raises(SignerError, match=r"^PHIWATCH_ARCHIVE_SIGNING_KEY must be an Ed25519"):
        load_signer(Settings())


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("abc", id="odd-length-not-hex-not-base64"),
        pytest.param("<placeholder>", id="placeholder"),
    ],
)
def test_garbage_signing_key_is_a_signer_error(monkeypatch, empty_home, text):
    """A typo in PHIWATCH_ARCHIVE_SIGNING_KEY must end in a message naming the setting, not a
    decoding traceback (the CLI and `local_public_key` catch SignerError)."""
    monkeypatch.setenv("PHIWATCH_ARCHIVE_SIGNING_KEY", text)
    with pytest.raises(SignerError, match="PHIWATCH_ARCHIVE_SIGNING_KEY"):
        load_signer(Settings())


def test_no_key_and_no_generation_names_what_to_set(empty_home):
    with pytest.raises(SignerError) as caught:
        load_signer(Settings())
    assert str(caught.value) == NO_KEY
    assert list(empty_home.iterdir()) == []


def test_generated_key_is_kept_private_in_home_and_reused(empty_home):
    first = load_signer(Settings(allow_generated_key=True))
    path = empty_home / SIGNING_KEY_FILE
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in empty_home.iterdir()] == [SIGNING_KEY_FILE]
    assert len(bytes.fromhex(path.read_text().strip())) == 32
    second = load_signer(Settings(allow_generated_key=True))
    assert second.key_id == first.key_id
    # Once it exists, the file is used even where generation is not allowed.
    assert load_signer(Settings()).key_id == first.key_id
    assert first.key_id != SEED_KEY_ID
    assert local_public_key(Settings()) == (first.key_id, first.public_key_pem())


def test_configured_key_beats_the_home_file(monkeypatch, empty_home):
    (empty_home / SIGNING_KEY_FILE).write_text(("11" * 32) + "\n")
    assert (
        load_signer(Settings()).key_id == Ed25519Signer.from_seed(bytes.fromhex("11" * 32)).key_id
    )
    monkeypatch.setenv("PHIWATCH_ARCHIVE_SIGNING_KEY", TEST_SIGNING_SEED_HEX)
    assert load_signer(Settings()).key_id == SEED_KEY_ID


def test_key_vault_url_beats_a_configured_seed(monkeypatch, empty_home):
    vault = FakeKeyVault()
    asked: list[str] = []

    def from_key_url(cls, key_url, credential=None):
        asked.append(key_url)
        return cls(vault, vault.public_key)

    monkeypatch.setattr(KeyVaultSigner, "from_key_url", classmethod(from_key_url))
    url = "https://kv-phi.vault.azure.net/keys/archive-signing/0123456789abcdef"
    monkeypatch.setenv("PHIWATCH_ARCHIVE_SIGNING_KEY_URL", url)
    monkeypatch.setenv("PHIWATCH_ARCHIVE_SIGNING_KEY", TEST_SIGNING_SEED_HEX)
    signer = load_signer(Settings())
    assert asked == [url]
    assert isinstance(signer, KeyVaultSigner)
    assert (signer.algorithm, signer.key_id) == ("ES256", key_id(vault.public_key))


def test_local_public_key_never_creates_a_key(monkeypatch, empty_home):
    assert local_public_key(Settings()) is None
    assert local_public_key(Settings(allow_generated_key=True)) is None
    assert list(empty_home.iterdir()) == []
    monkeypatch.setenv("PHIWATCH_ARCHIVE_SIGNING_KEY", TEST_SIGNING_SEED_HEX)
    kid, pem = local_public_key(Settings())
    assert kid == SEED_KEY_ID
    assert key_id(load_public_key(pem)) == SEED_KEY_ID
    assert list(empty_home.iterdir()) == []


# --- KeyVaultSigner -----------------------------------------------------------------------


class FakeKeyVault:
    """Plays `CryptographyClient.sign` for an EC P-256 key: takes a SHA-256 digest, returns
    the JWS signature (raw big-endian r||s, 32 + 32 bytes)."""

    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        self.public_key = self._key.public_key()
        self.calls: list[tuple[object, bytes]] = []

    def sign(self, algorithm, digest):
        self.calls.append((algorithm, digest))
        if algorithm is not SignatureAlgorithm.es256 or len(digest) != 32:
            raise ValueError(f"Key Vault refuses {algorithm!r} over {len(digest)} bytes")
        r, s = decode_dss_signature(self._key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256()))))
        return SimpleNamespace(signature=r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def test_key_vault_signer_sends_a_digest_and_returns_a_verifiable_signature():
    vault = FakeKeyVault()
    signer = KeyVaultSigner(vault, vault.public_key)
    assert signer.algorithm == "ES256"
    assert signer.key_id == key_id(vault.public_key)
    data = b'{"index":0,"stream":"s"}'
    signature = signer.sign(data)
    assert vault.calls == [(SignatureAlgorithm.es256, hashlib.sha256(data).digest())]
    assert vault.calls[0][0] is SignatureAlgorithm.es256
    assert verify_signature(vault.public_key, "ES256", data, signature)
    assert not verify_signature(vault.public_key, "ES256", data + b" ", signature)
    assert load_public_key(signer.public_key_pem()).public_numbers() == (
        vault.public_key.public_numbers()
    )


def test_key_vault_signature_with_short_r_and_s_still_verifies():
    """r or s below 2**248 have leading zero bytes in Key Vault's fixed-width r||s."""
    vault = FakeKeyVault()
    signer = KeyVaultSigner(vault, vault.public_key)
    short = {"r": 0, "s": 0}
    for i in range(20_000):  # about 1 in 128 signatures has a short r (or s)
        data = f"payload {i}".encode()
        signature = signer.sign(data)
        r, s = decode_dss_signature(signature)
        short["r"] += r < 2**248
        short["s"] += s < 2**248
        if r < 2**248 or s < 2**248:
            assert verify_signature(vault.public_key, "ES256", data, signature), i
        if short["r"] and short["s"]:
            break
    assert short["r"] and short["s"]


def test_manifest_chain_signed_in_key_vault_verifies(tmp_path):
    vault = FakeKeyVault()
    kv_signer = KeyVaultSigner(vault, vault.public_key)
    store = LocalStore(tmp_path / "archive")
    pipeline = build_pipeline(Settings(), store, [CollectingSink()])
    pipeline.archive = Archive(store, kv_signer)
    records = [fhir(i * 4, path=f"Patient/p{i}") for i in range(60)]
    records += [keyvault(400 + i, status=403, secret=f"s{i}") for i in range(6)]
    records += [activity(700)]
    for batch in batches_of(records, per_body=5, bodies_per_batch=3):
        pipeline.process(batch)
    pipeline.finish()
    assert pipeline.archive.manifests_written >= 4
    assert len(vault.calls) == pipeline.archive.manifests_written

    report = verify_archive(store, {kv_signer.key_id: vault.public_key})
    assert report.problems == []
    assert report.summary().endswith("chain intact")

    ed_key = Ed25519Signer.from_seed(SEED)
    untrusted = verify_archive(store, {ed_key.key_id: load_public_key(ed_key.public_key_pem())})
    manifests = sorted(n for n in store.list("manifests/"))
    assert untrusted.problems == [
        f"{name}: signed by untrusted key {kv_signer.key_id!r}" for name in manifests
    ]


def test_verify_signature_refuses_an_algorithm_mismatch():
    vault = FakeKeyVault()
    es = KeyVaultSigner(vault, vault.public_key)
    ed = Ed25519Signer.from_seed(SEED)
    ed_public = load_public_key(ed.public_key_pem())
    data = b"payload"
    es_sig, ed_sig = es.sign(data), ed.sign(data)
    assert verify_signature(vault.public_key, "ES256", data, es_sig)
    assert verify_signature(ed_public, "Ed25519", data, ed_sig)
    # The right key and signature under the other algorithm's name.
    assert not verify_signature(vault.public_key, "Ed25519", data, es_sig)
    assert not verify_signature(ed_public, "ES256", data, ed_sig)
    # A signature of one kind presented for the other kind's key.
    assert not verify_signature(ed_public, "Ed25519", data, es_sig)
    assert not verify_signature(vault.public_key, "ES256", data, ed_sig)
    assert not verify_signature(vault.public_key, "es256", data, es_sig)


class _FakeKeyClient:
    def __init__(self, crv: str, public_key: ec.EllipticCurvePublicKey) -> None:
        numbers = public_key.public_numbers()
        self.key = SimpleNamespace(
            key=SimpleNamespace(
                crv=crv, x=numbers.x.to_bytes(32, "big"), y=numbers.y.to_bytes(32, "big")
            )
        )
        self.asked: list[tuple[str, str | None]] = []

    def get_key(self, name, version=None):
        self.asked.append((name, version))
        return self.key


def test_from_key_url_reads_the_public_key_and_refuses_other_curves(monkeypatch):
    vault = FakeKeyVault()
    url = "https://kv-phi.vault.azure.net/keys/archive-signing/0123456789abcdef"
    for crv in ("P-256", "P-384"):
        client = _FakeKeyClient(crv, vault.public_key)
        monkeypatch.setattr(signer_module, "KeyClient", lambda vault_url, cred, c=client: c)
        monkeypatch.setattr(signer_module, "CryptographyClient", lambda key, cred: vault)
        if crv == "P-256":
            signer = KeyVaultSigner.from_key_url(url, credential=object())
            assert client.asked == [("archive-signing", "0123456789abcdef")]
            assert signer.key_id == key_id(vault.public_key)
            assert verify_signature(vault.public_key, "ES256", b"x", signer.sign(b"x"))
        else:
            with pytest.raises(SignerError) as caught:
                KeyVaultSigner.from_key_url(url, credential=object())
            assert str(caught.value) == f"{url} is not an EC P-256 key (ES256 needs one)"
