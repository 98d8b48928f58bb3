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

import mmap
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


ENTRIES_AT_ONCE = 65_536  # entries a block of `Recovered` holds


class _Block:
    """Up to ENTRIES_AT_ONCE entries: their keys and their values in two buffers, and
    where each entry ends in each. The values are an anonymous mmap: given back to
    the system the moment the block is let go (`Recovered.entries(consume=True)`),
    whatever the allocator does with smaller blocks."""

    __slots__ = ("keys", "key_ends", "values", "value_ends")

    def __init__(self, data: dict, names: list, partitions: np.ndarray, noted: dict):
        """Moves these keys' entries out of `data` (each freed as it is copied: no
        second copy at the peak), their noted partitions into `partitions`."""
        self.values = mmap.mmap(-1, max(1, sum(len(data[name]) for name in names)))
        keys = bytearray()
        self.key_ends = np.empty(len(names), dtype=np.int64)
        self.value_ends = np.empty(len(names), dtype=np.int64)
        at = 0
        for i, name in enumerate(names):
            value = data.pop(name)
            keys += name.encode()
            self.values[at:at + len(value)] = value
            at += len(value)
            self.key_ends[i], self.value_ends[i] = len(keys), at
            partitions[i] = noted.pop(name, -1)
        self.keys = bytes(keys)

    def __len__(self) -> int:
        return len(self.key_ends)

    def entries(self, rows: np.ndarray, partitions: np.ndarray) -> Iterator[tuple[str, bytes, int]]:
        key_starts, value_starts = _starts(self.key_ends, rows), _starts(self.value_ends, rows)
        keys, values = memoryview(self.keys), self.values
        for key_start, key_end, value_start, value_end, partition in zip(
                key_starts.tolist(), self.key_ends[rows].tolist(), value_starts.tolist(),
                self.value_ends[rows].tolist(), partitions.tolist()):
            yield str(keys[key_start:key_end], "utf-8"), values[value_start:value_end], partition

    def key(self, i: int) -> str:
        return self.keys[self.key_ends[i - 1] if i else 0:self.key_ends[i]].decode()

    def value(self, i: int) -> bytes:
        return self.values[self.value_ends[i - 1] if i else 0:self.value_ends[i]]

    def ending_with(self, suffix: bytes) -> Iterator[int]:
        """The entries whose key ends with `suffix`, found in the key buffer (C's
        search: no string per entry)."""
        at = self.keys.find(suffix)
        while at >= 0:
            end = at + len(suffix)
            i = int(np.searchsorted(self.key_ends, end))
            if i < len(self) and self.key_ends[i] == end:
                yield i
            at = self.keys.find(suffix, at + 1)


def _starts(ends: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Where each of these entries begins: where the one before it ends."""
    return np.where(rows > 0, ends[np.maximum(rows - 1, 0)], 0)


class Recovered:
    """What a recovery read back into a table's store, moved out of it into blocks
    of large buffers once recovery is complete (`take`), before any agent rebuilds
    its state from it.

    Why: recovery fills the store with millions of small objects (a key string and a
    value per entry) among as many temporaries. An agent that rebuilt its state
    straight from the store would make its long-lived objects (order ids, records)
    in the holes among them, so that emptying the store afterwards freed almost no
    arena of Python's allocator: a restarted worker held twice the memory of one
    that had read the same orders. Moved into buffers, the store's objects are all
    freed before the state is built; read with `consume`, each block is given back
    as soon as its entries are read, so the buffers are not held whole beside the
    state built from them (bench/RESULTS.md: what is left)."""

    __slots__ = ("blocks", "partitions", "kept")

    def __init__(self, blocks: list[_Block | None], partitions: np.ndarray):
        self.blocks = blocks  # ENTRIES_AT_ONCE entries each (the last one fewer); None once consumed
        self.partitions = partitions  # each entry's changelog partition (-1: not noted)
        self.kept = np.ones(len(partitions), dtype=bool)

    @classmethod
    def take(cls, data: dict, noted: dict) -> "Recovered":
        """Every entry of a memory store's `data` (str keys, bytes values) with its
        noted partition, the store left empty. In the store's order (the changelog's:
        records come back mostly in time order, which the early warnings' columns
        take by appending)."""
        names = list(data)
        partitions = np.empty(len(names), dtype=np.int32)
        blocks: list[_Block | None] = [
            _Block(data, names[first:first + ENTRIES_AT_ONCE], partitions[first:first + ENTRIES_AT_ONCE], noted)
            for first in range(0, len(names), ENTRIES_AT_ONCE)]
        noted.clear()
        return cls(blocks, partitions)

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

    def entries(self, consume: bool = False) -> Iterator[tuple[str, bytes, int]]:
        """(key, value bytes, partition or -1) of each entry kept, in the order taken,
        a block at a time (its offsets made Python ints at once: all at once, they were
        ~200 MB of temporaries at the peak of a rebuild of 2,000,000 entries).
        `consume`: each block is let go once read (a second read raises)."""
        for b, block in enumerate(self.blocks):
            if block is None:
                raise ValueError("these entries were read and let go already")
            first = b * ENTRIES_AT_ONCE
            rows = np.flatnonzero(self.kept[first:first + len(block)])
            yield from block.entries(rows, self.partitions[first + rows])
            if consume:
                self.blocks[b] = None
                block.values.close()

    def ending_with(self, suffix: str) -> Iterator[tuple[str, bytes, int]]:
        """(key, value bytes, partition or -1) of each entry kept whose key ends with
        `suffix` (a few among millions: read before the rest, see `EarlyWarnings.restore`)."""
        for b, block in enumerate(self.blocks):
            if block is None:
                raise ValueError("these entries were read and let go already")
            first = b * ENTRIES_AT_ONCE
            for i in block.ending_with(suffix.encode()):
                if self.kept[first + i]:
                    yield block.key(i), block.value(i), int(self.partitions[first + i])

    def _key(self, i: int) -> str:
        return self.blocks[i // ENTRIES_AT_ONCE].key(i % ENTRIES_AT_ONCE)


def bulk_topics(app: Any) -> frozenset[str]:
    """The changelog topics of the app's bulk-restored tables."""
    return frozenset(table.changelog_topic.get_topic_name() for table in app.tables.values()
                     if isinstance(table, BulkRestoredTable))
