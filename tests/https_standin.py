"""What the local HTTP(S) stand-ins of Azure services share (tests only).

* `make_certificate`: a self-signed P-256 certificate for IP 127.0.0.1, so clients trust it
  through `ca_file` and product code needs no `enforce_https=False` (a bearer token is only
  ever sent over https).
* `HttpsStandIn`: the threaded server on 127.0.0.1 with a random port, TLS unless `tls=False`,
  started by `_serve(handler)` and ended by `stop()`. The handler reaches the stand-in as
  `self.server.standin`.
* `bearer_token` and `CHALLENGE` for the 401 answer, `send_json` for the reply, and
  `StaticToken`, the client's credential.

Each stand-in keeps only what its service's contract needs.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from azure.core.credentials import AccessToken
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HOST = "127.0.0.1"
# The challenge Azure services send with a 401, which azure-core's bearer policy reads.
CHALLENGE = {"WWW-Authenticate": 'Bearer authorization_uri="https://login.invalid/"'}


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed P-256 certificate for IP 127.0.0.1: (cert file, key file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "phiwatch logs-ingestion stand-in")])
    now = dt.datetime.now(dt.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "standin-cert.pem", directory / "standin-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


class StaticToken:
    """The credential of a test: one token, whatever the scope (the scopes are recorded)."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header, else ""."""
    value = authorization or ""
    return value[len("Bearer ") :] if value.startswith("Bearer ") else ""


def send_json(
    handler: BaseHTTPRequestHandler,
    status: int,
    body: Any,
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> None:
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(data)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(data)


class StandInServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        handler: type[BaseHTTPRequestHandler],
        standin: HttpsStandIn,
        context: ssl.SSLContext | None,
    ) -> None:
        self.standin = standin
        self.context = context
        super().__init__((HOST, 0), handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        if self.context is None:
            return sock, addr
        # Handshake in the handler thread, not in the accept loop.
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr


class HttpsStandIn:
    thread_name = "standin"
    server_class: type[StandInServer] = StandInServer

    def __init__(self, workdir: Path, *, tls: bool = True) -> None:
        self.tls = tls
        self.cert_file, self.key_file = make_certificate(workdir) if tls else (Path(), Path())
        self._server: StandInServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def ca_file(self) -> str:
        return str(self.cert_file)

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{HOST}:{self._server.server_address[1]}"

    def _serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        context = None
        if self.tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.cert_file, self.key_file)
        self._server = self.server_class(handler, self, context)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=self.thread_name,
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
