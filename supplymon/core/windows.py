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
from dataclasses import dataclass, field
from itertools import repeat
from typing import Iterable, Mapping, NamedTuple, Sequence

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
    if isinstance(column, np.ndarray):  # of objects (None: null)
        return column == value
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


def horizons(rules: Rules) -> tuple[int, int]:
    """(settle, expire) in ms after an order is placed: every deadline of an order has
    passed by the first, and the order has left the order state by the second."""
    return (max(rules.ms("response_escalation_hours"), rules.ms("delivery_rural_hours"),
                rules.ms("delivery_urban_hours")),
            rules.ms("response_escalation_hours") + rules.ms("retention_days"))

_SlotKey = tuple[int, int, int, int]  # family index, subject code, window start, partition


class _Subjects:
    """Subject tuples interned as int codes (one table per kind of subject)."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.codes: dict[tuple[str, ...], int] = {}
        self.values: list[tuple[str, ...]] = []
        self.texts: list[str] = []  # the subject column: "|".join
        self._arrays: list[np.ndarray] | None = None  # texts, then each column, as object arrays

    def code(self, subject: tuple[str, ...]) -> int:
        code = self.codes.get(subject)
        if code is None:
            code = self.codes[subject] = len(self.values)
            self.values.append(subject)
            self.texts.append("|".join(subject))
            self._arrays = None
        return code

    def _array(self, i: int) -> np.ndarray:
        if self._arrays is None:
            self._arrays = [np.array(self.texts, dtype=object)]
            for column in range(self.width):
                self._arrays.append(np.array([v[column] for v in self.values], dtype=object))
        return self._arrays[i]

    def texts_array(self) -> np.ndarray:
        return self._array(0)

    def column_array(self, column: int) -> np.ndarray:
        return self._array(1 + column)

    def encode(self, columns: list) -> np.ndarray:
        """Each row's code: each column dictionary-encoded (Arrow, in C; a `Coded`
        column by its codes), then only the distinct subjects of the batch looked up here."""
        combined, span, dictionaries = None, 1, []
        for column in columns:
            indices, dictionary = _dictionary_encoded(column)
            combined = indices if combined is None else combined * len(dictionary) + indices
            span *= len(dictionary)
            dictionaries.append(dictionary)
        if span <= max(4 * len(combined), 1024):  # few combinations: a table of them, no sort
            used = np.zeros(span, dtype=bool)
            used[combined] = True
            distinct, inverse = np.flatnonzero(used), None
        else:
            distinct, inverse = np.unique(combined, return_inverse=True)
        lookup = np.empty(len(distinct), dtype=np.int64)
        for i, value in enumerate(distinct.tolist()):
            parts = []
            for dictionary in reversed(dictionaries):
                value, at = divmod(value, len(dictionary))
                parts.append(dictionary[at])
            lookup[i] = self.code(tuple(reversed(parts)))
        if inverse is not None:
            return lookup[inverse.reshape(-1)]
        table = np.empty(span, dtype=np.int64)
        table[distinct] = lookup
        return table[combined]


class Coded(NamedTuple):
    """A column of texts as codes into `names` (-1: none): how the columnar flow holds
    an order's distributor, product and region."""

    codes: np.ndarray
    names: list


def _dictionary_encoded(column) -> tuple[np.ndarray, list]:
    """(each row's index into the dictionary, the dictionary) of a column of texts."""
    if isinstance(column, Coded):
        if len(column.codes) and column.codes.min() < 0:
            raise ValueError(_MISSING)
        used, indices = np.unique(column.codes, return_inverse=True)
        return indices.reshape(-1).astype(np.int64), [column.names[code] for code in used.tolist()]
    array = column if isinstance(column, (pa.Array, pa.ChunkedArray)) else pa.array(column, from_pandas=True)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if array.null_count:
        raise ValueError(_MISSING)
    encoded = pc.dictionary_encode(array.cast(pa.string()))
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), encoded.dictionary.to_pylist()


_MISSING = "a window's subject (distributor, product or region) is missing"


class Windows:
    """The window parts of the partitions one worker owns."""

    def __init__(self, rules: Rules, families: Iterable[Family] = FAMILIES):
        self.families = tuple(families)
        self.settle_ms, self.expire_ms = horizons(rules)
        kinds = {}
        for family in self.families:
            kinds.setdefault(family.subject_columns, _Subjects(len(family.subject_columns)))
        self._subjects = [kinds[family.subject_columns] for family in self.families]
        self._allocate(0)
        self._advanced_to: int | None = None
        self._names = np.array([family.name for family in self.families], dtype=object)

    # Each part is a row ("slot") of these arrays; `_index` finds a part's slot by its key.
    _ARRAYS = (("_family", np.int64), ("_subject", np.int64), ("_start", np.int64), ("_partition", np.int64),
               ("_close_at", np.int64), ("_expire_at", np.int64), ("_version", np.int64), ("_live", bool),
               ("_closed", bool), ("_dirty", bool))

    def _allocate(self, capacity: int) -> None:
        self._index: dict[_SlotKey, int] = {}
        for name, dtype in self._ARRAYS:
            setattr(self, name, np.zeros(capacity, dtype=dtype))
        self._counts = np.zeros((capacity, N_COUNTS), dtype=np.int64)
        self._hours: list[list[float]] = [[] for _ in range(capacity)]
        self._free: list[int] = list(range(capacity - 1, -1, -1))
        self._leaving: list[int] = []  # expired with changes not written yet: freed once taken
        # The earliest time a live part closes / expires (advance looks at the parts only
        # when the watermark passes it).
        self._next_close = self._next_expire = None

    def _grow(self, wanted: int) -> None:
        old = len(self._live)
        new = max(1024, old * 2, old + wanted)
        for name, dtype in self._ARRAYS:
            setattr(self, name, np.concatenate([getattr(self, name), np.zeros(new - old, dtype=dtype)]))
        self._counts = np.concatenate([self._counts, np.zeros((new - old, N_COUNTS), dtype=np.int64)])
        self._hours.extend([] for _ in range(new - old))
        self._free.extend(range(new - 1, old - 1, -1))

    def _make(self, f: int, keys: list[_SlotKey], start: np.ndarray, partition: np.ndarray,
              subject: np.ndarray) -> np.ndarray:
        """Slots for new parts of family f."""
        if len(self._free) < len(keys):
            self._grow(len(keys) - len(self._free))
        slots = self._free[-len(keys):][::-1]
        del self._free[-len(keys):]
        self._index.update(zip(keys, slots))
        slots = np.array(slots, dtype=np.int64)
        close_at = start + self.families[f].size_ms + self.settle_ms
        expire_at = start + self.expire_ms
        self._family[slots], self._subject[slots], self._start[slots] = f, subject, start
        self._partition[slots], self._close_at[slots], self._expire_at[slots] = partition, close_at, expire_at
        self._live[slots] = True
        self._next_close = _least(self._next_close, int(close_at.min()))
        self._next_expire = _least(self._next_expire, int(expire_at.min()))
        return slots

    def _release(self, slots: np.ndarray) -> None:
        for name, _ in self._ARRAYS:
            getattr(self, name)[slots] = 0
        self._counts[slots] = 0
        hours = self._hours
        for slot in slots.tolist():
            hours[slot] = []
        self._free.extend(slots.tolist())

    # -- changes -------------------------------------------------------------------------
    def update_batch(self, facts: Columns, partition, old: np.ndarray, had_none, old_version) -> np.ndarray:
        """Replace the old contributions of a batch's changed orders by their current
        ones; returns the new ones (n x 10, as `contributions`).

        `facts`: FACT_COLUMNS as equal-length columns (lists, numpy or Arrow arrays;
        None, NaN or an Arrow null where a fact has none: an integer numpy array has
        none); each order at most once a call; `partition`: each order's input
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
        if not changed.all():
            rows = np.flatnonzero(changed)
            if not len(rows):
                return
            partition, delta, version_delta = partition[rows], delta[rows], version_delta[rows]
            old_hours, new_hours, hours_changed = old_hours[rows], new_hours[rows], hours_changed[rows]
        else:
            rows = slice(None)
        ordered_at = _ints(facts["ordered_at"])[rows]
        codes: dict[int, np.ndarray] = {}  # by id of the subject table (two families share one)
        for f, family in enumerate(self.families):
            subjects = self._subjects[f]
            if id(subjects) not in codes:  # encoded whole (in C), then taken
                codes[id(subjects)] = subjects.encode([facts[c] for c in family.subject_columns])[rows]
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
        order, bounds = _group(subject, start, partition)
        first = order[bounds]
        keys = list(zip(repeat(f), subject[first].tolist(), start[first].tolist(), partition[first].tolist()))
        get = self._index.get
        slots = np.array([get(key, -1) for key in keys], dtype=np.int64)
        new = np.flatnonzero(slots < 0)
        if len(new):
            made = first[new]
            slots[new] = self._make(f, [keys[i] for i in new.tolist()], start[made], partition[made], subject[made])
        self._counts[slots] += np.add.reduceat(delta[order], bounds, axis=0)
        self._version[slots] += np.add.reduceat(version_delta[order], bounds)
        if written:
            self._dirty[slots] = True
        if hours_changed.any():
            slot = np.empty(len(order), dtype=np.int64)  # each row's part
            slot[order] = np.repeat(slots, np.diff(bounds, append=len(order)))
            self._move_hours(slot, old_hours, new_hours, hours_changed)

    def _move_hours(self, slot: np.ndarray, old_hours: np.ndarray, new_hours: np.ndarray,
                    changed: np.ndarray) -> None:
        """Each changed order's old response hours out of its part, its new ones in:
        the new ones first, a part at a time (its list stays sorted), so that the same
        order changed twice in one batch still finds its hours."""
        hours = self._hours
        adding = np.flatnonzero(changed & ~np.isnan(new_hours))
        if len(adding):
            order = adding[np.argsort(slot[adding])]
            slots, values = slot[order], new_hours[order].tolist()
            begins = np.flatnonzero(np.diff(slots, prepend=-1)).tolist()
            for s, begin, end in zip(slots[begins].tolist(), begins, begins[1:] + [len(order)]):
                kept = hours[s]
                kept += values[begin:end]
                kept.sort()  # a sorted run and a few more: a merge
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
        live = self._live
        if self._next_close is not None and watermark > self._next_close:
            waiting = live & ~self._closed
            closing = waiting & (self._close_at < watermark)
            self._closed[closing] = True
            self._dirty[closing] = True
            waiting &= ~closing
            self._next_close = int(self._close_at[waiting].min()) if waiting.any() else None
        if self._next_expire is not None and watermark > self._next_expire:
            expiring = live & (self._expire_at < watermark)
            slots = np.flatnonzero(expiring)
            index = self._index
            for key in zip(self._family[slots].tolist(), self._subject[slots].tolist(),
                           self._start[slots].tolist(), self._partition[slots].tolist()):
                del index[key]
            live[slots] = False
            written = self._dirty[slots]
            self._leaving.extend(slots[written].tolist())
            self._release(slots[~written])
            self._next_expire = int(self._expire_at[live].min()) if live.any() else None

    # -- what to write -------------------------------------------------------------------
    def _take_dirty_slots(self) -> np.ndarray:
        slots = np.flatnonzero(self._dirty)
        self._dirty[slots] = False
        return slots

    def _done_writing(self) -> None:
        if self._leaving:
            self._release(np.array(self._leaving, dtype=np.int64))
            self._leaving.clear()

    def take_dirty(self) -> list[tuple[PartKey, Part]]:
        """The parts changed (or closed) since last taken, as copies."""
        slots = self._take_dirty_slots()
        out = [(self._part_key(slot), self._part(slot)) for slot in slots.tolist()]
        self._done_writing()
        return out

    def take_dirty_columns(self) -> dict[str, list]:
        """The parts changed (or closed) since last taken, as `window_parts` columns
        (store.COLUMNS["window_parts"], each a list)."""
        slots = self._take_dirty_slots()
        family, subject = self._family[slots], self._subject[slots]
        out: dict[str, list] = {"family": self._names[family].tolist()}
        texts, distributors, products, regions = (np.empty(len(slots), dtype=object) for _ in range(4))
        distributors[:] = products[:] = regions[:] = ""
        for f, family_ in enumerate(self.families):
            rows = np.flatnonzero(family == f)
            if not len(rows):
                continue
            table = self._subjects[f]
            codes = subject[rows]
            texts[rows] = table.texts_array()[codes]
            if family_.name.startswith("distributor"):
                distributors[rows] = table.column_array(0)[codes]
            elif family_.name == "product_region_daily":
                products[rows] = table.column_array(0)[codes]
                regions[rows] = table.column_array(1)[codes]
        out["subject"] = texts.tolist()
        out["window_start"] = self._start[slots].tolist()
        out["partition"] = self._partition[slots].tolist()
        out["distributor_id"], out["product_id"], out["region_code"] = (
            distributors.tolist(), products.tolist(), regions.tolist())
        for name, column in zip(COUNTS, self._counts[slots].T.tolist()):
            out[name] = column
        hours = self._hours
        out["response_hours"] = [hours[slot][:] for slot in slots.tolist()]
        closed = self._closed[slots]
        out["closed"] = closed.astype(np.int64).tolist()
        out["version"] = (self._version[slots] * 2 + closed).tolist()
        self._done_writing()
        return out

    def take_dirty_rows(self) -> list[dict]:
        """The parts changed (or closed) since last taken, as `window_parts` rows."""
        columns = self.take_dirty_columns()
        return list(map(dict, map(zip, repeat(list(columns)), zip(*columns.values()))))

    def _part_key(self, slot: int) -> PartKey:
        f = int(self._family[slot])
        return (self.families[f].name, self._subjects[f].values[self._subject[slot]], int(self._start[slot]),
                int(self._partition[slot]))

    def _part(self, slot: int) -> Part:
        return Part(self._counts[slot].tolist(), list(self._hours[slot]), int(self._version[slot]),
                    bool(self._closed[slot]))

    @property
    def parts(self) -> dict[PartKey, Part]:
        """The parts in memory, as copies (for inspection; not the batch path)."""
        return {self._part_key(slot): self._part(slot) for slot in np.flatnonzero(self._live).tolist()}

    def clear(self) -> None:
        self._allocate(0)
        self._advanced_to = None


def _least(a: int | None, b: int) -> int:
    return b if a is None else min(a, b)


def _group(subject: np.ndarray, start: np.ndarray, partition: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows sorted by (subject, window start, partition), and where each distinct
    one begins in that order."""
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
        order = np.argsort(packed)
        return order, np.flatnonzero(np.diff(packed[order], prepend=-1))
    order = np.lexsort((partition, start, subject))
    new = np.ones(len(order), dtype=bool)
    for column in (subject, start, partition):
        new[1:] |= column[order][1:] != column[order][:-1]
    return order, np.flatnonzero(new)


def part_row(key: PartKey, part: Part) -> dict:
    family, subject, start, partition = key
    row = dict(zip(COUNTS, part.counts))
    row.update(family=family, subject="|".join(subject), window_start=start, partition=partition,
               distributor_id=subject[0] if family.startswith("distributor") else "",
               product_id=subject[0] if family == "product_region_daily" else "",
               region_code=subject[1] if family == "product_region_daily" else "",
               response_hours=list(part.response_hours), closed=int(part.closed), version=part.version * 2 + int(part.closed))
    return row
