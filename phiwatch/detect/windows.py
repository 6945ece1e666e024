"""Per-key event-time windows with EventUid dedupe, and keyed state that expires."""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import orjson

from phiwatch.detect.snapshot import snapshot_class

Entry = tuple[float, str, Any]  # (event time, EventUid, what the rule keeps of the event)


@snapshot_class
class SlidingWindow:
    """Entries of one key in event-time order. Adding an EventUid twice is a no-op, so a
    redelivered event can never inflate a count (a duplicate has the same time and uid, so a
    bisect finds it: no per-window set of uids to keep)."""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries: list[Entry] = []

    def add(self, time: float, uid: str, value: Any = None) -> bool:
        entries = self.entries
        if entries and time <= entries[-1][0]:
            at = bisect_left(entries, (time,))
            while at < len(entries) and entries[at][0] == time:
                if entries[at][1] == uid:
                    return False
                at += 1
            insort(entries, (time, uid, value))  # late arrival: keep order for range queries
        else:
            entries.append((time, uid, value))
        return True

    def expire(self, before: float) -> None:
        cut = bisect_left(self.entries, (before,))
        if cut:
            del self.entries[:cut]

    def span(self, start: float, end: float) -> list[Entry]:
        """Entries with start < time <= end."""
        lo = bisect_right(self.entries, (start, "\U0010ffff"))
        hi = bisect_right(self.entries, (end, "\U0010ffff"))
        return self.entries[lo:hi]

    def count(self, start: float, end: float) -> int:
        lo = bisect_right(self.entries, (start, "\U0010ffff"))
        hi = bisect_right(self.entries, (end, "\U0010ffff"))
        return hi - lo

    def __len__(self) -> int:
        return len(self.entries)


S = TypeVar("S")


@snapshot_class
class KeyedState(Generic[S]):
    """State per key, ordered by when the key was last touched in event time, so expiring
    idle keys costs only the keys that expire (state stays bounded as the stream goes on).
    One plain dict of key → [last seen, state]: a touched key moves to the end."""

    __slots__ = ("_factory", "_memo", "_states")

    def __init__(self, factory: Callable[[], S]) -> None:
        self._factory = factory
        self._states: dict[str, list[Any]] = {}
        # key → its slot as a snapshot encodes it (JSON). A snapshot is written after every batch,
        # and a batch touches few of the keys held: only those are encoded again. Every
        # change to a key's state follows a touch (the only way to reach it), which drops
        # the key's entry; not part of the snapshot (phiwatch.detect.snapshot.MEMO).
        self._memo: dict[str, Any] | None = {}

    def snapshot_fields(self, encode: Callable[[Any], Any]) -> dict[str, Any]:
        """The fields a snapshot holds, as `encode` writes them, reusing the memo."""
        memo = self._memo
        if memo is None:
            memo = self._memo = {}
        states = {}
        for key, slot in self._states.items():
            if type(key) is not str or key[:1] == "$":
                memo.clear()  # a key the snapshot tags: the general encoding, no memo
                states = encode(self._states)
                break
            done = memo.get(key)
            if done is None:
                # Kept as its JSON bytes: compact, and copied into the snapshot verbatim.
                done = memo[key] = orjson.Fragment(orjson.dumps(encode(slot)))
            states[key] = done
        return {"_factory": encode(self._factory), "_states": states}

    def _forget(self, key: str) -> None:
        if self._memo:
            self._memo.pop(key, None)

    def touch(self, key: str, time: float) -> S:
        memo = self._memo  # _forget, inline: a touch comes with every event a window takes
        if memo:
            memo.pop(key, None)
        slot = self._states.get(key)
        if slot is None:
            state = self._factory()
            self._states[key] = [time, state]
            return state
        if time >= slot[0]:
            slot[0] = time
            del self._states[key]
            self._states[key] = slot
        return slot[1]

    def expire(self, before: float) -> int:
        """Drop keys last touched before `before`; returns how many went."""
        stale = []
        for key, slot in self._states.items():
            if slot[0] >= before:
                break
            stale.append(key)
        for key in stale:
            del self._states[key]
            self._forget(key)
        return len(stale)

    def __len__(self) -> int:
        return len(self._states)


@snapshot_class
class KeyedWindows:
    """A `SlidingWindow` per key. A key's old entries are trimmed when the key is touched,
    and idle keys are dropped oldest first, so the cost of expiry follows what changes, not
    how many keys are held."""

    __slots__ = ("_keys", "width")

    def __init__(self, width: float) -> None:
        self.width = width
        self._keys: KeyedState[SlidingWindow] = KeyedState(SlidingWindow)

    def window(self, key: str, time: float, horizon: float) -> SlidingWindow:
        """The key's window, without entries no event newer than `horizon` can need."""
        window = self._keys.touch(key, time)
        window.expire(horizon - self.width)
        return window

    def expire(self, before: float) -> None:
        self._keys.expire(before - self.width)

    def __len__(self) -> int:
        return len(self._keys)

    def rewrite(self, change: Callable[[Any], Any]) -> None:
        """Replace what every entry keeps by `change(kept)` (a snapshot layout upgrade)."""
        for _, window in self._keys._states.values():
            window.entries = [(t, uid, change(kept)) for t, uid, kept in window.entries]
        self._keys._memo = None  # every key changed
