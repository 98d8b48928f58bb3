"""Table recovery a fetched batch at a time (streams/bulk_restore.py): a bulk-restored
table's changelog records of one fetch reach Faust's recovery as one message and
are applied in offset order. A real Faust app, table and memory store; the fetch is
given by the test (tests/test_batches.py's harness). The restart, takeover and
two-worker tests run the same path through Faust's real recovery on the embedded
broker."""
from __future__ import annotations

import asyncio
import mmap
import random
import dataclasses
import inspect

import faust
import pytest
import orjson
from faust.stores.memory import Store as MemoryStore
from faust.tables.recovery import Recovery
from faust.types import TP

import streams.codecs  # noqa: F401  (the str and orjson codecs)
from streams import bulk_restore
from streams.bulk_restore import BulkMessage, BulkRestoredTable, bulk_topics
from streams.changelog import BatchedChangelog
from streams.producer import BatchProducer
from supplymon.embedded import EmbeddedBroker
from supplymon.publish import ensure_topics
from supplymon.settings import Settings
from tests.test_batches import INPUT, OTHER, fetches, make_intake, record, run_drain
from tests.test_changelog import TOPIC


def _table(app, name: str, value_serializer: str, topic: str | None = None) -> BulkRestoredTable:
    table = BulkRestoredTable(app, name=name, beacon=app.tables.beacon, partitions=2,
                              changelog_topic=app.topic(topic or f"{name}-changelog", key_serializer="str",
                                                        value_serializer=value_serializer, partitions=2,
                                                        internal=True))
    table.key_serializer, table.value_serializer = "str", value_serializer
    app.tables.add(table)
    return table


class Event:
    """What Faust's recovery hands a table: an event with its message."""

    def __init__(self, message):
        self.message = message


def _hand_over(table, message) -> None:
    """As Faust's recovery loop does with an event it has not seen: handed to the
    table, buffered, and the buffer applied later."""
    event = Event(message)
    asyncio.run(table.on_changelog_event(event))
    table.apply_changelog_batch([event])  # nothing left to apply
    assert getattr(message, "records", ()) == ()  # a bulk's records let go


def changelog_record(topic: str, partition: int, offset: int, key: str, value: bytes | None):
    r = record(topic, partition, offset)
    return dataclasses.replace(r, key=key.encode(), value=value)


def test_faust_recovery_internals_the_bulk_path_relies_on_are_unchanged():
    slurp = inspect.getsource(Recovery._slurp_changelogs.fun)
    # An event not seen yet (its offset past the seen one) is buffered and handed to
    # the table at once; the buffer is applied later, in batches.
    assert "offset > seen_offset" in slurp
    assert slurp.index("offset > seen_offset") < slurp.index("await table.on_changelog_event(event)")
    assert "table.apply_changelog_batch(buf)" in slurp
    assert "_key_partition" in inspect.getsource(MemoryStore.apply_changelog_batch)


def test_a_changelog_fetch_of_a_bulk_restored_table_is_one_message_carrying_every_fresh_record():
    async def scenario():
        intake, consumer = make_intake(assigned={TP(INPUT, 0), TP("orders-changelog", 0), TP(OTHER, 0)})
        table = _table(consumer.app, "orders", "raw")
        assert bulk_topics(consumer.app) == {table.changelog_topic.get_topic_name()}
        delivered = []

        async def callback(message):
            delivered.append(message)

        consumer.callback = callback
        consumer._read_offset[TP("orders-changelog", 0)] = 2  # read up to 2 before a seek back
        fetches(consumer, {
            TP("orders-changelog", 0): [changelog_record("orders-changelog", 0, n, f"o{n}", b"v") for n in range(5)],
            TP(OTHER, 0): [record(OTHER, 0, 0), record(OTHER, 0, 1)],
        })
        await run_drain(consumer, lambda: len(delivered) == 3)
        bulk, *others = delivered
        assert isinstance(bulk, BulkMessage) and (bulk.topic, bulk.partition, bulk.offset) == ("orders-changelog", 0, 4)
        assert bulk.key == b"o4" and [r.offset for r in bulk.records] == [2, 3, 4]
        assert [(m.topic, m.offset) for m in others] == [(OTHER, 0), (OTHER, 1)]
        assert not any(isinstance(m, BulkMessage) for m in others)
        assert consumer._read_offset[TP("orders-changelog", 0)] == 4

    asyncio.run(scenario())


def test_the_latest_record_of_each_key_is_its_entry_once_recovery_completes():
    """Recovery keeps the records as read (a bulk, or Faust's own message of one); once
    complete, each key's latest record is its entry, with its partition, unless it
    deletes the key or its partition is no longer active; nothing is in the store."""
    app = faust.App("bulk-test", broker="kafka://127.0.0.1:1", autodiscover=False, web_enabled=False)
    table = _table(app, "warnings", "orjson")
    # Not 1: Faust would then keep reading the changelog into the store after recovery.
    assert table.recovery_buffer_size == 1000
    topic = table.changelog_topic.get_topic_name()
    first = [changelog_record(topic, 1, 0, "a", orjson.dumps([1])), changelog_record(topic, 1, 1, "b", b"{}"),
             changelog_record(topic, 1, 2, "a", orjson.dumps([2])), changelog_record(topic, 1, 3, "b", None)]
    _hand_over(table, BulkMessage.of(TP(topic, 1), first, 1))
    _hand_over(table, app.consumer._to_message(TP(topic, 0), changelog_record(topic, 0, 7, "c", b'{"n":3}')))
    # deleted, written again; written, deleted: the last record decides
    again = [changelog_record(topic, 0, 8, "b", orjson.dumps(5)), changelog_record(topic, 0, 9, "c", None),
             changelog_record(topic, 2, 0, "d", b"1")]
    _hand_over(table, BulkMessage.of(TP(topic, 0), again, 1))
    assert not table.data.data and not table.recovered
    asyncio.run(table.on_recovery_completed({TP(topic, 0), TP(topic, 1)}, set()))  # partition 2 not active
    (recovered,) = table.recovered
    assert [(key, orjson.loads(value), partition) for key, value, partition in recovered.entries()] == [
        ("a", [2], 1), ("b", 5, 0)]
    assert not table.data.data and not table._read


@pytest.mark.parametrize("mapped_from,compact_from", [(1 << 16, 1_000_000), (1, 500)])
def test_keys_are_told_apart_by_their_bytes_whatever_their_lengths(mapped_from, compact_from, monkeypatch):
    """Many keys of the same lengths, in many blocks, each written a few times: the
    latest of each is its entry (a key is known by its length and two hashes); the
    blocks' values in memory of their own or not; what was read compacted to the
    latest of each key as it grows, or only once complete."""
    monkeypatch.setattr(bulk_restore, "MAPPED_FROM", mapped_from)
    monkeypatch.setattr(bulk_restore, "COMPACT_FROM", compact_from)
    app = faust.App("bulk-test", broker="kafka://127.0.0.1:1", autodiscover=False, web_enabled=False)
    table = _table(app, "orders", "raw")
    topic = table.changelog_topic.get_topic_name()
    rnd = random.Random(3)
    keys = sorted({"".join(rnd.choice("ab值") for _ in range(rnd.randrange(1, 9))) for _ in range(3000)})
    latest: dict[str, bytes | None] = {}
    offset, most = 0, 0
    for _ in range(40):
        chunk = []
        for key in rnd.sample(keys, 200):
            value = None if rnd.random() < 0.2 else str(offset).encode()
            chunk.append(changelog_record(topic, 0, offset, key, value))
            latest[key] = value
            offset += 1
        table.apply_records(chunk)
        most = max(most, table._records_read)
    assert most == offset if compact_from > offset else most < 2 * len(keys) + 200
    asyncio.run(table.on_recovery_completed({TP(topic, 0)}, set()))
    assert {key: value for key, value, _ in table.recovered[0].entries()} == {
        key: value for key, value in latest.items() if value is not None}
    assert all(isinstance(block.values, mmap.mmap) == (mapped_from == 1) for block in table.recovered[0].blocks)


def _recovered_table(entries: dict[str, tuple[int, object]], settings: Settings | None = None, at_once: int = 1):
    """A bulk-restored table whose recovery read `entries` (key -> (partition, value))
    and completed, and its BatchedChangelog (writing to TOPIC on the `settings`' broker)."""
    app = faust.App("bulk-test", broker="kafka://127.0.0.1:1", autodiscover=False, web_enabled=False)
    table = _table(app, "warnings", "orjson", TOPIC)
    records = [changelog_record(TOPIC, partition, n, key, orjson.dumps(value))
               for n, (key, (partition, value)) in enumerate(entries.items())]
    for start in range(0, len(records), at_once):  # as recovery reads them: a fetch at a time
        table.apply_records(records[start:start + at_once])
    asyncio.run(table.on_recovery_completed({TP(TOPIC, 0), TP(TOPIC, 1)}, set()))
    producer = BatchProducer(settings or Settings.from_env({}))
    return table, BatchedChangelog(table, producer, lambda key: 1, orjson.dumps)


@pytest.mark.parametrize("at_once", [1000, 7])
def test_once_recovery_completes_what_it_read_is_read_back_decoded(at_once):
    entries = {f"k{n}": (n % 2, {"n": n, "s": "值" * (n % 3)}) for n in range(1000)}
    table, changelog = _recovered_table(entries, at_once=at_once)
    assert not table.data.data and not table.data._key_partition  # nothing in the store
    assert len(table.recovered) == 1 and len(table.recovered[0]) == 1000
    # read back in the order recovery read them (the early warnings' columns append records in time order)
    assert [(key, (partition, value)) for key, value, partition in changelog.items()] == list(entries.items())
    # Partitions no longer held are left out; cleared once the owner holds the state.
    assert changelog.keep_only({0}) == 500
    assert {key for key, _, _ in changelog.items()} == {f"k{n}" for n in range(0, 1000, 2)}
    # the few entries a rebuild reads first, found in the key buffers: as items() gives them
    found = sorted(changelog.items_ending_with("8"))
    assert found == sorted((key, value) for key, value, _ in changelog.items() if key.endswith("8"))
    assert len(found) == 100 and not list(changelog.items_ending_with("7"))  # the odd ones are left out
    # read once by the owner rebuilding its state: each block let go as it is read
    taken = table.recovered[0]
    read = changelog.items(consume=True)
    assert next(read)[0] == "k0"
    assert taken.blocks[0] is not None
    assert len([key for key, _, _ in read]) == 499
    assert taken.blocks == [None] * -(-1000 // at_once)
    with pytest.raises(ValueError, match="let go already"):
        list(changelog.items())
    assert changelog.clear() == 500 and not table.recovered and list(changelog.items()) == []


def test_a_key_written_since_recovery_is_not_read_back_from_it_and_a_later_recovery_wins():
    with EmbeddedBroker() as broker:
        settings = Settings.from_env({}).with_embedded_broker(broker.url)
        ensure_topics(settings)
        table, changelog = _recovered_table({"a": (0, 1), "b": (1, 2), "c": (0, 3)}, settings)

        async def write() -> None:
            try:  # as the owner writes its states: not held in the store
                await changelog.write({"b": {"new": True}}, hold=False)
                with pytest.raises(ValueError, match="store holds nothing"):
                    await changelog.write({"c": {"held": True}})
            finally:
                await changelog.producer.stop()

        asyncio.run(write())
    assert sorted((key, value) for key, value, _ in changelog.items()) == [("a", 1), ("c", 3)]  # b's is stale
    table.apply_records([changelog_record(TOPIC, 0, 9, "a", b"10")])  # a second recovery, before the owner took the first
    asyncio.run(table.on_recovery_completed({TP(TOPIC, 0)}, set()))
    assert sorted((key, value) for key, value, _ in changelog.items()) == [("a", 10), ("c", 3)]
    changelog.clear()
    assert list(changelog.items()) == [] and not changelog._written


@pytest.mark.parametrize("drop", ["rebalance", "flow stopped"])
def test_changelog_records_a_fetch_drops_are_read_again_from_where_recovery_is(drop):
    """A fetch that spanned a rebalance (or returned once the flow stopped) is dropped,
    but the consumer's position has passed its records: a changelog partition that a
    recovery still reads is sought back to the offset after the last one it has seen
    (else the recovery waits for them for ever); input partitions are left to the
    rebalance's own seek."""
    async def scenario():
        intake, consumer = make_intake(assigned={TP(INPUT, 0), TP("orders-changelog", 0)})
        table = _table(consumer.app, "orders", "raw")
        changelog = TP(table.changelog_topic.get_topic_name(), 0)
        recovery = consumer.app.tables.recovery
        recovery.active_tps.add(changelog)
        recovery.active_offsets[changelog] = 2  # applied up to offset 2
        recovery._set_recovery_started()
        sought, delivered = [], []

        async def seek_wait(offsets):
            sought.append(dict(offsets))

        async def callback(message):
            delivered.append(message)

        async def seek_back():
            pass

        consumer.seek_wait, consumer.callback, consumer._seek_back = seek_wait, callback, seek_back
        fetched = {changelog: [changelog_record(changelog.topic, 0, n, f"o{n}", b"v") for n in range(3, 8)],
                   TP(INPUT, 0): [record(INPUT, 0, 0)]}
        pending = [fetched]

        async def wait_next_records(timeout):
            if pending:
                if drop == "rebalance":
                    consumer.app.consumer_generation_id += 1  # while the fetch was under way
                else:  # stopped by a rebalance starting, resumed once it has
                    consumer.flow_active = False
                    asyncio.get_running_loop().call_later(0.05, consumer.resume_flow)
                return pending.pop(0), None
            await asyncio.sleep(0.01)
            return {}, None

        consumer._wait_next_records = wait_next_records
        await run_drain(consumer, lambda: bool(sought))
        assert sought == [{changelog: 3}] and not delivered and intake.agent_queue.empty()
        # Once recovery is over, nothing waits for a changelog's records: no seek.
        recovery._set_recovery_ended()
        sought.clear()
        pending.append(fetched)
        await run_drain(consumer, lambda: not pending)
        assert sought == []

    asyncio.run(scenario())
