"""Whole fetched batches of the input topics, handed to one agent as one value.

Faust delivers each fetched message through its conductor, a stream queue, an
Event, sensors and a per-message acknowledgement (~70-80 us per message here).
`BatchConsumer` keeps Faust's consumer group, assignor, table recovery,
rebalance signals, commits and web server, but takes the records of the *batch
topics* (the input topics) out of each fetch (`_wait_next_records`) and puts
them, as one `FetchedBatch`, on a channel the lifecycle agent reads. Records of
every other topic (table changelogs during recovery, the signals topic) take
Faust's own per-message path.

Offsets are committed per batch, not per message: once a batch is stored, the
agent calls `BatchIntake.ack(batch, next_offsets)` with, per partition, the
offset after the last record it processed; the consumer's `_new_offset` gives
that to Faust's commit. So what the agent never processed (a batch dropped by a
rebalance, records withheld past a gap) is never committed past.

Rebalances: Faust clears the agents' queues (a batch waiting there is dropped,
never acknowledged, and read again from the commit) and then waits
(`wait_empty`) for what the agents already took: here, every batch taken and not
yet acknowledged. A put waiting for room in the queue runs in its own task and is
cancelled when the flow is suspended or the consumer stops: the batch is dropped,
never delivered late.

This relies on faust-streaming internals (pinned in pyproject.toml; checked by
tests/test_batches.py): `Consumer._drain_messages`, `_wait_next_records`,
`_new_offset`, `wait_empty`, `_read_offset`, `_acked`, `_committed_offset`,
`_n_acked`, `_commit_every`, `suspend_flow`, `flow_active` (and, through
streams/consumer.py, `_add_gap`, which it overrides so that no gap is recorded).
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Hashable, Iterable, Mapping, Sequence

from faust.types import TP

from streams.bulk_restore import BulkMessage, bulk_topics
from streams.consumer import WorkerConsumer

log = logging.getLogger(__name__)


@dataclass(eq=False)
class FetchedBatch:
    """The batch topics' records of one fetch, by partition, in offset order. Each
    record (aiokafka's ConsumerRecord) has `topic`, `partition`, `offset`, `key`,
    `value` (bytes) and `timestamp` (ms)."""

    by_partition: dict[Any, list]
    generation: int = 0
    fetched_at: float = field(default_factory=time.perf_counter)  # when it left the fetch (latency metrics)
    full: bool = False  # the fetch returned as many records as it may: more were waiting (not caught up)
    # per assigned batch partition, the records its log holds beyond those read (as far
    # as the consumer knows its highwater): what streams/align.py waits for
    lag: dict[Any, int] = field(default_factory=dict)

    def positions(self) -> list[tuple[Hashable, Any]]:
        """(partition, record) pairs, each partition's records in order."""
        return [(tp, record) for tp, records in self.by_partition.items() for record in records]

    def __len__(self) -> int:
        return sum(map(len, self.by_partition.values()))


def next_offsets(positions: Iterable[tuple[Hashable, Any]]) -> dict[Hashable, int]:
    """Per partition, the offset after the last of these records (what to commit
    once they are processed and stored)."""
    out: dict[Hashable, int] = {}
    for tp, record in positions:
        if record.offset >= out.get(tp, 0):
            out[tp] = record.offset + 1
    return out


class BatchConsumer(WorkerConsumer):
    """supplymon's consumer (streams/consumer.py: no gaps recorded by itself),
    delivering the batch topics a fetch at a time."""

    batch_topics: frozenset[str] = frozenset()
    batch_channel: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._batch_acked: dict[Any, int] = {}  # tp -> next offset to commit
        self._taken: set[FetchedBatch] = set()  # taken by the agent, not acknowledged yet
        self._released = asyncio.Event()
        # Fetching paused for partitions read far ahead of a co-partitioned one
        # (streams/align.py): asked by the agent (`hold_back`), applied by the fetch
        # loop between two fetches, so a fetch never returns records of a partition
        # paused meanwhile (they would be passed over).
        self.hold_back_wanted: set = set()
        self._held_back: dict[Any, float] = {}  # paused here -> since when (monotonic)
        self._held_back_generation = -1
        self.hold_back_max_wait = 30.0
        # The agent holds records back (streams/align.py): a fetch round that brings
        # none of the batch topics' records hands it an empty batch all the same, so
        # what it holds is released when its wait is over even if no record comes.
        self.wake_when_idle = False
        self._bulk: frozenset[str] | None = None

    # -- the fetch loop --------------------------------------------------------------
    async def _drain_messages(self, fetcher: Any) -> None:
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        # When records of each partition last came from a fetch: what Faust's check that a
        # partition's stream is processing reads (`verify_event_path`: "Stream has not
        # started processing" / "stopped processing, or is slow", errors once a partition
        # lags for `stream_processing_timeout`). Faust's monitor sets it per stream event;
        # the worker's (streams/monitor.py) does not, and the input topics reach no
        # stream: set here once per partition and fetch, it tells a stalled intake from
        # a healthy one instead of reporting every lagging partition as never started.
        inbound = self.app.monitor.stream_inbound_time
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                if not self.flow_active:  # (as `_wait_next_records` would) before the generation is read:
                    await self.wait(self.can_resume_flow)  # what is fetched after a rebalance is current
                generation = self.app.consumer_generation_id  # a fetch across a rebalance is stale
                self._apply_hold_back(generation)
                records, active = await self._wait_next_records(1.0)
                await self.sleep(0)
                if self.should_stop:
                    continue
                if not records:
                    if self.wake_when_idle and self.app.consumer_generation_id == generation and self.flow_active:
                        await self._hand_over(FetchedBatch({}, generation, lag=self._lags()))
                    continue
                if self.app.consumer_generation_id != generation:
                    # as Faust's getmany: the rebalance seeks every partition to its commit
                    await self._recover_dropped(records)  # (not the changelogs: see there)
                    continue
                if not self.flow_active:  # stopped while fetching: Faust's getmany seeks back
                    await self._seek_back()
                    await self._recover_dropped(records)
                    continue
                batch: dict[Any, list] = {}
                fetched_at = time.monotonic()
                for tp, tp_records in records.items():
                    if active is not None and tp not in active and tp not in self._buffered_partitions:
                        await self._recover_dropped({tp: tp_records})
                        continue
                    self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                    inbound[tp] = fetched_at
                    if tp.topic in self.batch_topics:
                        fresh = self._fresh(tp, tp_records)
                        if fresh:
                            batch[tp] = fresh
                    else:
                        await self._deliver_each(tp, tp_records)
                if batch:
                    limit = self.app.conf.broker_max_poll_records
                    full = bool(limit) and sum(map(len, records.values())) >= limit
                    await self._hand_over(FetchedBatch(batch, generation, full=full, lag=self._lags()))
                await self._maybe_commit_every()
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                log.info("broker stopped the consumer; shutting down")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise

    def _apply_hold_back(self, generation: int) -> None:
        """Pause the partitions the agent holds back, resume those it no longer does or
        that were paused longer than `hold_back_max_wait` (the agent asks again if they
        still run ahead). A rebalance resumed or revoked them all: forgotten then, and
        what was asked before it (the agent, starting over, asks again at its next
        batch what it still needs)."""
        if generation != self._held_back_generation:
            self._held_back_generation = generation
            self._held_back.clear()
            self.hold_back_wanted = set()
        # Faust's TP (the fetch hands aiokafka's TopicPartition; Faust asserts its own
        # type in the active set, and resume_partitions adds what it is given as is)
        wanted = {TP(tp.topic, tp.partition) for tp in self.hold_back_wanted}
        now = time.monotonic()
        resume = [tp for tp, since in self._held_back.items()
                  if tp not in wanted or now - since >= self.hold_back_max_wait]
        if resume:
            for tp in resume:
                del self._held_back[tp]
                wanted.discard(tp)
            self.hold_back_wanted = wanted  # asked again at the next batch if still ahead
            self.resume_partitions(resume)
        assigned = self.assignment() if wanted else set()
        pause = [tp for tp in wanted if tp not in self._held_back and tp in assigned]
        if pause:
            self.pause_partitions(pause)
            self._held_back.update(dict.fromkeys(pause, now))

    def _lags(self) -> dict[Any, int]:
        """Per assigned batch partition whose highwater and position are known, the
        records beyond those read (its position: after the last record read, or the
        commit before any)."""
        lags = {}
        for tp in self.assignment():
            if tp.topic not in self.batch_topics:
                continue
            read = self._read_offset[tp]
            position = read + 1 if read is not None else self._committed_offset.get(tp)
            highwater = self.highwater(tp)
            if position is not None and highwater is not None:
                lags[tp] = max(0, highwater - position)
        return lags

    async def _recover_dropped(self, records: Mapping[Any, Sequence]) -> None:
        """Changelog records fetched and then dropped (a fetch that spanned a
        rebalance, the flow stopped meanwhile, a partition not active): the
        consumer's position has moved past them, but Faust's recovery seeks a
        changelog partition only once, as it starts, and would wait for them for
        ever. Seen: a worker stuck in recovery after a second one joined, its
        position at a changelog partition's end and not one of its records read.
        Each such partition that a recovery still reads is sought back to the
        offset after the last one it has seen."""
        recovery = self.app.tables.recovery
        seeks = {}
        for fetched, tp_records in records.items():
            tp = TP(fetched.topic, fetched.partition)
            if not tp_records or not self._is_changelog_tp(tp) or recovery is None or not recovery.in_recovery:
                continue
            if tp in recovery.active_tps:
                seen = recovery.active_offsets.get(tp)
            elif tp in recovery.standby_tps:
                seen = recovery.standby_offsets.get(tp)
            else:
                continue
            wanted = 0 if seen is None or seen < 0 else seen + 1
            if wanted <= tp_records[-1].offset:  # some of them not applied yet
                seeks[tp] = wanted
        if seeks:
            log.info("changelog records fetched and dropped by a rebalance are read again from %s",
                     {f"{tp.topic}:{tp.partition}": offset for tp, offset in seeks.items()})
            await self.seek_wait(seeks)

    async def _seek_back(self) -> None:
        try:
            await self.perform_seek()
        except Exception as exc:
            log.warning("could not seek back to the committed offsets while the flow is stopped: %r", exc)

    def _fresh(self, tp: Any, records: Sequence) -> list:
        """The records past the partition's read offset (Faust's rule: older ones were
        fetched before a seek back)."""
        read = self._read_offset[tp]
        start = 0
        if read is not None:
            while start < len(records) and records[start].offset < read:
                start += 1
        fresh = list(records[start:]) if start else list(records)
        if fresh:
            self._read_offset[tp] = fresh[-1].offset
        return fresh

    async def _deliver_each(self, tp: Any, records: Sequence) -> None:
        """Faust's per-message path for the other topics (changelogs, signals); while
        the flow runs, the delivery is awaited directly (no task per message). A
        bulk-restored table's changelog records go as one message (streams/bulk_restore.py)."""
        if tp.topic in self._bulk_topics():
            fresh = self._fresh(tp, records)  # (Faust's rule, as for the batch topics)
            if fresh:
                await self._maybe_commit_every()
                await self._deliver(BulkMessage.of(tp, fresh, self.app.consumer_generation_id))
            return
        for record in records:
            offset = record.offset
            read = self._read_offset[tp]
            if read is not None and offset < read:
                continue
            # A jump in offsets records no gap (streams/consumer.py): the agents'
            # continuity check reads what is missing again.
            await self._maybe_commit_every()
            await self._deliver(self._to_message(tp, record))
            self._read_offset[tp] = offset

    async def _deliver(self, message: Any) -> None:
        if self.suspend_flow.is_set():
            await self.wait_first(self.callback(message), self.suspend_flow.wait())
        else:
            await self.callback(message)

    def _bulk_topics(self) -> frozenset[str]:
        if self._bulk is None:  # the tables are all defined once the consumer reads
            self._bulk = bulk_topics(self.app)
        return self._bulk

    async def _maybe_commit_every(self) -> None:
        if self._commit_every is not None and self._n_acked >= self._commit_every:
            self._n_acked = 0
            await self.commit()

    async def _hand_over(self, batch: FetchedBatch) -> None:
        """Put the batch on the channel in a task of its own: a rebalance (the flow
        suspended) or a stop cancels it and the batch is dropped, unacknowledged."""
        put = asyncio.ensure_future(self.batch_channel.put(batch))
        suspended = asyncio.ensure_future(self.suspend_flow.wait())
        try:
            await asyncio.wait({put, suspended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (put, suspended):
                if not task.done():
                    task.cancel()
        if not put.done() or put.cancelled():
            log.info("a fetched batch of %d records was dropped (rebalance or stop); it is read again", len(batch))

    # -- what the agent took and acknowledged ----------------------------------------
    def taken(self, batch: FetchedBatch) -> None:
        self._taken.add(batch)

    def ack_batch(self, batch: FetchedBatch, offsets: Mapping[Any, int]) -> None:
        """The batch is done: commit up to `offsets` (per partition, the next offset)."""
        self._taken.discard(batch)
        self._released.set()
        assigned = self.assignment()
        for tp, offset in offsets.items():
            committed = self._committed_offset.get(tp)
            if tp not in assigned or (committed is not None and offset <= committed):
                continue
            if offset > self._batch_acked.get(tp, -1):
                self._batch_acked[tp] = offset
                self._acked[tp]  # noqa: B018 - lists the tp among those with acks to commit
                self._n_acked += 1

    def _new_offset(self, tp: Any) -> int | None:
        if tp.topic in self.batch_topics:
            return self._batch_acked.get(tp)
        return super()._new_offset(tp)

    async def on_partitions_revoked(self, revoked: set) -> None:
        # Faust waits here (wait_empty) for the batches taken, then commits what they
        # acknowledged; only then are the revoked partitions forgotten.
        await super().on_partitions_revoked(revoked)
        for tp in revoked:
            self._batch_acked.pop(tp, None)
            self._acked.pop(tp, None)

    async def wait_empty(self) -> None:
        """Wait for the batches the agent took (it finishes them: stored, then
        acknowledged), then for Faust's own messages."""
        while self._taken and not self.should_stop:
            self._released.clear()
            try:
                await asyncio.wait_for(self._released.wait(), timeout=1.0)
            except asyncio.TimeoutError:
                log.info("waiting for %d taken batches to be stored", len(self._taken))
        await super().wait_empty()


class BatchIntake:
    """The lifecycle agent's view of the Kafka runtime: batches in, offsets out.
    Agents see records and partitions, never Faust messages or the consumer."""

    def __init__(self, app: Any, topics: Iterable[str], channel: Any) -> None:
        self.app = app
        self.topics = frozenset(topics)
        self.channel = channel

    def install(self) -> None:
        """Make the app's consumer a `BatchConsumer` feeding `channel` (before the
        consumer is created, i.e. before the worker starts)."""
        transport = self.app.transport
        if not issubclass(transport.Consumer, BatchConsumer):
            transport.Consumer = type("AppBatchConsumer", (BatchConsumer,), {"__module__": __name__})
        transport.Consumer.batch_topics = self.topics
        transport.Consumer.batch_channel = self.channel

    @property
    def consumer(self) -> BatchConsumer:
        return self.app.consumer

    async def batches(self, stream: Any) -> AsyncIterator[FetchedBatch]:
        """The agent's loop: each batch, marked as taken (a rebalance waits for it).
        A batch the agent reaches only once a rebalance has begun (taken off the
        queue just before the rebalance cleared it, so not waited for) or after it
        (fetched in an earlier generation) is dropped unacknowledged: its partitions
        may be another worker's by now, and are read again from the commit."""
        consumer = self.consumer
        async for batch in stream:
            if not self.app.flow_control.is_active() or batch.generation != self.app.consumer_generation_id:
                log.info("a fetched batch of %d records reached the agent after a rebalance began; "
                         "dropped, it is read again from the commit", len(batch))
                continue
            consumer.taken(batch)
            yield batch

    def ack(self, batch: FetchedBatch, offsets: Mapping[Any, int]) -> None:
        self.consumer.ack_batch(batch, offsets)

    def wake_when_idle(self, wanted: bool) -> None:
        """While `wanted` (records are held back), an empty batch when a fetch brings nothing."""
        self.consumer.wake_when_idle = wanted

    def hold_back(self, partitions: set, max_wait: float) -> None:
        """Fetch nothing more of these partitions for now (they run ahead: streams/align.py),
        for at most `max_wait` seconds at a time; resume the others held back."""
        self.consumer.hold_back_wanted = set(partitions)
        self.consumer.hold_back_max_wait = max_wait

    def assigned(self) -> set:
        return {tp for tp in self.consumer.assignment() if tp.topic in self.topics}

    async def seek(self, offsets: Mapping[Any, int]) -> None:
        """Read from these offsets again (on the consumer's thread; Faust's read
        offsets are reset, so the records come again)."""
        await self.consumer.seek_wait(offsets)

    async def reread_last(self) -> None:
        """Read again the last processed record of each assigned batch partition."""
        seeks = {}
        for tp in self.assigned():
            position = await self.consumer.position(tp)
            if position:
                seeks[tp] = position - 1
        if seeks:
            await self.seek(seeks)

    def committed(self) -> dict:
        return dict(self.consumer._committed_offset)

