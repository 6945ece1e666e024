"""Azure Blob Storage as an archive object store (the production backend).

`BlobStore` speaks the same create-only protocol as `LocalStore` (see `store.py`):

* `put_if_absent` uploads with `overwrite=False`, so the SDK sends `If-None-Match: *` and the
  service refuses an existing name with 409 `BlobAlreadyExists`. On that refusal the existing
  blob is downloaded and compared by SHA-256: the same bytes are a redelivery (IDENTICAL), other
  bytes are a CONFLICT. Nothing here overwrites, deletes or creates containers.
* Write-once at the name level is this code's job; write-once at the storage level (WORM) is the
  container's. `check_immutability` reads the container's properties and, when required, refuses
  a container that is not version-level immutable with a retention policy. The policy itself is
  infrastructure (ARM/Bicep/az CLI, set by the platform engineer): phiwatch never sets, changes
  or removes an immutability policy or legal hold at run time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContainerClient, ContentSettings

from phiwatch.archive.store import ObjectMissing, PutOutcome, check_name, sha256_hex
from phiwatch.storage.blob_clients import container_from_url

_CONTENT_TYPES = {".gz": "application/gzip", ".json": "application/json"}


def content_type_for(name: str) -> str:
    for suffix, content_type in _CONTENT_TYPES.items():
        if name.endswith(suffix):
            return content_type
    return "application/octet-stream"


# --- immutability seam --------------------------------------------------------------------


class ArchiveNotImmutable(Exception):
    """The archive container is not write-once at the storage level."""


class ArchiveContainerMissing(Exception):
    """The archive container does not exist (phiwatch never creates it)."""


class _ContainerPropertiesSource(Protocol):
    """What `check_immutability` needs: a `ContainerClient`, or a stand-in in tests."""

    @property
    def url(self) -> str: ...

    def get_container_properties(self, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class ImmutabilityStatus:
    container_url: str
    version_level_immutability: bool  # x-ms-immutable-storage-with-versioning-enabled
    has_immutability_policy: bool  # a (default) time-based retention policy on the container
    has_legal_hold: bool

    @property
    def immutable(self) -> bool:
        # Enabling version-level immutability support alone does not protect anything: a
        # default time-based retention policy must also be set on the container.
        return self.version_level_immutability and self.has_immutability_policy

    def problem(self) -> str | None:
        """What is missing, worded for the platform engineer, or None if nothing is."""
        where = f"archive container {self.container_url}"
        if not self.version_level_immutability:
            return (
                f"{where} does not have version-level immutability (WORM) enabled. "
                "Enable blob versioning on the storage account, enable version-level "
                "immutability support on the container (immutableStorageWithVersioning.enabled "
                "= true in ARM/Bicep, or `az storage container-rm create "
                "--enable-vlw`), and set a default time-based retention policy on it "
                "(`az storage container immutability-policy create --period <days>`), then "
                "lock the policy. This is infrastructure: phiwatch never sets it at run time."
            )
        if not self.has_immutability_policy:
            return (
                f"{where} supports version-level immutability but has no default time-based "
                "retention policy, so its blobs are not protected. Set one "
                "(`az storage container immutability-policy create --period <days>`) and lock "
                "it. This is infrastructure: phiwatch never sets it at run time."
            )
        return None


class ImmutabilityCheck:
    """The seam between BlobStore and the container's WORM settings: reads the container's
    properties (one GET) and decides. Tests feed it a stand-in with `url` and
    `get_container_properties()`; Azurite reports no immutability at all."""

    def __init__(self, container_client: _ContainerPropertiesSource) -> None:
        self.container_client = container_client

    def status(self) -> ImmutabilityStatus:
        try:
            props = self.container_client.get_container_properties()
        except ResourceNotFoundError:
            raise ArchiveContainerMissing(
                f"archive container {self.container_client.url} does not exist; it is created "
                "by infrastructure together with its immutability policy"
            ) from None
        return ImmutabilityStatus(
            container_url=self.container_client.url,
            version_level_immutability=bool(
                getattr(props, "immutable_storage_with_versioning_enabled", None)
            ),
            has_immutability_policy=bool(getattr(props, "has_immutability_policy", None)),
            has_legal_hold=bool(getattr(props, "has_legal_hold", None)),
        )

    def run(self, *, required: bool) -> ImmutabilityStatus:
        status = self.status()
        if required and (problem := status.problem()) is not None:
            raise ArchiveNotImmutable(problem)
        return status


def check_immutability(
    container_client: _ContainerPropertiesSource, *, required: bool
) -> ImmutabilityStatus:
    """Read the container's immutability settings; when `required`, raise
    `ArchiveNotImmutable` unless it is version-level immutable with a retention policy."""
    return ImmutabilityCheck(container_client).run(required=required)


# --- the store ------------------------------------------------------------------------------


class BlobStore:
    """A blob container. Construction reads the container's properties once: that proves the
    container exists and the credential works, and (by default) that the container is WORM."""

    def __init__(self, container: ContainerClient, *, require_immutability: bool = True) -> None:
        self.container = container
        self.location = container.url
        self.immutability = check_immutability(container, required=require_immutability)

    @classmethod
    def from_url(
        cls,
        container_url: str,
        credential: Any = None,
        *,
        require_immutability: bool = True,
        **client_kwargs: Any,
    ) -> BlobStore:
        """Production: `https://<account>.blob.core.windows.net/<container>`, authenticated with
        `DefaultAzureCredential` (managed identity in Azure) unless a credential is given."""
        client = container_from_url(container_url, credential, **client_kwargs)
        return cls(client, require_immutability=require_immutability)

    @classmethod
    def from_connection_string(
        cls,
        conn_str: str,
        container: str,
        *,
        require_immutability: bool = True,
        **client_kwargs: Any,
    ) -> BlobStore:
        """Azurite and tests (Azurite reports no immutability: pass require_immutability=False)."""
        client = ContainerClient.from_connection_string(conn_str, container, **client_kwargs)
        return cls(client, require_immutability=require_immutability)

    def put_if_absent(self, name: str, data: bytes) -> tuple[PutOutcome, str]:
        check_name(name)
        digest = sha256_hex(data)
        try:
            self.container.upload_blob(
                name,
                data,
                overwrite=False,  # If-None-Match: * -> 409 BlobAlreadyExists if the name is taken
                content_settings=ContentSettings(content_type=content_type_for(name)),
            )
        except ResourceExistsError:
            existing = sha256_hex(self.get(name))
            outcome = PutOutcome.IDENTICAL if existing == digest else PutOutcome.CONFLICT
            return outcome, existing
        return PutOutcome.CREATED, digest

    def get(self, name: str) -> bytes:
        check_name(name)
        try:
            return self.container.download_blob(name).readall()
        except ResourceNotFoundError:
            raise ObjectMissing(name) from None

    def list(self, prefix: str = "") -> Iterator[str]:
        return iter(sorted(self.container.list_blob_names(name_starts_with=prefix or None)))
