"""The order dataflow of one batch: plain records in, what they produce out.

Pure: no Faust, no Kafka, no store. The Kafka worker (agents/lifecycle.py) and
the direct file replay (supplymon/direct.py) feed it the same way:

    records -> decode -> apply -> advance -> emit -> marks -> snapshots

1. decode: each record is admitted (supplymon/core/intake.py) or becomes a dead
   letter; an admitted one moves its partition's stream time;
2. apply: the event joins its order's state (read through `lookup`, changed in
   memory for the rest of the batch);
3. advance: the watermark (the least time over the assigned input partitions)
   passes the deadlines that are due;
4. emit: each changed order gives its fact row, its changed alerts, its window
   contributions and the signals for the early warnings;
5. marks: how far each input partition has been read (the early warnings' time);
6. snapshots: the states the batch changed, serialized (None: purged), with
   each order's input partition: the changelog partition its state is kept in.

An order belongs to the input partition its first event was read from (its
state's "p"), as a Faust table's entry belongs to its input record's partition:
its state is written to that changelog partition, restored with it, and dropped
when it is revoked. Any producer that partitions consistently by order_id (the
same partitioner and partition count on the four input topics) keeps an order's
events on that one partition. An event read from another input partition than
its order's (a producer that does not: round-robin, a different partition count
on one topic) is "misplaced": it is still applied to the order's state where
that state is (this worker holds both partitions now, so the facts and alerts
are right), counted per input partition in `BatchOutput.misplaced`, and the
state stays on its order's partition. Correctness cannot be kept for such a
producer across a rebalance: an event whose order's partition another worker
holds finds no order here and ends as an orphan dead letter.

The caller owns what outlives a batch beyond the flow's own derived state (the
stream time, the due index, the window parts, the marks sent): the order states
(`lookup`, then `BatchOutput.snapshots` to write back), storing the rows,
sending alerts, dead letters and signals, and acknowledging the input.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, NamedTuple, Sequence

import orjson

from schemas.events import Invalid, dead_letter_detail
from supplymon.core import jsonbytes
from supplymon.core.alerts import order_alert_row
from supplymon.core.due import DueIndex
from supplymon.core.intake import Intake
from supplymon.core.lifecycle import OrderLifecycle, new_state
from supplymon.core.rows import Rows
from supplymon.core.signals import fingerprint, order_signals
from supplymon.core.stream_time import StreamTime
from supplymon.core.windows import Windows
from supplymon.settings import Rules, Settings


class Record(NamedTuple):
    """An input message: the attributes of aiokafka's ConsumerRecord the flow reads
    (a ConsumerRecord itself will do)."""

    topic: str
    partition: int
    offset: int
    timestamp: int  # the Kafka timestamp, epoch ms (0: none)
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()


class Partition(NamedTuple):
    """An input topic-partition (equal to Faust's and aiokafka's TP of the same name)."""

    topic: str
    partition: int


# An order's state as stored (orjson bytes), or None when there is none.
Lookup = Callable[[str], "bytes | None"]


@dataclass
class BatchOutput:
    """What one batch produces."""

    rows: Rows = field(default_factory=Rows)  # by table, for the store
    alerts: list[dict] = field(default_factory=list)  # order alert rows, to send once stored
    dead: list[tuple[bytes | None, bytes, dict]] = field(default_factory=list)  # dead-letter messages
    dead_reasons: Counter = field(default_factory=Counter)
    duplicates: int = 0
    per_event: int = 0  # events the columnar flow applied through the per-event core (the rare cases)
    signals: dict[str, dict[str, list]] = field(default_factory=dict)  # group -> order id -> record
    marks: dict[str, int] = field(default_factory=dict)  # "topic:partition" -> event time read up to
    snapshots: dict[str, bytes | None] = field(default_factory=dict)  # order states to write (None: delete)
    partitions: dict[str, int] = field(default_factory=dict)  # each snapshot's order's input partition
    misplaced: Counter = field(default_factory=Counter)  # Partition -> events off their order's partition
    kinds: Counter = field(default_factory=Counter)  # admitted events by kind
    watermark: int | None = None


class _Batch:
    """The order states one batch reads and changes, and its output so far."""

    def __init__(self, lookup: Lookup) -> None:
        self.lookup = lookup
        self.states: dict[str, dict] = {}
        self.read: dict[str, bytes | None] = {}  # each state as read (to skip unchanged ones)
        self.changed: set[str] = set()
        self.purged: set[str] = set()
        self.out = BatchOutput()

    def state(self, order_id: str) -> dict:
        state = self.states.get(order_id)
        if state is None:
            raw = self.lookup(order_id)
            state = orjson.loads(raw) if raw else new_state(order_id)
            self.states[order_id] = state
            self.read[order_id] = raw
        return state

    def dead_letter(self, key: bytes | None, raw: bytes, reason: str, detail: str,
                    source: tuple[str, int, int], event_id: str | None, noticed_at: int) -> None:
        topic, partition, offset = source
        row = {"topic": topic, "partition": partition, "offset": offset, "reason": reason,
               "detail": dead_letter_detail(reason, detail), "event_id": event_id,
               "original": raw.decode("utf-8", "replace"), "noticed_at": noticed_at}
        self.out.dead.append((key, raw, dead_headers(row)))
        self.out.dead_reasons[reason] += 1
        self.out.rows.add("dead_letters", row)

    def seal(self) -> BatchOutput:
        """Snapshot the states this batch changed: later batches go on changing the dicts."""
        for order_id, state in self.states.items():
            snapshot = None if order_id in self.purged else jsonbytes.dumps(state)  # held for every open order
            if snapshot != self.read[order_id]:
                self.out.snapshots[order_id] = snapshot
                if "p" in state:
                    self.out.partitions[order_id] = state["p"]
        return self.out


def keep_input_partition(state: dict, record: Record, out: BatchOutput) -> None:
    """An order's input partition is its first event's (its changelog partition, and
    whose window parts count it); a later event read from another is counted as
    misplaced (see the module's doc)."""
    if state.setdefault("p", record.partition) != record.partition:
        out.misplaced[Partition(record.topic, record.partition)] += 1


def dead_headers(row: dict) -> dict[str, bytes]:
    """A dead-letter message's headers, from its `dead_letters` row."""
    return {"supplymon-reason": row["reason"].encode(), "supplymon-detail": row["detail"].encode(),
            "supplymon-source": f"{row['topic']}:{row['partition']}:{row['offset']}".encode()}


def _raw_row(event_id: str, kind: str, ts: int, order_id: str, payload: str, source) -> dict:
    topic, partition, offset = source
    return {"event_id": event_id, "kind": kind, "ts": ts, "order_id": order_id, "payload": payload,
            "topic": topic, "partition": partition, "offset": offset}


class ReferenceOrderFlow:
    """The dataflow of one worker over the input partitions assigned to it, one event
    at a time on dict states: the reference the columnar `OrderFlow` is tested against."""

    def __init__(self, rules: Rules, intake: Intake) -> None:
        self.lifecycle = OrderLifecycle(rules)
        self.intake = intake
        self.stream_time = StreamTime()
        self.due = DueIndex()
        self.windows = Windows(rules)
        self.marked: dict[Partition, int] = {}  # the event time last told to the early warnings

    @classmethod
    def from_settings(cls, settings: Settings, trust_rebuilt: bool) -> "ReferenceOrderFlow":
        return cls(settings.rules, Intake(settings.max_event_bytes, settings.rules.ms("max_future_skew_minutes"),
                                          allow_future=settings.allow_future, trust_rebuilt=trust_rebuilt))

    def __len__(self) -> int:
        """Open orders (those with a next due instant)."""
        return len(self.due)

    # -- a new assignment ----------------------------------------------------------------
    def restore(self, assigned: Iterable[Partition], states: Iterable[tuple]) -> int:
        """Start over on `assigned` with the order states held (the due index and the
        window parts are rebuilt from them); how many orders. Each state is
        (order_id, snapshot) or (order_id, snapshot, partition): a state read back
        from changelog partition p belongs to input partition p."""
        self.stream_time.forget(assigned)
        self.marked.clear()  # tell the early warnings again
        self.due.clear()
        self.windows.clear()
        count, counted = 0, []
        for order_id, raw, *where in states:
            state = orjson.loads(raw)
            if where and where[0] is not None:
                state["p"] = where[0]
            self.due.schedule(order_id, self.lifecycle.next_due(state))
            if "c" in state:
                counted.append(state)
            count += 1
        self.windows.restore_facts([self.lifecycle.fact(state) for state in counted], [s["p"] for s in counted],
                                   [s["c"] for s in counted], [s["cv"] for s in counted])
        return count

    # -- a batch -------------------------------------------------------------------------
    def process(self, records: Iterable[Record], assigned: Iterable[Partition], lookup: Lookup,
                now_ms: int) -> BatchOutput:
        """One batch, top to bottom. `now_ms` (the wall clock) only refuses stamps from
        the future (intake); `lookup` reads an order's state as of the previous batch."""
        assigned = list(assigned)
        batch = _Batch(lookup)
        records = list(records)
        # decoded a batch at a time (msgspec; equal to admitting each line: schemas/fast_events.py)
        admitted = self.intake.admit_batch([(record.value, record.headers) for record in records], now_ms)
        for record, parsed in zip(records, admitted):
            event = self._decode(batch, record, parsed)
            if event is not None:
                self._apply(batch, record, event)
        self._advance(batch, assigned)
        self._emit(batch)
        batch.out.marks = self._marks(assigned)
        return batch.seal()

    # 1. decode
    def _decode(self, batch: _Batch, record: Record, parsed: dict | Invalid) -> dict | None:
        raw = record.value
        if isinstance(parsed, Invalid):
            kept = parsed.original if parsed.original is not None else raw or b""
            batch.dead_letter(record.key, kept, parsed.reason, parsed.detail,
                              (record.topic, record.partition, record.offset), parsed.event_id,
                              record.timestamp or 0)
            return None
        batch.out.kinds[parsed["kind"]] += 1
        self.stream_time.observe(Partition(record.topic, record.partition), parsed["ts_ms"])
        return parsed

    # 2. apply
    def _apply(self, batch: _Batch, record: Record, event: dict) -> None:
        source = (record.topic, record.partition, record.offset)
        kind, ts_ms, event_id = event["kind"], event["ts_ms"], event["event_id"]
        text = record.value.decode()
        if kind == "tick":
            batch.out.rows.add("events_raw", _raw_row(event_id, "tick", ts_ms, "", text, source))
            return
        event["raw"], event["src"] = text, source
        order_id = event["order_id"]
        state = batch.state(order_id)
        keep_input_partition(state, record, batch.out)
        outcome = self.lifecycle.apply(state, event)
        if outcome.duplicate:
            batch.out.duplicates += 1
            if outcome.rejected:  # same event_id, other content: dead-lettered, never stored as the event
                self._settle(batch, state, outcome, ts_ms)
            return
        batch.out.rows.add("events_raw", _raw_row(event_id, kind, ts_ms, order_id, text, source))
        self._settle(batch, state, outcome, ts_ms)

    def _settle(self, batch: _Batch, state: dict, outcome, now: int) -> None:
        order_id = state["oid"]
        for event, reason, detail in outcome.rejected:
            self._dead_event(batch, event, reason, detail, now)
        for event in outcome.orphans:
            self._dead_event(batch, event, "orphan",
                             f"no order {order_id} was seen within the orphan timeout after this event", now)
        if outcome.changed:
            batch.changed.add(order_id)
        if outcome.purge:
            batch.purged.add(order_id)
        else:
            batch.purged.discard(order_id)
        self.due.schedule(order_id, None if outcome.purge else self.lifecycle.next_due(state))

    @staticmethod
    def _dead_event(batch: _Batch, event: dict, reason: str, detail: str, now: int) -> None:
        batch.dead_letter(event.get("order_id", "").encode(), event["raw"].encode(), reason, detail,
                          tuple(event["src"]), event["event_id"], now)

    # 3. advance
    def _advance(self, batch: _Batch, assigned: list[Partition]) -> None:
        batch.out.watermark = watermark = self.stream_time.watermark(assigned)
        if watermark is None:
            return
        for order_id in self.due.pop_due(watermark):
            state = batch.state(order_id)
            self._settle(batch, state, self.lifecycle.advance(state, watermark), watermark)

    # 4. emit
    def _emit(self, batch: _Batch) -> None:
        out = batch.out
        counted: list[tuple[dict, dict]] = []  # (state, fact): the window contributions, a batch at a time
        # Purged orders too: one advance may pass an order's deadlines and its retention
        # at once, and its final fact and alerts are written before its state is dropped.
        for order_id in batch.changed:
            state = batch.states[order_id]
            if "order" not in state:
                continue
            fact = self.lifecycle.fact(state)
            out.rows.add("order_facts", fact)
            for n, (group, record) in enumerate(order_signals(fact)):
                checksum = fingerprint(record)
                if state.setdefault("sg", [-1, -1])[n] != checksum:  # tell the early warnings only what changed
                    state["sg"][n] = checksum
                    out.signals.setdefault(group, {})[order_id] = record
            counted.append((state, fact))
            for alert in self.lifecycle.changed_alerts(state):
                row = order_alert_row(alert, fact, fact["version"])
                out.rows.add("alerts", row)
                out.alerts.append(row)
        contribs = self.windows.update_facts([fact for _, fact in counted], [state["p"] for state, _ in counted],
                                             [state.get("c") for state, _ in counted],
                                             [state.get("cv", 0) for state, _ in counted])
        for (state, fact), contrib in zip(counted, contribs):
            state["c"], state["cv"] = contrib, fact["version"]
        if out.watermark is not None:
            self.windows.advance(out.watermark)
        out.rows.by_table["window_parts"].extend(self.windows.take_dirty_rows())

    # 5. marks
    def _marks(self, assigned: list[Partition]) -> dict[str, int]:
        """How far each input partition has been read, where it moved on: the early
        warnings take the least mark over all input partitions as their time."""
        out = {}
        for tp in assigned:
            latest = self.stream_time.latest.get(tp)
            if latest is not None and self.marked.get(tp) != latest:
                self.marked[tp] = out[f"{tp.topic}:{tp.partition}"] = latest
        return out
