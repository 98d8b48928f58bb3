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
records in `records`. The table writes them into its store, in offset order, as
the loop hands the message over (`on_changelog_event`; the values' bytes, decoded
by the owner), so no older record is ever applied after a newer one. A record
the recovery already read is never in a delivered bulk: Faust skips a message
whose last offset it has seen, and the consumer drops the records before its read
offset. Once recovery is complete, what it read is moved out of the store into
a few large buffers (`Recovered`), from which the owner rebuilds its state.

Relies on faust-streaming internals (pinned; tests/test_bulk_restore.py): the
recovery loop calls `table.on_changelog_event(event)` for each event it has not
seen, and `apply_changelog_batch` on its buffer; the memory store keeps `data`
and `_key_partition`.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Sequence

import faust
import numpy as np
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
    """A memory-store table whose recovery applies a `BulkMessage`'s records at once
    and, once complete, is moved out of the store into `recovered` (see `Recovered`).
    While recovery runs its store holds the values' bytes as read; the owner decodes
    them with the table's value codec (`value_loads`) as it rebuilds its state."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recovered: list[Recovered] = []  # oldest first, until the owner takes them

    @property
    def value_loads(self) -> Callable[[bytes], Any]:
        """The table's value codec's decoder (looked up once per read-back, not per entry)."""
        return codecs.get_codec(self.value_serializer).loads

    async def on_changelog_event(self, event: Any) -> None:
        """The recovery loop hands over each event it has not seen: applied now, in
        order, and a bulk's records let go (the loop keeps its events in a buffer until
        `recovery_buffer_size` of them, which would hold whole fetches)."""
        message = event.message
        records = getattr(message, "records", None)
        self.apply_records((message,) if records is None else records)
        if records is not None:
            message.records = ()
        await super().on_changelog_event(event)

    def apply_changelog_batch(self, batch: Iterable[Any]) -> None:
        """Nothing left to do: each event was applied as it came (`on_changelog_event`).
        (Not `recovery_buffer_size=1` instead: Faust then keeps reading the changelog
        into the store after recovery, a second copy of the state.)"""

    def apply_records(self, records: Iterable[Any]) -> None:
        """Changelog records (key and value bytes, `None` deletes) into the store, as
        Faust's memory store applies them, noting each key's partition."""
        store = self.data
        data, noted = store.data, store._key_partition
        load_key = codecs.get_codec(self.key_serializer).loads
        for record in records:
            key = load_key(record.key)
            if record.value is None:
                data.pop(key, None)
                noted.pop(key, None)
            else:
                data[key] = record.value
                noted[key] = record.partition

    async def on_recovery_completed(self, active_tps: Any, standby_tps: Any) -> None:
        await super().on_recovery_completed(active_tps, standby_tps)  # the memory store drops other partitions
        store = self.data
        if len(store.data):
            self.recovered.append(Recovered.take(store.data, store._key_partition))


ENTRIES_AT_ONCE = 65_536


class Recovered:
    """What a recovery read back into a table's store, moved out of it into a few
    large buffers once recovery is complete (`take`), before any agent rebuilds its
    state from it.

    Why: recovery fills the store with millions of small objects (a key string and a
    value per entry) among as many temporaries. An agent that rebuilt its state
    straight from the store would make its long-lived objects (order ids, records)
    in the holes among them, so that emptying the store afterwards freed almost no
    arena of Python's allocator: a restarted worker held twice the memory of one
    that had read the same orders. Moved into buffers, the store's objects are all
    freed before the state is built (bench/RESULTS.md: what is left)."""

    __slots__ = ("keys", "key_ends", "values", "value_ends", "partitions", "kept")

    def __init__(self, keys: bytearray, key_ends: np.ndarray, values: np.ndarray, value_ends: np.ndarray,
                 partitions: np.ndarray):
        self.keys, self.key_ends, self.values, self.value_ends = keys, key_ends, values, value_ends
        self.partitions = partitions  # each entry's changelog partition (-1: not noted)
        self.kept = np.ones(len(partitions), dtype=bool)

    @classmethod
    def take(cls, data: dict, noted: dict) -> "Recovered":
        """Every entry of a memory store's `data` (str keys, bytes values) with its
        noted partition, the store left empty."""
        count = len(data)
        # the values (most of the bytes) sized first and filled in place: no buffer
        # grown by doubling, no final copy; the keys, small, appended. Not a
        # bytearray: that is zero-filled, all of it resident at once beside the whole
        # store; numpy's pages are touched as they are filled, while the entries
        # copied are freed.
        keys = bytearray()
        buffer = np.empty(sum(map(len, data.values())), dtype=np.uint8)
        values = memoryview(buffer)
        key_ends = np.empty(count, dtype=np.int64)
        value_ends = np.empty(count, dtype=np.int64)
        partitions = np.empty(count, dtype=np.int32)
        value_at = 0
        # In the store's order (the changelog's: records come back mostly in time order,
        # which the early warnings' columns take by appending), each entry freed as it
        # is copied: no second copy at the peak.
        for i, key in enumerate(list(data)):
            value = data.pop(key)
            keys += key.encode()
            values[value_at:value_at + len(value)] = value
            value_at += len(value)
            key_ends[i], value_ends[i] = len(keys), value_at
            partitions[i] = noted.pop(key, -1)
        noted.clear()
        return cls(keys, key_ends, buffer, value_ends, partitions)

    def __len__(self) -> int:
        return int(self.kept.sum())

    def keep_only(self, partitions: set[int], partition_of: Callable[[str], int]) -> int:
        """Leave out the entries of other partitions than `partitions`; how many."""
        before = len(self)
        noted = self.partitions >= 0
        self.kept &= ~noted | np.isin(self.partitions, np.fromiter(partitions, dtype=np.int64))
        for i in np.flatnonzero(self.kept & ~noted).tolist():
            self.kept[i] = partition_of(self._key(i)) in partitions
        return before - len(self)

    def entries(self) -> Iterator[tuple[str, bytes, int]]:
        """(key, value bytes, partition or -1) of each entry kept, in the order taken.
        The offsets are made Python ints ENTRIES_AT_ONCE at a time: all at once, they
        were ~200 MB of temporaries at the peak of a rebuild of 2,000,000 entries."""
        keys, values = memoryview(self.keys), memoryview(self.values)
        kept = np.flatnonzero(self.kept)
        for chunk in range(0, len(kept), ENTRIES_AT_ONCE):
            rows = kept[chunk:chunk + ENTRIES_AT_ONCE]
            key_starts, value_starts = self._starts(self.key_ends, rows), self._starts(self.value_ends, rows)
            for key_start, key_end, value_start, value_end, partition in zip(
                    key_starts.tolist(), self.key_ends[rows].tolist(), value_starts.tolist(),
                    self.value_ends[rows].tolist(), self.partitions[rows].tolist()):
                yield str(keys[key_start:key_end], "utf-8"), values[value_start:value_end].tobytes(), partition

    @staticmethod
    def _starts(ends: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Where each of these entries begins: where the one before it ends."""
        return np.where(rows > 0, ends[np.maximum(rows - 1, 0)], 0)

    def _key(self, i: int) -> str:
        return self.keys[self.key_ends[i - 1] if i else 0:self.key_ends[i]].decode()


def bulk_topics(app: Any) -> frozenset[str]:
    """The changelog topics of the app's bulk-restored tables."""
    return frozenset(table.changelog_topic.get_topic_name() for table in app.tables.values()
                     if isinstance(table, BulkRestoredTable))
