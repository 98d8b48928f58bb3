"""Table recovery a fetched batch at a time.

Faust's recovery takes a changelog message at a time: the conductor makes an
Event of it, puts it on the changelog queue, and the recovery loop takes it off
with a timeout (a task per message), checks every partition's remaining count
and buffers it (~100 us per message here: almost five minutes for the 2-3
million entries behind 1,000,000 open orders).

For a `BulkRestoredTable`, the consumer (streams/batches.py) delivers each
changelog partition's records of one fetch as ONE Faust message, a
`BulkMessage`: it carries the last record's offset, key and value, so Faust's
recovery counts its offsets and sees its end exactly as it would, and all the
records in `records`, which the table's `apply_changelog_batch` writes into its
store in offset order. The loop hands each event to the table at once
(`recovery_buffer_size=1`), so no older event is ever applied after a newer one.
A record the recovery already read (offset at or below its seen offset) is
never in a delivered bulk: the whole message would be skipped by Faust if its
last offset were seen, and records before the consumer's read offset are
dropped before the message is made.

Relies on faust-streaming internals (pinned; tests/test_bulk_restore.py): the
recovery loop applies `table.apply_changelog_batch(buffer)` with each event's
`message`; the memory store keeps `data` and `_key_partition`.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import faust
from faust.serializers import codecs
from faust.types.tuples import ConsumerMessage


class BulkMessage(ConsumerMessage):
    """One changelog partition's records of a fetch, as one Faust message."""

    __slots__ = ("records",)

    @classmethod
    def of(cls, tp: Any, records: Sequence, generation: int) -> "BulkMessage":
        last = records[-1]
        message = cls(last.topic, last.partition, last.offset,
                      None if last.timestamp is None else last.timestamp / 1000.0, last.timestamp_type,
                      last.headers, last.key, last.value, last.checksum, last.serialized_key_size,
                      last.serialized_value_size, tp, generation_id=generation)
        message.records = records
        return message


class BulkRestoredTable(faust.Table):
    """A memory-store table whose recovery applies a `BulkMessage`'s records at once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("recovery_buffer_size", 1)  # each bulk applied as it comes (see above)
        super().__init__(*args, **kwargs)

    def apply_changelog_batch(self, batch: Iterable[Any]) -> None:
        for event in batch:
            records = getattr(event.message, "records", None)
            if records is None:
                super().apply_changelog_batch([event])
            else:
                self.apply_records(records)

    def apply_records(self, records: Iterable[Any]) -> None:
        """Changelog records (key and value bytes, `None` deletes) into the store, as
        Faust's memory store applies them, noting each key's partition."""
        store = self.data
        data, noted = store.data, store._key_partition
        key_codec, value_codec = codecs.get_codec(self.key_serializer), codecs.get_codec(self.value_serializer)
        load_key, load_value = key_codec.loads, value_codec.loads
        for record in records:
            key = load_key(record.key)
            if record.value is None:
                data.pop(key, None)
                noted.pop(key, None)
            else:
                data[key] = load_value(record.value)
                noted[key] = record.partition


def bulk_topics(app: Any) -> frozenset[str]:
    """The changelog topics of the app's bulk-restored tables."""
    return frozenset(table.changelog_topic.get_topic_name() for table in app.tables.values()
                     if isinstance(table, BulkRestoredTable))
