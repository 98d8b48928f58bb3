"""The batch intake (streams/batches.py): whole fetched batches to one channel, acks per
batch, commits via `_new_offset`, rebalances and stops.

The consumer here is Faust's real aiokafka Consumer subclass on a real Faust App
and channel; only the fetch (`_wait_next_records`) and the assignment are given
by the test, as no broker runs in these tests (the end-to-end tests run the
same consumer on the embedded broker)."""
from __future__ import annotations

import asyncio
import inspect
import re
import time
from importlib import metadata
from pathlib import Path

import faust
import pytest
from aiokafka.structs import ConsumerRecord, TopicPartition
from faust.app.base import App
from faust.transport.consumer import Consumer as FaustConsumer
from faust.transport.drivers.aiokafka import Consumer as AiokafkaConsumer
from faust.types import TP

from streams.batches import BatchConsumer, BatchIntake, FetchedBatch, next_offsets

INPUT, OTHER = "supply.orders", "supply.signals"


def record(topic: str, partition: int, offset: int, value: bytes = b"{}") -> ConsumerRecord:
    return ConsumerRecord(topic, partition, offset, 1_700_000_000_000 + offset, 0, b"k", value, None, 1,
                          len(value), [])


def params(function) -> list[str]:
    return list(inspect.signature(function).parameters)


# -- the private Faust internals the intake relies on -------------------------------
def test_faust_is_pinned_to_the_version_the_intake_was_written_for():
    pinned = re.search(r'"faust-streaming==([^"]+)"', Path("pyproject.toml").read_text()).group(1)
    assert metadata.version("faust-streaming") == pinned == "0.15.3"


def test_faust_internals_used_by_the_intake_are_unchanged():
    assert params(FaustConsumer._drain_messages) == ["self", "fetcher"]
    assert params(FaustConsumer._wait_next_records) == ["self", "timeout"]
    assert params(FaustConsumer._new_offset) == ["self", "tp"]
    assert params(FaustConsumer.wait_empty) == ["self"]
    assert params(FaustConsumer.on_partitions_revoked) == ["self", "revoked"]
    assert params(FaustConsumer._add_gap) == ["self", "tp", "offset_from", "offset_to"]
    assert params(AiokafkaConsumer._to_message) == ["self", "tp", "record"]
    assert params(FaustConsumer.perform_seek) == ["self"]
    # Commits take each partition's offset from `_new_offset`, over the partitions
    # listed in `_acked`; the fetcher runs `_drain_messages`.
    assert "self._new_offset(tp)" in inspect.getsource(FaustConsumer._filter_committable_offsets)
    assert "self._acked" in inspect.getsource(FaustConsumer._filter_tps_with_pending_acks)
    assert "_drain_messages(self)" in inspect.getsource(inspect.getmodule(FaustConsumer).Fetcher._fetcher.fun)
    # Faust's loop these replace: read offsets, gaps, commit_every, delivery while not suspended.
    drain = inspect.getsource(FaustConsumer._drain_messages)
    for name in ("_read_offset", "_add_gap", "_n_acked", "commit_every", "suspend_flow.wait()", "callback(message)"):
        assert name in drain
    # A rebalance clears the agents' queues, then waits for what they took.
    revoked = inspect.getsource(App._on_partitions_revoked)
    assert revoked.index("flow_control.clear") < revoked.index("_consumer_wait_empty")
    assert "consumer.wait_empty()" in inspect.getsource(App._consumer_wait_empty)


def test_aiokafka_internals_used_to_start_a_partition_are_unchanged():
    from aiokafka import AIOKafkaConsumer
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
    assert params(AIOKafkaConsumer.committed) == ["self", "partition"]
    assert params(AIOKafkaConsumerThread._ensure_consumer) == ["self"]
    assert "self._thread = self._new_consumer_thread()" in inspect.getsource(FaustConsumer.__mro__[1].__init__) \
        or "self._thread = self._new_consumer_thread()" in inspect.getsource(
            inspect.getmodule(FaustConsumer).ThreadDelegateConsumer.__init__)
    assert hasattr(AIOKafkaConsumerThread, "call_thread")
    # The embedded broker's shorter fetch wait (streams/consumer.py, 3.): set on the
    # aiokafka consumer Faust creates, before its start hands it to the fetcher.
    assert params(AIOKafkaConsumerThread._create_worker_consumer) == ["self", "transport"]
    assert "AIOKafkaConsumerThread(self, loop=self.loop, beacon=self.beacon)" in inspect.getsource(
        AiokafkaConsumer._new_consumer_thread)
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in inspect.getsource(AIOKafkaConsumer.start)


def test_faust_consumer_attributes_used_by_the_intake_exist():
    intake, consumer = make_intake()
    for name in ("_read_offset", "_acked", "_acked_index", "_committed_offset", "_n_acked", "_commit_every",
                 "_buffered_partitions", "suspend_flow", "flow_active", "callback"):
        assert hasattr(consumer, name), name
    assert consumer._read_offset[TP(INPUT, 0)] is None  # a defaultdict of None
    assert isinstance(consumer.suspend_flow, asyncio.Event)


# -- behaviour -----------------------------------------------------------------------
def make_intake(maxsize: int = 4, assigned: set | None = None):
    app = faust.App("intake-test", broker="kafka://127.0.0.1:1", autodiscover=False, web_enabled=False)
    channel = app.channel(maxsize=maxsize)
    intake = BatchIntake(app, [INPUT], channel)
    intake.install()
    consumer = app.consumer
    assert isinstance(consumer, BatchConsumer)
    tps = assigned if assigned is not None else {TP(INPUT, p) for p in range(2)} | {TP(OTHER, 0)}
    consumer.assignment = lambda: set(tps)
    consumer.highwater = lambda tp: 0
    # What the agent iterates: a subscriber of the channel, with its own queue.
    # (held here: the channel keeps its subscribers in a WeakSet)
    intake.agent_stream = channel.clone(is_iterator=True)
    intake.agent_queue = intake.agent_stream.queue
    app.flow_control.resume()  # as a running worker's (suspended until it starts)
    return intake, consumer


class FakeFetcher:
    """The Fetcher service `_drain_messages` is given: only its stopped flag is read."""

    def __init__(self) -> None:
        self._stopped = asyncio.Event()


def fetches(consumer, *record_maps):
    """Make the consumer's fetch return these record maps, then nothing."""
    pending = list(record_maps)

    async def wait_next_records(timeout):
        if pending:
            return pending.pop(0), None
        await asyncio.sleep(0.01)
        return {}, None

    consumer._wait_next_records = wait_next_records


async def run_drain(consumer, until) -> None:
    fetcher = FakeFetcher()
    task = asyncio.ensure_future(consumer._drain_messages(fetcher))
    try:
        deadline = asyncio.get_running_loop().time() + 10.0  # the machine may be loaded
        while not until() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
    finally:
        fetcher._stopped.set()
        await asyncio.wait_for(task, 2)


def test_a_fetch_reaches_the_agent_as_one_batch_and_other_topics_message_by_message():
    async def scenario():
        intake, consumer = make_intake()
        delivered = []

        async def callback(message):
            delivered.append((message.topic, message.offset))

        consumer.callback = callback
        consumer._read_offset[TP(INPUT, 1)] = 5  # a seek back to 5: offsets before it were fetched earlier
        fetches(consumer, {
            TP(INPUT, 0): [record(INPUT, 0, n) for n in range(3)],
            TP(INPUT, 1): [record(INPUT, 1, n) for n in range(3, 8)],
            TP(OTHER, 0): [record(OTHER, 0, 0), record(OTHER, 0, 1)],
        })
        await run_drain(consumer, lambda: not intake.agent_queue.empty())
        batch = intake.agent_queue.get_nowait()
        assert isinstance(batch, FetchedBatch) and intake.agent_queue.empty()
        assert [(tp.partition, r.offset) for tp, r in batch.positions()] == [
            (0, 0), (0, 1), (0, 2), (1, 5), (1, 6), (1, 7)]
        assert delivered == [(OTHER, 0), (OTHER, 1)]
        assert consumer._read_offset[TP(INPUT, 0)] == 2 and consumer._read_offset[TP(INPUT, 1)] == 7

    asyncio.run(scenario())


def test_a_fetch_as_large_as_allowed_is_marked_full():
    """A full fetch means more records wait (not caught up): the agent then gathers
    inserts instead of storing a batch's alerts at once (agents/lifecycle.py)."""
    async def scenario():
        intake, consumer = make_intake()
        intake.app.conf.broker_max_poll_records = 3
        fetches(consumer, {TP(INPUT, 0): [record(INPUT, 0, n) for n in range(2)]},
                {TP(INPUT, 0): [record(INPUT, 0, 2)], TP(INPUT, 1): [record(INPUT, 1, n) for n in range(2)]})
        await run_drain(consumer, lambda: intake.agent_queue.qsize() >= 2)
        batches = [intake.agent_queue.get_nowait() for _ in range(2)]
        assert [(len(batch), batch.full) for batch in batches] == [(2, False), (3, True)]
        assert batches[0].fetched_at <= batches[1].fetched_at

    asyncio.run(scenario())


def test_a_batch_carries_each_input_partitions_lag_behind_its_highwater():
    """What streams/align.py waits for: per assigned input partition, the records its
    log holds beyond those read (from the commit before any was read); other topics
    and partitions with an unknown position are left out."""
    async def scenario():
        intake, consumer = make_intake()
        consumer.highwater = {TP(INPUT, 0): 10, TP(INPUT, 1): 40, TP(OTHER, 0): 99}.get
        consumer._committed_offset[TP(INPUT, 1)] = 25
        fetches(consumer, {TP(INPUT, 0): [record(INPUT, 0, n) for n in range(3)]})
        await run_drain(consumer, lambda: not intake.agent_queue.empty())
        assert intake.agent_queue.get_nowait().lag == {TP(INPUT, 0): 7, TP(INPUT, 1): 15}

    asyncio.run(scenario())


def test_while_records_are_held_back_a_fetch_that_brings_none_still_wakes_the_agent():
    """Records the agent holds back (streams/align.py) wait at most so long; with no
    record coming, an empty batch (with the lags) lets it release them. Only while
    it asks: otherwise an empty fetch hands over nothing."""
    async def scenario():
        intake, consumer = make_intake()
        consumer.highwater = {TP(INPUT, 0): 10, TP(INPUT, 1): 40}.get
        consumer._committed_offset[TP(INPUT, 0)] = 10
        consumer._committed_offset[TP(INPUT, 1)] = 25
        fetches(consumer)
        loop = asyncio.get_running_loop()
        quiet_until = loop.time() + 0.2  # several empty fetch rounds
        await run_drain(consumer, lambda: loop.time() > quiet_until)
        assert intake.agent_queue.empty()
        intake.wake_when_idle(True)
        fetches(consumer)
        await run_drain(consumer, lambda: not intake.agent_queue.empty())
        woken = intake.agent_queue.get_nowait()
        assert len(woken) == 0 and woken.lag == {TP(INPUT, 0): 0, TP(INPUT, 1): 15}
        intake.ack(woken, {})
        assert woken not in consumer._taken

    asyncio.run(scenario())


def test_partitions_held_back_are_paused_between_fetches_and_resumed_when_no_longer_or_too_long():
    """streams/align.py's `ahead`: the fetch loop pauses them (never during a fetch),
    resumes those no longer held back or held back `hold_back_max_wait` seconds, and
    forgets its pauses after a rebalance (which resumed or revoked them)."""
    intake, consumer = make_intake()
    paused, resumed = [], []
    consumer.pause_partitions = lambda tps: paused.append(set(tps))
    consumer.resume_partitions = lambda tps: resumed.append(set(tps))
    a, b = TP(INPUT, 0), TP(INPUT, 1)
    consumer._apply_hold_back(generation=1)  # the fetch loop's first round, before any batch
    # as the agent has them: aiokafka's TopicPartition, from the fetch; paused as Faust's TP
    intake.hold_back({TopicPartition(INPUT, 0), TopicPartition(INPUT, 1), TopicPartition(INPUT, 9)}, max_wait=30.0)
    consumer._apply_hold_back(generation=1)  # 9: not assigned, never paused
    assert paused == [{a, b}] and resumed == []
    assert all(type(tp) is TP for tp in paused[0])
    intake.hold_back({a}, max_wait=30.0)
    consumer._apply_hold_back(generation=1)
    assert resumed == [{b}] and paused == [{a, b}]
    consumer._held_back[a] -= 31.0  # held back longer than allowed: resumed though still asked
    consumer._apply_hold_back(generation=1)
    assert resumed[-1] == {a} and not consumer._held_back
    intake.hold_back({b}, max_wait=30.0)
    consumer._apply_hold_back(generation=1)
    assert paused[-1] == {b}
    calls = len(paused), len(resumed)
    consumer._apply_hold_back(generation=2)  # a rebalance: its pauses and asks forgotten, none resumed by us
    assert (len(paused), len(resumed)) == calls and not consumer._held_back and not consumer.hold_back_wanted


def test_held_back_partitions_leave_and_rejoin_fausts_active_set_as_its_own_partitions():
    """With Faust's own pause/resume (no stand-in): the fetch's aiokafka partitions
    become Faust's TP, which Faust asserts of its active set at every fetch."""
    intake, consumer = make_intake()
    consumer._set_active_tps(consumer.assignment())  # as Faust does on an assignment
    consumer._apply_hold_back(generation=1)  # the fetch loop's first round, before any batch
    intake.hold_back({TopicPartition(INPUT, 0)}, max_wait=30.0)
    consumer._apply_hold_back(generation=1)
    assert consumer._get_active_partitions() == {TP(INPUT, 1), TP(OTHER, 0)}
    intake.hold_back(set(), max_wait=30.0)
    consumer._apply_hold_back(generation=1)
    assert consumer._get_active_partitions() == {TP(INPUT, 0), TP(INPUT, 1), TP(OTHER, 0)}


def test_each_fetched_partition_is_marked_inbound_for_fausts_stalled_stream_check():
    """Faust's check (`verify_event_path`) calls a lagging partition with no inbound time
    "not started" and one whose last is older than `stream_processing_timeout`
    "stopped, or slow": the intake marks each partition a fetch brought, input or not."""
    async def scenario():
        intake, consumer = make_intake()
        consumer.callback = _noop_async
        inbound = consumer.app.monitor.stream_inbound_time
        before = time.monotonic()
        fetches(consumer, {TP(INPUT, 0): [record(INPUT, 0, 0)], TP(OTHER, 0): [record(OTHER, 0, 0)]})
        await run_drain(consumer, lambda: not intake.agent_queue.empty())
        assert set(inbound) == {TP(INPUT, 0), TP(OTHER, 0)}  # not the input partition that brought nothing
        assert all(before <= at <= time.monotonic() for at in inbound.values())

    asyncio.run(scenario())


def test_fausts_stalled_stream_check_leaves_the_table_changelogs_out():
    """Outside a recovery nothing reads a changelog (Faust pauses them) while the worker
    writes to it: Faust's check logged every healthy worker's changelogs as streams that
    never started. The other partitions are still checked."""
    intake, consumer = make_intake()
    table = intake.app.Table("states")
    changelog = TP(table.changelog_topic.get_topic_name(), 0)
    checked = []

    class Thread:
        def verify_event_path(self, now, tp):
            checked.append(tp)

    consumer._thread = Thread()
    for tp in (changelog, TP(INPUT, 0), TP(OTHER, 0)):
        consumer.verify_event_path(1.0, tp)
    assert checked == [TP(INPUT, 0), TP(OTHER, 0)]


@pytest.mark.parametrize("wait", [None, 100])
def test_the_worker_consumers_fetch_wait_is_the_one_set(wait):
    async def scenario():
        intake, consumer = make_intake()
        type(consumer).fetch_max_wait_ms = wait
        reader = consumer._thread._create_worker_consumer(intake.app.transport)
        try:
            return reader._fetch_max_wait_ms
        finally:
            await reader.stop()

    assert asyncio.run(scenario()) == (wait or 1500)  # None: Faust's own


def test_offsets_commit_per_batch_only_once_acknowledged():
    async def scenario():
        intake, consumer = make_intake()
        first, second = (FetchedBatch({TP(INPUT, 0): [record(INPUT, 0, n) for n in range(a, b)]})
                         for a, b in ((0, 10), (10, 20)))
        for batch in (first, second):
            consumer.taken(batch)
        assert consumer._filter_committable_offsets(consumer._filter_tps_with_pending_acks()) == {}
        intake.ack(first, next_offsets(first.positions()))
        assert consumer._filter_committable_offsets(consumer._filter_tps_with_pending_acks()) == {TP(INPUT, 0): 10}
        # Records withheld (past a gap) are not acknowledged: only what was processed.
        intake.ack(second, next_offsets(second.positions()[:4]))
        assert consumer._filter_committable_offsets(consumer._filter_tps_with_pending_acks()) == {TP(INPUT, 0): 14}
        # A stale acknowledgement never moves the commit back, nor past what is committed.
        consumer._committed_offset[TP(INPUT, 0)] = 14
        intake.ack(first, {TP(INPUT, 0): 10})
        assert consumer._filter_committable_offsets(consumer._filter_tps_with_pending_acks()) == {}

    asyncio.run(scenario())


def test_a_revoked_partition_is_committed_as_far_as_stored_then_forgotten():
    async def scenario():
        intake, consumer = make_intake(assigned={TP(INPUT, 0), TP(INPUT, 1)})
        batch = FetchedBatch({TP(INPUT, 0): [record(INPUT, 0, 0)], TP(INPUT, 1): [record(INPUT, 1, 0)]})
        intake.ack(batch, {TP(INPUT, 0): 1, TP(INPUT, 3): 9})  # partition 3 is not ours: ignored
        finishing = FetchedBatch({TP(INPUT, 1): [record(INPUT, 1, n) for n in range(5)]})
        consumer.taken(finishing)
        committed_during_revoke = []

        async def faust_revoke(revoked):  # the app's handler: waits for the taken batches, then commits
            intake.ack(finishing, next_offsets(finishing.positions()))
            committed_during_revoke.append(
                consumer._filter_committable_offsets(consumer._filter_tps_with_pending_acks()))

        consumer._on_partitions_revoked = faust_revoke
        await consumer.on_partitions_revoked({TP(INPUT, 1)})
        assert committed_during_revoke == [{TP(INPUT, 0): 1, TP(INPUT, 1): 5}]
        consumer.assignment = lambda: {TP(INPUT, 0)}
        assert consumer._filter_committable_offsets(consumer._filter_tps_with_pending_acks()) == {TP(INPUT, 0): 1}
        intake.ack(finishing, {TP(INPUT, 1): 7})  # late, for a partition no longer ours
        assert consumer._filter_committable_offsets(consumer._filter_tps_with_pending_acks()) == {TP(INPUT, 0): 1}

    asyncio.run(scenario())


def test_a_jump_in_another_topics_offsets_records_no_gap():
    # As streams/consumer.py: a jump is not known to be absent from the log, so a
    # commit must not pass over it (the per-message path of the batch consumer too).
    async def scenario():
        intake, consumer = make_intake()
        consumer.app.topics.add(consumer.app.topic(OTHER))  # subscribed, as an agent's topic is: acks enabled
        await consumer.app.topics._update_indices()
        delivered = []

        async def callback(message):
            delivered.append(message)

        consumer.callback = callback
        fetches(consumer, {TP(OTHER, 0): [record(OTHER, 0, 0)]}, {TP(OTHER, 0): [record(OTHER, 0, 10)]})
        await run_drain(consumer, lambda: len(delivered) == 2)
        assert [m.offset for m in delivered] == [0, 10] and not consumer._gap[TP(OTHER, 0)]
        for message in delivered:
            consumer.ack(message)
        assert consumer._new_offset(TP(OTHER, 0)) == 1  # not past 1-9

    asyncio.run(scenario())


async def until(condition, timeout: float = 10.0) -> None:
    """Wait for `condition()` (the machine may be loaded: no fixed sleep)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def _noop_async(*args, **kwargs):
    return None


def test_a_rebalance_cancels_a_pending_put_and_the_batch_is_dropped_unacknowledged():
    async def scenario():
        intake, consumer = make_intake(maxsize=1)
        await intake.channel.put(FetchedBatch({}))  # the agent's queue is full
        fetches(consumer, {TP(INPUT, 0): [record(INPUT, 0, n) for n in range(3)]},
                {TP(INPUT, 0): [record(INPUT, 0, n) for n in range(3, 5)]})
        fetch = consumer._wait_next_records

        async def fetch_while_flowing(timeout):  # as Faust's: no fetch while the flow is stopped
            while consumer.suspend_flow.is_set():
                await asyncio.sleep(0.01)
            return await fetch(timeout)

        consumer._wait_next_records = fetch_while_flowing
        fetcher = FakeFetcher()
        task = asyncio.ensure_future(consumer._drain_messages(fetcher))
        await asyncio.sleep(0.1)
        assert intake.agent_queue.qsize() == 1 and not task.done()  # the put waits for room
        consumer.suspend_flow.set()  # a rebalance: the flow stops, the queues are cleared
        consumer.app.flow_control.suspend()
        consumer.app.flow_control.clear()
        await asyncio.sleep(0.1)
        consumer.suspend_flow.clear()  # and resumes
        consumer.app.flow_control.resume()
        await until(lambda: not intake.agent_queue.empty())
        await asyncio.sleep(0.2)  # time for a late put of the dropped batch, were it still pending
        # The batch whose put was pending is gone (read again from the commit); the
        # next fetch came through.
        batches = []
        while not intake.agent_queue.empty():
            batches.append(intake.agent_queue.get_nowait())
        assert [[r.offset for _, r in b.positions()] for b in batches] == [[3, 4]]
        assert consumer._filter_committable_offsets(consumer._filter_tps_with_pending_acks()) == {}
        fetcher._stopped.set()
        await asyncio.wait_for(task, 2)

    asyncio.run(scenario())


def test_stopping_drops_a_pending_batch_instead_of_hanging():
    async def scenario():
        intake, consumer = make_intake(maxsize=1)
        await intake.channel.put(FetchedBatch({}))
        fetches(consumer, {TP(INPUT, 0): [record(INPUT, 0, 0)]})
        task = asyncio.ensure_future(consumer._drain_messages(FakeFetcher()))
        await asyncio.sleep(0.1)
        consumer.app._stopped.set()  # the app is stopping: a cancelled fetch loop just ends
        task.cancel()
        await asyncio.wait_for(task, 2)
        assert intake.agent_queue.qsize() == 1  # only the batch that was there before

    asyncio.run(scenario())


def test_a_rebalance_waits_for_batches_taken_until_they_are_acknowledged():
    async def scenario():
        intake, consumer = make_intake()
        consumer.commit_and_end_transactions = _noop_async
        taken = FetchedBatch({TP(INPUT, 0): [record(INPUT, 0, 0)]})
        dropped = FetchedBatch({TP(INPUT, 0): [record(INPUT, 0, 1)]})
        await intake.channel.put(taken)
        await intake.channel.put(dropped)

        async def agent_takes_one():
            async for batch in intake.batches(_queue_stream(intake.agent_queue)):
                return batch

        assert await agent_takes_one() is taken
        consumer.app.flow_control.clear()  # the rebalance clears `dropped` from the queue
        waiting = asyncio.ensure_future(consumer.wait_empty())
        await asyncio.sleep(0.2)
        assert not waiting.done()
        intake.ack(taken, {TP(INPUT, 0): 1})
        await asyncio.wait_for(waiting, 2)
        assert consumer._filter_committable_offsets(consumer._filter_tps_with_pending_acks()) == {TP(INPUT, 0): 1}

    asyncio.run(scenario())


def test_a_fetch_that_spans_a_rebalance_is_dropped_without_moving_the_read_offsets():
    async def scenario():
        intake, consumer = make_intake()
        consumer._read_offset[TP(INPUT, 0)] = 10  # the rebalance's seek to the commit
        fetched = []

        async def wait_next_records(timeout):
            if not fetched:
                fetched.append(1)
                consumer.app.consumer_generation_id += 1  # assigned anew while the fetch was out
                return {TP(INPUT, 0): [record(INPUT, 0, n) for n in range(20, 25)]}, None
            await asyncio.sleep(0.01)
            return {}, None

        consumer._wait_next_records = wait_next_records
        await run_drain(consumer, lambda: bool(fetched))
        await asyncio.sleep(0.05)
        assert intake.agent_queue.empty() and consumer._read_offset[TP(INPUT, 0)] == 10

    asyncio.run(scenario())


def test_what_is_fetched_once_the_flow_resumes_after_a_rebalance_is_delivered():
    # The generation is read after the wait for the flow: a first fetch after an
    # assignment is current (dropped, the changelogs' records would stall recovery).
    async def scenario():
        intake, consumer = make_intake()
        consumer.stop_flow()
        fetches(consumer, {TP(INPUT, 0): [record(INPUT, 0, n) for n in range(3)]})

        async def rebalance():
            await asyncio.sleep(0.1)
            consumer.app.consumer_generation_id += 1
            consumer.resume_flow()

        resumed = asyncio.ensure_future(rebalance())
        await run_drain(consumer, lambda: not intake.agent_queue.empty())
        await resumed
        batch = intake.agent_queue.get_nowait()
        assert [r.offset for _, r in batch.positions()] == [0, 1, 2]
        assert batch.generation == consumer.app.consumer_generation_id

    asyncio.run(scenario())


def test_a_batch_reaching_the_agent_once_a_rebalance_began_or_from_an_earlier_generation_is_dropped():
    async def scenario():
        intake, consumer = make_intake()
        app = consumer.app
        app.consumer_generation_id = 3
        old = FetchedBatch({TP(INPUT, 0): [record(INPUT, 0, 0)]}, generation=2)
        during = FetchedBatch({TP(INPUT, 0): [record(INPUT, 0, 1)]}, generation=3)
        current = FetchedBatch({TP(INPUT, 0): [record(INPUT, 0, 2)]}, generation=3)
        got = []

        async def stream():
            yield old
            app.flow_control.suspend()  # the rebalance began: the agent had just taken `during` off the queue
            yield during
            app.flow_control.resume()
            yield current

        async for batch in intake.batches(stream()):
            got.append(batch)
        assert got == [current] and consumer._taken == {current}  # only it is waited for by a rebalance

    asyncio.run(scenario())


async def _queue_stream(queue):
    while True:
        yield await queue.get()


@pytest.mark.parametrize("positions,expected", [
    ([], {}),
    ([(0, 4), (1, 9), (0, 5)], {0: 6, 1: 10}),
])
def test_next_offsets_are_one_past_the_last_record_of_each_partition(positions, expected):
    records = [(tp, record(INPUT, tp, offset)) for tp, offset in positions]
    assert next_offsets(records) == expected
