"""Event Hubs namespace, hub and checkpoint-container names, checked before anything
touches the network, with messages meant for the user."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from azure.core.exceptions import AzureError
from azure.eventhub.exceptions import EventHubError

if TYPE_CHECKING:
    pass


SERVICEBUS_SUFFIX = ".servicebus.windows.net"

_NAMESPACE_NAME = re.compile(r"^[a-z][a-z0-9-]{4,48}[a-z0-9]$")

_HOST_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")

_CONTAINER_NAME = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")


# SDK errors meaning "could not talk to Azure": auth, DNS, rights, a missing hub.
AZURE_ERRORS: tuple[type[BaseException], ...] = (AzureError, EventHubError)


class EventHubsConfigError(ValueError):
    """A namespace, hub or checkpoint-store setting that cannot work; meant for the user."""


def fully_qualified_namespace(namespace: str) -> str:
    """`myns` → `myns.servicebus.windows.net`; a host name is kept (lower-cased).

    Accepts what people paste: `sb://myns.servicebus.windows.net/` or `myns.servicebus.windows.net`.
    """
    text = namespace.strip().lower()
    for prefix in ("sb://", "amqps://", "https://"):
        text = text.removeprefix(prefix)
    text = text.rstrip("/")
    if "." not in text:
        if not _NAMESPACE_NAME.match(text):
            raise EventHubsConfigError(
                f"--namespace {namespace!r}: not an Event Hubs namespace name (6-50 letters, "
                "digits and hyphens, starting with a letter) or host name "
                "(NAME.servicebus.windows.net)"
            )
        return text + SERVICEBUS_SUFFIX
    labels = text.split(".")
    if len(text) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        raise EventHubsConfigError(
            f"--namespace {namespace!r}: not a valid host name (expected NAME or "
            "NAME.servicebus.windows.net)"
        )
    return text


def check_hub_name(hub: str) -> str:
    if not hub or len(hub) > 256 or not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", hub):
        raise EventHubsConfigError(
            f"--hub {hub!r}: not an Event Hub name (letters, digits, '.', '_', '-')"
        )
    return hub


def split_container_url(url: str) -> tuple[str, str]:
    """`https://acct.blob.core.windows.net/checkpoints` → (account URL, container name)."""
    parts = urlsplit(url.strip())
    segments = [s for s in parts.path.split("/") if s]
    if parts.scheme != "https" or not parts.netloc or len(segments) != 1:
        raise EventHubsConfigError(
            f"--checkpoint-store {url!r}: expected a Blob container URL, "
            "https://ACCOUNT.blob.core.windows.net/CONTAINER (or, with "
            "--checkpoint-connection-string, the container name)"
        )
    if parts.query:
        raise EventHubsConfigError(
            "--checkpoint-store: a SAS token in the URL is not accepted (it would show in "
            "process lists); grant the identity 'Storage Blob Data Contributor' on the container"
        )
    return f"https://{parts.netloc}", check_container(segments[0])


def check_container(name: str) -> str:
    if not _CONTAINER_NAME.match(name):
        raise EventHubsConfigError(
            f"checkpoint container {name!r}: not a Blob container name (3-63 lower-case "
            "letters, digits and single hyphens)"
        )
    return name


def one_line(exc: BaseException, limit: int = 300) -> str:
    """First meaningful line of an SDK error (DefaultAzureCredential's are many lines)."""
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    text = text or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
