"""The set of recently seen EventUids that drops at-least-once duplicates.

Event Hubs redelivers within minutes, so an id is remembered for a horizon of event time
and, whatever the horizon, for at most `max_entries` ids: a busy tenant reaches the count cap
within the hour (about 140 records/s), and from then on every commit trims as many ids as it
adds. That trim must cost O(1) per id. A dict trimmed from the front (`next(iter(d))` after
`del`) does not: CPython leaves deleted slots in place until the next resize, and each
`next(iter(...))` walks over all of them, so a commit at the cap went quadratic (0.4 → 442 ms
for 1,000 ids). Here ids live in a set for lookup and in a deque in arrival order, with one
(stamp, count) per commit: both ends of a deque pop in O(1), nothing is ever scanned.

Ids are the 32-hex-digit content uids (`RawRecord.content_uid`), kept as their 16 bytes: a
bytes key costs 49 bytes against a 32-character str's 81. With the set slot and the deque
pointer an id costs about 100 bytes (tracemalloc, at the cap), so the cap bounds the set to
about 50 MB. Anything that is not such a uid is kept as given.
"""

from __future__ import annotations

from collections import deque

# Redeliveries arrive within minutes; remember EventUids this long in event time, and no
# more than this many, so the dedupe set stays bounded.
DEDUPE_HORIZON_SECONDS = 3600.0
DEDUPE_MAX_ENTRIES = 500_000

Key = bytes | str


def _key(uid: str) -> Key:
    if len(uid) == 32:
        try:
            return bytes.fromhex(uid)
        except ValueError:
            pass
    return uid


class SeenUids:
    """EventUids seen recently, for dropping at-least-once duplicates.

    Uids a batch adds stay pending until the batch commits (then they are stamped with the
    watermark, which is unknown while a stream's first batch is read) or rolls back (a
    failed batch must not make its own retry look like a duplicate). A uid is let go once
    event time has moved a horizon past its stamp, or when more than `max_entries` are held
    (oldest first).

    `trim_steps` counts the work trims have done since construction: one per id let go and
    one per look at the oldest commit's stamp (at most one more than the commits let go),
    so a commit's cost depends on the ids it adds and lets go, never on how many ids were
    ever held.
    """

    def __init__(self, max_entries: int = DEDUPE_MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._seen: set[Key] = set()  # committed and pending
        self._order: deque[Key] = deque()  # committed, in arrival (= stamp) order
        self._stamps: deque[list[float | int]] = deque()  # [stamp, ids left] per commit
        self._pending: list[Key] = []
        self.trim_steps = 0

    def check_and_add(self, uid: str) -> bool:
        """True when `uid` was already seen (committed, or pending in this batch)."""
        key = _key(uid)
        if key in self._seen:
            return True
        self._seen.add(key)
        self._pending.append(key)
        return False

    def rollback(self) -> None:
        for key in self._pending:
            self._seen.discard(key)
        self._pending.clear()

    def commit(self, now: float, expire_before: float) -> None:
        """Stamp the pending uids with `now` and let go of those stamped before
        `expire_before` and of the oldest beyond the cap. Stamps never go backwards (the
        watermark and the newest event time only grow), so the oldest are at the front."""
        if self._pending:
            self._order.extend(self._pending)
            self._stamps.append([now, len(self._pending)])
            self._pending.clear()
        self._trim(expire_before)

    def _trim(self, expire_before: float) -> None:
        order, stamps = self._order, self._stamps
        while stamps:
            group = stamps[0]
            self.trim_steps += 1  # one look at the oldest commit's stamp
            expired = group[0] < expire_before
            over = len(order) - self.max_entries
            if not expired and over <= 0:
                break
            # A whole expired commit at once; beyond the cap only as many as are over it.
            n = int(group[1]) if expired else min(int(group[1]), over)
            for _ in range(n):
                self._seen.discard(order.popleft())
            self.trim_steps += n
            group[1] -= n
            if group[1] == 0:
                stamps.popleft()

    def __len__(self) -> int:
        return len(self._seen)
