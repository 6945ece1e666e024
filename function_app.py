"""Azure Functions bindings (Python v2 model). Bindings only: the work is in phiwatch.

`normalize` reads the diagnostics hub in batches and hands them to
`phiwatch.hosts.functions`, which archives, normalises and publishes each event to the
`phi-events` hub keyed by its routing key; `detect` reads `phi-events` and runs the stateful
detections with per-partition state in Blob (README "Scaling"); `deliver_outbox` sends rows
Sentinel could not take yet; `health` (behind a function key) checks the archive, the state
store and the last batches, and never reports a value.
"""

import json
import typing
from datetime import UTC, datetime

import azure.functions as func

from phiwatch.eventhubs.message import EventHubMessage
from phiwatch.hosts.functions import (
    configure_host_logging,
    get_detector,
    get_processor,
    get_rule_runner,
)
from phiwatch.hosts.health import health_status

configure_host_logging()

app = func.FunctionApp()

# An outage (archive, state store, phi-events) must stall a partition, not lose its batch:
# the host checkpoints when the function returns, even after an exception, and only a retry
# replays the batch first. -1 = retry until it succeeds; the backoff caps at 15 minutes.
RETRY_UNTIL_DONE = {
    "strategy": "exponential_backoff",
    "max_retry_count": "-1",
    "minimum_interval": "00:00:05",
    "maximum_interval": "00:15:00",
}


@app.event_hub_message_trigger(
    arg_name="events",
    event_hub_name="%PHIWATCH_EVENTHUB_NAME%",
    connection="EVENTHUB",
    cardinality="many",
    consumer_group="%PHIWATCH_EVENTHUB_CONSUMER_GROUP%",
)
@app.retry(**RETRY_UNTIL_DONE)
# typing.List, not list[...]: azure-functions 1.26's annotation check for the Event Hub
# trigger does not recognise PEP 585 generics and the worker would refuse to load.
def normalize(events: typing.List[func.EventHubEvent]) -> None:  # noqa: UP006
    if not events:
        return
    processor = get_processor()
    hub = processor.hub or _from_context(events[0].metadata or {}, "EventHubName")
    processor.process(hub or "eventhub", _messages(events))


# The same archive-before-return rule: state is saved after the alerts are archived and
# emitted, and a failure raises so the retry restores the snapshot and redoes the batch.
# phi-events is in a namespace of its own that refuses SAS (infra/modules/eventhubs.bicep),
# hence its own identity connection: PHIEVENTS__fullyQualifiedNamespace.
@app.event_hub_message_trigger(
    arg_name="events",
    event_hub_name="%PHIWATCH_PHI_EVENTS_HUB%",
    connection="PHIEVENTS",
    cardinality="many",
    consumer_group="%PHIWATCH_PHI_EVENTS_CONSUMER_GROUP%",
)
@app.retry(**RETRY_UNTIL_DONE)
def detect(events: typing.List[func.EventHubEvent]) -> None:  # noqa: UP006
    if events:
        detector = get_detector()
        detector.process(detector.hub, _messages(events))


def _messages(events: typing.Sequence[func.EventHubEvent]) -> list[EventHubMessage]:
    # With cardinality=many every event carries the same (whole-batch) trigger metadata.
    partition = _from_context(events[0].metadata or {}, "PartitionId") or "0"
    return [
        EventHubMessage(
            body=event.get_body(),
            sequence_number=event.sequence_number,
            enqueued_time=event.enqueued_time,
            partition_id=partition,
        )
        for event in events
    ]


# Every 5 minutes (and at start-up, so a restart after an outage does not wait): rows that
# Sentinel refused during an outage go out oldest first, so hours of outage lose nothing.
@app.timer_trigger(
    arg_name="timer", schedule="0 */5 * * * *", run_on_startup=True, use_monitor=True
)
def deliver_outbox(timer: func.TimerRequest) -> None:
    get_processor().deliver_outbox()


# kql/ rules marked `phiwatch.run` (queries over Log Analytics or Azure Data Explorer, e.g.
# long-retention data Sentinel's own rules cannot reach) run when due on their queryFrequency;
# windows are aligned, so the 5-minute tick only decides when a due window is picked up.
@app.timer_trigger(arg_name="timer", schedule="30 */5 * * * *", use_monitor=True)
def run_rules(timer: func.TimerRequest) -> None:
    runner = get_rule_runner()
    if runner is not None:
        runner.run(datetime.now(UTC))


# A function key, not anonymous: the answer names the version, the configuration and which
# dependency is failing, which is nobody else's business.
@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def health(req: func.HttpRequest) -> func.HttpResponse:
    status, body = health_status()
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json")


def _from_context(metadata: typing.Mapping[str, typing.Any], field: str) -> str | None:
    # The host sends the partition both as PartitionContext and TriggerPartitionContext.
    for key in ("PartitionContext", "TriggerPartitionContext"):
        value = metadata.get(key)
        if isinstance(value, dict) and value.get(field) is not None:
            return str(value[field])
    return None
