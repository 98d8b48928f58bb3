"""A product+region's order records as columns (pure).

One subject keeps the orders of its last 29 days: as a list of records each cost
~400 bytes (a list of 11, its ints and float, a sorted index entry). Here they are
two growing buffers in time order (ordered_at, then order id, as the index was):
`ats`, an array of the order times (bisected directly), and `rows`, one packed
56-byte row per order with the other fields, texts as codes of one table shared
by every subject. The advance reads them as numpy columns (`columns()`, a copy
made once per change, dropped after the advance), never record by record.

An order is found by its id in `ids` (a short scan: most subjects hold a few
dozen orders) or, for busy subjects, in `pos` (order id -> row + `shift`, the rows
evicted from the front since). A record is given back as the list it came as
(`record`): None stays None, numbers and texts are equal to those put in.
"""
from __future__ import annotations

import bisect
import struct
from array import array
from typing import Iterator, Mapping

import numpy as np

from supplymon.core.signals import (ANSWERED_AT, CONFIRMED, DECISION, DISTRIBUTOR, INSTITUTION, ORDERED_AT, PRODUCT,
                                    QUANTITY, REASON, REGION, UNIT_PRICE)

NONE = 1 << 62  # None in an int column (an unanswered order's answer time: after every instant)
NAN = float("nan")
# quantity, answered at, confirmed, unit price, then the codes of product, region,
# institution, distributor, decision, reason.
ROW = struct.Struct("<qqqdiiiiii")
ROW_DTYPE = np.dtype([("q", "<i8"), ("rt", "<i8"), ("c", "<i8"), ("u", "<f8"), ("p", "<i4"), ("rg", "<i4"),
                      ("i", "<i4"), ("dist", "<i4"), ("d", "<i4"), ("r", "<i4")])
assert ROW.size == ROW_DTYPE.itemsize
# Subjects with more orders than this find them by a dict, not a scan of `ids`.
INDEXED_FROM = 40

# One code per text (ids, decisions, reasons), shared by every subject: 0 is None.
CODES: dict = {None: 0}
NAMES: list = [None]


def code(text) -> int:
    c = CODES.get(text)
    if c is None:
        c = CODES[text] = len(NAMES)
        NAMES.append(text)
    return c


REJECTED, PARTIAL, OUT_OF_STOCK = (code(t) for t in ("rejected", "partial", "out_of_stock"))


def pack(rec: list) -> bytes:
    q, rt, c, u = rec[QUANTITY], rec[ANSWERED_AT], rec[CONFIRMED], rec[UNIT_PRICE]
    texts = (rec[PRODUCT], rec[REGION], rec[INSTITUTION], rec[DISTRIBUTOR], rec[DECISION], rec[REASON])
    codes = list(map(CODES.get, texts))
    if None in codes:  # a text never seen before
        codes = list(map(code, texts))
    return ROW.pack(NONE if q is None else q, NONE if rt is None else rt, NONE if c is None else c,
                    NAN if u is None else u, *codes)


def unpack(at: int, row: bytes | bytearray, offset: int = 0) -> list:
    q, rt, c, u, p, rg, i, dist, d, r = ROW.unpack_from(row, offset)
    return [NAMES[p], NAMES[rg], NAMES[i], NAMES[dist], at, None if q == NONE else q, None if rt == NONE else rt,
            NAMES[d], None if c == NONE else c, NAMES[r], None if u != u else u]


class Columns:
    """The numpy columns of a subject's records, in time order."""

    __slots__ = ("at", "q", "rt", "c", "inst", "dist", "d", "r")

    def __init__(self, ats: array, rows: bytearray):
        table = np.frombuffer(bytes(rows), ROW_DTYPE)  # a copy: the buffers may grow meanwhile
        self.at = np.frombuffer(ats.tobytes(), np.int64)
        self.q, self.rt, self.c = table["q"], table["rt"], table["c"]
        self.inst, self.dist, self.d, self.r = table["i"], table["dist"], table["d"], table["r"]

    def turned_away(self) -> np.ndarray:
        """Which orders were turned away for lack of stock (rejected or partial, out_of_stock)."""
        return (self.r == OUT_OF_STOCK) & ((self.d == REJECTED) | (self.d == PARTIAL))


class SupplyRows:
    """The storage half of a product+region subject (see the module's doc)."""

    __slots__ = ("ids", "ats", "rows", "pos", "shift", "_columns")

    def __init__(self):
        self.ids: list[str] = []
        self.ats = array("q")
        self.rows = bytearray()
        self.pos: dict[str, int] | None = None
        self.shift = 0
        self._columns: Columns | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def find(self, order_id: str) -> int | None:
        """The row of an order, or None."""
        if self.pos is not None:
            row = self.pos.get(order_id)
            return None if row is None else row - self.shift
        return self.ids.index(order_id) if order_id in self.ids else None  # new orders: no exception

    def record(self, order_id: str) -> list | None:
        n = self.find(order_id)
        return None if n is None else unpack(self.ats[n], self.rows, n * ROW.size)

    def record_at(self, n: int) -> list:
        return unpack(self.ats[n], self.rows, n * ROW.size)

    def put(self, order_id: str, record: list) -> tuple[bool, list | None]:
        """Put an order's record: (changed, the record held before or None)."""
        n = self.find(order_id)
        old = None if n is None else unpack(self.ats[n], self.rows, n * ROW.size)
        if old == record:
            return False, old
        self._columns = None
        at, row = record[ORDERED_AT], pack(record)
        if old is not None and old[ORDERED_AT] == at:  # same place: the fields replaced
            self.rows[n * ROW.size:(n + 1) * ROW.size] = row
            return True, old
        if old is not None:
            self._delete(n)
        ats, ids = self.ats, self.ids
        if not ids or at > ats[-1] or (at == ats[-1] and order_id > ids[-1]):  # the usual case: in time order
            ats.append(at)
            ids.append(order_id)
            self.rows += row
            if self.pos is not None:
                self.pos[order_id] = len(ids) - 1 + self.shift
            elif len(ids) > INDEXED_FROM:
                self.pos = {oid: k for k, oid in enumerate(ids)}
                self.shift = 0
        else:
            lo, hi = bisect.bisect_left(ats, at), bisect.bisect_right(ats, at)
            n = bisect.bisect_left(ids, order_id, lo, hi)  # ids of one instant are in order
            ats.insert(n, at)
            ids.insert(n, order_id)
            self.rows[n * ROW.size:n * ROW.size] = row
            self._moved(n)
        return True, old

    def _delete(self, n: int) -> None:
        if self.pos is not None:
            del self.pos[self.ids[n]]
        del self.ats[n], self.ids[n]
        del self.rows[n * ROW.size:(n + 1) * ROW.size]
        self._moved(n)

    def _moved(self, n: int) -> None:
        """Rows from n on moved: their positions in `pos` follow."""
        pos = self.pos
        if pos is None:
            return
        shift, ids = self.shift, self.ids
        for k in range(n, len(ids)):
            pos[ids[k]] = k + shift

    def cut_front(self, cut: int) -> list[str]:
        """Drop the first `cut` rows; their order ids."""
        gone = self.ids[:cut]
        if not cut:
            return gone
        del self.ids[:cut], self.ats[:cut]
        del self.rows[:cut * ROW.size]
        if self.pos is not None:
            for oid in gone:
                del self.pos[oid]
            self.shift += cut
        self._columns = None
        return gone

    def turned_away_institutions(self) -> set[int]:
        """The codes of the institutions of answered orders turned away for lack of
        stock (rejected or partial, out_of_stock): a pass over the packed rows."""
        return {i for _, rt, _, _, _, _, i, _, d, r in ROW.iter_unpack(self.rows)
                if r == OUT_OF_STOCK and rt != NONE and (d == REJECTED or d == PARTIAL)}

    def columns(self) -> Columns:
        """The records as numpy columns (made once per change)."""
        if self._columns is None:
            self._columns = Columns(self.ats, self.rows)
        return self._columns


class RecordsView(Mapping):
    """order id -> record, over a subject's or a distributor's rows (for inspection
    and the references in tests: each record is made on request)."""

    def __init__(self, rows):
        self._rows = rows

    def __getitem__(self, order_id: str) -> list:
        record = self._rows.record(order_id)
        if record is None:
            raise KeyError(order_id)
        return record

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._rows.ids))

    def __len__(self) -> int:
        return len(self._rows.ids)
