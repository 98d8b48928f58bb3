"""The order-lifecycle agent: joins each order's events, keeps its state, fires
its deadlines on stream time, and writes facts, alerts and raw events.

Thin shell around `supplymon.core.lifecycle`. Per batch:
1. decode and validate each message (bad ones to the dead-letter topic);
2. apply events to their orders' states (read from the table, changed in memory);
3. let stream time (the watermark) pass the deadlines that are due;
4. store rows in ClickHouse (retried until stored), send alerts and dead letters;
5. only then write the changed states to the table (its changelog), and let the
   batch be acknowledged. A crash anywhere before 5 replays the batch onto the
   old state; a crash after it finds the events already applied (duplicates) and
   their rows already stored.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from faust.types import EventT

from agents.sink import ClickHouseSink, Rows
from schemas.events import Invalid, parse_event
from streams.app import (alerts_topic, app, deadletter_topic, group_partition, input_topics, order_state,
                         settings, signals_topic)
from agents.progress import mark_stored
from agents.sequence import in_sequence, store_rows
from streams.continuity import OffsetContinuity
from streams.stream_time import StreamTime
from supplymon import metrics
from supplymon.core.alerts import order_alert_row
from supplymon.core.due import DueIndex
from supplymon.core.lifecycle import OrderLifecycle, new_state
from supplymon.core.signals import fingerprint, mark, order_signals
from supplymon.core.windows import Windows, part_row

log = logging.getLogger(__name__)

lifecycle = OrderLifecycle(settings.rules)
sink = ClickHouseSink(settings)
stream_time = StreamTime()
due_index = DueIndex()
windows = Windows(settings.rules)
continuity = OffsetContinuity()
marked: dict = {}  # input partition -> the event time last sent as a mark
_index_stale = True  # rebuild the due index and windows from the table after (re)assignment


@app.on_rebalance_complete.connect
async def _on_rebalance(sender: Any, **kwargs: Any) -> None:
    global _index_stale
    _index_stale = True


def _assigned_inputs() -> set:
    inputs = set(settings.topics.inputs)
    return {tp for tp in app.consumer.assignment() if tp.topic in inputs}


def _rebuild_derived_state() -> None:
    """The due index and the window parts, from the order states this worker holds."""
    due_index.clear()
    windows.clear()
    count = 0
    for order_id, state in order_state.items():
        due_index.schedule(order_id, lifecycle.next_due(state))
        if "c" in state:
            windows.restore(lifecycle.fact(state), state["p"], state["c"], state["cv"])
        count += 1
    metrics.open_orders.set(count)
    log.info("due index and windows rebuilt from %d order states", count)


class Batch:
    """What one batch of messages does: the states it read (all written back after
    the rows are stored, or dropped if purged) and the rows to write."""

    def __init__(self) -> None:
        self.states: dict[str, dict] = {}
        self.changed: set[str] = set()
        self.purged: set[str] = set()
        self.rows = Rows()
        self.dead: list[tuple[bytes | None, bytes, dict]] = []  # key, value, headers
        self.alerts: list[dict] = []
        self.signals: list[tuple[str, dict]] = []  # (group, value) for the early warnings
        self.watermark: int | None = None

    def state(self, order_id: str) -> dict:
        state = self.states.get(order_id)
        if state is None:
            state = order_state.get(order_id) or new_state(order_id)
            self.states[order_id] = state
        return state

    def dead_letter(self, key: bytes | None, raw: bytes, reason: str, detail: str,
                    source: tuple[str, int, int], event_id: str | None, noticed_at: int) -> None:
        metrics.dead_letters.labels(reason).inc()
        topic, partition, offset = source
        self.dead.append((key, raw, {
            "supplymon-reason": reason.encode(), "supplymon-detail": detail.encode(),
            "supplymon-source": f"{topic}:{partition}:{offset}".encode()}))
        self.rows.add("dead_letters", {
            "topic": topic, "partition": partition, "offset": offset, "reason": reason,
            "detail": detail, "event_id": event_id,
            "original": raw.decode("utf-8", "replace"), "noticed_at": noticed_at})


def _read(batch: Batch, event: EventT) -> None:
    message = event.message
    raw = message.value if isinstance(message.value, bytes) else event.value
    source = (message.topic, message.partition, message.offset)
    parsed = parse_event(raw)
    if isinstance(parsed, Invalid):
        batch.dead_letter(message.key, raw or b"", parsed.reason, parsed.detail, source,
                          parsed.event_id, message.timestamp and int(message.timestamp * 1000) or 0)
        return
    metrics.events_in.labels(parsed.kind).inc()
    stream_time.observe(message.tp, parsed.ts_ms)
    text = raw.decode()
    if parsed.kind == "tick":
        batch.rows.add("events_raw", _raw_row(parsed.event_id, "tick", parsed.ts_ms, "", text, source))
        return
    fields = parsed.asdict()
    fields["raw"], fields["src"] = text, source
    state = batch.state(parsed.order_id)
    state.setdefault("p", message.partition)  # the partition whose window parts count it
    outcome = lifecycle.apply(state, fields)
    if outcome.duplicate:
        metrics.duplicates.inc()
        return
    batch.rows.add("events_raw", _raw_row(parsed.event_id, parsed.kind, parsed.ts_ms,
                                          parsed.order_id, text, source))
    _settle(batch, state, outcome, parsed.ts_ms)


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


def _emit(batch: Batch) -> None:
    for order_id in batch.changed:
        if order_id in batch.purged:
            continue
        state = batch.states[order_id]
        if "order" not in state:
            continue
        fact = lifecycle.fact(state)
        batch.rows.add("order_facts", fact)
        for n, (group, value) in enumerate(order_signals(fact)):
            checksum = fingerprint(value)
            if state.setdefault("sg", [-1, -1])[n] != checksum:  # tell the early warnings only what changed
                state["sg"][n] = checksum
                batch.signals.append((group, value))
        state["c"] = windows.update(fact, state["p"], state.get("c"), state.get("cv", 0), batch.watermark)
        state["cv"] = fact["version"]
        for alert in lifecycle.changed_alerts(state):
            row = order_alert_row(alert, fact, fact["version"])
            batch.rows.add("alerts", row)
            batch.alerts.append(row)
            metrics.alerts_raised.labels(row["kind"]).inc()
    if batch.watermark is not None:
        windows.advance(batch.watermark)
    for key, part in windows.take_dirty():
        batch.rows.add("window_parts", part_row(key, part))


async def _send_marks() -> list:
    """Tell every signals partition how far each input partition has been read, after
    the signals of what was read: the early warnings take the minimum as their time."""
    sent = []
    for tp in _assigned_inputs():
        latest = stream_time.latest.get(tp)
        if latest is None or marked.get(tp) == latest:
            continue
        marked[tp] = latest
        value = mark(f"{tp.topic}:{tp.partition}", latest)
        for partition in range(settings.partitions):
            sent.append(await signals_topic.send(key="~mark", value=value, partition=partition))
    return sent


async def process(events: list[EventT]) -> None:
    global _index_stale
    if _index_stale:
        _index_stale = False
        stream_time.forget(_assigned_inputs())
        marked.clear()  # a new assignment: tell the early warnings again
        continuity.keep_only(_assigned_inputs())
        _rebuild_derived_state()
    events = await in_sequence(continuity, events)
    batch = Batch()
    for event in events:
        _read(batch, event)
    _advance(batch)
    _emit(batch)
    await store_rows(sink, batch.rows, events)
    for alert in batch.alerts:
        await alerts_topic.send(key=alert["alert_id"], value=alert)
    for key, value, headers in batch.dead:
        await deadletter_topic.send(key=key, value=value, headers=headers)
    # Delivered (not just queued) before the batch is acknowledged: a signal is never lost.
    sent = [await signals_topic.send(key=group, value=value, partition=group_partition(group))
            for group, value in batch.signals]
    sent += await _send_marks()
    await asyncio.gather(*sent)
    metrics.signals_sent.inc(len(batch.signals))
    for order_id, state in batch.states.items():
        if order_id in batch.purged:
            order_state.pop(order_id, None)
        else:
            order_state[order_id] = state
    mark_stored(events)
    metrics.batch_events.observe(len(events))
    metrics.open_orders.set(len(due_index))


@app.agent(input_topics)
async def order_lifecycle(stream):
    await sink.open()
    async for events in stream.take_events(settings.batch_size, within=settings.batch_seconds):
        await process(events)
