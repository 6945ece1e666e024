"""Per-key event-time windows with EventUid dedupe, and keyed state that expires."""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, TypeVar

Entry = tuple[float, str, Any]  # (event time, EventUid, what the rule keeps of the event)


class SlidingWindow:
    """Entries of one key in event-time order. Adding an EventUid twice is a no-op, so a
    redelivered event can never inflate a count."""

    __slots__ = ("entries", "uids")

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.uids: set[str] = set()

    def add(self, time: float, uid: str, value: Any = None) -> bool:
        if uid in self.uids:
            return False
        self.uids.add(uid)
        entry = (time, uid, value)
        if not self.entries or time >= self.entries[-1][0]:
            self.entries.append(entry)
        else:  # late arrival: keep order so range queries stay exact
            insort(self.entries, entry)
        return True

    def expire(self, before: float) -> None:
        cut = bisect_left(self.entries, (before,))
        if cut:
            for _, uid, _ in self.entries[:cut]:
                self.uids.discard(uid)
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


class KeyedState(Generic[S]):
    """State per key, ordered by when the key was last touched in event time, so expiring
    idle keys costs only the keys that expire (state stays bounded as the stream goes on)."""

    __slots__ = ("_factory", "_last_seen", "_states")

    def __init__(self, factory: Callable[[], S]) -> None:
        self._factory = factory
        self._states: OrderedDict[str, S] = OrderedDict()
        self._last_seen: dict[str, float] = {}

    def touch(self, key: str, time: float) -> S:
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = self._factory()
            self._last_seen[key] = time
        elif time >= self._last_seen[key]:
            self._last_seen[key] = time
            self._states.move_to_end(key)
        return state

    def expire(self, before: float) -> int:
        """Drop keys last touched before `before`; returns how many went."""
        dropped = 0
        while self._states:
            key = next(iter(self._states))
            if self._last_seen[key] >= before:
                break
            del self._states[key]
            del self._last_seen[key]
            dropped += 1
        return dropped

    def __len__(self) -> int:
        return len(self._states)


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
