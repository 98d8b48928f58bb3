"""The order dataflow of one batch on columns (supplymon/core/flow.py's contract).

The same steps as the per-event reference (`ReferenceOrderFlow`): decode, apply,
advance, emit, marks, snapshots; the same output. What differs is how:

- decode: the batch's lines stay the fast path's msgspec Structs, their times
  parsed for the batch at once (`Intake.admit_columns`); the columns the steps
  read are taken from them (no dict per event); the per-event core gets
  `parse_event`'s dict of an event it takes;
- order states are rows of an `OrderTable` the flow owns (`lookup` is asked
  only for an order it does not hold); orders not placed yet (events held
  before their order) stay dicts of the per-event core, with a `DueIndex`;
- apply: the batch's events are grouped by order; an order's events take the
  columnar path (numpy, the whole batch at once) when they are the common case
  (a new order with its answers, or answers, shipments and arrivals to a placed
  one; no repeat of an event id, no quantity over the ordered, no store limit
  near, no tie on time among first answers or arrivals). Any other order's
  events of the batch go through the per-event core (`OrderLifecycle.apply`) in
  their reading order, on the row made a dict and written back;
- advance: the rows whose next due instant is before the watermark, found and
  advanced with numpy (deadline bits, retention purge);
- emit: `events_raw` and `order_facts` rows as columns (supplymon/core/rows.py
  `Columns`); the windows take the fact columns a batch at a time
  (`Windows.update_batch`, the subjects as the table's codes); the signal
  records fingerprinted on numpy and made only where the fingerprint changed; an
  alert row per changed alert, from the few fact fields it reads;
- snapshots (when asked for): a changed placed order's row as compact bytes
  (supplymon/core/row_snapshot.py), an order not placed yet as the reference's
  orjson dict, each with its order's input partition (`part`: the changelog
  partition it goes to); `restore` and the lookup take these, the earlier orjson
  states (seen ids hashed, "sh") and the reference's own. An event read off its
  order's input partition is counted as the reference counts it
  (supplymon/core/flow.py, "misplaced").
"""
from __future__ import annotations

import zlib
from operator import attrgetter, itemgetter
from typing import Callable, Iterable

import numpy as np
import orjson

from schemas.events import Invalid
from schemas.fast_events import KIND_OF, ArrivalLine, Decoded, ResponseLine, as_line
from schemas.limits import UINT16_MAX, UINT32_MAX
from supplymon.core import jsonbytes
from supplymon.core.alerts import ALERT_FACT_FIELDS, order_alert_row
from supplymon.core.due import DueIndex
from supplymon.core.flow import (BatchOutput, Lookup, Partition, Record, ReferenceOrderFlow, _Batch, _raw_row,
                                  keep_input_partition)
from supplymon.core.intake import Intake
from supplymon.core.lifecycle import (DELIVERY_DEADLINE, ESCALATION_DEADLINE, RESPONSE_DEADLINE,
                                      SEVERITY, _NOT_CONTENT, OrderLifecycle, new_state)
from supplymon.core.row_snapshot import decode_row, encode_rows, is_compact, load_rows
from supplymon.core.rows import Columns
from supplymon.core.order_table import (ALERT_KINDS, DECISION_CODE, DECISIONS, NEVER, NULL, WINDOW_COUNTS, HashedSeen,
                                        OrderTable, event_hashes)
from supplymon.core.signals import (NONE_VALUE, delivery_records, distributor_group, float_values, fold, int_values,
                                    manufacturer_group, supply_records, text_value)
from supplymon.core.stream_time import StreamTime
from supplymon.core.windows import Coded, Windows
from supplymon.settings import HOUR_MS, Rules, Settings

ORDER, RESPONSE, SHIPMENT, ARRIVAL = range(4)
RESTORE_CHUNK = 50_000  # compact snapshots loaded at a time by `restore`
WINDOWS_RESTORE_CHUNK = 200_000  # orders counted in the windows at a time by `restore`
KIND_CODE = {"order": ORDER, "response": RESPONSE, "shipment": SHIPMENT, "arrival": ARRIVAL}
REJECTED = DECISION_CODE["rejected"]
_CODED = ("institution_id", "region_code", "area", "distributor_id", "manufacturer_id", "product_id", "product_kind")


def decode_state(raw: bytes) -> dict:
    """A snapshot as the per-event core's state: a placed order's compact row
    (supplymon/core/row_snapshot.py), or an orjson state dict (orders not placed
    yet, and every snapshot written before the compact rows)."""
    if raw[:1] != b"{":
        return decode_row(raw)
    state = orjson.loads(raw)
    if "sh" in state:
        state["seen"] = HashedSeen(state.pop("sh"))
    return state


def _line_fingerprint(cls: type) -> Callable[[object, int, int], int]:
    """`content_fingerprint` of a fast-path line (the same value, from the Struct and
    its parsed times): the crc32 of its content as one dict literal, keys sorted."""
    fields = set(cls.__struct_fields__) - _NOT_CONTENT
    extra = {"kind": repr(KIND_OF[cls]), "ts_ms": "ts_ms"}
    if cls is ArrivalLine:
        extra["received_ms"] = "received_ms"
    items = ", ".join(f"{key!r}: {extra.get(key, f'line.{key}')}" for key in sorted(fields | set(extra)))
    return eval(f"lambda line, ts_ms, received_ms: crc32(dumps({{{items}}}))",  # noqa: S307 (names of a Struct)
                {"crc32": zlib.crc32, "dumps": orjson.dumps})


LINE_FINGERPRINT = {cls: _line_fingerprint(cls) for cls in KIND_OF if KIND_OF[cls] != "tick"}
LINE_KIND = {cls: KIND_CODE[kind] for cls, kind in KIND_OF.items() if kind != "tick"}
# the quantity an event brings: a response's confirmed one, the others' own
LINE_QUANTITY = {cls: attrgetter("confirmed_quantity" if cls is ResponseLine else "quantity") for cls in LINE_KIND}


_DECISION_NAMES = np.array(DECISIONS, dtype=object)
_DECISION_VALUES = np.array([NONE_VALUE if d is None else text_value(d) for d in DECISIONS], dtype=np.uint64)


def _call1(function, a):
    return function(a)


def _call3(function, a, b, c):
    return function(a, b, c)


def _present(values: np.ndarray, present: np.ndarray) -> list:
    """`values` as a list, None where not `present`."""
    out = values.tolist()
    for i in np.flatnonzero(~present).tolist():
        out[i] = None
    return out


_RECORD, _LINE, _INDEX = itemgetter(0), itemgetter(1), itemgetter(2)  # of an (record, line, index) entry


def _raw_columns(entries: list, decoded: Decoded, ticks: bool = False) -> Columns:
    """The `events_raw` rows of these (record, line, index) entries, as columns (each
    a C-level map over the entries: no Python frame per event); `ticks`: all of them
    ticks, which have no order."""
    records = list(map(_RECORD, entries))
    lines = list(map(_LINE, entries))
    return Columns({
        "event_id": list(map(attrgetter("event_id"), lines)),
        "kind": list(map(KIND_OF.__getitem__, map(type, lines))),
        "ts": list(map(decoded.ts_ms.__getitem__, map(_INDEX, entries))),
        "order_id": [""] * len(lines) if ticks else list(map(attrgetter("order_id"), lines)),
        "payload": list(map(bytes.decode, map(attrgetter("value"), records))),
        "topic": list(map(attrgetter("topic"), records)),
        "partition": list(map(attrgetter("partition"), records)),
        "offset": list(map(attrgetter("offset"), records)),
    }, len(entries))


def _dup_keys(rows: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """The rows among `rows` where two of their `keys` are equal."""
    if not len(rows):
        return rows
    order = np.lexsort((keys, rows))
    r, k = rows[order], keys[order]
    same = (r[1:] == r[:-1]) & (k[1:] == k[:-1])
    return np.unique(r[1:][same])


def _first_per_row(rows: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Index (into rows/ts) of the earliest ts of each row (ties none: checked before)."""
    order = np.lexsort((ts, rows))
    r = rows[order]
    first = np.r_[True, r[1:] != r[:-1]]
    return order[first]


class ColumnarOrderFlow:
    """The dataflow of one worker over the input partitions assigned to it, on columns."""

    def __init__(self, rules: Rules, intake: Intake, snapshots: bool = True) -> None:
        self.lifecycle = lc = OrderLifecycle(rules)
        self.intake = intake
        self.snapshots = snapshots
        self.stream_time = StreamTime()
        self.table = OrderTable()
        self.pending: dict[str, dict] = {}  # orders not placed yet: the per-event core's dicts
        self.pending_due = DueIndex()
        self.windows = Windows(rules)
        self.marked: dict[Partition, int] = {}
        self.confirmation_ms = lc.confirmation_ms

    @classmethod
    def from_settings(cls, settings: Settings, trust_rebuilt: bool, snapshots: bool = True) -> "ColumnarOrderFlow":
        return cls(settings.rules, Intake(settings.max_event_bytes, settings.rules.ms("max_future_skew_minutes"),
                                          allow_future=settings.allow_future, trust_rebuilt=trust_rebuilt),
                   snapshots)

    def __len__(self) -> int:
        """Open orders held (placed, and not placed yet)."""
        return len(self.table) + len(self.pending)

    # -- a new assignment ----------------------------------------------------------------
    def restore(self, assigned: Iterable[Partition], states: Iterable[tuple],
                keep_held: bool = False) -> int:
        """Start over on `assigned` with the order states given; how many were given.
        Each is (order_id, snapshot) or (order_id, snapshot, partition): a state read
        back from changelog partition p belongs to input partition p, whatever the
        snapshot says (states written before they were kept on their input partition).
        `keep_held`: the orders of the partitions still assigned are kept as they are
        and `states` only adds those of partitions newly assigned (the Kafka shell
        keeps no second copy of what the flow holds: agents/lifecycle.py); an order
        already held is not replaced by a state given for it."""
        assigned = list(assigned)
        self.stream_time.forget(assigned)
        self.marked.clear()
        self.windows.clear()
        if keep_held:
            self._keep_only({tp.partition for tp in assigned})
        else:
            self.table.clear()
            self.pending.clear()
            self.pending_due.clear()
        placed: list[tuple[str, dict]] = []
        # placed orders' compact rows, loaded RESTORE_CHUNK at a time: each chunk's
        # temporaries are freed before the next chunk's are made in their place
        compact: list[tuple[str, bytes]] = []
        compact_parts: list[int | None] = []
        loaded: list[np.ndarray] = []
        count = 0
        for order_id, raw, *where in states:
            count += 1
            if order_id in self.table.rows or order_id in self.pending:
                continue
            partition = where[0] if where else None
            if is_compact(raw):
                compact.append((order_id, raw))
                compact_parts.append(partition)
                if len(compact) >= RESTORE_CHUNK:
                    loaded.append(self._load_compact(compact, compact_parts))
                    compact, compact_parts = [], []
                continue
            state = decode_state(raw)
            if partition is not None:
                state["p"] = partition
            if "order" in state:
                placed.append((order_id, state))
            else:
                self._hold(order_id, state)
        if compact:
            loaded.append(self._load_compact(compact, compact_parts))
        if placed or loaded:
            rows = self.table.allocate([order_id for order_id, _ in placed])
            for row, (_, state) in zip(rows.tolist(), placed):
                self.table.put(row, state)
            self._schedule(np.concatenate([rows, *loaded]))
        # the window parts are derived: counted again from every order held, a chunk
        # at a time (the counts add up; at once, a million orders' columns and their
        # subjects' codes were a brief ~400 MB, the peak of a restarted worker)
        rows = self._held_rows()
        counted = rows[self.table.c_set[rows]]
        for start in range(0, len(counted), WINDOWS_RESTORE_CHUNK):
            chunk = counted[start:start + WINDOWS_RESTORE_CHUNK]
            self.windows.restore_batch(self._fact_columns(chunk, facts=False)[1], self.table.part[chunk],
                                       self._contributions(chunk), self.table.cv[chunk])
        return count

    def _load_compact(self, compact: list[tuple[str, bytes]], partitions: list[int | None]) -> np.ndarray:
        """Rows for compact snapshots, each on its changelog partition where given."""
        rows = load_rows(self.table, compact)
        given = np.array([p is not None for p in partitions], dtype=bool)
        if given.any():
            self.table.part[rows[given]] = [p for p in partitions if p is not None]
        return rows

    def _held_rows(self) -> np.ndarray:
        rows = self.table.rows
        return np.fromiter(rows.values(), dtype=np.int64, count=len(rows))

    def _keep_only(self, partitions: set[int]) -> None:
        """Drop the orders of partitions no longer assigned (placed or not)."""
        rows = self._held_rows()
        self.table.release(rows[~np.isin(self.table.part[rows], np.fromiter(partitions, dtype=np.int64))])
        for order_id in [order_id for order_id, state in self.pending.items() if state.get("p") not in partitions]:
            del self.pending[order_id]
            self.pending_due.schedule(order_id, None)

    def _hold(self, order_id: str, state: dict) -> None:
        self.pending[order_id] = state
        self.pending_due.schedule(order_id, self.lifecycle.next_due(state))

    # -- a batch -------------------------------------------------------------------------
    def process(self, records: Iterable[Record], assigned: Iterable[Partition], lookup: Lookup,
                now_ms: int, decoded: Decoded | None = None) -> BatchOutput:
        """One batch; `decoded`: the records' values already decoded, one item per
        record (`Intake.admit_columns`)."""
        assigned = list(assigned)
        records = list(records)
        batch = _Batch(lookup)
        out = batch.out
        decoded = self.intake.admit_columns([(record.value, record.headers) for record in records], now_ms, decoded)
        # the batch's events: (record, its line as the fast path decoded it, its index in `decoded`)
        items = list(decoded.items)
        types = list(map(type, items))
        kept: Iterable[int] = range(len(items))
        if Invalid in (present := set(types)) or dict in present:  # refused lines; lines only the full validator took
            kept = []
            for i, line_type in enumerate(types):
                if line_type is Invalid:
                    self._dead_line(batch, records[i], items[i])
                    continue
                if line_type is dict:
                    items[i] = as_line(items[i])
                    types[i] = type(items[i])
                kept.append(i)
        kinds = list(map(KIND_OF.__getitem__, map(types.__getitem__, kept)))
        out.kinds.update(kinds)
        self._observe_times([records[i] for i in kept], [decoded.ts_ms[i] for i in kept])
        ticks = [(records[i], items[i], i) for i, kind in zip(kept, kinds) if kind == "tick"]
        events = [(records[i], items[i], i) for i, kind in zip(kept, kinds) if kind != "tick"]
        groups: dict[str, list[int]] = {}  # order id -> its events (indices into `events`)
        for n, order_id in enumerate(map(attrgetter("order_id"), map(_LINE, events))):
            group = groups.get(order_id)
            if group is None:
                groups[order_id] = [n]
            else:
                group.append(n)
        out.rows.add_columns("events_raw", _raw_columns(ticks, decoded, ticks=True))
        touched: list[np.ndarray] = []  # rows whose state the batch changed
        changed: list[np.ndarray] = []  # rows whose fact or alerts may differ
        self._apply(batch, decoded, events, groups, lookup, touched, changed)
        purged = self._advance(batch, assigned, changed)
        touched_rows = np.unique(np.concatenate(touched + changed)) if touched or changed else np.empty(0, np.int64)
        changed_rows = np.unique(np.concatenate(changed)) if changed else np.empty(0, np.int64)
        self._emit(batch, changed_rows)
        out.marks = self._marks(assigned)
        if self.snapshots:
            table = self.table
            keep = touched_rows[~np.isin(touched_rows, purged)] if len(purged) else touched_rows
            keep = keep[table.placed[keep]]
            for order_id, raw in zip(table.oid[keep].tolist(), encode_rows(table, keep)):
                out.snapshots[order_id] = raw
            for order_id in table.oid[purged].tolist():
                out.snapshots[order_id] = None
            changed = np.concatenate([keep, purged])
            out.partitions.update(zip(table.oid[changed].tolist(), table.part[changed].tolist()))
        self.table.release(purged)
        return out

    @staticmethod
    def _dead_line(batch: _Batch, record: Record, refused: Invalid) -> None:
        kept = refused.original if refused.original is not None else record.value or b""
        batch.dead_letter(record.key, kept, refused.reason, refused.detail,
                          (record.topic, record.partition, record.offset), refused.event_id, record.timestamp or 0)

    def _observe_times(self, records: list[Record], ts_ms: list[int]) -> None:
        """Stream time: each input partition's latest event time of the batch."""
        if not records:
            return
        where = list(map(attrgetter("topic", "partition"), records))
        code = {key: n for n, key in enumerate(dict.fromkeys(where))}
        latest = np.full(len(code), np.iinfo(np.int64).min, dtype=np.int64)
        np.maximum.at(latest, np.fromiter(map(code.__getitem__, where), dtype=np.int64, count=len(where)),
                      np.array(ts_ms, dtype=np.int64))
        for (topic, partition), ts in zip(code, latest.tolist()):
            self.stream_time.observe(Partition(topic, partition), ts)

    # 2. apply -----------------------------------------------------------------------------
    def _apply(self, batch: _Batch, decoded: Decoded, events: list, groups: dict[str, list[int]], lookup: Lookup,
               touched: list, changed: list) -> None:
        table = self.table
        rows_of = table.rows
        slow: list[str] = []
        new_ids: list[str] = []
        fast_events: list[int] = []
        for order_id, group in groups.items():
            if order_id in rows_of:
                fast_events += group
                continue
            if order_id in self.pending:
                slow.append(order_id)
                continue
            raw = lookup(order_id)
            if raw:
                state = decode_state(raw)
                if "order" in state:
                    row = int(table.allocate([order_id])[0])
                    table.put(row, state)
                    fast_events += group
                else:
                    self._hold(order_id, state)
                    slow.append(order_id)
                continue
            new_ids.append(order_id)
            fast_events += group
        if new_ids:
            table.allocate(new_ids)
        n = len(fast_events)
        if n:
            fast_events.sort()
            picked = [events[i] for i in fast_events]
            fast = self._columns(picked, decoded)
            slow_rows = self._not_common(fast)
            if len(slow_rows):
                keep = ~np.isin(fast["row"], slow_rows)
                slow_ids = table.oid[slow_rows].tolist()
                slow += slow_ids
                if not keep.all():
                    fast = {name: (values[keep] if isinstance(values, np.ndarray)
                                   else [v for v, k in zip(values, keep.tolist()) if k])
                            for name, values in fast.items()}
                    picked = [e for e, k in zip(picked, keep.tolist()) if k]
            rows = self._apply_columns(fast)
            self._count_misplaced(batch, picked, fast)
            touched.append(rows)
            changed.append(rows)
            batch.out.rows.add_columns("events_raw", _raw_columns(picked, decoded))
        if slow:
            done_rows, changed_rows = self._apply_slow(batch, decoded, events, groups, slow)
            touched.append(done_rows)
            changed.append(changed_rows)
        # unplaced rows left (an order id new to this batch whose events all went the slow way) are freed there

    def _count_misplaced(self, batch: _Batch, picked: list, fast: dict) -> None:
        """The applied events read off their order's input partition (all of them
        now have one: a new order's is its first event's)."""
        for i in np.flatnonzero(fast["part"] != self.table.part[fast["row"]]).tolist():
            record = picked[i][0]
            batch.out.misplaced[Partition(record.topic, record.partition)] += 1

    def _columns(self, picked: list, decoded: Decoded) -> dict:
        """The picked events as columns, from their decoded lines."""
        rows_of = self.table.rows
        n = len(picked)
        lines = list(map(_LINE, picked))
        at = list(map(_INDEX, picked))
        ts_list = list(map(decoded.ts_ms.__getitem__, at))
        recv_list = list(map(decoded.received_ms.__getitem__, at))
        types = list(map(type, lines))
        # (C-level maps over the lines: no Python frame per event but the fingerprints')
        row = np.fromiter(map(rows_of.__getitem__, map(attrgetter("order_id"), lines)), dtype=np.int64, count=n)
        kind = np.fromiter(map(LINE_KIND.__getitem__, types), dtype=np.int8, count=n)
        h = event_hashes(map(attrgetter("event_id"), lines))
        fp = np.fromiter(map(_call3, map(LINE_FINGERPRINT.__getitem__, types), lines, ts_list, recv_list),
                         dtype=np.int64, count=n)
        qty = np.fromiter(map(_call1, map(LINE_QUANTITY.__getitem__, types), lines), dtype=np.int64, count=n)
        part = np.fromiter(map(attrgetter("partition"), map(_RECORD, picked)), dtype=np.int32, count=n)
        return {"row": row, "kind": kind, "ts": np.array(ts_list, dtype=np.int64), "hash": h, "fp": fp, "qty": qty,
                "recv": np.array(recv_list, dtype=np.int64), "part": part, "event": lines}

    def _not_common(self, fast: dict) -> np.ndarray:
        """Rows whose events of this batch must go through the per-event core."""
        t = self.table
        row, kind, ts, qty = fast["row"], fast["kind"], fast["ts"], fast["qty"]
        bad = []
        placed = t.placed[row]
        is_order = kind == ORDER
        # an order event for a placed order, or not exactly one for a new one; events before any order
        orders = np.bincount(row[is_order], minlength=t.capacity)
        bad.append(row[placed & is_order])
        bad.append(row[~placed & (orders[row] != 1)])
        # a repeated event id: seen before, or twice in the batch
        seen_n = t.seen_n[row]
        bad.append(row[seen_n > t.seen_h.shape[1]])
        slots = np.arange(t.seen_h.shape[1])[None, :] < seen_n[:, None]
        bad.append(row[((t.seen_h[row] == fast["hash"][:, None]) & slots).any(axis=1)])
        bad.append(_dup_keys(row, fast["hash"]))
        # quantities over the ordered one
        order_qty = np.zeros(t.capacity, dtype=np.int64)
        order_qty[row[is_order]] = qty[is_order]
        order_qty = np.where(placed, t.quantity[row], order_qty[row])
        answer = (kind == RESPONSE) | (kind == SHIPMENT)
        bad.append(row[answer & (qty > order_qty)])
        # store limits near
        ships = np.bincount(row[kind == SHIPMENT], minlength=t.capacity)
        arrs = np.bincount(row[kind == ARRIVAL], minlength=t.capacity)
        arr_qty = np.bincount(row[kind == ARRIVAL], weights=qty[kind == ARRIVAL], minlength=t.capacity)
        bad.append(row[t.ships[row] + ships[row] > UINT16_MAX])
        bad.append(row[t.arrs[row] + arrs[row] > UINT16_MAX])
        bad.append(row[t.qty[row] + arr_qty[row] > UINT32_MAX])
        # ties on time among first answers, first arrivals, late confirmations
        late = (kind == ARRIVAL) & (ts - fast["recv"] > self.confirmation_ms)
        for mask, existing in ((kind == RESPONSE, t.resp_ts), (kind == ARRIVAL, t.arr_ts), (late, t.lc_ts)):
            r, k = row[mask], ts[mask]
            bad.append(_dup_keys(r, k))
            bad.append(r[existing[r] == k])
        return np.unique(np.concatenate(bad))

    def _apply_columns(self, fast: dict) -> np.ndarray:
        """The common case, a batch at once: returns the rows changed."""
        t = self.table
        row, kind, ts, qty, events = fast["row"], fast["kind"], fast["ts"], fast["qty"], fast["event"]
        if not len(row):
            return row
        t.add_seen(row, fast["hash"], fast["fp"])
        is_order = np.flatnonzero(kind == ORDER)
        if len(is_order):
            r = row[is_order]
            of = t.names.of
            placed = list(map(events.__getitem__, is_order.tolist()))
            for name in _CODED:
                t.col[name][r] = list(map(of, map(attrgetter(name), placed)))
            for name in ("grassroots", "vbp", "quantity", "unit_price"):
                t.col[name][r] = list(map(attrgetter(name), placed))
            t.ordered_at[r] = ts[is_order]
            t.placed[r] = True
            # the partition of the order's first event read (as the per-event core's setdefault)
            new, first = np.unique(row, return_index=True)
            fresh = np.isin(new, r)
            t.part[new[fresh]] = fast["part"][first[fresh]]
        np.add.at(t.n, row, 1)
        # responses: the earliest stands
        pick = np.flatnonzero(kind == RESPONSE)
        if len(pick):
            first = pick[_first_per_row(row[pick], ts[pick])]
            r, cand = row[first], ts[first]
            win = (t.resp_ts[r] == NULL) | (cand < t.resp_ts[r])
            first, r = first[win], r[win]
            if len(first):
                chosen = [events[i] for i in first.tolist()]
                t.resp_ts[r] = ts[first]
                t.resp_eid[r] = [e.event_id for e in chosen]
                t.resp_dec[r] = [DECISION_CODE[e.decision] for e in chosen]
                t.resp_conf[r] = qty[first]
                t.resp_reason[r] = [-1 if e.reason is None else t.names.of(e.reason) for e in chosen]
        pick = np.flatnonzero(kind == SHIPMENT)
        if len(pick):
            r = row[pick]
            current = np.where(t.ship == NULL, NEVER, t.ship)
            np.minimum.at(current, r, ts[pick])
            t.ship[r] = current[r]
            np.add.at(t.ships, r, 1)
        pick = np.flatnonzero(kind == ARRIVAL)
        if len(pick):
            r = row[pick]
            recv = fast["recv"][pick]
            current = np.where(t.recv == NULL, NEVER, t.recv)
            np.minimum.at(current, r, recv)
            t.recv[r] = current[r]
            np.add.at(t.qty, r, qty[pick].astype(t.qty.dtype))
            np.add.at(t.arrs, r, 1)
            first = pick[_first_per_row(r, ts[pick])]
            r1 = row[first]
            win = (t.arr_ts[r1] == NULL) | (ts[first] < t.arr_ts[r1])
            first, r1 = first[win], r1[win]
            t.arr_ts[r1] = ts[first]
            t.arr_eid[r1] = [events[i].event_id for i in first.tolist()]
            late = pick[ts[pick] - recv > self.confirmation_ms]
            if len(late):
                first = late[_first_per_row(row[late], ts[late])]
                r1 = row[first]
                win = (t.lc_ts[r1] == NULL) | (ts[first] < t.lc_ts[r1])
                first, r1 = first[win], r1[win]
                chosen = [events[i] for i in first.tolist()]
                t.lc_ts[r1] = ts[first]
                t.lc_eid[r1] = [e.event_id for e in chosen]
                t.lc_inst[r1] = [t.names.of(e.institution_id) for e in chosen]
                t.lc_recv[r1] = fast["recv"][first]
        rows = np.unique(row)
        self._schedule(rows)
        return rows

    def _apply_slow(self, batch: _Batch, decoded: Decoded, events: list, groups: dict[str, list[int]],
                    order_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """The per-event core, event by event, for these orders' events of the batch."""
        t, lc, out = self.table, self.lifecycle, batch.out
        done, changed, release = [], [], []
        for order_id in order_ids:
            row = t.rows.get(order_id)
            if row is not None and t.placed[row]:
                state = t.state_of(row)
            else:
                state = self.pending.get(order_id) or new_state(order_id)
            moved = fact_changed = False
            out.per_event += len(groups[order_id])
            for i in groups[order_id]:
                record, _, at = events[i]
                event = decoded.event(at)
                source = (record.topic, record.partition, record.offset)
                text = record.value.decode()
                event["raw"], event["src"] = text, source
                keep_input_partition(state, record, out)
                outcome = lc.apply(state, event)
                if outcome.duplicate:
                    out.duplicates += 1
                else:
                    out.rows.add("events_raw", _raw_row(event["event_id"], event["kind"], event["ts_ms"],
                                                        order_id, text, source))
                    moved = True
                for rejected, reason, detail in outcome.rejected:
                    _dead_event(batch, rejected, reason, detail, event["ts_ms"])
                fact_changed |= outcome.changed
            if "order" in state:
                if row is None:
                    row = int(t.allocate([order_id])[0])
                t.put(row, state)
                if order_id in self.pending:
                    del self.pending[order_id]
                    self.pending_due.schedule(order_id, None)
                if moved:
                    done.append(row)
                if fact_changed:
                    changed.append(row)
            else:
                if row is not None:
                    release.append(row)
                if moved or order_id in self.pending:
                    self._hold(order_id, state)
                    if self.snapshots and moved:
                        out.snapshots[order_id] = jsonbytes.dumps(state)
                        out.partitions[order_id] = state["p"]
        t.release(release)
        done_rows = np.asarray(done, dtype=np.int64)
        self._schedule(done_rows)
        return done_rows, np.asarray(changed, dtype=np.int64)

    # deadlines --------------------------------------------------------------------------------
    def _deadlines(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        t, lc = self.table, self.lifecycle
        at = t.ordered_at[rows]
        rural = t.area[rows] != t.names.code.get("urban", -2)
        return (at + lc.response_ms, at + lc.escalation_ms, at + np.where(rural, lc.rural_ms, lc.urban_ms))

    def _schedule(self, rows: np.ndarray) -> None:
        """next_due of these (placed) rows, as the per-event core's `next_due`."""
        if not len(rows):
            return
        t = self.table
        response, escalation, delivery = self._deadlines(rows)
        due = np.maximum(escalation, delivery) + self.lifecycle.retention_ms
        passed = t.passed[rows]
        for bit, deadline in ((RESPONSE_DEADLINE, response), (ESCALATION_DEADLINE, escalation),
                              (DELIVERY_DEADLINE, delivery)):
            due = np.where((passed & bit) == 0, np.minimum(due, deadline), due)
        t.next_due[rows] = due

    # 3. advance ---------------------------------------------------------------------------------
    def _advance(self, batch: _Batch, assigned: list[Partition], changed: list) -> np.ndarray:
        """Deadlines passed by the watermark; returns the rows to purge (after emit)."""
        batch.out.watermark = watermark = self.stream_time.watermark(assigned)
        if watermark is None:
            return np.empty(0, np.int64)
        for order_id in self.pending_due.pop_due(watermark):
            state = self.pending[order_id]
            outcome = self.lifecycle.advance(state, watermark)
            for event in outcome.orphans:
                _dead_event(batch, event, "orphan",
                            f"no order {order_id} was seen within the orphan timeout after this event", watermark)
            if outcome.purge:
                del self.pending[order_id]
                if self.snapshots:
                    batch.out.snapshots[order_id] = None
                    batch.out.partitions[order_id] = state["p"]
            else:
                self.pending_due.schedule(order_id, self.lifecycle.next_due(state))
        t = self.table
        rows = np.flatnonzero(t.next_due[:t.size] < watermark)
        if not len(rows):
            return rows
        response, escalation, delivery = self._deadlines(rows)
        passed = t.passed[rows]
        new = np.zeros(len(rows), dtype=np.int64)
        for bit, deadline in ((RESPONSE_DEADLINE, response), (ESCALATION_DEADLINE, escalation),
                              (DELIVERY_DEADLINE, delivery)):
            new |= np.where((watermark > deadline) & ((passed & bit) == 0), bit, 0)
        t.passed[rows] = passed | new
        changed.append(rows[new != 0])
        purge = watermark > np.maximum(escalation, delivery) + self.lifecycle.retention_ms
        self._schedule(rows)
        t.next_due[rows[purge]] = NEVER
        return rows[purge]

    # 4. emit --------------------------------------------------------------------------------------
    def _fact_columns(self, rows: np.ndarray, facts: bool = True) -> tuple[Columns | None, dict, tuple | None]:
        """The `order_facts` rows of these placed rows (as `OrderLifecycle.fact`), as
        columns: a list per column, built from the table's columns at once; and the
        windows' columns (FACT_COLUMNS) of the same facts, their numbers as numpy
        arrays (NaN: none) rather than lists with None for them to convert back.
        `facts=False`: the windows' columns only (a restore counts every order held
        in the windows again: the fact rows as lists were ~30 Python lists of a
        million items each, the peak of a restarted worker's rebuild). Third, with the
        facts: the fingerprints of their two signal records (supplymon/core/signals.py
        `fold`), from the same columns."""
        t = self.table
        names = t.names.array()  # code -1: None
        response, _, delivery = self._deadlines(rows)
        at, resp_ts, recv, passed = t.ordered_at[rows], t.resp_ts[rows], t.recv[rows], t.passed[rows]
        answered = resp_ts != NULL
        rejected = t.resp_dec[rows] == REJECTED
        on_time = np.where(rejected, 0, np.where(recv != NULL, (recv <= delivery).astype(np.int64),
                                                 np.where(passed & DELIVERY_DEADLINE, 0, -1)))
        version = t.n[rows].astype(np.int64) * 8 + passed
        hours = (resp_ts - at) / HOUR_MS
        window: dict = {name: Coded(t.col[name][rows], t.names.names)
                        for name in ("distributor_id", "product_id", "region_code")}
        window["decision"] = np.where(answered, _DECISION_NAMES[t.resp_dec[rows]], None)  # None: not answered
        window.update({
            "ordered_at": at, "responded_at": np.where(answered, resp_ts, np.nan),
            "on_time": np.where(on_time != -1, on_time, np.nan), "arrivals": t.arrs[rows],
            "quantity": t.quantity[rows], "delivered_quantity": t.qty[rows],
            "response_hours": np.where(answered, hours, np.nan), "version": version,
        })
        if not facts:
            return None, window, None
        ship, arr = t.ship[rows], t.arr_ts[rows]
        data = {name: names[t.col[name][rows]].tolist() for name in _CODED}
        data.update({
            "grassroots": t.grassroots[rows].tolist(), "vbp": t.vbp[rows].tolist(),
            "quantity": t.quantity[rows].tolist(), "unit_price": t.unit_price[rows].tolist(),
            "order_id": t.oid[rows].tolist(), "ordered_at": at.tolist(),
            "responded_at": _present(resp_ts, answered),
            "decision": window["decision"].tolist(),
            "confirmed_quantity": _present(t.resp_conf[rows], answered),
            "reject_reason": _present(names[t.resp_reason[rows]], answered),
            "first_shipped_at": _present(ship, ship != NULL),
            "first_received_at": _present(recv, recv != NULL),
            "first_confirmed_at": _present(arr, arr != NULL),
            "delivered_quantity": t.qty[rows].tolist(), "shipments": t.ships[rows].tolist(),
            "arrivals": t.arrs[rows].tolist(),
            "deadline_at": delivery.tolist(), "response_deadline_at": response.tolist(),
            "on_time": _present(on_time, on_time != -1),
            "response_hours": _present(hours, answered),
            "version": version.tolist(),
        })
        return Columns(data, len(rows)), window, self._signal_prints(rows, at, resp_ts, answered, on_time, arr,
                                                                     delivery)

    def _signal_prints(self, rows: np.ndarray, at: np.ndarray, resp_ts: np.ndarray, answered: np.ndarray,
                       on_time: np.ndarray, arr: np.ndarray, delivery: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`fingerprint` of each row's supply and delivery record (`supply_records`,
        `delivery_records` of its fact), each field as the record holds it."""
        t = self.table
        text = t.names.values()  # by code; -1 (None): NONE_VALUE
        decision = np.where(answered, _DECISION_VALUES[t.resp_dec[rows]], np.uint64(NONE_VALUE))
        responded, confirmed = int_values(resp_ts, answered), int_values(t.resp_conf[rows], answered)
        placed, quantity = int_values(at), int_values(t.quantity[rows])
        col = t.col
        supply = fold([text[col["product_id"][rows]], text[col["region_code"][rows]],
                       text[col["institution_id"][rows]], text[col["distributor_id"][rows]], placed, quantity,
                       responded, decision, confirmed,
                       np.where(answered, text[t.resp_reason[rows]], np.uint64(NONE_VALUE)),
                       float_values(t.unit_price[rows])])
        rural = col["area"][rows] == t.names.code.get("rural", -2)
        delivery = fold([int_values(delivery), int_values(t.grassroots[rows]),
                         int_values(arr, (on_time == 1) & (arr != NULL)), placed, int_values(rural), quantity,
                         responded, decision, confirmed])
        return supply, delivery

    def _count_in_windows(self, rows: np.ndarray, facts: dict) -> None:
        """Each changed order's window contribution replaced by its current one, a
        batch at a time (`Windows.update_batch`, the contributions kept as columns)."""
        if not len(rows):
            return
        t = self.table
        new = self.windows.update_batch(facts, t.part[rows], self._contributions(rows),
                                        ~t.c_set[rows], t.cv[rows])
        t.c[rows] = new[:, :WINDOW_COUNTS]
        t.c_hours[rows] = new[:, WINDOW_COUNTS]
        t.cv[rows] = facts["version"]
        t.c_set[rows] = True

    def _contributions(self, rows: np.ndarray) -> np.ndarray:
        """The kept contributions of `rows` (n x 10, as `Windows.update_batch` takes them)."""
        t = self.table
        return np.column_stack([t.c[rows], t.c_hours[rows]]).astype(np.float64)

    def _emit(self, batch: _Batch, rows: np.ndarray) -> None:
        out, t = batch.out, self.table
        rows = rows[t.placed[rows]] if len(rows) else rows
        fact_columns, window_columns, prints = self._fact_columns(rows)
        out.rows.add_columns("order_facts", fact_columns)
        if len(rows):
            _changed_signals(out.signals, fact_columns.data, rows, t.sg0, t.sg1, *prints)
        self._count_in_windows(rows, window_columns)
        self._alerts(out, rows, fact_columns)
        if out.watermark is not None:
            self.windows.advance(out.watermark)
        out.rows.add_columns("window_parts", Columns(self.windows.take_dirty_columns()))

    def _alerts(self, out: BatchOutput, rows: np.ndarray, facts: Columns) -> None:
        """Alerts new or different since last emitted (as `OrderLifecycle.changed_alerts`)."""
        if not len(rows):
            return
        t = self.table
        response, escalation, delivery = self._deadlines(rows)
        passed, resp, arr, lc_ts = t.passed[rows], t.resp_ts[rows], t.arr_ts[rows], t.lc_ts[rows]
        answered = resp != NULL
        rejected_in_time = (t.resp_dec[rows] == REJECTED) & answered & (resp <= delivery)
        present = np.stack([
            ((passed & RESPONSE_DEADLINE) != 0) & ~(answered & (resp <= response)),
            ((passed & ESCALATION_DEADLINE) != 0) & ~(answered & (resp <= escalation)),
            ((passed & DELIVERY_DEADLINE) != 0) & ~rejected_in_time & ~((arr != NULL) & (arr <= delivery)),
            lc_ts != NULL], axis=1)
        raised = np.stack([response, escalation, delivery, lc_ts], axis=1)
        resolved = np.stack([resp, resp, arr, np.full(len(rows), NULL)], axis=1)
        differs = present & ~t.same_marks(rows, raised, resolved)
        at, kinds = np.nonzero(differs)  # (row, kind) cells, a row's kinds in order
        if not len(at):
            return
        names = t.names.names
        data = facts.data
        fields = [(name, data[name]) for name in ALERT_FACT_FIELDS]
        versions = data["version"]
        ups, downs = raised[at, kinds], resolved[at, kinds]
        fact, last = None, -1
        for i, k, up, down in zip(at.tolist(), kinds.tolist(), ups.tolist(), downs.tolist()):
            if i != last:
                fact, last = {name: values[i] for name, values in fields}, i
            kind = ALERT_KINDS[k]
            alert = {"kind": kind, "severity": SEVERITY[kind], "raised_at": up,
                     "resolved_at": None if down == NULL else down}
            if kind == "confirmation_late":
                row = int(rows[i])
                alert["institution_id"] = names[t.lc_inst[row]]
                alert["hours"] = round((up - int(t.lc_recv[row])) / HOUR_MS, 2)
            alert_row = order_alert_row(alert, fact, versions[i])
            out.rows.add("alerts", alert_row)
            out.alerts.append(alert_row)
        t.set_marks(rows[at], kinds, ups, downs)

    # 5. marks: as the reference's
    _marks = ReferenceOrderFlow._marks


# The flow the worker and the direct replay run.
OrderFlow = ColumnarOrderFlow


def _changed_signals(signals: dict, facts: dict[str, list], rows: np.ndarray, sent0: np.ndarray, sent1: np.ndarray,
                     prints0: np.ndarray, prints1: np.ndarray) -> None:
    """The two records of each order (its manufacturer's, its distributor's) whose
    fingerprint differs from the one last sent (`sent0`, `sent1`: by row, updated),
    into `signals` (group -> order id -> record); only those records are made."""
    order_ids = facts["order_id"]
    sides = ((sent0, prints0, supply_records, facts["manufacturer_id"], manufacturer_group),
             (sent1, prints1, delivery_records, facts["distributor_id"], distributor_group))
    for sent, prints, records, subjects, group_of in sides:
        changed = np.flatnonzero(sent[rows] != prints)
        if not len(changed):
            continue
        sent[rows[changed]] = prints[changed]
        changed = changed.tolist()
        for n, record in zip(changed, records(facts, changed)):
            signals.setdefault(group_of(subjects[n]), {})[order_ids[n]] = record


def _dead_event(batch: _Batch, event: dict, reason: str, detail: str, now: int) -> None:
    batch.dead_letter(event.get("order_id", "").encode(), event["raw"].encode(), reason, detail,
                      tuple(event["src"]), event["event_id"], now)
