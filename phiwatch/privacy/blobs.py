"""A `DirectorySource` over blobs (PHIWATCH_ROSTER_URL, PHIWATCH_PATIENTS_URL): reloaded when a
blob changes.

In Azure the blobs are read with the managed identity (Storage Blob Data Reader on their
container). At most every `check_seconds` one properties request per blob says whether it
changed (its version id or ETag); a changed blob is downloaded on the condition that it is
still that version and streamed through the same loaders as a file (phiwatch/privacy/inputs.py),
never whole in memory. A blob that cannot be read (network, permissions, gone) keeps the
input in force and is tried again at the next check; one refused whole is tried again only
once it changes. `current()` never raises: the pipeline calls it once per batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import structlog
from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.blob import BlobClient

from phiwatch.privacy.csvrows import byte_lines, gunzipped
from phiwatch.privacy.inputs import InputName, Inputs, InputsSource
from phiwatch.privacy.loaded import LoadedDirectory
from phiwatch.pseudonym import Pseudonymizer

log = structlog.get_logger("phiwatch.privacy")

DEFAULT_CHECK_SECONDS = 300.0


class BlobDirectorySource(InputsSource):
    def __init__(
        self,
        pseudonymizer: Pseudonymizer,
        *,
        roster: BlobClient | None = None,
        patients: BlobClient | None = None,
        default_fhir_service: str | None = None,
        check_seconds: float = DEFAULT_CHECK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._inputs = Inputs(pseudonymizer, default_fhir_service)
        self._blobs: dict[InputName, BlobClient | None] = {"roster": roster, "patients": patients}
        self.configured = tuple(name for name, blob in self._blobs.items() if blob is not None)
        self._check_seconds = check_seconds
        self._clock = clock
        self._checked_at: float | None = None
        self._versions: dict[InputName, tuple[str | None, str]] = {}

    @classmethod
    def from_urls(
        cls,
        pseudonymizer: Pseudonymizer,
        *,
        roster_url: str | None,
        patients_url: str | None,
        connection_string: str | None = None,
        credential: Any = None,
        **kwargs: Any,
    ) -> BlobDirectorySource:
        """Blob URLs (`https://<account>.blob.core.windows.net/<container>/<blob>`, a
        `?versionid=` pins one version), signed in with DefaultAzureCredential unless a
        credential is given; with a connection string (Azurite) the URL names the blob."""
        clients = {
            name: _blob_client(url, connection_string, credential) if url else None
            for name, url in (("roster", roster_url), ("patients", patients_url))
        }
        return cls(pseudonymizer, roster=clients["roster"], patients=clients["patients"], **kwargs)

    def current(self) -> LoadedDirectory | None:
        now = self._clock()
        if self._checked_at is None or now - self._checked_at >= self._check_seconds:
            self._checked_at = now
            for name, blob in self._blobs.items():
                if blob is not None:
                    self._check(name, blob)
        return self._inputs.directory

    def _check(self, name: InputName, blob: BlobClient) -> None:
        try:
            props = blob.get_blob_properties()
            version = (props.version_id, props.etag)
            if self._versions.get(name) == version:
                return
            download = blob.download_blob(
                etag=props.etag, match_condition=MatchConditions.IfNotModified
            )
            self._inputs.load(name, byte_lines(gunzipped(download.chunks())))
        except ResourceNotFoundError:
            self._versions.pop(name, None)
            self._inputs.gone(name)
            return
        except AzureError as exc:
            # A changed-while-reading blob (412) lands here too: the next check reads the
            # new version whole.
            log.error(
                "privacy input blob not readable; the previous one stays",
                input=name,
                error=type(exc).__name__,
            )
            return
        self._versions[name] = version


def _blob_client(url: str, connection_string: str | None, credential: Any) -> BlobClient:
    parts = urlsplit(url)
    # A query is only a version pin: the identity signs in, so a SAS has no place here.
    version = parse_qs(parts.query).get("versionid", [None])[0]
    bare = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    if connection_string:
        # The URL only names the container and blob (its account is the connection's).
        parsed = BlobClient.from_blob_url(bare)
        return BlobClient.from_connection_string(
            connection_string, parsed.container_name, parsed.blob_name, version_id=version
        )
    if credential is None:
        from azure.identity import DefaultAzureCredential  # noqa: PLC0415 (slow import)

        credential = DefaultAzureCredential()
    return BlobClient.from_blob_url(bare, credential=credential, version_id=version)
