"""The garbage collector tuned for a long-lived stream processor.

Detection state, the dedupe set and the loaded privacy directory are hundreds of thousands of
long-lived objects. With CPython's default thresholds (700 allocations per young collection)
a batch of 1,000 records triggers dozens of young collections and, every few batches, a full
one that walks all of that state: the full ones are the p99 of an invocation (issue #18).
Each host calls `tune()` once after building its parts: what exists then (modules, rules,
directory) is frozen out of every later collection, and collections run less often. Reference
counting still frees almost everything at once; only cycles wait for the collector, so memory
stays bounded.
"""

from __future__ import annotations

import gc

# Young collections every 50,000 net allocations (one 100-body invocation allocates some
# millions), the middle generation every 20 young ones, the old every 100 middle ones; CPython
# 3.11 also defers a full collection until it would scan 25 % more objects than survived the
# last one, so its cost stays proportional to the garbage, not to the state.
THRESHOLDS = (50_000, 20, 100)


def tune() -> None:
    """Freeze what the process holds now and raise the collection thresholds; idempotent."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
