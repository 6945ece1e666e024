"""What `phiwatch send` and `phiwatch consume` share: the namespace and hub options, the
seams where the real SDK clients are built (tests replace them), and how an Azure error is
reported."""

from __future__ import annotations

import contextlib
from enum import StrEnum
from typing import Annotated, Any

import typer

from phiwatch.commands.output import fail
from phiwatch.eventhubs.consumer import (
    ConsumerSource,
    EventHubsConsumer,
)
from phiwatch.eventhubs.names import (
    AZURE_ERRORS,
    one_line,
)
from phiwatch.eventhubs.producer import EventHubsProducer, Producer


class StartPosition(StrEnum):
    earliest = "earliest"
    latest = "latest"


class Stage(StrEnum):
    normalize = "normalize"
    detect = "detect"


NamespaceOpt = Annotated[
    str,
    typer.Option(
        "--namespace",
        envvar="EVENTHUB__fullyQualifiedNamespace",
        help="Event Hubs namespace: NAME or NAME.servicebus.windows.net "
        "(default: the Function App's EVENTHUB__fullyQualifiedNamespace).",
        show_default=False,
    ),
]

HubOpt = Annotated[
    str,
    typer.Option(
        "--hub",
        envvar="PHIWATCH_EVENTHUB_NAME",
        help="Event Hub name (default: PHIWATCH_EVENTHUB_NAME).",
        show_default=False,
    ),
]


def azure_errors() -> tuple[type[BaseException], ...]:
    """SDK errors meaning "could not talk to Azure": auth, DNS, rights, a missing hub."""
    return AZURE_ERRORS


def azure_problem(what: str, exc: BaseException) -> typer.Exit:
    return fail(f"{what}: {type(exc).__name__}: {one_line(exc)}", 1)


# Seams for tests: the real SDK clients are built here and nowhere else.
def make_producer(namespace: str, hub: str) -> Producer:
    return EventHubsProducer.connect(namespace, hub)


def make_consumer(
    namespace: str,
    hub: str,
    store: Any,
    consumer_group: str,
    *,
    max_wait_time: float,
    starting_position: str,
) -> ConsumerSource:
    return EventHubsConsumer.connect(
        namespace,
        hub,
        store,
        consumer_group,
        max_wait_time=max_wait_time,
        starting_position=starting_position,
    )


def close_quietly(thing: object) -> None:
    close = getattr(thing, "close", None) or getattr(thing, "stop", None)
    if close is not None:
        with contextlib.suppress(Exception):  # best effort on the way out
            close()
