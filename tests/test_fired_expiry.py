"""`Fired` expires by a heap, not by rebuilding every batch (issue #18): the same uids
stay, in the same order, through restores, as with the rebuild it replaced."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from phiwatch.detect import snapshot
from phiwatch.detect.kinds.base import Fired

steps = st.lists(
    st.one_of(
        st.tuples(st.just("first"), st.integers(0, 40), st.floats(0, 1000)),
        st.tuples(st.just("expire"), st.just(0), st.floats(0, 1100)),
        st.tuples(st.just("restore"), st.just(0), st.just(0.0)),
    ),
    max_size=120,
)


@given(steps)
@settings(max_examples=300, deadline=None)
def test_expiry_keeps_what_the_rebuild_kept(ops: list[tuple[str, int, float]]) -> None:
    fired, reference = Fired(), {}
    for op, uid, time in ops:
        if op == "first":
            expected = f"u{uid}" not in reference
            reference.setdefault(f"u{uid}", time)
            assert fired.first(f"u{uid}", time) is expected
        elif op == "expire":
            fired.expire(time)
            reference = {u: t for u, t in reference.items() if t >= time}
        else:  # a snapshot round trip: the heap is not in it, and is rebuilt
            fired = snapshot.loads(snapshot.dumps({"fired": fired}))["fired"]
        assert list(fired.times.items()) == list(reference.items())
        assert len(fired) == len(reference)
