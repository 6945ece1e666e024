"""Blob container clients as every phiwatch store makes them (archive, outbox, state)."""

from __future__ import annotations

from typing import Any

from azure.storage.blob import ContainerClient


def container_from_url(
    container_url: str, credential: Any = None, **kwargs: Any
) -> ContainerClient:
    """`https://<account>.blob.core.windows.net/<container>`, signed in with
    DefaultAzureCredential (the managed identity in Azure) unless a credential is given."""
    if credential is None:
        from azure.identity import DefaultAzureCredential  # noqa: PLC0415 (slow import)

        credential = DefaultAzureCredential()
    return ContainerClient.from_container_url(container_url, credential=credential, **kwargs)
