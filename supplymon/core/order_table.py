"""Order states held as columns: one row per placed order (pure).

The per-event core (supplymon/core/lifecycle.py) keeps an order as a dict; a
million open orders as dicts (and their serialized copies) cost ~1-2 KB each.
Here the same state is a row of numpy columns grown by doubling, with a free
list and an order_id -> row dict:

- times are int64 epoch ms (`NULL` when absent); identifiers (institution,
  region, distributor, ...) are interned to int32 codes (`Names`);
- the event ids seen (duplicate detection) are kept as stable 64-bit hashes
  (`event_hash`, blake2b) with their content fingerprints, `SLOTS` inline per
  row and the rest in an overflow dict; a different event id of the same order
  with the same 64-bit hash (odds ~n^2/2^64) would be taken for a repeat;
- the first response's, first arrival's and late confirmation's event ids (only
  read to break ties on time) are kept as the strings themselves;
- the emitted-alert marks, the early-warning signal fingerprints, the window
  contribution and the input partition are columns too.

`part` is the input partition an order's first event was read from (uint16:
SUPPLYMON_PARTITIONS is at most 65,536, and a topic of more partitions than it is
an error the worker logs): the order's state is written
to the changelog partition of that number and dropped when the partition is
revoked, as Faust keeps a table's state on its input record's partition; a
later event of the order read from another partition is "misplaced"
(supplymon/core/columnar_flow.py).

`state_of(row)` gives the reference dict of a row (its `seen` a `HashedSeen`:
the per-event core runs on it unchanged) and `put(row, state)` writes one back;
both are for the rare events the columnar flow leaves to the per-event core, and
for snapshots. An order not yet placed (events held before it) is not a row.
"""
from __future__ import annotations

import hashlib
from typing import Iterable

import numpy as np

from supplymon.core.ids import share
from supplymon.core.lifecycle import ORDER_FIELDS
from supplymon.core.signals import NONE_VALUE, text_value

NULL = np.iinfo(np.int64).min  # an absent time or quantity
NEVER = np.iinfo(np.int64).max  # no next due instant
SLOTS = 6  # event ids kept inline per row; more go to the overflow dict
ALERT_KINDS = ("response_overdue", "response_escalation", "delivery_overdue", "confirmation_late")
DECISIONS = (None, "accepted", "partial", "rejected")
DECISION_CODE = {d: i for i, d in enumerate(DECISIONS)}
WINDOW_COUNTS = 9  # contribution(): the counts, then the response hours


def event_hash(event_id: str) -> int:
    """A stable signed 64-bit hash of an event id (the same in every process)."""
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "little", signed=True)


def event_hashes(event_ids: Iterable[str]) -> np.ndarray:
    """`event_hash` of each id, as int64 (the digests read as one buffer: no int made per id)."""
    blake2b = hashlib.blake2b
    return np.frombuffer(b"".join([blake2b(event_id.encode(), digest_size=8).digest() for event_id in event_ids]),
                         dtype="<i8").astype(np.int64)


class HashedSeen(list):
    """The event ids an order has seen, held as their hashes, with the list
    operations the per-event core uses on `state["seen"]`."""

    def __contains__(self, event_id) -> bool:  # type: ignore[override]
        return list.__contains__(self, event_id if isinstance(event_id, int) else event_hash(event_id))

    def index(self, event_id, *args) -> int:  # type: ignore[override]
        return list.index(self, event_id if isinstance(event_id, int) else event_hash(event_id), *args)

    def append(self, event_id) -> None:  # type: ignore[override]
        list.append(self, event_id if isinstance(event_id, int) else event_hash(event_id))


class Names:
    """Strings interned to int32 codes (identifiers repeat across orders)."""

    def __init__(self) -> None:
        self.code: dict[str, int] = {}
        self.names: list[str] = []
        self._values = np.full(1, NONE_VALUE, dtype=np.uint64)
        self._array = np.full(1, None, dtype=object)

    def of(self, name: str) -> int:
        code = self.code.get(name)
        if code is None:
            code = self.code[name] = len(self.names)
            self.names.append(name)
        return code

    def clear(self) -> None:
        self.code.clear()
        self.names.clear()
        self._values = self._values[-1:]
        self._array = self._array[-1:]

    def array(self) -> np.ndarray:
        """Each code's name, and last None: indexed by codes, -1 (none) included."""
        known = len(self._array) - 1
        if known != len(self.names):
            added = np.empty(len(self.names) - known, dtype=object)
            added[:] = self.names[known:]
            self._array = np.concatenate([self._array[:-1], added, self._array[-1:]])
        return self._array

    def values(self) -> np.ndarray:
        """Each code's name as the signals' fingerprints take a text (`text_value`), and
        last NONE_VALUE: indexed by a code, -1 (none) included."""
        known = len(self._values) - 1
        if known != len(self.names):
            added = np.array([NONE_VALUE if name is None else text_value(name) for name in self.names[known:]],
                             dtype=np.uint64)
            self._values = np.concatenate([self._values[:-1], added, self._values[-1:]])
        return self._values


# column -> (dtype, fill for a new row). As narrow as the contract's bounds allow
# (schemas/limits.py: quantities UInt32, shipments and arrivals UInt16 per order,
# the flow sends an order past them through the per-event core): times stay int64
# epoch ms, exact.
_COLUMNS = {
    "part": (np.uint16, 0), "placed": (np.bool_, False), "ordered_at": (np.int64, NULL),
    "quantity": (np.uint32, 0), "unit_price": (np.float64, 0.0),
    "n": (np.int32, 0), "passed": (np.int8, 0), "next_due": (np.int64, NEVER),
    "resp_ts": (np.int64, NULL), "resp_dec": (np.int8, 0), "resp_conf": (np.uint32, 0),
    "resp_reason": (np.int32, -1),
    "ship": (np.int64, NULL), "ships": (np.int32, 0),
    "recv": (np.int64, NULL), "arr_ts": (np.int64, NULL), "qty": (np.uint32, 0), "arrs": (np.int32, 0),
    "lc_ts": (np.int64, NULL), "lc_inst": (np.int32, -1), "lc_recv": (np.int64, 0),
    "sg0": (np.int64, -1), "sg1": (np.int64, -1), "cv": (np.int32, 0), "c_set": (np.bool_, False),
    "c_hours": (np.float64, np.nan), "seen_n": (np.int32, 0), "fp_n": (np.int32, 0),
}
_CODES = ("institution_id", "region_code", "area", "distributor_id", "manufacturer_id", "product_id", "product_kind")
for _name in _CODES:
    _COLUMNS[_name] = (np.int32, -1)
for _name in ("grassroots", "vbp"):
    _COLUMNS[_name] = (np.bool_, False)
# al_*: the alert marks (each kind's raised and resolved instants last emitted), as
# offsets from ordered_at (int32; both columns widened to int64 the first time one
# does not fit), al_flags saying which are set (MARK_SET) and which are None.
# seen_fp: content fingerprints (crc32, 32 bits), the first fp_n of a row's seen ids
# known (states from before fingerprints were kept have fewer); c: the window
# contribution's counts (0/1) and quantities (UInt32).
_WIDE = {  # column -> (dtype, fill, width)
    "seen_h": (np.int64, 0, SLOTS), "seen_fp": (np.uint32, 0, SLOTS),
    "al_flags": (np.int8, 0, len(ALERT_KINDS)), "al_raised": (np.int32, 0, len(ALERT_KINDS)),
    "al_resolved": (np.int32, 0, len(ALERT_KINDS)), "c": (np.uint32, 0, WINDOW_COUNTS),
}
_OBJECTS = ("oid", "resp_eid", "arr_eid", "lc_eid")


MARK_SET, MARK_NO_RAISED, MARK_NO_RESOLVED = 1, 2, 4


def _opt(value: int):
    return None if value == NULL else int(value)


class OrderTable:
    """The rows of the placed orders one worker holds."""

    def __init__(self, capacity: int = 1024) -> None:
        self.names = Names()
        self.rows: dict[str, int] = {}  # order id -> row
        self.free: list[int] = []
        self.size = 0  # rows ever used (the high-water mark)
        self.overflow: dict[int, list[tuple[int, int]]] = {}  # row -> (hash, fingerprint) past SLOTS
        self.capacity = capacity
        self.col: dict[str, np.ndarray] = {}
        for name, (dtype, fill) in _COLUMNS.items():
            self.col[name] = np.full(capacity, fill, dtype=dtype)
        for name, (dtype, fill, width) in _WIDE.items():
            self.col[name] = np.full((capacity, width), fill, dtype=dtype)
        for name in _OBJECTS:
            self.col[name] = np.full(capacity, None, dtype=object)
        self.__dict__.update(self.col)

    def __len__(self) -> int:
        return len(self.rows)

    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.col.values())

    # -- rows ---------------------------------------------------------------------------
    def _grow(self, need: int) -> None:
        capacity = self.capacity
        while capacity < need:
            capacity *= 2
        if capacity == self.capacity:
            return
        for name, array in self.col.items():
            grown = np.empty((capacity,) + array.shape[1:], dtype=array.dtype)
            grown[:self.capacity] = array
            grown[self.capacity:] = self._fill(name)
            # The old column dropped at once (not after the last is grown): the peak is
            # the grown table and one old column, not the two tables.
            self.col[name] = self.__dict__[name] = grown
            del array
        self.capacity = capacity

    @staticmethod
    def _fill(name: str):
        if name in _COLUMNS:
            return _COLUMNS[name][1]
        if name in _WIDE:
            return _WIDE[name][1]
        return None

    def allocate(self, order_ids: list[str]) -> np.ndarray:
        """New empty rows for these order ids (not held yet)."""
        out = np.empty(len(order_ids), dtype=np.int64)
        reuse = min(len(order_ids), len(self.free))
        for i in range(reuse):
            out[i] = self.free.pop()
        fresh = len(order_ids) - reuse
        if fresh:
            self._grow(self.size + fresh)
            out[reuse:] = np.arange(self.size, self.size + fresh)
            self.size += fresh
        # shared with the early warnings' records of the same orders (core/ids.py)
        order_ids = list(map(share, order_ids))
        rows = self.rows
        for order_id, row in zip(order_ids, out.tolist()):
            rows[order_id] = row
        self.oid[out] = order_ids
        return out

    def release(self, rows) -> None:
        """Rows whose orders are dropped (purged, or moved out): emptied for reuse."""
        rows = np.asarray(rows, dtype=np.int64)
        if not len(rows):
            return
        for row, order_id in zip(rows.tolist(), self.oid[rows].tolist()):
            del self.rows[order_id]
            self.overflow.pop(row, None)
        for name, array in self.col.items():
            array[rows] = self._fill(name)
        self.free.extend(rows.tolist())

    def clear(self) -> None:
        if self.rows:
            self.release(np.fromiter(self.rows.values(), dtype=np.int64, count=len(self.rows)))

    # -- seen event ids -------------------------------------------------------------------
    def seen_of(self, row: int) -> tuple[list[int], list[int]]:
        """The row's seen id hashes, and the fingerprints known (a prefix of them)."""
        n = int(self.seen_n[row])
        hashes = self.seen_h[row, :min(n, SLOTS)].tolist()
        prints = self.seen_fp[row, :min(n, SLOTS)].tolist()
        for h, fp in self.overflow.get(row, ()):
            hashes.append(h)
            prints.append(fp)
        return hashes, prints[:int(self.fp_n[row])]

    def add_seen(self, rows: np.ndarray, hashes: np.ndarray, prints: np.ndarray) -> None:
        """Append (hash, fingerprint) to each row's seen ids, in the order given."""
        if not len(rows):
            return
        order = np.argsort(rows, kind="stable")
        rows, hashes, prints = rows[order], hashes[order], prints[order]
        # the rank of each entry among its row's entries in this call
        starts = np.r_[0, np.flatnonzero(np.diff(rows)) + 1]
        rank = np.arange(len(rows)) - np.repeat(starts, np.diff(np.r_[starts, len(rows)]))
        slot = self.seen_n[rows] + rank
        # a fingerprint is known only after known ones (the per-event core's rule)
        known = self.fp_n[rows] == self.seen_n[rows]
        inline = slot < SLOTS
        self.seen_h[rows[inline], slot[inline]] = hashes[inline]
        self.seen_fp[rows[inline], slot[inline]] = prints[inline]
        if not inline.all():
            for row, h, fp in zip(rows[~inline].tolist(), hashes[~inline].tolist(), prints[~inline].tolist()):
                self.overflow.setdefault(row, []).append((h, fp))
        np.add.at(self.fp_n, rows[known], 1)
        np.add.at(self.seen_n, rows, 1)

    # -- alert marks ----------------------------------------------------------------------
    def mark(self, row: int, k: int) -> list:
        """[raised, resolved] of alert kind k last emitted for a (placed) row."""
        base, flags = int(self.ordered_at[row]), int(self.al_flags[row, k])
        return [None if flags & MARK_NO_RAISED else base + int(self.al_raised[row, k]),
                None if flags & MARK_NO_RESOLVED else base + int(self.al_resolved[row, k])]

    def set_mark(self, row: int, k: int, raised: int | None, resolved: int | None) -> None:
        base = int(self.ordered_at[row])
        up = 0 if raised is None else raised - base
        down = 0 if resolved is None else resolved - base
        wide = np.iinfo(self.al_raised.dtype)
        if not (wide.min <= up <= wide.max and wide.min <= down <= wide.max):
            for name in ("al_raised", "al_resolved"):
                self.col[name] = self.col[name].astype(np.int64)
            self.__dict__.update(self.col)
        self.al_raised[row, k], self.al_resolved[row, k] = up, down
        self.al_flags[row, k] = (MARK_SET | (MARK_NO_RAISED if raised is None else 0)
                                 | (MARK_NO_RESOLVED if resolved is None else 0))

    def set_marks(self, rows: np.ndarray, kinds: np.ndarray, raised: np.ndarray, resolved: np.ndarray) -> None:
        """`set_mark` for each (row, kind) cell at once (each cell once; NULL: None)."""
        if not len(rows):
            return
        base = self.ordered_at[rows]
        no_up, no_down = raised == NULL, resolved == NULL
        up = np.where(no_up, 0, raised - np.where(no_up, 0, base))
        down = np.where(no_down, 0, resolved - np.where(no_down, 0, base))
        narrow = np.iinfo(self.al_raised.dtype)
        if min(up.min(), down.min()) < narrow.min or max(up.max(), down.max()) > narrow.max:
            for name in ("al_raised", "al_resolved"):
                self.col[name] = self.col[name].astype(np.int64)
            self.__dict__.update(self.col)
        self.al_raised[rows, kinds], self.al_resolved[rows, kinds] = up, down
        self.al_flags[rows, kinds] = (MARK_SET | np.where(no_up, MARK_NO_RAISED, 0)
                                      | np.where(no_down, MARK_NO_RESOLVED, 0))

    def same_marks(self, rows: np.ndarray, raised: np.ndarray, resolved: np.ndarray) -> np.ndarray:
        """(rows, kinds): whether each kind's mark is set and is (raised, resolved)
        (NULL: None), for placed rows."""
        base = self.ordered_at[rows][:, None]
        flags = self.al_flags[rows]
        same_up = np.where(raised == NULL, (flags & MARK_NO_RAISED) != 0,
                           ((flags & MARK_NO_RAISED) == 0) & (self.al_raised[rows] == raised - base))
        same_down = np.where(resolved == NULL, (flags & MARK_NO_RESOLVED) != 0,
                             ((flags & MARK_NO_RESOLVED) == 0) & (self.al_resolved[rows] == resolved - base))
        return ((flags & MARK_SET) != 0) & same_up & same_down

    # -- one row as the per-event core's dict, and back -------------------------------------
    def state_of(self, row: int) -> dict:
        """The row as the per-event core's state dict (seen ids as their hashes)."""
        names = self.names.names
        hashes, prints = self.seen_of(row)
        state = {"oid": self.oid[row], "seen": HashedSeen(hashes), "fp": prints, "n": int(self.n[row]),
                 "passed": int(self.passed[row]), "alerts": {}, "p": int(self.part[row])}
        for k, kind in enumerate(ALERT_KINDS):
            if self.al_flags[row, k] & MARK_SET:
                state["alerts"][kind] = self.mark(row, k)
        if not self.placed[row]:
            return state
        order = {}
        for name in ORDER_FIELDS:
            if name in _CODES:
                order[name] = names[self.col[name][row]]
            elif name in ("grassroots", "vbp"):
                order[name] = bool(self.col[name][row])
            elif name == "unit_price":
                order[name] = float(self.unit_price[row])
            else:
                order[name] = int(self.col[name][row])
        order["ordered_at"] = int(self.ordered_at[row])
        state["order"] = order
        if self.resp_ts[row] != NULL:
            reason = int(self.resp_reason[row])
            state["resp"] = [int(self.resp_ts[row]), self.resp_eid[row], DECISIONS[self.resp_dec[row]],
                             int(self.resp_conf[row]), names[reason] if reason >= 0 else None]
        if self.ship[row] != NULL:
            state["ship"] = int(self.ship[row])
        if self.ships[row]:
            state["ships"] = int(self.ships[row])
        if self.recv[row] != NULL:
            state["recv"] = int(self.recv[row])
        if self.arr_ts[row] != NULL:
            state["arr"] = [int(self.arr_ts[row]), self.arr_eid[row]]
        if self.arrs[row]:
            state["qty"], state["arrs"] = int(self.qty[row]), int(self.arrs[row])
        if self.lc_ts[row] != NULL:
            state["late_conf"] = [int(self.lc_ts[row]), self.lc_eid[row], names[self.lc_inst[row]],
                                  int(self.lc_recv[row])]
        if self.sg0[row] != -1 or self.sg1[row] != -1:
            state["sg"] = [int(self.sg0[row]), int(self.sg1[row])]
        if self.c_set[row]:
            hours = float(self.c_hours[row])
            state["c"] = self.c[row].tolist() + [None if hours != hours else hours]
            state["cv"] = int(self.cv[row])
        return state

    def put(self, row: int, state: dict) -> None:
        """Write a per-event core's state dict (with an order placed) into `row`."""
        of = self.names.of
        seen, prints = state["seen"], state.get("fp", [])
        hashes = list.__iter__(seen) if isinstance(seen, HashedSeen) else map(event_hash, seen)
        entries = [(h, prints[i] if i < len(prints) else 0) for i, h in enumerate(hashes)]
        self.seen_n[row] = len(entries)
        self.fp_n[row] = min(len(prints), len(entries))
        self.seen_h[row] = 0
        self.seen_fp[row] = 0
        for i, (h, fp) in enumerate(entries[:SLOTS]):
            self.seen_h[row, i], self.seen_fp[row, i] = h, fp
        if len(entries) > SLOTS:
            self.overflow[row] = entries[SLOTS:]
        else:
            self.overflow.pop(row, None)
        self.n[row], self.passed[row], self.part[row] = state["n"], state["passed"], state["p"]
        order = state["order"]
        self.ordered_at[row] = order["ordered_at"]
        alerts = state.get("alerts", {})
        for k, kind in enumerate(ALERT_KINDS):
            mark = alerts.get(kind)
            if mark is None:
                self.al_flags[row, k] = 0
            else:
                self.set_mark(row, k, mark[0], mark[1])
        self.placed[row] = True
        for name in ORDER_FIELDS:
            value = order[name]
            self.col[name][row] = of(value) if name in _CODES else value
        resp = state.get("resp")
        if resp:
            self.resp_ts[row], self.resp_eid[row] = resp[0], resp[1]
            self.resp_dec[row], self.resp_conf[row] = DECISION_CODE[resp[2]], resp[3]
            self.resp_reason[row] = -1 if resp[4] is None else of(resp[4])
        else:
            self.resp_ts[row], self.resp_eid[row], self.resp_dec[row] = NULL, None, 0
            self.resp_conf[row], self.resp_reason[row] = 0, -1
        self.ship[row] = state.get("ship", NULL) if state.get("ship") is not None else NULL
        self.ships[row] = state.get("ships", 0)
        self.recv[row] = state["recv"] if state.get("recv") is not None else NULL
        arr = state.get("arr")
        self.arr_ts[row], self.arr_eid[row] = (arr[0], arr[1]) if arr else (NULL, None)
        self.qty[row], self.arrs[row] = state.get("qty", 0), state.get("arrs", 0)
        late = state.get("late_conf")
        if late:
            self.lc_ts[row], self.lc_eid[row], self.lc_inst[row], self.lc_recv[row] = (
                late[0], late[1], of(late[2]), late[3])
        else:
            self.lc_ts[row], self.lc_eid[row], self.lc_inst[row], self.lc_recv[row] = NULL, None, -1, 0
        sg = state.get("sg", [-1, -1])
        self.sg0[row], self.sg1[row] = sg[0], sg[1]
        c = state.get("c")
        self.c_set[row] = c is not None
        if c is not None:
            self.c[row] = c[:WINDOW_COUNTS]
            self.c_hours[row] = np.nan if c[WINDOW_COUNTS] is None else c[WINDOW_COUNTS]
            self.cv[row] = state.get("cv", 0)
        else:
            self.c[row] = 0
            self.c_hours[row], self.cv[row] = np.nan, 0
