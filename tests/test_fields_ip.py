"""`normalise_ip`'s regular-expression path for `a.b.c.d` and `a.b.c.d:port` gives what the
`ipaddress` path gives (issue #18), for addresses, near-addresses and anything else."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from phiwatch.sources.fields import _normalise_ip, normalise_ip

_OCTETS = st.sampled_from(["0", "00", "01", "1", "9", "10", "99", "100", "199", "249", "250"])
_OCTETS |= st.sampled_from(["255", "256", "300", "999", "0255", "٣", " 1", "1 "])
_OCTETS |= st.integers(0, 999).map(str)
_PORTS = st.sampled_from(["", ":", ":0", ":443", ":65536", ":٣", ":a", "::1", ":44 "])
_IPV4_LIKE = st.builds(
    lambda parts, sep, port: sep.join(parts) + port,
    st.lists(_OCTETS, min_size=3, max_size=5),
    st.sampled_from([".", ".", ":", ","]),
    _PORTS,
)


@given(text=_IPV4_LIKE | st.text(alphabet="0123456789.:[]/abf ", max_size=24))
@example(text="10.0.0.1")
@example(text="10.0.0.1:5123")
@example(text="::ffff:10.0.0.1")
@example(text="010.0.0.1")
@example(text="10.0.0.1\n")
def test_the_quick_path_is_the_ipaddress_path(text: str) -> None:
    assert normalise_ip(text) == _normalise_ip(text)
