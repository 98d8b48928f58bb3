"""The order-lifecycle agent: the Kafka shell around the order dataflow
(supplymon/core/columnar_flow.py: decode, apply, advance, emit, marks, snapshots).

Per batch, `process()`:
1. intake: a whole fetched batch of the input topics (streams/batches.py: aiokafka's
   records by partition, no Faust messages), the records that continue each
   partition's sequence from the group's commit (agents/sequence.py), less those
   held back for a later batch to read the input topics in step (streams/align.py);
2. the flow: the order states it holds (as columns; an order it does not hold
   read from `unsettled`), the batch's rows, alerts, dead letters, signals, marks
   and changed states out;
3. write-behind: the batch is handed to the sink (agents/sink.py), which stores
   its rows (retried until stored) while the next batch is computed;
then, once its rows are stored, `announce()` sends its alerts and dead letters,
and `finish()`, in batch order, its signals for the early warnings
(agents/warnings.py), writes its states to the table's changelog (not to its
store: the flow holds them; after a rebalance the store holds what Faust's
recovery read back of the partitions newly assigned, added to the flow) and
acknowledges, per partition, the offset after its last record processed; the
batches of one insert are finished together (one wait for the deliveries of all
their signals, one changelog write), while the next insert runs.
A crash before that replays the batch onto the old state; a crash after finds
its events already applied (duplicates) and their rows already stored. States
of batches not finished yet are read from `unsettled`, not from the table.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from mode import CrashingSupervisor

from agents.latency import BatchClock
from agents.progress import mark_sent, mark_stored_offsets
from agents.sequence import follow
from agents.sink import ClickHouseSink, WriteBehind
from schemas.events import Invalid
from streams.app import (app, batch_intake, batch_producer, deadletter_topic, group_partition, send_alerts,
                         input_batches, order_changelog, settings, signals_topic)
from streams.align import Aligner
from streams.batches import FetchedBatch, next_offsets
from streams import diagnostics
from streams.continuity import OffsetContinuity
from streams.monitor import after_rebalance
from supplymon import metrics
from supplymon.core.columnar_flow import OrderFlow
from supplymon.core.flow import BatchOutput, dead_headers
from supplymon.core.signals import pack
from supplymon.gcpolicy import release_free_heap, release_heap
from supplymon.refusals import refused_alerts

log = logging.getLogger(__name__)

flow = OrderFlow.from_settings(settings, trust_rebuilt=settings.embedded_broker)
stream_time = flow.stream_time
sink = ClickHouseSink(settings)
continuity = OffsetContinuity()
aligner = Aligner(max_held=settings.batch_size * 10, max_wait=settings.align_max_wait_seconds,
                  pause_at=settings.batch_size)
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


def _reassigned() -> None:
    """A new assignment: the flow starts over from the order states this worker holds."""
    assigned = _assigned_inputs()
    continuity.forget()  # each partition starts again at the group's commit (agents/sequence.follow)
    aligner.clear()  # what it held is read again from the commit too
    order_changelog.keep_only({tp.partition for tp in assigned})
    # The table's store holds only what Faust's recovery read back of the partitions
    # newly assigned (the flow holds the states, `finish` does not keep a copy):
    # added to the flow, which keeps the orders of the partitions it still holds.
    # Each state belongs to the input partition of the changelog partition it was read from.
    count = flow.restore(assigned, order_changelog.items(consume=True), keep_held=True)
    order_changelog.clear()  # now in the flow
    release_heap()  # the rebuild's temporaries, given back
    metrics.open_orders.set(len(flow))
    log.info("%d order states read back; %d open orders held", count, len(flow))


# The alerts whose rows the store refused in the insert just written: `send_refused`
# is called before `announce` for the same insert, which leaves them out.
_refused_alerts: set[tuple[str, int]] = set()


async def send_refused(rows: list[dict]) -> None:
    """Rows the store refused (their dead letters are stored already) to the dead-letter topic."""
    for row in rows:
        await deadletter_topic.send(key=None, value=row["original"].encode(), headers=dead_headers(row))


async def _on_refused(rows: list[dict]) -> None:
    _refused_alerts.update(refused_alerts(rows))
    await send_refused(rows)


def _count(out: BatchOutput) -> None:
    for reason, n in out.dead_reasons.items():
        metrics.dead_letters.labels(reason).inc(n)
    if out.duplicates:
        metrics.duplicates.inc(out.duplicates)
    if out.per_event:
        metrics.per_event_path.inc(out.per_event)
    for alert in out.alerts:
        metrics.alerts_raised.labels(alert["kind"]).inc()
    if out.watermark is not None:
        metrics.stream_time.set(out.watermark / 1000)


class Batch:
    """A batch handed to the write-behind sink: the flow's output, and the fetched
    batch with, per partition, the offset after its last record processed, to
    acknowledge once it is stored."""

    __slots__ = ("out", "fetched", "offsets", "records", "clock", "deliveries")

    def __init__(self, out: BatchOutput, fetched: FetchedBatch, processed: list, clock: BatchClock) -> None:
        self.out, self.fetched, self.records, self.clock = out, fetched, len(processed), clock
        self.deliveries: list = []  # its alerts' and dead letters' sends, awaited before it is acknowledged
        self.offsets = next_offsets(processed)


_warned_misplaced: set = set()


def _report_misplaced(out: BatchOutput) -> None:
    """Events read off their order's input partition (supplymon/core/flow.py):
    counted, and said once per input partition."""
    for tp, count in out.misplaced.items():
        metrics.misplaced_inputs.inc(count)
        if tp not in _warned_misplaced:
            _warned_misplaced.add(tp)
            log.error("%s:%d 上有 %d 个事件的订单在另一个输入分区：生产者须按 order_id 一致地分区（四个输入主题同一分区器、"
                      "同样的分区数），否则再均衡后这些事件可能找不到订单状态 / %d events on %s:%d belong to orders "
                      "read from another input partition: producers must partition by order_id consistently (one "
                      "partitioner, the same partition count on the four input topics), or after a rebalance such "
                      "events may not find their order's state", tp.topic, tp.partition, count,
                      count, tp.topic, tp.partition)


async def _in_sequence(fetched: FetchedBatch, now_ms: int) -> list:
    """The batch's (partition, record) pairs that continue each partition's sequence
    from where the group committed it; on a gap, read it again (streams/continuity.py)."""
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
        parsed = flow.intake.admit(record.value, now_ms, record.headers)
        if not isinstance(parsed, Invalid):
            stream_time.observe(tp, parsed["ts_ms"])


async def process(fetched: FetchedBatch) -> None:
    global _index_stale
    clock = BatchClock(fetched.fetched_at)
    if _index_stale:
        await write_behind.drain()  # every batch finished (its states in the changelog) first
        _index_stale = False
        _reassigned()
    # The wall clock, read once per batch, only to refuse stamps from the future (intake).
    now_ms = int(time.time() * 1000)
    processed = aligner.take(await _in_sequence(fetched, now_ms), fetched.lag, time.perf_counter())
    batch_intake.hold_back(aligner.ahead, settings.align_max_wait_seconds)
    batch_intake.wake_when_idle(len(aligner) > 0)  # so that a wait ends even if no record comes
    metrics.held_records.set(len(aligner))
    if not processed and not fetched:  # a wake-up (an empty fetch) that released nothing
        batch_intake.ack(fetched, {})
        return
    stored = order_changelog.reader()

    def lookup(order_id: str) -> bytes | None:
        return unsettled[order_id] if order_id in unsettled else stored(order_id)

    # aiokafka's records have the attributes of the flow's Record (timestamp in ms).
    started = time.thread_time()
    out = flow.process((record for _, record in processed), _assigned_inputs(), lookup, now_ms)
    metrics.stage_seconds.labels("lifecycle").inc(time.thread_time() - started)
    release_free_heap(len(fetched))
    _count(out)
    _report_misplaced(out)
    unsettled.update(out.snapshots)
    batch = Batch(out, fetched, processed, clock)
    clock.submitted = time.perf_counter()
    # Alerts read once the consumer has caught up (a fetch that was not full) are
    # stored at once rather than gathered into a larger insert: gathering pays
    # under load, which here is over (a backlog's alerts wait for it anyway).
    await write_behind.submit(batch, out.rows, len(fetched) or len(processed),
                              urgent=bool(out.alerts) and not fetched.full)


async def _send_signals(outs: list[BatchOutput]) -> None:
    """The batches' records and marks, a message or so per signals partition and
    batch, in batch order; delivered (not just queued) before the batches are
    acknowledged, so a signal is never lost."""
    sent = [await signals_topic.send(key=str(partition), value=value, partition=partition)
            for out in outs
            for partition, value in pack(out.signals, out.marks, group_partition, settings.partitions)]
    mark_sent(await asyncio.gather(*sent))
    metrics.signals_sent.inc(sum(len(records) for out in outs for records in out.signals.values()))


async def announce(batches: list[Batch], insert_started: float, insert_ended: float) -> None:
    """As soon as the rows of `batches` are stored: their alerts and dead letters
    (a send only queues the message in the producer's buffer: `finish` awaits their
    deliveries before the acknowledgement). Not delayed by the deliveries of the
    batches stored before, which `finish` awaits."""
    for batch in batches:
        out, clock = batch.out, batch.clock
        clock.insert_started, clock.insert_ended = insert_started, insert_ended
        stored = []
        for alert in out.alerts:
            if (alert["alert_id"], alert["version"]) in _refused_alerts:
                log.warning("alert %s not sent: the store refused its row (see the dead letters)", alert["alert_id"])
                continue
            stored.append(alert)
        batch.deliveries += await send_alerts(stored)
        clock.alerted = time.perf_counter()
        for key, value, headers in out.dead:
            batch.deliveries.append(await deadletter_topic.send(key=key, value=value, headers=headers))
    _refused_alerts.clear()


async def finish(batches: list[Batch], insert_started: float, insert_ended: float) -> None:
    """After `announce`, in batch order: signals, states (the changelog), the alerts'
    and dead letters' deliveries, acks."""
    snapshots: dict[str, bytes | None] = {}
    partitions: dict[str, int] = {}  # each state's changelog partition: its order's input partition
    for batch in batches:
        snapshots.update(batch.out.snapshots)  # a later batch's state of an order replaces an earlier's
        partitions.update(batch.out.partitions)
    # All delivered before the acknowledgements (an alert acknowledged but still in the
    # producer's buffer would be lost with the worker: never notified); none waits for
    # the others.
    await asyncio.gather(_send_signals([batch.out for batch in batches]),
                         order_changelog.write(snapshots, hold=False, partitions=partitions),
                         *(delivery for batch in batches for delivery in batch.deliveries))
    for order_id, snapshot in snapshots.items():
        if unsettled.get(order_id, b"") is snapshot:  # no later batch changed it since
            del unsettled[order_id]
    for batch in batches:
        batch_intake.ack(batch.fetched, batch.offsets)
        mark_stored_offsets(batch.offsets)
        for kind, n in batch.out.kinds.items():
            metrics.events_in.labels(kind).inc(n)
        metrics.batch_events.observe(batch.records)
        batch.clock.observe(len(batch.out.alerts))
    metrics.open_orders.set(len(flow))


write_behind = WriteBehind(sink, finish, max_pending=settings.batch_size * 4, on_refused=_on_refused,
                           on_stored=announce)


def _shell_state() -> dict:
    """For the state dump (streams/diagnostics.py): what this shell holds between batches."""
    task = write_behind._task
    return {
        "index_stale": _index_stale,
        "aligner_held_records": {f"{tp.topic}:{tp.partition}": len(records) for tp, records in aligner.held.items()},
        "aligner_ahead": sorted(f"{tp.topic}:{tp.partition}" for tp in aligner.ahead),
        "write_behind_batches": len(write_behind._queue),
        "write_behind_events": write_behind._pending,
        "write_behind_given_to_writer": write_behind._gathered,
        "write_behind_task": "none" if task is None else ("done" if task.done() else "running"),
        "unsettled_orders": len(unsettled),
        "continuity_next_offsets": {f"{tp.topic}:{tp.partition}": continuity.expected(tp)
                                    for tp in sorted(_assigned_inputs())},
    }


diagnostics.add_state("order lifecycle agent", _shell_state)


# A crashed agent stops the worker (CrashingSupervisor) rather than being restarted
# in the same process: the consumer would go on past the failed batch while the
# state kept its effects. Restarted, the worker restores the changelog and reads
# again from the last acknowledged offsets.
@app.agent(input_batches, supervisor_strategy=CrashingSupervisor)
async def order_lifecycle(stream):
    await sink.open()
    batch_producer.acquire()
    try:
        async for fetched in batch_intake.batches(stream):
            await process(fetched)
    finally:
        await write_behind.close()
        await batch_producer.release()
