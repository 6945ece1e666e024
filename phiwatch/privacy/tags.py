"""Tags: 64 bits of HMAC-SHA256 of one normalised value in its own domain.

The key is the tenant's pseudonym key (`Pseudonymizer.privacy_tagger()`), so one secret
governs every pseudonym; the domain is part of the HMAC input, so a surname and an MRN that
are spelled alike get unrelated tags, and no tag equals a PatientRef.
"""

from __future__ import annotations

import hmac
from typing import Final

from phiwatch.privacy import normalise
from phiwatch.privacy.directory import Tag

DOMAINS: Final = ("employee", "surname", "address", "street", "mrn")
_PREFIX = b"phiwatch-privacy-tag\x1f"


class Tagger:
    def __init__(self, key: bytes) -> None:
        # One keyed HMAC per domain, its key schedule and prefix absorbed once; each tag is
        # a `.copy()` and one update (about a third of a fresh `hmac.new`).
        base = hmac.new(key, _PREFIX, "sha256")
        self._domains: dict[str, hmac.HMAC] = {}
        for domain in DOMAINS:
            mac = base.copy()
            mac.update(domain.encode() + b"\x1f")
            self._domains[domain] = mac

    def tag(self, domain: str, normalised: str) -> Tag:
        """The tag of an already normalised value; never 0 (0 marks an absent tag in the
        patient table's arrays)."""
        mac = self._domains[domain].copy()
        mac.update(normalised.encode("utf-8", "surrogatepass"))
        return int.from_bytes(mac.digest()[:8], "big") or 1

    def _maybe(self, domain: str, normalised: str | None) -> Tag | None:
        return None if normalised is None else self.tag(domain, normalised)

    def employee(self, value: str) -> Tag | None:
        return self._maybe("employee", normalise.employee_id(value))

    def surname(self, value: str) -> Tag | None:
        return self._maybe("surname", normalise.surname(value))

    def mrn(self, value: str) -> Tag | None:
        return self._maybe("mrn", normalise.identifier(value))

    def address(self, line: str, postcode: str) -> tuple[Tag | None, Tag | None]:
        """(household tag, street tag)."""
        keys = normalise.address(line, postcode)
        return self._maybe("address", keys.household), self._maybe("street", keys.street)
