"""`phiwatch consume`: a pipeline stage as a standalone Event Hubs consumer, outside Azure
Functions."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from detections import RegistryError
from phiwatch.archive.signer import SignerError
from phiwatch.batch import BatchResult
from phiwatch.commands import eventhubs
from phiwatch.commands.eventhubs import (
    HubOpt,
    NamespaceOpt,
    Stage,
    StartPosition,
    azure_errors,
    azure_problem,
    close_quietly,
)
from phiwatch.commands.output import err, fail, out
from phiwatch.config import Settings, cli_log_level
from phiwatch.eventhubs.checkpoints import check_checkpoint_store, checkpoint_store
from phiwatch.eventhubs.consumer import (
    DEFAULT_CONSUMER_GROUP,
    MAX_WAIT_SECONDS,
    START_POSITIONS,
    ConsumerSource,
)
from phiwatch.eventhubs.message import EventHubMessage
from phiwatch.eventhubs.names import (
    EventHubsConfigError,
    check_hub_name,
    fully_qualified_namespace,
)
from phiwatch.hosts.consumer import (
    BatchNotProcessed,
    BatchProcessor,
    ConsumeReport,
    consume,
    describe_seqs,
)
from phiwatch.hosts.functions import DetectBatchProcessor, EventHubBatchProcessor
from phiwatch.logs import configure_logging
from phiwatch.pseudonym import PseudonymKeyError
from phiwatch.wiring import SETTINGS_ERRORS, ConfigurationError, settings_problem


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
    configure_logging(cli_log_level())
    try:
        fqns = fully_qualified_namespace(namespace)
        check_hub_name(hub)
        store = checkpoint_store(checkpoint_store_url, checkpoint_connection_string)
    except EventHubsConfigError as exc:
        raise fail(str(exc)) from None
    processor = _processor(stage, hub)
    _check_store(store, fqns, hub, consumer_group)
    source, found = _connect(
        fqns, hub, store, consumer_group, max_wait_seconds, START_POSITIONS[start_position.value]
    )
    err.print(
        f"consuming {fqns}/{hub} ({found}, consumer group {consumer_group}); "
        f"checkpoints after each archive write; Ctrl-C stops",
        markup=False,
        highlight=False,
    )
    report = ConsumeReport()
    try:
        consume(source, processor, stop_after=max_batches, on_batch=_show, report=report)
    except KeyboardInterrupt:
        out.print(f"stopped (Ctrl-C): {report.summary()}", markup=False, highlight=False)
        return
    except BatchNotProcessed as exc:
        raise fail(str(exc), 1) from None
    except azure_errors() as exc:
        raise azure_problem(f"stopped receiving from {fqns}/{hub}", exc) from None
    finally:
        close_quietly(source)
    out.print(f"done: {report.summary()}", markup=False, highlight=False)


def _processor(stage: Stage, hub: str) -> BatchProcessor:
    """The stage's processor, built from PHIWATCH_* settings as the Function App builds it."""
    try:
        settings = Settings()
    except SETTINGS_ERRORS as exc:
        raise fail(f"invalid phiwatch settings: {settings_problem(exc)}") from None
    if stage is Stage.detect and hub != settings.phi_events_hub:
        raise fail(
            f"--stage detect reads the phi-events hub that normalize publishes to "
            f"(PHIWATCH_PHI_EVENTS_HUB={settings.phi_events_hub or 'unset'}), not {hub!r}"
        )
    try:
        if stage is Stage.detect:
            return DetectBatchProcessor(settings)
        return EventHubBatchProcessor(settings)
    except (ConfigurationError, PseudonymKeyError, SignerError, RegistryError) as exc:
        raise fail(str(exc)) from None


def _check_store(store: Any, fqns: str, hub: str, consumer_group: str) -> None:
    """Read the checkpoints once: a missing container or right fails here, clearly."""
    try:
        check_checkpoint_store(store, fqns, hub, consumer_group)
    except EventHubsConfigError as exc:
        raise fail(str(exc)) from None
    except azure_errors() as exc:
        raise azure_problem("cannot read the checkpoint store", exc) from None


def _connect(
    fqns: str,
    hub: str,
    store: Any,
    consumer_group: str,
    max_wait_seconds: float,
    starting_position: str,
) -> tuple[ConsumerSource, str]:
    """The consumer, and what it found (one management call fails fast on a wrong hub)."""
    source: ConsumerSource | None = None
    try:
        source = eventhubs.make_consumer(
            fqns,
            hub,
            store,
            consumer_group,
            max_wait_time=max_wait_seconds,
            starting_position=starting_position,
        )
        partitions = getattr(source, "partition_ids", None)
        found = f"{len(partitions())} partition(s)" if partitions is not None else "hub"
    except EventHubsConfigError as exc:
        raise fail(str(exc)) from None
    except azure_errors() as exc:
        if source is not None:
            close_quietly(source)
        raise azure_problem(f"cannot reach {fqns}/{hub}", exc) from None
    return source, found


def _show(partition_id: str, messages: list[EventHubMessage], result: BatchResult) -> None:
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
