"""Table changes written a batch at a time (streams/changelog.py), on the embedded
broker: every change reaches its partition, the store and the persisted offsets
follow, and the broker's end offsets (what Faust's recovery reads up to) cover
every message although the embedded broker counts only a last batch's first record."""
from __future__ import annotations

import asyncio

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.types import TP

from streams.changelog import BatchedChangelog
from streams.producer import BatchProducer
from supplymon.embedded import EmbeddedBroker
from supplymon.publish import ensure_topics
from supplymon.settings import Settings

TOPIC = "supply.alerts"  # any topic ensure_topics creates with 4 partitions will do


class Store(dict):
    """A table's store as BatchedChangelog uses it (Faust's memory store is a dict too)."""

    def __init__(self):
        super().__init__()
        self.persisted: dict = {}

    def set_persisted_offset(self, tp, offset: int) -> None:
        self.persisted[tp] = offset


class Table:
    """Stands in for a Faust table: its store and its changelog topic's name."""

    def __init__(self):
        self.data = Store()
        self.changelog_topic = type("Topic", (), {"get_topic_name": staticmethod(lambda: TOPIC)})()


async def _write_and_read(url: str) -> tuple[Table, list, dict, dict]:
    settings = Settings.from_env({}).with_embedded_broker(url)
    producer = BatchProducer(settings)
    table = Table()
    changelog = BatchedChangelog(table, producer, lambda key: int(key[1:]) % 4, orjson.dumps)
    try:
        await changelog.write({f"k{n}": {"v": n} for n in range(1000)})
        await changelog.write({f"k{n}": None for n in range(0, 1000, 10)} | {"k1": {"v": -1}})
    finally:
        await producer.stop()
    messages, ends, read_to = await _read_topic(url)
    return table, messages, ends, read_to


async def _read_topic(url: str) -> tuple[list, dict, dict]:
    """Every message of TOPIC's 4 partitions, its end offsets (ListOffsets) and the
    highwaters the reads saw."""
    consumer = AIOKafkaConsumer(bootstrap_servers=url.split("://")[-1], auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(TOPIC, p) for p in range(4)]
        consumer.assign(tps)
        messages = []
        while batch := await consumer.getmany(timeout_ms=1000):
            messages += [m for ms in batch.values() for m in ms]
        return messages, await consumer.end_offsets(tps), {tp: consumer.highwater(tp) for tp in tps}
    finally:
        await consumer.stop()


def test_batched_changes_reach_the_changelog_whole_and_its_end_offsets_cover_them():
    with EmbeddedBroker() as broker:
        settings = Settings.from_env({}).with_embedded_broker(broker.url)
        ensure_topics(settings)
        table, messages, ends, read_to = asyncio.run(_write_and_read(broker.url))
    latest = {}
    for m in sorted(messages, key=lambda m: (m.partition, m.offset)):
        assert int(m.key.decode()[1:]) % 4 == m.partition
        latest[m.key.decode()] = None if m.value is None else orjson.loads(m.value)
    want = {f"k{n}": ({"v": -1} if n == 1 else None if n % 10 == 0 else {"v": n}) for n in range(1000)}
    assert latest == want
    assert dict(table.data) == {k: v for k, v in want.items() if v is not None}
    # ListOffsets (Faust's recovery highwater) equals what was really written.
    assert {tp.partition: end for tp, end in ends.items()} == {tp.partition: end for tp, end in read_to.items()}
    assert sum(ends.values()) == len(messages) == 1000 + 101
    assert table.data.persisted == {TP(TOPIC, tp.partition): end - 1 for tp, end in ends.items()}


def test_the_reader_sees_what_the_faust_table_sees():
    """The lifecycle agent reads order states through `reader()` (the store's own dict
    for Faust's memory store), not Faust's Table.get: the same values either way."""
    from streams.app import order_changelog, order_state
    store = order_state.data
    try:
        store["O-1"] = b'{"x":1}'
        read = order_changelog.reader()
        assert read("O-1") == order_state.get("O-1") == b'{"x":1}'
        assert read("O-2") is None and order_state.get("O-2") is None
    finally:
        store.pop("O-1", None)


def test_a_write_waits_for_an_absent_broker_and_delivers_when_it_comes():
    """Kafka away: the write is sent again (with backoff) until delivered, never given
    up on (its batch stays unacknowledged meanwhile), and the retries are counted."""
    from supplymon import metrics
    from supplymon.embedded import free_port

    port = free_port("127.0.0.1")
    url = f"kafka://127.0.0.1:{port}"

    def retries() -> float:
        return metrics.REGISTRY.get_sample_value("supplymon_sink_retries_total", {"table": TOPIC}) or 0.0

    before = retries()

    async def write_while_the_broker_starts() -> Table:
        settings = Settings.from_env({}).with_embedded_broker(url)
        producer, table = BatchProducer(settings), Table()
        changelog = BatchedChangelog(table, producer, lambda key: int(key[1:]) % 4, orjson.dumps)
        write = asyncio.create_task(changelog.write({f"k{n}": {"v": n} for n in range(10)}))
        await asyncio.sleep(2.0)
        assert not write.done()  # no broker yet: still trying
        with EmbeddedBroker(port=port) as broker:
            ensure_topics(Settings.from_env({}).with_embedded_broker(broker.url))
            try:
                await asyncio.wait_for(write, timeout=60)
            finally:
                await producer.stop()
        return table

    table = asyncio.run(write_while_the_broker_starts())
    assert retries() > before
    assert len(table.data.persisted) == 4 and sum(o + 1 for o in table.data.persisted.values()) == 10


def test_entries_of_partitions_no_longer_held_are_dropped():
    table = Table()
    changelog = BatchedChangelog(table, None, lambda key: int(key[1:]) % 4, orjson.dumps)
    table.data.update({f"k{n}": n for n in range(12)})
    assert changelog.keep_only({1, 3}) == 6
    assert sorted(table.data) == sorted(f"k{n}" for n in range(12) if n % 4 in (1, 3))


def test_a_store_whose_owner_holds_the_state_is_emptied_with_what_recovery_noted():
    """`clear()` on the Faust table's own memory store: the entries recovery put there
    and its note of their partitions are gone (the early warnings hold that state)."""
    from streams.app import warning_changelog, warning_state

    store = warning_state.data
    for n in range(5):  # as Faust's recovery leaves them
        store[f"m:M{n}|o:O{n}"] = [n]
        store._key_partition[f"m:M{n}|o:O{n}"] = n % 4
    assert warning_changelog.clear() == 5
    assert not list(store.keys()) and not store._key_partition



def test_changes_not_held_take_what_recovery_read_back_out_of_the_store():
    """`hold=False`: the owner holds the state; an entry recovery read back for a key
    the batch changed (or deleted) is taken out, so a rebalance cannot restore it
    over the owner's newer state; nothing is added to the store."""
    class Delivered(BatchedChangelog):
        async def _deliver(self, topic, by_partition):
            self.delivered = {p: list(m) for p, m in by_partition.items()}

    table = Table()
    changelog = Delivered(table, None, lambda key: int(key[1:]) % 4, orjson.dumps)
    table.data.update({"k1": 1, "k2": 2})  # read back by recovery, not taken by the owner yet
    asyncio.run(changelog.write({"k1": None, "k2": {"v": 3}, "k5": {"v": 5}}, hold=False))
    assert dict(table.data) == {}
    assert changelog.delivered == {1: [(b"k1", None), (b"k5", b'{"v":5}')], 2: [(b"k2", b'{"v":3}')]}
    asyncio.run(changelog.write({"k6": {"v": 6}}, hold=False))
    assert dict(table.data) == {}
