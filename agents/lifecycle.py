"""The order-lifecycle agent: joins each order's events, keeps its state, fires
its deadlines on stream time, and writes facts, alerts and raw events.

Thin shell around `supplymon.core.lifecycle`. Per fetched batch of the input
topics (streams/batches.py: records by partition, no Faust messages), `process()`:
1. decode and validate each record (bad ones to the dead-letter topic);
2. apply events to their orders' states (read from the table, changed in memory);
3. let stream time (the watermark) pass the deadlines that are due;
4. turn what changed into rows; snapshot the changed states;
5. hand the batch to the write-behind sink (agents/sink.py) and go on with the
   next batch while its rows are stored (retried until stored);
then, once its rows are stored, `finish()` sends its alerts, dead letters and
signals for the early warnings (agents/warnings.py), writes its states to the
table (its changelog) and acknowledges, per partition, the offset after its last
record processed.
A crash before that replays the batch onto the old state; a crash after finds
its events already applied (duplicates) and their rows already stored. States
of batches not finished yet are read from `unsettled`, not from the table.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any

import orjson
from mode import CrashingSupervisor

from agents.progress import mark_sent, mark_stored_offsets
from agents.sequence import follow
from agents.sink import ClickHouseSink, Rows, WriteBehind
from schemas.events import Invalid, dead_letter_detail
from streams.app import (alerts_topic, app, batch_intake, changelog_producer, deadletter_topic, group_partition,
                         input_batches, order_changelog, order_state, settings, signals_topic)
from streams.batches import FetchedBatch, next_offsets
from streams.continuity import OffsetContinuity
from streams.monitor import after_rebalance
from streams.stream_time import StreamTime
from supplymon import metrics
from supplymon.core.alerts import order_alert_row
from supplymon.core.due import DueIndex
from supplymon.core.intake import Intake
from supplymon.core.lifecycle import OrderLifecycle, new_state
from supplymon.core.signals import fingerprint, order_signals, pack
from supplymon.core.windows import Windows, part_row

log = logging.getLogger(__name__)

lifecycle = OrderLifecycle(settings.rules)
intake = Intake(settings.max_event_bytes, settings.rules.ms("max_future_skew_minutes"),
                allow_future=settings.allow_future, trust_rebuilt=settings.embedded_broker)
sink = ClickHouseSink(settings)
stream_time = StreamTime()
due_index = DueIndex()
windows = Windows(settings.rules)
continuity = OffsetContinuity()
marked: dict = {}  # input partition -> the event time last told to the early warnings
# Order states (orjson bytes; None: purged) of batches submitted but not finished:
# newer than the table's, which gets them only once their rows are stored.
unsettled: dict[str, bytes | None] = {}
_index_stale = True  # rebuild the due index and windows from the table after (re)assignment


@app.on_rebalance_complete.connect
async def _on_rebalance(sender: Any, **kwargs: Any) -> None:
    global _index_stale
    _index_stale = True


_rebalance_tasks: set[asyncio.Task] = set()  # referenced until done (the loop keeps only weak references)


def _after_rebalance() -> None:
    """Faust's rebalance has ended: the partitions are at their committed offsets and
    fetching again (its on_rebalance_complete signal comes before that)."""
    task = asyncio.ensure_future(_learn_stream_time())
    _rebalance_tasks.add(task)
    task.add_done_callback(_rebalance_tasks.discard)


async def _learn_stream_time() -> None:
    """Read again the last processed message of each assigned input partition. Stream
    time is the least over the assigned partitions: a partition just taken over is
    unknown until its next event, and a worker left with fewer partitions may now be
    later than it was; both need a batch to act on, which a quiet platform (or a
    replay, which has no live ticks) would not send. The message read again is not
    processed again (it precedes the commit) but tells its partition's time at once
    (`_observe_read_again`), so the deadlines due fire now, as they would have on
    one worker."""
    try:
        await batch_intake.reread_last()
    except Exception:  # the next events or ticks tell the time anyway
        log.warning("could not read the last processed messages again after a rebalance", exc_info=True)


after_rebalance(_after_rebalance)


def _assigned_inputs() -> set:
    return batch_intake.assigned()


def _rebuild_derived_state() -> None:
    """The due index and the window parts, from the order states this worker holds."""
    due_index.clear()
    windows.clear()
    count = 0
    for order_id, raw in order_state.items():
        state = orjson.loads(raw)
        due_index.schedule(order_id, lifecycle.next_due(state))
        if "c" in state:
            windows.restore(lifecycle.fact(state), state["p"], state["c"], state["cv"])
        count += 1
    metrics.open_orders.set(count)
    log.info("due index and windows rebuilt from %d order states", count)


class Batch:
    """What one batch of messages does: the states it read and changed (written back
    after the rows are stored, or dropped if purged) and the rows to write."""

    def __init__(self) -> None:
        self.states: dict[str, dict] = {}
        self.read: dict[str, bytes | None] = {}  # each state as read (to skip unchanged ones)
        self.changed: set[str] = set()
        self.purged: set[str] = set()
        self.rows = Rows()
        self.dead: list[tuple[bytes | None, bytes, dict]] = []  # key, value, headers
        self.alerts: list[dict] = []
        self.signals: dict[str, dict[str, dict]] = {}  # group -> order id -> record, for the early warnings
        self.marks: dict[str, int] = {}  # how far the inputs were read, sent after the records
        self.kinds: Counter = Counter()
        self.watermark: int | None = None
        self.snapshots: dict[str, bytes | None] = {}  # states to write (None: delete)
        self.offsets: dict = {}  # per partition, the offset after its last record processed
        self.records = 0
        self.fetched: FetchedBatch | None = None  # to acknowledge once stored
        self.stored = order_changelog.reader()

    def state(self, order_id: str) -> dict:
        state = self.states.get(order_id)
        if state is None:
            raw = unsettled[order_id] if order_id in unsettled else self.stored(order_id)
            state = orjson.loads(raw) if raw else new_state(order_id)
            self.states[order_id] = state
            self.read[order_id] = raw
        return state

    def seal(self) -> None:
        """Snapshot the states this batch changed (later batches go on changing the
        dicts)."""
        for order_id, state in self.states.items():
            snapshot = None if order_id in self.purged else orjson.dumps(state)
            if snapshot != self.read[order_id]:
                if snapshot is not None:
                    # orjson's bytes keep the 4 KiB buffer they were written into: copy
                    # to their size (held for every open order).
                    snapshot = bytes(memoryview(snapshot))
                self.snapshots[order_id] = unsettled[order_id] = snapshot

    def dead_letter(self, key: bytes | None, raw: bytes, reason: str, detail: str,
                    source: tuple[str, int, int], event_id: str | None, noticed_at: int) -> None:
        metrics.dead_letters.labels(reason).inc()
        topic, partition, offset = source
        row = {"topic": topic, "partition": partition, "offset": offset, "reason": reason,
               "detail": dead_letter_detail(reason, detail), "event_id": event_id,
               "original": raw.decode("utf-8", "replace"), "noticed_at": noticed_at}
        self.dead.append((key, raw, _dead_headers(row)))
        self.rows.add("dead_letters", row)


def _dead_headers(row: dict) -> dict[str, bytes]:
    """A dead-letter message's headers, from its `dead_letters` row."""
    return {"supplymon-reason": row["reason"].encode(), "supplymon-detail": row["detail"].encode(),
            "supplymon-source": f"{row['topic']}:{row['partition']}:{row['offset']}".encode()}


async def send_refused(rows: list[dict]) -> None:
    """Rows the store refused (their dead letters are stored already) to the dead-letter topic."""
    for row in rows:
        await deadletter_topic.send(key=None, value=row["original"].encode(), headers=_dead_headers(row))


def _read(batch: Batch, tp, record, parsed) -> None:
    """One record, admitted (or refused) by `intake.admit_batch`."""
    raw = record.value
    source = (record.topic, record.partition, record.offset)
    if isinstance(parsed, Invalid):
        kept = parsed.original if parsed.original is not None else raw or b""
        batch.dead_letter(record.key, kept, parsed.reason, parsed.detail, source,
                          parsed.event_id, record.timestamp or 0)
        return
    kind, ts_ms, event_id = parsed["kind"], parsed["ts_ms"], parsed["event_id"]
    batch.kinds[kind] += 1
    stream_time.observe(tp, ts_ms)
    text = raw.decode()
    if kind == "tick":
        batch.rows.add("events_raw", _raw_row(event_id, "tick", ts_ms, "", text, source))
        return
    parsed["raw"], parsed["src"] = text, source
    order_id = parsed["order_id"]
    state = batch.state(order_id)
    state.setdefault("p", record.partition)  # the partition whose window parts count it
    outcome = lifecycle.apply(state, parsed)
    if outcome.duplicate:
        metrics.duplicates.inc()
        if outcome.rejected:  # same event_id, other content: dead-lettered, never stored as the event
            _settle(batch, state, outcome, ts_ms)
        return
    batch.rows.add("events_raw", _raw_row(event_id, kind, ts_ms, order_id, text, source))
    _settle(batch, state, outcome, ts_ms)


def _settle(batch: Batch, state: dict, outcome, now: int) -> None:
    order_id = state["oid"]
    for event, reason, detail in outcome.rejected:
        _dead_event(batch, event, reason, detail, now)
    for event in outcome.orphans:
        _dead_event(batch, event, "orphan",
                    f"no order {order_id} was seen within the orphan timeout after this event", now)
    if outcome.changed:
        batch.changed.add(order_id)
    if outcome.purge:
        batch.purged.add(order_id)
    else:
        batch.purged.discard(order_id)
    due_index.schedule(order_id, None if outcome.purge else lifecycle.next_due(state))


def _dead_event(batch: Batch, event: dict, reason: str, detail: str, now: int) -> None:
    topic, partition, offset = event["src"]
    batch.dead_letter(event.get("order_id", "").encode(), event["raw"].encode(), reason, detail,
                      (topic, partition, offset), event["event_id"], now)


def _raw_row(event_id: str, kind: str, ts: int, order_id: str, payload: str, source) -> dict:
    topic, partition, offset = source
    return {"event_id": event_id, "kind": kind, "ts": ts, "order_id": order_id, "payload": payload,
            "topic": topic, "partition": partition, "offset": offset}


def _advance(batch: Batch) -> None:
    batch.watermark = watermark = stream_time.watermark(_assigned_inputs())
    if watermark is None:
        return
    metrics.stream_time.set(watermark / 1000)
    for order_id in due_index.pop_due(watermark):
        state = batch.state(order_id)
        _settle(batch, state, lifecycle.advance(state, watermark), watermark)


def _emit(batch: Batch) -> float:
    """Facts, alerts, signal records and window parts of what changed; returns the
    seconds spent on signals and windows (their own stages in the metrics)."""
    # Purged orders too: one advance may pass an order's deadlines and its retention
    # at once, and its final fact and alerts are written before its state is dropped.
    clock = time.thread_time  # CPU time: the store's thread holds the GIL at times
    signals_s = windows_s = 0.0
    for order_id in batch.changed:
        state = batch.states[order_id]
        if "order" not in state:
            continue
        fact = lifecycle.fact(state)
        batch.rows.add("order_facts", fact)
        t0 = clock()
        for n, (group, record) in enumerate(order_signals(fact)):
            checksum = fingerprint(record)
            if state.setdefault("sg", [-1, -1])[n] != checksum:  # tell the early warnings only what changed
                state["sg"][n] = checksum
                batch.signals.setdefault(group, {})[order_id] = record
        t1 = clock()
        state["c"] = windows.update(fact, state["p"], state.get("c"), state.get("cv", 0))
        state["cv"] = fact["version"]
        t2 = clock()
        signals_s += t1 - t0
        windows_s += t2 - t1
        for alert in lifecycle.changed_alerts(state):
            row = order_alert_row(alert, fact, fact["version"])
            batch.rows.add("alerts", row)
            batch.alerts.append(row)
            metrics.alerts_raised.labels(row["kind"]).inc()
    t0 = clock()
    if batch.watermark is not None:
        windows.advance(batch.watermark)
    for key, part in windows.take_dirty():
        batch.rows.add("window_parts", part_row(key, part))
    windows_s += clock() - t0
    metrics.stage_seconds.labels("signals").inc(signals_s)
    metrics.stage_seconds.labels("windows").inc(windows_s)
    return signals_s + windows_s


def _marks() -> dict[str, int]:
    """How far each input partition has been read, where it moved on: the early
    warnings take the least mark over all input partitions as their time."""
    out = {}
    for tp in _assigned_inputs():
        latest = stream_time.latest.get(tp)
        if latest is not None and marked.get(tp) != latest:
            marked[tp] = out[f"{tp.topic}:{tp.partition}"] = latest
    return out


async def _send_signals(batch: Batch) -> None:
    """The batch's records and marks, a message or so per signals partition; delivered
    (not just queued) before the batch is acknowledged, so a signal is never lost."""
    started = time.thread_time()
    packed = pack(batch.signals, batch.marks, group_partition, settings.partitions)
    metrics.stage_seconds.labels("signals").inc(time.thread_time() - started)
    sent = [await signals_topic.send(key=str(partition), value=value, partition=partition)
            for partition, value in packed]
    mark_sent(await asyncio.gather(*sent))
    metrics.signals_sent.inc(sum(map(len, batch.signals.values())))


async def _in_sequence(fetched: FetchedBatch, now_ms: int) -> list:
    """The batch's records that continue each partition's sequence from where the
    group committed it; on a gap, read it again (streams/continuity.py)."""
    positions = fetched.positions()
    plan = await follow(continuity, ((tp, record.offset) for tp, record in positions), _assigned_inputs(),
                        batch_intake.seek)
    _observe_read_again(positions, plan, now_ms)
    return [positions[i] for i in plan.process]


def _observe_read_again(positions: list, plan, now_ms: int) -> None:
    """Stream time from the last record of each partition that was processed before
    (the record read again after a rebalance, see `_learn_stream_time`): its time
    was reached already, and a partition just taken over is known at once."""
    last: dict = {}
    for i in plan.withheld:
        tp, record = positions[i]
        expected = continuity.expected(tp)
        if expected is not None and record.offset < expected and record.offset >= last.get(tp, (-1,))[0]:
            last[tp] = (record.offset, record)
    for tp, (_, record) in last.items():
        parsed = intake.admit(record.value, now_ms, record.headers)
        if not isinstance(parsed, Invalid):
            stream_time.observe(tp, parsed["ts_ms"])


async def process(fetched: FetchedBatch) -> None:
    global _index_stale
    if _index_stale:
        await write_behind.drain()  # the table has every state before it is read whole
        _index_stale = False
        assigned = _assigned_inputs()
        stream_time.forget(assigned)
        marked.clear()  # a new assignment: tell the early warnings again
        continuity.forget()  # each partition starts again at the group's commit (_in_sequence)
        order_changelog.keep_only({tp.partition for tp in assigned})
        _rebuild_derived_state()
    # The wall clock, read once per batch, only to refuse stamps from the future (intake).
    now_ms = int(time.time() * 1000)
    records = await _in_sequence(fetched, now_ms)
    batch = Batch()
    started = time.thread_time()
    admitted = intake.admit_batch([(record.value, record.headers) for _, record in records], now_ms)
    decoded_at = time.thread_time()
    for (tp, record), parsed in zip(records, admitted):
        _read(batch, tp, record, parsed)
    _advance(batch)
    other_stages = _emit(batch)
    metrics.stage_seconds.labels("decode").inc(decoded_at - started)
    metrics.stage_seconds.labels("lifecycle").inc(time.thread_time() - decoded_at - other_stages)
    # Marks now: by the time the batch is finished, later batches have been read.
    batch.marks = _marks()
    batch.seal()
    batch.offsets, batch.records, batch.fetched = next_offsets(records), len(records), fetched
    await write_behind.submit(batch, batch.rows, len(fetched))


async def finish(batch: Batch) -> None:
    """After the batch's rows are stored: alerts, dead letters, signals, states, acks."""
    for alert in batch.alerts:
        await alerts_topic.send(key=alert["alert_id"], value=alert)
    for key, value, headers in batch.dead:
        await deadletter_topic.send(key=key, value=value, headers=headers)
    await _send_signals(batch)
    await order_changelog.write(batch.snapshots)
    for order_id, snapshot in batch.snapshots.items():
        if unsettled.get(order_id, b"") is snapshot:  # no later batch changed it since
            del unsettled[order_id]
    batch_intake.ack(batch.fetched, batch.offsets)
    mark_stored_offsets(batch.offsets)
    for kind, n in batch.kinds.items():
        metrics.events_in.labels(kind).inc(n)
    metrics.batch_events.observe(batch.records)
    metrics.open_orders.set(len(due_index))


write_behind = WriteBehind(sink, finish, max_pending=settings.batch_size * 4, on_refused=send_refused)


# A crashed agent stops the worker (CrashingSupervisor) rather than being restarted
# in the same process: the consumer would go on past the failed batch while the
# state kept its effects. Restarted, the worker restores the changelog and reads
# again from the last acknowledged offsets.
@app.agent(input_batches, supervisor_strategy=CrashingSupervisor)
async def order_lifecycle(stream):
    await sink.open()
    changelog_producer.acquire()
    try:
        async for fetched in batch_intake.batches(stream):
            await process(fetched)
    finally:
        await write_behind.close()
        await changelog_producer.release()
