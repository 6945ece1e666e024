"""`phiwatch send` (a canary, or local files into a test hub) and `phiwatch consume` (run the
pipeline as a standalone Event Hubs consumer, outside Azure Functions)."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from azure.core.exceptions import AzureError
from azure.eventhub.exceptions import EventHubError
from rich.console import Console
from rich.markup import escape

from detections import RegistryError
from phiwatch.archive.signer import SignerError
from phiwatch.config import Settings
from phiwatch.envelope import InputError, discover
from phiwatch.eventhub_host import (
    SETTINGS_ERRORS,
    ConfigurationError,
    DetectBatchProcessor,
    EventHubBatchProcessor,
    EventHubMessage,
    _settings_problem,
)
from phiwatch.eventhubs_io import (
    DEFAULT_CONSUMER_GROUP,
    MAX_WAIT_SECONDS,
    START_POSITIONS,
    BatchNotProcessed,
    BatchProcessor,
    ConsumeReport,
    ConsumerSource,
    EventHubsConfigError,
    EventHubsConsumer,
    EventHubsProducer,
    Producer,
    SendReport,
    check_checkpoint_store,
    check_hub_name,
    checkpoint_store,
    consume,
    describe_seqs,
    fully_qualified_namespace,
    one_line,
    send_files,
)
from phiwatch.logs import configure_logging
from phiwatch.pipeline import BatchResult
from phiwatch.pseudonym import PseudonymKeyError
from phiwatch.sources.canary import canary_record

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


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


def _azure_errors() -> tuple[type[BaseException], ...]:
    """SDK errors meaning "could not talk to Azure": auth, DNS, rights, a missing hub."""
    return (AzureError, EventHubError)


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    return typer.Exit(code)


def _azure_problem(what: str, exc: BaseException) -> typer.Exit:
    return _fail(f"{what}: {type(exc).__name__}: {one_line(exc)}", 1)


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


def _close(thing: object) -> None:
    close = getattr(thing, "close", None) or getattr(thing, "stop", None)
    if close is not None:
        with contextlib.suppress(Exception):  # best effort on the way out
            close()


SYNTHETIC_REFUSED = (
    "refusing to send files to {target} without --allow-synthetic: files such as "
    "samples/logs hold synthetic incidents, which would be archived for the retention period "
    "(six years by default, immutable) and raise alerts and incidents in Sentinel. To check a "
    "production deployment send a canary (--canary); pass --allow-synthetic only for a test "
    "deployment"
)


def send_command(
    namespace: NamespaceOpt,
    hub: HubOpt,
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Files (.json, .jsonl, .ndjson, optionally .gz) or directories; needs "
            "--allow-synthetic.",
            show_default=False,
        ),
    ] = None,
    canary: Annotated[
        bool,
        typer.Option(
            "--canary",
            help="Send one PhiwatchCanary record (a time and an id): archived raw, counted as "
            "the skip `canary`, shown by /api/health as last seen, never an event or alert.",
        ),
    ] = False,
    allow_synthetic: Annotated[
        bool,
        typer.Option(
            "--allow-synthetic",
            help="Allow sending files: their records are archived (immutably) and detected "
            "on like real ones. For test deployments only.",
        ),
    ] = False,
) -> None:
    """Send a canary to a hub (check a deployment), or local files to a test hub.

    --canary sends one record of category PhiwatchCanary that goes the whole way a real record
    goes and is then counted as a `canary` skip. Files: each body (a line of .jsonl, a .json
    file or each element of a .json array) becomes one event, in batches under the hub's size
    limit; refused without --allow-synthetic. Signs in with DefaultAzureCredential (the
    identity needs 'Azure Event Hubs Data Sender').
    """
    configure_logging(os.environ.get("PHIWATCH_LOG_LEVEL", "WARNING"))
    try:
        fqns = fully_qualified_namespace(namespace)
        check_hub_name(hub)
    except EventHubsConfigError as exc:
        raise _fail(str(exc)) from None
    if canary and paths:
        raise _fail("--canary sends one canary record: give no files with it")
    if canary:
        _send_canary(fqns, hub)
        return
    if not paths:
        raise _fail("nothing to send: give files (with --allow-synthetic) or --canary")
    if not allow_synthetic:
        raise _fail(SYNTHETIC_REFUSED.format(target=f"{fqns}/{hub}"))
    try:
        discover(paths)  # every path is checked before anything is sent
    except InputError as exc:
        raise _fail(str(exc)) from None
    report = SendReport()
    producer: Producer | None = None
    try:
        producer = make_producer(fqns, hub)
        send_files(paths, producer, report=report)
    except InputError as exc:
        raise _fail(f"{exc} ({report.summary()} before this)", 1) from None
    except _azure_errors() as exc:
        sent = f" ({report.summary()} before the failure)" if report.bodies else ""
        raise _azure_problem(f"cannot send to {fqns}/{hub}{sent}", exc) from None
    finally:
        if producer is not None:
            _close(producer)
    out.print(f"{report.summary()} to {fqns}/{hub}", markup=False, highlight=False)
    if report.skipped:
        for problem in report.skipped:
            err.print(f"[bold red]error:[/] {escape(problem)}", highlight=False)
        raise typer.Exit(1)


def _send_canary(fqns: str, hub: str) -> None:
    canary_id = str(uuid.uuid4())
    body = json.dumps({"records": [canary_record(canary_id=canary_id)]}).encode()
    producer: Producer | None = None
    try:
        producer = make_producer(fqns, hub)
        producer.send_batch([body])
    except _azure_errors() as exc:
        raise _azure_problem(f"cannot send the canary to {fqns}/{hub}", exc) from None
    finally:
        if producer is not None:
            _close(producer)
    out.print(
        f"sent canary {canary_id} to {fqns}/{hub}; /api/health shows it as "
        "batches.canary_last_seen once normalize has read it",
        markup=False,
        highlight=False,
    )


def consume_command(
    namespace: NamespaceOpt,
    hub: HubOpt,
    checkpoint_store_url: Annotated[
        str,
        typer.Option(
            "--checkpoint-store",
            envvar="PHIWATCH_CHECKPOINT_STORE_URL",
            help="Checkpoint Blob container URL, https://ACCOUNT.blob.core.windows.net/C "
            "(DefaultAzureCredential; the container must exist). With "
            "--checkpoint-connection-string: the container name.",
            show_default=False,
        ),
    ],
    checkpoint_connection_string: Annotated[
        str | None,
        typer.Option(
            "--checkpoint-connection-string",
            envvar="PHIWATCH_CHECKPOINT_CONNECTION_STRING",
            help="Storage connection string for the checkpoint store (Azurite: the full "
            "string; UseDevelopmentStorage=true is not accepted).",
            show_default=False,
        ),
    ] = None,
    consumer_group: Annotated[
        str,
        typer.Option(
            "--consumer-group",
            envvar="PHIWATCH_EVENTHUB_CONSUMER_GROUP",
            help="Consumer group. Do not share one with the Function App: both would "
            "process every event.",
        ),
    ] = DEFAULT_CONSUMER_GROUP,
    max_batches: Annotated[
        int | None,
        typer.Option("--max-batches", min=1, help="Stop after N batches (smoke tests)."),
    ] = None,
    max_wait_seconds: Annotated[
        float,
        typer.Option(
            "--max-wait-seconds",
            min=0.1,
            help="Hand over a batch smaller than 100 events after this long.",
        ),
    ] = MAX_WAIT_SECONDS,
    start_position: Annotated[
        StartPosition,
        typer.Option(
            "--start-position",
            help="Where a partition without a checkpoint starts: the oldest retained event "
            "(as the Function App does) or only new ones.",
        ),
    ] = StartPosition.earliest,
    stage: Annotated[
        Stage,
        typer.Option(
            "--stage",
            help="normalize: read the diagnostics hub, archive, normalise and publish events "
            "to PHIWATCH_PHI_EVENTS_HUB (detecting in-process when none is set: one "
            "partition only). detect: read the phi-events hub (--namespace: its own "
            "namespace) and run the detections with per-partition state in "
            "PHIWATCH_STATE_URL/DIR. Run one consumer per stage.",
        ),
    ] = Stage.normalize,
) -> None:
    """Run a pipeline stage as a standalone Event Hubs consumer until Ctrl-C.

    Same code path as the Function App's `normalize` and `detect` functions, configured by
    the same PHIWATCH_* settings. A batch is checkpointed only after its archive write (and,
    for detect, its state snapshot); if it fails, consume stops with exit 1 and the next run
    receives that batch again.
    """
    configure_logging(os.environ.get("PHIWATCH_LOG_LEVEL", "WARNING"))
    try:
        fqns = fully_qualified_namespace(namespace)
        check_hub_name(hub)
    except EventHubsConfigError as exc:
        raise _fail(str(exc)) from None
    try:
        store = checkpoint_store(checkpoint_store_url, checkpoint_connection_string)
    except EventHubsConfigError as exc:
        raise _fail(str(exc)) from None
    try:
        settings = Settings()
    except SETTINGS_ERRORS as exc:
        raise _fail(f"invalid phiwatch settings: {_settings_problem(exc)}") from None
    if stage is Stage.detect and hub != settings.phi_events_hub:
        raise _fail(
            f"--stage detect reads the phi-events hub that normalize publishes to "
            f"(PHIWATCH_PHI_EVENTS_HUB={settings.phi_events_hub or 'unset'}), not {hub!r}"
        )
    processor: BatchProcessor
    try:
        if stage is Stage.detect:
            processor = DetectBatchProcessor(settings)
        else:
            processor = EventHubBatchProcessor(settings)
    except (ConfigurationError, PseudonymKeyError, SignerError, RegistryError) as exc:
        raise _fail(str(exc)) from None
    try:
        check_checkpoint_store(store, fqns, hub, consumer_group)
    except EventHubsConfigError as exc:
        raise _fail(str(exc)) from None
    except _azure_errors() as exc:
        raise _azure_problem("cannot read the checkpoint store", exc) from None
    source: ConsumerSource | None = None
    try:
        source = make_consumer(
            fqns,
            hub,
            store,
            consumer_group,
            max_wait_time=max_wait_seconds,
            starting_position=START_POSITIONS[start_position.value],
        )
        partitions = getattr(source, "partition_ids", None)
        found = f"{len(partitions())} partition(s)" if partitions is not None else "hub"
    except EventHubsConfigError as exc:
        raise _fail(str(exc)) from None
    except _azure_errors() as exc:
        if source is not None:
            _close(source)
        raise _azure_problem(f"cannot reach {fqns}/{hub}", exc) from None
    err.print(
        f"consuming {fqns}/{hub} ({found}, consumer group {consumer_group}); "
        f"checkpoints after each archive write; Ctrl-C stops",
        markup=False,
        highlight=False,
    )

    def show(partition_id: str, messages: list[EventHubMessage], result: BatchResult) -> None:
        seqs = [m.sequence_number for m in messages if m.sequence_number is not None]
        counts = result.counts
        out.print(
            f"partition {partition_id}: {len(messages):,} event(s) "
            f"({describe_seqs(min(seqs, default=None), max(seqs, default=None))}), "
            f"{counts.records:,} records, {counts.events:,} access events, "
            f"{sum(counts.dead_letters.values()):,} dead-letters, "
            f"{len(result.alerts):,} alert update(s); checkpointed",
            markup=False,
            highlight=False,
        )

    report = ConsumeReport()
    try:
        consume(source, processor, stop_after=max_batches, on_batch=show, report=report)
    except KeyboardInterrupt:
        _close(source)
        out.print(f"stopped (Ctrl-C): {report.summary()}", markup=False, highlight=False)
        return
    except BatchNotProcessed as exc:
        _close(source)
        raise _fail(str(exc), 1) from None
    except _azure_errors() as exc:
        _close(source)
        raise _azure_problem(f"stopped receiving from {fqns}/{hub}", exc) from None
    _close(source)
    out.print(f"done: {report.summary()}", markup=False, highlight=False)
