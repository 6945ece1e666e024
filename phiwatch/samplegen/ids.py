"""Identifiers drawn from the generator's own rng, so a seed fully determines the output."""

from __future__ import annotations

import random
import uuid


def new_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def new_hex(rng: random.Random, length: int = 32) -> str:
    return f"{rng.getrandbits(length * 4):0{length}x}"


def private_ip(rng: random.Random, prefix: str) -> str:
    """An address inside ``prefix`` (``"10.40"``); hosts avoid .0/.1/.255 like real DHCP pools."""
    return f"{prefix}.{rng.randint(0, 63)}.{rng.randint(2, 254)}"


def public_ip(rng: random.Random) -> str:
    # RFC 5737 documentation ranges: plausible "internet" callers that belong to nobody.
    net = rng.choice(("198.51.100", "203.0.113", "192.0.2"))
    return f"{net}.{rng.randint(2, 254)}"
