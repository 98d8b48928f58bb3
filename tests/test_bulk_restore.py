"""Table recovery a fetched batch at a time (streams/bulk_restore.py): a bulk-restored
table's changelog records of one fetch reach Faust's recovery as one message and
are applied in offset order. A real Faust app, table and memory store; the fetch is
given by the test (tests/test_batches.py's harness). The restart, takeover and
two-worker tests run the same path through Faust's real recovery on the embedded
broker."""
from __future__ import annotations

import asyncio
import dataclasses
import inspect

import faust
import orjson
from faust.stores.memory import Store as MemoryStore
from faust.tables.recovery import Recovery
from faust.types import TP

import streams.codecs  # noqa: F401  (the str and orjson codecs)
from streams.bulk_restore import BulkMessage, BulkRestoredTable, bulk_topics
from tests.test_batches import INPUT, OTHER, fetches, make_intake, record, run_drain


def _table(app, name: str, value_serializer: str) -> BulkRestoredTable:
    table = BulkRestoredTable(app, name=name, beacon=app.tables.beacon, partitions=2,
                              changelog_topic=app.topic(f"{name}-changelog", key_serializer="str",
                                                        value_serializer=value_serializer, partitions=2,
                                                        internal=True))
    table.key_serializer, table.value_serializer = "str", value_serializer
    app.tables.add(table)
    return table


class Event:
    """What Faust's recovery hands a table: an event with its message."""

    def __init__(self, message, key=None, value=None):
        self.message, self.key, self.value = message, key, value


def changelog_record(topic: str, partition: int, offset: int, key: str, value: bytes | None):
    r = record(topic, partition, offset)
    return dataclasses.replace(r, key=key.encode(), value=value)


def test_faust_recovery_internals_the_bulk_path_relies_on_are_unchanged():
    slurp = inspect.getsource(Recovery._slurp_changelogs.fun)
    # Each event's offset is compared with the seen one, buffered, and the buffer is
    # applied once it holds the table's recovery_buffer_size events.
    assert "offset > seen_offset" in slurp and "table.recovery_buffer_size" in slurp
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


def test_a_bulk_is_applied_in_offset_order_with_deletes_and_each_keys_partition():
    app = faust.App("bulk-test", broker="kafka://127.0.0.1:1", autodiscover=False, web_enabled=False)
    table = _table(app, "warnings", "orjson")
    assert table.recovery_buffer_size == 1  # each bulk applied as Faust's loop hands it over
    topic = table.changelog_topic.get_topic_name()
    first = [changelog_record(topic, 1, 0, "a", orjson.dumps([1])), changelog_record(topic, 1, 1, "b", b"{}"),
             changelog_record(topic, 1, 2, "a", orjson.dumps([2])), changelog_record(topic, 1, 3, "b", None)]
    table.apply_changelog_batch([Event(BulkMessage.of(TP(topic, 1), first, 1))])
    store = table.data
    assert dict(store.data) == {"a": [2]} and store._key_partition == {"a": 1}
    # A message of Faust's own per-message path (a fetch of one record) still applies as Faust does.
    single = changelog_record(topic, 0, 7, "c", orjson.dumps({"n": 3}))
    message = app.consumer._to_message(TP(topic, 0), single)
    table.apply_changelog_batch([Event(message, key="c", value={"n": 3})])
    assert dict(store.data) == {"a": [2], "c": {"n": 3}} and store._key_partition == {"a": 1, "c": 0}
    # Deleted, written again, deleted: the last record decides.
    again = [changelog_record(topic, 0, 8, "b", orjson.dumps(5)), changelog_record(topic, 0, 9, "c", None)]
    table.apply_changelog_batch([Event(BulkMessage.of(TP(topic, 0), again, 1))])
    assert dict(store.data) == {"a": [2], "b": 5} and store._key_partition == {"a": 1, "b": 0}
