"""A distributor's order records as columns (pure).

A distributor keeps the orders whose deadline or answer a window can still reach:
as lists each cost ~290 bytes. Here they are one packed 54-byte row per order in
a growing buffer (in the order first seen; evictions compact it), found by order
id in `pos`, and read by the day-end figures as numpy columns (`columns()`, made
once per change). A record is given back as the list it came as (`record`).
"""
from __future__ import annotations

import struct
from typing import Iterable

import numpy as np

from supplymon.core.signals import (D_ANSWERED_AT, D_CONFIRMED, D_DECISION, D_ORDERED_AT, D_QUANTITY, DEADLINE,
                                    GRASSROOTS, ON_TIME_SINCE, RURAL)
from supplymon.core.supply_columns import NAMES, NONE, PARTIAL, REJECTED, RecordsView, code

ACCEPTED = code("accepted")
# deadline, on time since, ordered at, quantity, answered at, confirmed, then
# grassroots and rural (0 False, 1 True, 2 None) and the decision's code.
ROW = struct.Struct("<qqqqqqbbi")
ROW_DTYPE = np.dtype([("dl", "<i8"), ("ot", "<i8"), ("at", "<i8"), ("q", "<i8"), ("rt", "<i8"), ("c", "<i8"),
                      ("g", "i1"), ("ru", "i1"), ("d", "<i4")])
assert ROW.size == ROW_DTYPE.itemsize
_FLAG = {False: 0, True: 1, None: 2}
_BACK = (False, True, None)


def pack(rec: list) -> bytes:
    dl, ot, at, q, rt, c = (rec[DEADLINE], rec[ON_TIME_SINCE], rec[D_ORDERED_AT], rec[D_QUANTITY], rec[D_ANSWERED_AT],
                            rec[D_CONFIRMED])
    g, ru = rec[GRASSROOTS], rec[RURAL]
    return ROW.pack(NONE if dl is None else dl, NONE if ot is None else ot, NONE if at is None else at,
                    NONE if q is None else q, NONE if rt is None else rt, NONE if c is None else c,
                    2 if g is None else 1 if g else 0, 2 if ru is None else 1 if ru else 0, code(rec[D_DECISION]))


def unpack(row: bytes | bytearray, offset: int = 0) -> list:
    dl, ot, at, q, rt, c, g, ru, d = ROW.unpack_from(row, offset)
    return [None if dl == NONE else dl, _BACK[g], None if ot == NONE else ot, None if at == NONE else at, _BACK[ru],
            None if q == NONE else q, None if rt == NONE else rt, NAMES[d], None if c == NONE else c]


class DeliveryColumns:
    """A distributor's records as numpy columns (None as NONE: after every instant)."""

    __slots__ = ("deadline", "since", "at", "answered", "grassroots", "rural", "rejected", "accepting", "quantity",
                 "confirmed")

    def __init__(self, rows: bytes | bytearray):
        table = np.frombuffer(bytes(rows), ROW_DTYPE)  # a copy: the buffer may grow meanwhile
        self.deadline, self.since, self.at, self.answered = table["dl"], table["ot"], table["at"], table["rt"]
        self.grassroots, self.rural = table["g"] == 1, table["ru"] == 1  # None counts as False
        decision = table["d"]
        self.rejected = decision == REJECTED
        self.accepting = (decision == ACCEPTED) | (decision == PARTIAL)
        self.quantity = np.where(self.accepting, table["q"], 0)  # counted only when accepting
        self.confirmed = np.where(self.accepting, table["c"], 0)

    @classmethod
    def of(cls, records: Iterable[list]) -> DeliveryColumns:
        return cls(b"".join(map(pack, records)))


class DeliveryRows:
    """order id -> record, as packed rows (see the module's doc)."""

    __slots__ = ("ids", "pos", "rows", "_columns")

    def __init__(self):
        self.ids: list[str] = []
        self.pos: dict[str, int] = {}
        self.rows = bytearray()
        self._columns: DeliveryColumns | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def record(self, order_id: str) -> list | None:
        n = self.pos.get(order_id)
        return None if n is None else unpack(self.rows, n * ROW.size)

    def put(self, order_id: str, record: list) -> bool:
        """Put an order's record; False if it was already there as it is."""
        n = self.pos.get(order_id)
        if n is not None:
            if unpack(self.rows, n * ROW.size) == record:
                return False
            self.rows[n * ROW.size:(n + 1) * ROW.size] = pack(record)
        else:
            self.pos[order_id] = len(self.ids)
            self.ids.append(order_id)
            self.rows += pack(record)
        self._columns = None
        return True

    def keep(self, kept: np.ndarray) -> list[str]:
        """Keep the rows where `kept` (a mask over the rows) holds; the ids of the others."""
        gone = [self.ids[n] for n in np.flatnonzero(~kept).tolist()]
        if gone:
            table = np.frombuffer(bytes(self.rows), ROW_DTYPE)[kept]
            self.rows = bytearray(table.tobytes())
            self.ids = [self.ids[n] for n in np.flatnonzero(kept).tolist()]
            self.pos = {oid: n for n, oid in enumerate(self.ids)}
            self._columns = None
        return gone

    def columns(self) -> DeliveryColumns:
        if self._columns is None:
            self._columns = DeliveryColumns(self.rows)
        return self._columns

    def records(self) -> RecordsView:
        return RecordsView(self)
