"""Windowed delivery and response tables, on event time (contract section 4).

Each order counts once, in the window of its `ordered_at`, with what its fact row
says now: its *contribution* (orders, responded, on time, quantities, response
hours). When the fact changes, the window takes the new contribution in place of
the old, so late answers and arrivals correct the tables.

Windows are kept per input partition ("parts"): an order lives in one partition,
so each part is owned by the one worker that owns the partition, and the table is
the sum of its parts (ClickHouse views do the sum). The parts are derived state:
after a restart or rebalance they are rebuilt from the order states, which keep
their last contribution. A window is *closed* once every deadline of every order
in it has passed (later corrections still update it) and *expired* (dropped from
memory) when the first of its orders leaves the order state (retention).

Response-time percentiles are exact: a part keeps its orders' response hours and
the views take ClickHouse's `quantileExact` over all parts of a window.

A batch at a time, on columns: `Windows.update_batch` takes a batch's changed
orders as columns (FACT_COLUMNS), computes their contributions with numpy, groups
the differences by part and adds each part's sum once; only the orders whose
response hours changed touch a part's hours list. The parts live in arrays too
(one row, a *slot*, per part). A part's counts and version are sums, so they end
the same whatever the batch boundaries and the order of the orders in a batch;
tests/windows_reference.py is the same tables one order at a time, and the tests
hold the two equal.
"""
from __future__ import annotations

import bisect
import heapq
from dataclasses import dataclass, field
from itertools import repeat
from typing import Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from supplymon.settings import HOUR_MS, Rules

DAY_MS = 24 * HOUR_MS
SHANGHAI_OFFSET_MS = 8 * HOUR_MS
COUNTS = ("orders", "responded", "responded_within_24h", "rejected", "delivered_on_time",
          "delivered_late", "undelivered", "ordered_quantity", "delivered_quantity")
N_COUNTS = len(COUNTS)
# The order_facts columns the windows read.
FACT_COLUMNS = ("ordered_at", "distributor_id", "product_id", "region_code", "responded_at", "decision",
                "on_time", "arrivals", "quantity", "delivered_quantity", "response_hours", "version")


@dataclass(frozen=True)
class Family:
    name: str
    size_ms: int
    subject_columns: tuple[str, ...]  # the window's key, from a fact row

    def subject(self, fact: Mapping) -> tuple[str, ...]:
        return tuple(fact[column] for column in self.subject_columns)

    @property
    def offset_ms(self) -> int:
        """Days are calendar days in Asia/Shanghai."""
        return SHANGHAI_OFFSET_MS if self.size_ms == DAY_MS else 0

    def start(self, ts: int) -> int:
        """Start of the window holding `ts`."""
        return (ts + self.offset_ms) // self.size_ms * self.size_ms - self.offset_ms

    def starts(self, ts: np.ndarray) -> np.ndarray:
        return (ts + self.offset_ms) // self.size_ms * self.size_ms - self.offset_ms


FAMILIES = (
    Family("distributor_daily", DAY_MS, ("distributor_id",)),
    Family("distributor_hourly", HOUR_MS, ("distributor_id",)),
    Family("product_region_daily", DAY_MS, ("product_id", "region_code")),
)

Columns = Mapping[str, "Sequence | np.ndarray | pa.Array"]


def _ints(column) -> np.ndarray:
    if isinstance(column, (pa.Array, pa.ChunkedArray)):
        column = column.to_numpy(zero_copy_only=False)
    return np.asarray(column, dtype=np.int64)


def _nullable(column, dtype) -> tuple[np.ndarray, np.ndarray]:
    """(values with 0 for null, present): None in a list or object array, NaN in a
    float array and Arrow nulls are null."""
    if isinstance(column, np.ndarray) and column.dtype != object:
        if column.dtype.kind == "f":
            present = ~np.isnan(column)
            return np.where(present, column, 0).astype(dtype), present
        return column.astype(dtype), np.ones(len(column), dtype=bool)
    array = column if isinstance(column, (pa.Array, pa.ChunkedArray)) else pa.array(column, from_pandas=True)
    if array.type == pa.null():
        return np.zeros(len(array), dtype=dtype), np.zeros(len(array), dtype=bool)
    if pa.types.is_boolean(array.type):
        array = array.cast(pa.int8())
    present = array.is_valid().to_numpy(zero_copy_only=False)
    return array.fill_null(0).to_numpy(zero_copy_only=False).astype(dtype), present


def _equals(column, value: str) -> np.ndarray:
    array = column if isinstance(column, (pa.Array, pa.ChunkedArray)) else pa.array(column, from_pandas=True)
    if array.type == pa.null():
        return np.zeros(len(array), dtype=bool)
    return pc.equal(array, value).fill_null(False).to_numpy(zero_copy_only=False)


def contributions(facts: Columns) -> np.ndarray:
    """What each order adds to its windows, an (n x 10) float array: COUNTS in order,
    then its response hours (NaN: none)."""
    ordered_at = _ints(facts["ordered_at"])
    responded_at, responded = _nullable(facts["responded_at"], np.int64)
    on_time, judged = _nullable(facts["on_time"], np.int64)
    arrived = _ints(facts["arrivals"]) > 0
    hours, answered = _nullable(facts["response_hours"], np.float64)
    late = judged & (on_time == 0)
    out = np.empty((len(ordered_at), N_COUNTS + 1), dtype=np.float64)
    out[:, 0] = 1
    out[:, 1] = responded
    out[:, 2] = responded & (responded_at - ordered_at <= DAY_MS)
    out[:, 3] = _equals(facts["decision"], "rejected")
    out[:, 4] = judged & (on_time == 1)
    out[:, 5] = late & arrived
    out[:, 6] = late & ~arrived
    out[:, 7] = _ints(facts["quantity"])
    out[:, 8] = _ints(facts["delivered_quantity"])
    out[:, 9] = np.where(answered, hours, np.nan)
    return out


def contribution(fact: dict) -> list:
    """One order's contribution as a list (the form an order state keeps): COUNTS in
    order, then its response hours (or None)."""
    return contribution_lists(contributions(fact_columns([fact])))[0]


def fact_columns(facts: Sequence[dict]) -> dict[str, list]:
    """The columns the windows read, from fact rows."""
    return {name: [fact[name] for fact in facts] for name in FACT_COLUMNS}


def contribution_lists(contribs: np.ndarray) -> list[list]:
    """Contributions as the lists an order state keeps (counts as ints, hours or None)."""
    out = contribs[:, :N_COUNTS].astype(np.int64).tolist()
    for row, hours in zip(out, contribs[:, N_COUNTS].tolist()):
        row.append(None if hours != hours else hours)
    return out


def contribution_array(contribs: Sequence[list | None]) -> tuple[np.ndarray, np.ndarray]:
    """(n x 10 array, had none) from contributions as kept in order states (None: none)."""
    had_none = np.fromiter((c is None for c in contribs), dtype=bool, count=len(contribs))
    array = np.zeros((len(contribs), N_COUNTS + 1), dtype=np.float64)
    if len(contribs) and not had_none.all():
        array[~had_none] = np.array([c for c in contribs if c is not None], dtype=np.float64)
    array[had_none, N_COUNTS] = np.nan
    return array, had_none


@dataclass
class Part:
    """A part as seen from outside (a copy; the windows keep parts in arrays)."""

    counts: list[int] = field(default_factory=lambda: [0] * N_COUNTS)
    response_hours: list[float] = field(default_factory=list)  # sorted
    version: int = 0  # sum of the contributing orders' versions: grows, and ends the same on any path
    closed: bool = False


PartKey = tuple[str, tuple[str, ...], int, int]  # family, subject, window start, partition
_SlotKey = tuple[int, int, int, int]  # family index, subject code, window start, partition


class _Subjects:
    """Subject tuples interned as int codes (one table per kind of subject)."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.codes: dict[tuple[str, ...], int] = {}
        self.values: list[tuple[str, ...]] = []
        self.texts: list[str] = []  # the subject column: "|".join

    def code(self, subject: tuple[str, ...]) -> int:
        code = self.codes.get(subject)
        if code is None:
            code = self.codes[subject] = len(self.values)
            self.values.append(subject)
            self.texts.append("|".join(subject))
        return code

    def encode(self, columns: list) -> np.ndarray:
        """Each row's code: each column dictionary-encoded (Arrow, in C), then only the
        distinct subjects of the batch looked up here."""
        combined, dictionaries = None, []
        for column in columns:
            array = column if isinstance(column, (pa.Array, pa.ChunkedArray)) else pa.array(column, from_pandas=True)
            if array.null_count:
                raise ValueError("a window's subject (distributor, product or region) is missing")
            encoded = pc.dictionary_encode(array.cast(pa.string()))
            if isinstance(encoded, pa.ChunkedArray):
                encoded = encoded.combine_chunks()
            indices = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
            dictionary = encoded.dictionary.to_pylist()
            combined = indices if combined is None else combined * len(dictionary) + indices
            dictionaries.append(dictionary)
        distinct, inverse = np.unique(combined, return_inverse=True)
        lookup = np.empty(len(distinct), dtype=np.int64)
        for i, value in enumerate(distinct.tolist()):
            parts = []
            for dictionary in reversed(dictionaries):
                value, at = divmod(value, len(dictionary))
                parts.append(dictionary[at])
            lookup[i] = self.code(tuple(reversed(parts)))
        return lookup[inverse.reshape(-1)]


class Windows:
    """The window parts of the partitions one worker owns."""

    def __init__(self, rules: Rules, families: Iterable[Family] = FAMILIES):
        self.families = tuple(families)
        # Every deadline of an order is at most this long after it was placed.
        self.settle_ms = max(rules.ms("response_escalation_hours"), rules.ms("delivery_rural_hours"),
                             rules.ms("delivery_urban_hours"))
        self.expire_ms = rules.ms("response_escalation_hours") + rules.ms("retention_days")
        kinds = {}
        for family in self.families:
            kinds.setdefault(family.subject_columns, _Subjects(len(family.subject_columns)))
        self._subjects = [kinds[family.subject_columns] for family in self.families]
        self._allocate(0)
        self._advanced_to: int | None = None

    def _allocate(self, capacity: int) -> None:
        self._index: dict[_SlotKey, int] = {}
        self._keys: list[_SlotKey | None] = [None] * capacity
        self._counts = np.zeros((capacity, N_COUNTS), dtype=np.int64)
        self._version = np.zeros(capacity, dtype=np.int64)
        self._closed = np.zeros(capacity, dtype=bool)
        self._dirty = np.zeros(capacity, dtype=bool)
        self._hours: list[list[float]] = [[] for _ in range(capacity)]
        self._free: list[int] = list(range(capacity - 1, -1, -1))
        self._leaving: list[int] = []  # expired with changes not written yet: freed once taken
        # When each part closes and expires (pushed once, when the part is made), so
        # that advancing the watermark looks only at the parts it closes or expires.
        self._closing: list[tuple[int, _SlotKey]] = []
        self._expiring: list[tuple[int, _SlotKey]] = []

    def _grow(self) -> None:
        old = len(self._keys)
        new = max(1024, old * 2)
        self._keys.extend([None] * (new - old))
        self._counts = np.concatenate([self._counts, np.zeros((new - old, N_COUNTS), dtype=np.int64)])
        self._version = np.concatenate([self._version, np.zeros(new - old, dtype=np.int64)])
        self._closed = np.concatenate([self._closed, np.zeros(new - old, dtype=bool)])
        self._dirty = np.concatenate([self._dirty, np.zeros(new - old, dtype=bool)])
        self._hours.extend([] for _ in range(new - old))
        self._free.extend(range(new - 1, old - 1, -1))

    def _make(self, key: _SlotKey) -> int:
        if not self._free:
            self._grow()
        slot = self._index[key] = self._free.pop()
        self._keys[slot] = key
        family, start = self.families[key[0]], key[2]
        heapq.heappush(self._closing, (start + family.size_ms + self.settle_ms, key))
        heapq.heappush(self._expiring, (start + self.expire_ms, key))
        return slot

    def _release(self, slot: int) -> None:
        self._keys[slot] = None
        self._counts[slot] = 0
        self._version[slot] = 0
        self._closed[slot] = False
        self._dirty[slot] = False
        self._hours[slot] = []
        self._free.append(slot)

    # -- changes -------------------------------------------------------------------------
    def update_batch(self, facts: Columns, partition, old: np.ndarray, had_none, old_version) -> np.ndarray:
        """Replace the old contributions of a batch's changed orders by their current
        ones; returns the new ones (n x 10, as `contributions`).

        `facts`: FACT_COLUMNS as equal-length columns (lists, numpy or Arrow arrays;
        None, NaN or null where a fact has none); `partition`: each order's input
        partition; `old`: their contributions as last given (n x 10; any values where
        `had_none`); `old_version`: the fact version that gave it."""
        new = contributions(facts)
        n = len(new)
        if not n:
            return new
        had_none = np.asarray(had_none, dtype=bool)
        old = np.asarray(old, dtype=np.float64).reshape(n, N_COUNTS + 1)
        version = _ints(facts["version"])
        old_version = np.where(had_none, 0, _ints(old_version))
        old_counts = np.where(had_none[:, None], 0, old[:, :N_COUNTS])
        old_hours = np.where(had_none, np.nan, old[:, N_COUNTS])
        new_hours = new[:, N_COUNTS]
        delta = (new[:, :N_COUNTS] - old_counts).astype(np.int64)
        version_delta = version - old_version
        same_hours = (old_hours == new_hours) | (np.isnan(old_hours) & np.isnan(new_hours))
        changed = had_none | delta.any(axis=1) | ~same_hours | (version_delta != 0)
        self._apply(facts, _ints(partition), changed, delta, version_delta, old_hours, new_hours, ~same_hours,
                    written=True)
        return new

    def restore_batch(self, facts: Columns, partition, contribs: np.ndarray, version) -> None:
        """Count orders already counted before a restart (no change, nothing to write):
        `contribs` (n x 10) as update_batch returned them for fact `version`."""
        contribs = np.asarray(contribs, dtype=np.float64).reshape(-1, N_COUNTS + 1)
        n = len(contribs)
        if not n:
            return
        hours = contribs[:, N_COUNTS]
        self._apply(facts, _ints(partition), np.ones(n, dtype=bool), contribs[:, :N_COUNTS].astype(np.int64),
                    _ints(version), np.full(n, np.nan), hours, ~np.isnan(hours), written=False)

    def _apply(self, facts: Columns, partition: np.ndarray, changed: np.ndarray, delta: np.ndarray,
               version_delta: np.ndarray, old_hours: np.ndarray, new_hours: np.ndarray,
               hours_changed: np.ndarray, written: bool) -> None:
        rows = np.flatnonzero(changed)
        if not len(rows):
            return
        ordered_at = _ints(facts["ordered_at"])[rows]
        partition = partition[rows]
        delta, version_delta = delta[rows], version_delta[rows]
        old_hours, new_hours, hours_changed = old_hours[rows], new_hours[rows], hours_changed[rows]
        codes: dict[int, np.ndarray] = {}  # by id of the subject table (two families share one)
        for f, family in enumerate(self.families):
            subjects = self._subjects[f]
            if id(subjects) not in codes:
                codes[id(subjects)] = subjects.encode([_take(facts[c], rows) for c in family.subject_columns])
            starts = family.starts(ordered_at)
            # Expired as far as the windows were advanced, not to the batch's watermark:
            # that may have jumped past the window in the very batch that placed the order,
            # whose part must still be made and written (closed, then dropped, by advance).
            # The same parts whatever the batch boundaries.
            if written and self._advanced_to is not None:
                live = np.flatnonzero(self._advanced_to <= starts + self.expire_ms)
                # a correction after the window left memory: facts have it, tables not
            else:
                live = slice(None)
            self._add(f, codes[id(subjects)][live], starts[live], partition[live], delta[live],
                      version_delta[live], old_hours[live], new_hours[live], hours_changed[live], written)

    def _add(self, f: int, subject: np.ndarray, start: np.ndarray, partition: np.ndarray, delta: np.ndarray,
             version_delta: np.ndarray, old_hours: np.ndarray, new_hours: np.ndarray,
             hours_changed: np.ndarray, written: bool) -> None:
        """One family's changes: summed per part, each part touched once."""
        if not len(subject):
            return
        group, first = _group(subject, start, partition)
        keys = zip(repeat(f), subject[first].tolist(), start[first].tolist(), partition[first].tolist())
        index = self._index
        slots = np.array([index[key] if key in index else self._make(key) for key in keys], dtype=np.int64)
        order = np.argsort(group, kind="stable")
        bounds = np.flatnonzero(np.diff(group[order], prepend=-1))
        self._counts[slots] += np.add.reduceat(delta[order], bounds, axis=0)
        self._version[slots] += np.add.reduceat(version_delta[order], bounds)
        if written:
            self._dirty[slots] = True
        if hours_changed.any():
            self._move_hours(slots[group], old_hours, new_hours, hours_changed)

    def _move_hours(self, slot: np.ndarray, old_hours: np.ndarray, new_hours: np.ndarray,
                    changed: np.ndarray) -> None:
        """Each changed order's old response hours out of its part, its new ones in:
        the new ones first, a part at a time (its list stays sorted), so that the same
        order changed twice in one batch still finds its hours."""
        hours = self._hours
        adding = np.flatnonzero(changed & ~np.isnan(new_hours))
        if len(adding):
            order = adding[np.lexsort((new_hours[adding], slot[adding]))]
            slots, values = slot[order], new_hours[order].tolist()
            cuts = np.flatnonzero(np.diff(slots)) + 1
            for begin, end in zip([0, *cuts.tolist()], [*cuts.tolist(), len(order)]):
                kept = hours[int(slots[begin])]
                added = values[begin:end]
                if len(added) == 1:
                    bisect.insort(kept, added[0])
                else:
                    kept.extend(added)
                    kept.sort()  # two sorted runs: one merge
        removing = np.flatnonzero(changed & ~np.isnan(old_hours))
        for s, value in zip(slot[removing].tolist(), old_hours[removing].tolist()):
            kept = hours[s]
            del kept[bisect.bisect_left(kept, value)]

    # -- one order at a time (the same, for callers with one fact dict) ------------------
    def update(self, fact: dict, partition: int, old: list | None, old_version: int) -> list:
        """Replace an order's old contribution by its current one; returns the new one."""
        return self.update_facts([fact], [partition], [old], [old_version])[0]

    def update_facts(self, facts: Sequence[dict], partitions: Sequence[int], olds: Sequence[list | None],
                     old_versions: Sequence[int]) -> list[list]:
        """update_batch for fact rows and contributions kept as lists (order states)."""
        old, had_none = contribution_array(olds)
        new = self.update_batch(fact_columns(facts), partitions, old, had_none, old_versions)
        return contribution_lists(new)

    def restore(self, fact: dict, partition: int, contrib: list, version: int) -> None:
        """Count an order already counted before a restart (no change, nothing to write)."""
        self.restore_facts([fact], [partition], [contrib], [version])

    def restore_facts(self, facts: Sequence[dict], partitions: Sequence[int], contribs: Sequence[list],
                      versions: Sequence[int]) -> None:
        self.restore_batch(fact_columns(facts), partitions, contribution_array(contribs)[0], versions)

    # -- time ----------------------------------------------------------------------------
    def advance(self, watermark: int) -> None:
        """Close windows all of whose deadlines have passed; drop expired ones (closed
        first, and a changed part's last state still written: one advance may close
        and expire a window whose orders it has just settled)."""
        if watermark == self._advanced_to:
            return
        self._advanced_to = watermark
        expiring, closing, index = self._expiring, self._closing, self._index
        while closing and watermark > closing[0][0]:
            _, key = heapq.heappop(closing)
            slot = index.get(key)
            if slot is not None and not self._closed[slot]:
                self._closed[slot] = True
                self._dirty[slot] = True
        while expiring and watermark > expiring[0][0]:
            _, key = heapq.heappop(expiring)
            slot = index.pop(key, None)
            if slot is None:
                continue
            if self._dirty[slot]:
                self._leaving.append(slot)
            else:
                self._release(slot)

    # -- what to write -------------------------------------------------------------------
    def _take_dirty_slots(self) -> np.ndarray:
        slots = np.flatnonzero(self._dirty)
        self._dirty[slots] = False
        return slots

    def _done_writing(self) -> None:
        for slot in self._leaving:
            self._release(slot)
        self._leaving.clear()

    def take_dirty(self) -> list[tuple[PartKey, Part]]:
        """The parts changed (or closed) since last taken, as copies."""
        slots = self._take_dirty_slots()
        out = [(self._part_key(slot), self._part(slot)) for slot in slots.tolist()]
        self._done_writing()
        return out

    def take_dirty_columns(self) -> dict[str, list]:
        """The parts changed (or closed) since last taken, as `window_parts` columns."""
        slots = self._take_dirty_slots()
        keys = [self._keys[slot] for slot in slots.tolist()]
        out: dict[str, list] = {name: [] for name in
                                ("family", "subject", "window_start", "partition", "distributor_id",
                                 "product_id", "region_code")}
        for f, code, start, partition in keys:
            name, subjects = self.families[f].name, self._subjects[f]
            subject = subjects.values[code]
            by_distributor, by_product_region = name.startswith("distributor"), name == "product_region_daily"
            out["family"].append(name)
            out["subject"].append(subjects.texts[code])
            out["window_start"].append(start)
            out["partition"].append(partition)
            out["distributor_id"].append(subject[0] if by_distributor else "")
            out["product_id"].append(subject[0] if by_product_region else "")
            out["region_code"].append(subject[1] if by_product_region else "")
        counts = self._counts[slots].T.tolist()
        for name, column in zip(COUNTS, counts or [[]] * N_COUNTS):
            out[name] = column
        out["response_hours"] = [list(self._hours[slot]) for slot in slots.tolist()]
        closed = self._closed[slots]
        out["closed"] = closed.astype(np.int64).tolist()
        out["version"] = (self._version[slots] * 2 + closed).tolist()
        self._done_writing()
        return out

    def take_dirty_rows(self) -> list[dict]:
        """The parts changed (or closed) since last taken, as `window_parts` rows."""
        columns = self.take_dirty_columns()
        names = list(columns)
        return [dict(zip(names, values)) for values in zip(*columns.values())]

    def _part_key(self, slot: int) -> PartKey:
        f, code, start, partition = self._keys[slot]
        return self.families[f].name, self._subjects[f].values[code], start, partition

    def _part(self, slot: int) -> Part:
        return Part(self._counts[slot].tolist(), list(self._hours[slot]), int(self._version[slot]),
                    bool(self._closed[slot]))

    @property
    def parts(self) -> dict[PartKey, Part]:
        """The parts in memory, as copies (for inspection; not the batch path)."""
        return {self._part_key(slot): self._part(slot) for slot in self._index.values()}

    def clear(self) -> None:
        self._allocate(0)
        self._advanced_to = None


def _take(column, rows: np.ndarray):
    if isinstance(column, (pa.Array, pa.ChunkedArray)):
        return column.take(pa.array(rows))
    if isinstance(column, np.ndarray):
        return column[rows]
    return [column[i] for i in rows.tolist()]


def _group(subject: np.ndarray, start: np.ndarray, partition: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(each row's group, the first row of each group) for the distinct (subject,
    window start, partition) of the rows."""
    columns = []
    for column in (subject, start, partition):
        low = column.min()
        columns.append((column - low, int(column.max() - low) + 1))
    width = 1
    for _, span in columns:
        width *= span
    if width < 1 << 62:  # one int64 key: one sort
        packed = np.zeros(len(subject), dtype=np.int64)
        for column, span in columns:
            packed = packed * span + column
        _, first, group = np.unique(packed, return_index=True, return_inverse=True)
    else:
        order = np.lexsort((partition, start, subject))
        new = np.ones(len(order), dtype=bool)
        new[1:] = ((subject[order][1:] != subject[order][:-1]) | (start[order][1:] != start[order][:-1])
                   | (partition[order][1:] != partition[order][:-1]))
        group = np.empty(len(order), dtype=np.int64)
        group[order] = np.cumsum(new) - 1
        first = order[new]
    return group.reshape(-1), first


def part_row(key: PartKey, part: Part) -> dict:
    family, subject, start, partition = key
    row = dict(zip(COUNTS, part.counts))
    row.update(family=family, subject="|".join(subject), window_start=start, partition=partition,
               distributor_id=subject[0] if family.startswith("distributor") else "",
               product_id=subject[0] if family == "product_region_daily" else "",
               region_code=subject[1] if family == "product_region_daily" else "",
               response_hours=list(part.response_hours), closed=int(part.closed), version=part.version * 2 + int(part.closed))
    return row
