"""Azurite (local Azure Storage) for tests, as a pytest plugin (`pytest_plugins` in conftest).

Fixtures:
* `azurite` (session): one Azurite process on three free loopback ports, data in a temp folder.
  Yields an `Azurite` with `.connection_string`, `.blob_endpoint`, `.queue_endpoint`,
  `.table_endpoint`, `.location`, `.pid`, `.startup_seconds` and `.blob_service()`.
  Started only when a test asks for it; stopped by pid at the end of the session.
* `blob_container` (function): a fresh, uniquely named, empty container (a `ContainerClient`).
* `store` (function, params "local" and "blob"): the same create-only `ObjectStore` contract
  over `LocalStore(tmp_path)` and over `BlobStore` on a fresh Azurite container. Any test that
  takes `store` runs once per backend.

Azurite comes from npm (`package.json` pins it; `make test` runs `npm ci`). A missing binary
fails the tests: skipping them would let the blob backend go untested without anyone noticing.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from phiwatch.archive.blob_store import BlobStore
from phiwatch.archive.store import LocalStore, ObjectStore

REPO = Path(__file__).resolve().parent.parent
AZURITE_BIN = REPO / "node_modules" / ".bin" / "azurite"
HOST = "127.0.0.1"
ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key (public, documented; it must be exact or every call
# fails with 403 AuthorizationFailure).
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
STARTUP_TIMEOUT_S = 30.0
# No retries: a dead Azurite must fail a test at once, not after minutes of SDK back-off.
CLIENT_KWARGS: dict[str, Any] = {"retry_total": 0, "connection_timeout": 5, "read_timeout": 30}


@dataclass(frozen=True)
class Azurite:
    blob_endpoint: str
    queue_endpoint: str
    table_endpoint: str
    location: Path
    pid: int
    startup_seconds: float

    @property
    def connection_string(self) -> str:
        # The explicit form: some SDK clients refuse `UseDevelopmentStorage=true`.
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.blob_endpoint};QueueEndpoint={self.queue_endpoint};"
            f"TableEndpoint={self.table_endpoint};"
        )

    def blob_service(self, **kwargs: Any) -> BlobServiceClient:
        return BlobServiceClient.from_connection_string(
            self.connection_string, **{**CLIENT_KWARGS, **kwargs}
        )


def _free_ports(count: int) -> list[int]:
    # Hold all sockets open until every port is chosen, so the three are distinct.
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in socks:
            s.bind((HOST, 0))
        return [s.getsockname()[1] for s in socks]


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((HOST, port)) == 0


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    if not AZURITE_BIN.exists():
        pytest.fail(
            f"Azurite is not installed ({AZURITE_BIN} is missing): run `npm ci` in {REPO} "
            "(make test does it)",
            pytrace=False,
        )
    location = tmp_path_factory.mktemp("azurite")
    blob_port, queue_port, table_port = _free_ports(3)
    log = location / "azurite.stderr"
    cmd = [
        str(AZURITE_BIN),
        "--silent",
        "--disableTelemetry",
        # azure-storage-blob 12.31 sends an x-ms-version newer than Azurite accepts.
        "--skipApiVersionCheck",
        "--location",
        str(location / "data"),
        "--blobHost",
        HOST,
        "--blobPort",
        str(blob_port),
        "--queueHost",
        HOST,
        "--queuePort",
        str(queue_port),
        "--tableHost",
        HOST,
        "--tablePort",
        str(table_port),
    ]
    (location / "data").mkdir()
    started = time.monotonic()
    with log.open("wb") as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
    try:
        ports = (blob_port, queue_port, table_port)
        while not all(_accepts(p) for p in ports):
            if proc.poll() is not None or time.monotonic() - started > STARTUP_TIMEOUT_S:
                what = (
                    f"exited with {proc.returncode}"
                    if proc.poll() is not None
                    else f"did not listen on {HOST}:{ports} within {STARTUP_TIMEOUT_S:.0f} s"
                )
                pytest.fail(
                    f"Azurite {what}.\ncommand: {' '.join(cmd)}\nstderr/stdout:\n"
                    + log.read_text(errors="replace"),
                    pytrace=False,
                )
            time.sleep(0.05)
        server = Azurite(
            blob_endpoint=f"http://{HOST}:{blob_port}/{ACCOUNT}",
            queue_endpoint=f"http://{HOST}:{queue_port}/{ACCOUNT}",
            table_endpoint=f"http://{HOST}:{table_port}/{ACCOUNT}",
            location=location,
            pid=proc.pid,
            startup_seconds=time.monotonic() - started,
        )
        try:  # one real request: the ports are Azurite's and the dev key is right
            server.blob_service().get_service_properties()
        except Exception as e:
            pytest.fail(
                f"Azurite listens but does not answer ({e!r}); running: {proc.poll() is None}"
                f"\nstderr/stdout:\n{log.read_text(errors='replace')}",
                pytrace=False,
            )
        yield server
    finally:
        _stop(proc)


@pytest.fixture
def blob_container(azurite: Azurite) -> ContainerClient:
    """A new empty container with a unique name (retry_total=0 client)."""
    container = azurite.blob_service().get_container_client(f"t-{uuid.uuid4().hex}")
    container.create_container()
    return container


@pytest.fixture(params=["local", "blob"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """An empty create-only store, once per backend. Azurite starts only for "blob"."""
    if request.param == "local":
        return LocalStore(tmp_path / "archive")
    container: ContainerClient = request.getfixturevalue("blob_container")
    # Azurite has no immutability support; the WORM check has its own tests.
    return BlobStore(container, require_immutability=False)
