"""The Blob checkpoint store `phiwatch consume` keeps its place in."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from azure.core.exceptions import ClientAuthenticationError, ResourceNotFoundError
from azure.eventhub.extensions.checkpointstoreblob import BlobCheckpointStore
from azure.identity import DefaultAzureCredential

from phiwatch.eventhubs.names import (
    EventHubsConfigError,
    check_container,
    one_line,
    split_container_url,
)

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential


def checkpoint_store(
    location: str,
    connection_string: str | None = None,
    credential: TokenCredential | None = None,
    **client_kwargs: Any,
) -> BlobCheckpointStore:
    """The Blob checkpoint store: a container URL reached with DefaultAzureCredential, or
    (Azurite, local tests) a connection string plus the container name. The container must
    exist; `check_checkpoint_store` says so clearly when it does not."""
    if connection_string:
        if "usedevelopmentstorage=true" in connection_string.replace(" ", "").lower():
            raise EventHubsConfigError(
                "--checkpoint-connection-string: the checkpoint store does not accept "
                "UseDevelopmentStorage=true; pass Azurite's full connection string "
                "(DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=...;"
                "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;)"
            )
        container = check_container(location.rstrip("/").rsplit("/", 1)[-1])
        try:
            return BlobCheckpointStore.from_connection_string(
                connection_string, container, **client_kwargs
            )
        except ValueError as exc:
            # The SDK's message never echoes the key; keep it to one line anyway.
            raise EventHubsConfigError(
                f"--checkpoint-connection-string: {str(exc).splitlines()[0]}"
            ) from None
    account_url, container = split_container_url(location)
    if credential is None:
        credential = DefaultAzureCredential()
    return BlobCheckpointStore(account_url, container, credential=credential, **client_kwargs)


def check_checkpoint_store(
    store: BlobCheckpointStore, namespace: str, hub: str, consumer_group: str
) -> list[dict[str, Any]]:
    """Read the checkpoints once before receiving: a missing container or missing rights
    fail here with a clear message instead of as warnings every 30 s from the SDK's
    load-balancing loop. Returns the checkpoints found."""
    try:
        return list(store.list_checkpoints(namespace, hub, consumer_group))
    except ResourceNotFoundError:
        raise EventHubsConfigError(
            "the checkpoint container does not exist; create it first (infra creates it; "
            "for Azurite, create the container)"
        ) from None
    except ClientAuthenticationError as exc:
        raise EventHubsConfigError(
            f"cannot read the checkpoint container: {one_line(exc)} (the identity needs "
            "'Storage Blob Data Contributor' on it)"
        ) from None
