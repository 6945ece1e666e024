"""The patient index in memory: parallel arrays of 64-bit tags, found by PatientRef.

Two million patients as `PatientFacts` in a dict cost about 800 MB (a 35-character key, a
slotted object and four 64-bit ints each), so the table is columnar: one row a patient
across arrays (about 70 bytes), and a `PatientFacts` is built when asked for. Rows are
found through open-addressing hash slots (`array('I')`, row + 1, 0 empty): the refs' and
tags' bits are HMAC output, uniform, so their low bits are the hash. Nothing is sorted, so
a load needs no second copy of the table; a repeated PatientRef overwrites its row.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Iterator

from phiwatch.privacy.directory import PatientFacts, Tag

EMPTY_TEAM: frozenset[str] = frozenset()
_MIN_SLOTS = 1 << 10
_MAX_FILL = 0.7  # linear probing stays short below this
_REF = re.compile(r"^pr_[0-9a-f]{32}$")


class _Slots:
    """Row numbers by a 64-bit key; the caller says whether a row holds the key."""

    __slots__ = ("_limit", "_mask", "_slots", "used")

    def __init__(self, size: int = _MIN_SLOTS) -> None:
        self._slots = array("I", bytes(4 * size))
        self._mask = size - 1
        self._limit = int(_MAX_FILL * size)
        self.used = 0

    def probe(self, key: int) -> int:
        """The first slot for `key` (its row's or an empty one follows)."""
        return key & self._mask

    def next(self, slot: int) -> int:
        return (slot + 1) & self._mask

    def row(self, slot: int) -> int:
        """The row in `slot`, -1 when empty."""
        return self._slots[slot] - 1

    def put(self, slot: int, row: int) -> None:
        self._slots[slot] = row + 1
        self.used += 1

    def full(self) -> bool:
        return self.used >= self._limit

    def grown(self, keys: array[int]) -> _Slots:
        """Twice the slots, every row put again (row i's key is `keys[i]`)."""
        bigger = _Slots(2 * len(self._slots))
        slots, mask = bigger._slots, bigger._mask
        for i, key in enumerate(keys):
            slot = key & mask
            while slots[slot]:
                slot = (slot + 1) & mask
            slots[slot] = i + 1
        bigger.used = len(keys)
        return bigger


class PatientTable:
    __slots__ = (
        "_address",
        "_by_mrn",
        "_by_ref",
        "_employee",
        "_hi",
        "_lo",
        "_mrn",
        "_mrn_row",
        "_rare",
        "_restricted",
        "_street",
        "_surname",
        "_team",
        "_teams",
    )

    def __init__(self) -> None:
        self._hi = array("Q")  # the PatientRef's 128 bits
        self._lo = array("Q")
        self._surname = array("Q")  # 0: no value (a Tagger never gives 0)
        self._address = array("Q")
        self._street = array("Q")
        self._employee = array("Q")
        self._restricted = array("B")
        self._team = array("I")  # index into _teams
        self._teams: list[frozenset[str]] = [EMPTY_TEAM]
        self._rare: frozenset[Tag] = frozenset()
        self._by_ref = _Slots()
        self._mrn = array("Q")  # MRN tags, and the row of each
        self._mrn_row = array("I")
        self._by_mrn = _Slots()

    def __len__(self) -> int:
        return len(self._hi)

    def patient(self, patient_ref: str) -> PatientFacts | None:
        key = _ref_bits(patient_ref)
        if key is None:
            return None
        slot = self._ref_slot(*key)
        row = self._by_ref.row(slot)
        return None if row < 0 else self._facts(row)

    def by_mrn(self, mrn: Tag) -> str | None:
        """The PatientRef of the patient with this MRN tag (`Tagger.mrn`): how a report
        that names an MRN is resolved to the events' pseudonym."""
        entry = self._by_mrn.row(self._mrn_slot(mrn))
        if entry < 0:
            return None
        row = self._mrn_row[entry]
        return f"pr_{self._hi[row]:016x}{self._lo[row]:016x}"

    def rows(self) -> Iterator[tuple[str, PatientFacts]]:
        """Every patient as (PatientRef, facts), in load order, one `PatientFacts` at a time:
        what the watchlist export streams, so a two-million-row index is never copied."""
        his, los = self._hi, self._lo
        for row in range(len(his)):
            yield f"pr_{his[row]:016x}{los[row]:016x}", self._facts(row)

    def add(
        self,
        ref: str,
        *,
        surname: Tag | None,
        address: Tag | None,
        street: Tag | None,
        employee: Tag | None,
        restricted: bool,
        team: int,
        mrn: Tag | None,
    ) -> None:
        """One patient; a PatientRef seen before has its row overwritten (the later row
        of a file wins)."""
        hi, lo = int(ref[3:19], 16), int(ref[19:35], 16)
        # The probe inlined (this runs once a row of a two-million-row file).
        index = self._by_ref
        slots, mask, his, los = index._slots, index._mask, self._hi, self._lo
        slot = hi & mask
        while (row := slots[slot] - 1) >= 0 and not (his[row] == hi and los[row] == lo):
            slot = (slot + 1) & mask
        if row < 0:
            row = len(his)
            his.append(hi)
            los.append(lo)
            self._surname.append(surname or 0)
            self._address.append(address or 0)
            self._street.append(street or 0)
            self._employee.append(employee or 0)
            self._restricted.append(restricted)
            self._team.append(team)
            index.put(slot, row)
            if index.full():
                self._by_ref = index.grown(his)
        else:
            self._surname[row] = surname or 0
            self._address[row] = address or 0
            self._street[row] = street or 0
            self._employee[row] = employee or 0
            self._restricted[row] = restricted
            self._team[row] = team
        if mrn is not None:
            self._add_mrn(mrn, row)

    def _add_mrn(self, mrn: Tag, row: int) -> None:
        index, mrns = self._by_mrn, self._mrn
        slots, mask = index._slots, index._mask
        slot = mrn & mask
        while (entry := slots[slot] - 1) >= 0 and mrns[entry] != mrn:
            slot = (slot + 1) & mask
        if entry >= 0:  # the same MRN again: the later row's patient
            self._mrn_row[entry] = row
            return
        index.put(slot, len(mrns))
        mrns.append(mrn)
        self._mrn_row.append(row)
        if index.full():
            self._by_mrn = index.grown(mrns)

    def team(self, oids: frozenset[str]) -> int:
        """The index of a care team, appended when new (the caller interns)."""
        self._teams.append(oids)
        return len(self._teams) - 1

    def set_rare(self, rare: frozenset[Tag]) -> None:
        self._rare = rare

    def _ref_slot(self, hi: int, lo: int) -> int:
        slots, his, los = self._by_ref, self._hi, self._lo
        slot = slots.probe(hi)
        while (row := slots.row(slot)) >= 0 and not (his[row] == hi and los[row] == lo):
            slot = slots.next(slot)
        return slot

    def _mrn_slot(self, mrn: int) -> int:
        slots, mrns = self._by_mrn, self._mrn
        slot = slots.probe(mrn)
        while (entry := slots.row(slot)) >= 0 and mrns[entry] != mrn:
            slot = slots.next(slot)
        return slot

    def _facts(self, row: int) -> PatientFacts:
        surname = self._surname[row] or None
        return PatientFacts(
            employee=self._employee[row] or None,
            surname=surname,
            surname_rare=surname in self._rare,
            address=self._address[row] or None,
            street=self._street[row] or None,
            restricted=bool(self._restricted[row]),
            care_team=self._teams[self._team[row]],
        )


def _ref_bits(patient_ref: str) -> tuple[int, int] | None:
    if not _REF.match(patient_ref):
        return None
    return int(patient_ref[3:19], 16), int(patient_ref[19:35], 16)
