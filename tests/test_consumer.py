"""supplymon's consumer (streams/consumer.py) on Faust's real fetch loop and commit
bookkeeping: a jump in the delivered offsets (a fetch discarded in a rebalance)
must not let a commit pass over messages not yet processed.

Faust's real consumer runs on a real Faust App; only the fetch (`getmany`) is given
by the test, as no broker runs here (the end-to-end tests run the same consumer on
the embedded broker)."""
from __future__ import annotations

import asyncio

import faust
from aiokafka.structs import ConsumerRecord
from faust.transport.drivers.aiokafka import Consumer as FaustConsumer
from faust.types import TP

import streams.consumer
from streams.consumer import WorkerConsumer

TOPIC = "supply.orders"
PART = TP(TOPIC, 0)


async def make_consumer(consumer_class):
    app = faust.App(f"consumer-test-{consumer_class.__name__}", broker="kafka://127.0.0.1:1",
                    autodiscover=False, web_enabled=False)
    if consumer_class is WorkerConsumer:
        streams.consumer.install(app)
    else:
        app.transport.Consumer = consumer_class
    app.topics.add(app.topic(TOPIC))  # subscribed, as an agent's topic is: acks enabled
    await app.topics._update_indices()
    consumer = app.consumer
    assert type(consumer) is consumer_class
    return consumer


def message(consumer, offset: int):
    record = ConsumerRecord(TOPIC, 0, offset, 1_700_000_000_000 + offset, 0, b"k", b"{}", None, 1, 2, [])
    return consumer._to_message(PART, record)


async def drain(consumer, *fetches: range) -> list:
    """Run Faust's own fetch loop over these fetches (each a range of offsets, given
    as the broker would after the consumer's position); return what it delivered."""
    delivered, pending = [], list(fetches)

    async def getmany(timeout):
        if not pending:
            await asyncio.sleep(0.001)
            return
        for offset in pending.pop(0):
            yield PART, message(consumer, offset)

    async def callback(msg):
        delivered.append(msg)

    class Fetcher:  # the service `_drain_messages` is given: only its stopped flag is read
        def __init__(self) -> None:
            self._stopped = asyncio.Event()

    consumer.getmany = getmany
    consumer.callback = callback
    consumer.flow_active = True
    fetcher = Fetcher()
    task = asyncio.ensure_future(consumer._drain_messages(fetcher))
    while pending and not task.done():
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.01)
    fetcher._stopped.set()
    await task  # raises what stopped the fetch loop, if anything did
    return delivered


def commit(consumer) -> int | None:
    """What a commit does with Faust's bookkeeping: the offset `_new_offset` gives,
    if past the last commit, becomes the committed one."""
    offset = consumer._new_offset(PART)
    if offset is not None and consumer._should_commit(PART, offset):
        consumer._committed_offset[PART] = offset
    return consumer._committed_offset[PART]


async def lost_fetch_then_read_again(consumer_class) -> int | None:
    """Offsets 0-9 processed; 10-19 fetched during a rebalance and discarded; 20-29
    delivered (withheld by the continuity check, not acknowledged); a seek back
    brings 10-14, processed one by one, each followed by two commits (the periodic
    one and a rebalance's can follow each other). Returns the furthest commit."""
    consumer = await make_consumer(consumer_class)
    for msg in await drain(consumer, range(0, 10)):
        consumer.ack(msg)
    assert commit(consumer) == 10
    await drain(consumer, range(20, 30))  # the jump: 10-19 never delivered
    consumer._read_offset[PART] = 10  # what seek_wait sets on the seek back
    furthest = 10
    for msg in await drain(consumer, range(10, 15)):
        consumer.ack(msg)
        furthest = max(furthest, commit(consumer), commit(consumer))
    return furthest


def test_faust_alone_commits_past_messages_read_again_but_not_processed():
    # Why the consumer is changed: Faust takes the jump as offsets absent from the log.
    assert asyncio.run(lost_fetch_then_read_again(FaustConsumer)) == 21


def test_a_jump_in_delivered_offsets_never_lets_a_commit_pass_unprocessed_messages():
    assert asyncio.run(lost_fetch_then_read_again(WorkerConsumer)) == 15


def test_offsets_marked_absent_are_passed_over_once_a_later_one_is_acknowledged():
    async def scenario() -> list:
        consumer = await make_consumer(WorkerConsumer)
        for msg in await drain(consumer, range(0, 10), range(20, 21)):
            if msg.offset < 10:
                consumer.ack(msg)
        commits = [commit(consumer)]
        consumer.ack(message(consumer, 20))
        commits.append(commit(consumer))  # 10-19 not known absent: the commit waits at 10
        await consumer.mark_absent(PART, 10, 19)  # as the continuity check accepts a real gap
        commits.append(commit(consumer))
        return commits

    assert asyncio.run(scenario()) == [10, 10, 21]


def test_a_partition_starts_at_the_groups_commit_else_the_logs_first_offset():
    class Broker:  # the aiokafka consumer on its thread: the broker's answers given by the test
        commits = {0: 42, 1: None}

        def _ensure_consumer(self):
            return self

        async def call_thread(self, function, *args):
            return await function(*args)

        async def committed(self, partition):
            if partition.partition not in self.commits:
                raise ConnectionError("no coordinator")
            return self.commits[partition.partition]

    async def scenario():
        consumer = await make_consumer(WorkerConsumer)
        consumer._thread = Broker()

        async def earliest_offsets(*tps):  # the log's first offset (retention moved it)
            return {tp: 7 for tp in tps}

        consumer.earliest_offsets = earliest_offsets
        return await consumer.start_offsets([TP(TOPIC, 0), TP(TOPIC, 1), TP(TOPIC, 2)])

    # committed: there; nothing committed: the log's start; no answer: left out (read again later)
    assert asyncio.run(scenario()) == {TP(TOPIC, 0): 42, TP(TOPIC, 1): 7}
