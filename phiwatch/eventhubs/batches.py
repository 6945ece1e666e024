"""One partition's Event Hub messages → one pipeline `Batch`, named by nothing but them."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC

from phiwatch.archive.names import MAX_STREAM, safe_name
from phiwatch.batch import Batch
from phiwatch.envelope import Body
from phiwatch.eventhubs.message import EventHubMessage


def build_batch(
    hub: str, partition: str, messages: Sequence[EventHubMessage], *, generation: str = ""
) -> Batch:
    """The pipeline batch for one partition's messages; its name depends only on them (and
    on the hub's configured generation): see `batch_identity`."""
    stream = f"eventhub:{hub}/{partition}"
    seqs = [m.sequence_number for m in messages if m.sequence_number is not None]
    numbered = len(seqs) == len(messages)
    bodies = [
        Body(
            data=m.body,
            stream=stream,
            position=f"seq {m.sequence_number}" if numbered else f"index {index}",
            sequence_number=m.sequence_number,
            enqueued_time=m.enqueued_time,
        )
        for index, m in enumerate(messages)
    ]
    # Hub and partition come from the wire: bounded and made safe for names (as they were
    # for every plain, short name).
    chain = safe_name(f"{hub}-p{partition}", MAX_STREAM)
    if numbered and seqs:
        first = min(seqs)
        identity = batch_identity(generation, [m for m in messages if m.sequence_number == first])
        return Batch(chain, first, max(seqs), bodies, identity)
    # Indices repeat from batch to batch; the content digest keeps names (and chains) apart
    # while a redelivery (same bodies) still gets the same name.
    last = max(len(messages) - 1, 0)
    identity = batch_identity(generation, [])
    return Batch(safe_name(f"{chain}-noseq-{_digest(messages)[:16]}"), 0, last, bodies, identity)


def batch_identity(generation: str, first: Sequence[EventHubMessage]) -> str:
    """Which incarnation of a hub a batch comes from: `g<generation>` when one is configured
    (PHIWATCH_EVENTHUB_GENERATION, bumped by infra when the hub is re-created or fails over),
    and `t<enqueued time of the batch's first message>` (UTC, milliseconds). A redelivery
    repeats that time exactly; a re-created hub or a Geo-DR secondary, whose sequence
    numbers start again, enqueued its messages at other times."""
    parts = [f"g{generation}"] if generation else []
    times = [m.enqueued_time for m in first if m.enqueued_time is not None]
    if times:
        when = min(t if t.tzinfo else t.replace(tzinfo=UTC) for t in times).astimezone(UTC)
        parts.append(f"t{when:%Y%m%dT%H%M%S}{when.microsecond // 1000:03d}Z")
    return "-".join(parts)


def _digest(messages: Sequence[EventHubMessage]) -> str:
    h = hashlib.sha256()
    for m in messages:
        h.update(len(m.body).to_bytes(8, "big"))
        h.update(m.body)
    return h.hexdigest()
