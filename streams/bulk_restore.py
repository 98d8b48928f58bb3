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
records in `records`. The table keeps them as the loop hands the message over
(`on_changelog_event`), in the order read, in a few large buffers per message (not
in its store). A record the recovery already read is never in a delivered bulk:
Faust skips a message whose last offset it has seen, and the consumer drops the
records before its read offset. Once recovery is complete, the latest record of
each key is its entry (`Recovered`), from which the owner rebuilds its state,
decoding the values' bytes itself.

Relies on faust-streaming internals (pinned; tests/test_bulk_restore.py): the
recovery loop calls `table.on_changelog_event(event)` for each event it has not
seen, and `apply_changelog_batch` on its buffer; the memory store keeps nothing
else of a recovery (its persisted offset is always None: read from the start).
"""
from __future__ import annotations

import mmap
from typing import Any, Callable, Iterable, Iterator, Sequence

import faust
import numpy as np
from faust.serializers import codecs
from faust.types.tuples import ConsumerMessage

from supplymon.core.byte_keys import equal_length_keys


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
    """A memory-store table whose recovery keeps the records it reads as they came,
    a `BulkMessage` at a time, in large buffers: not in the store (a key string, a
    value and two dict entries each: ~500 B per entry, 1.5 GB for the 3 million
    entries behind a million open orders, freed in holes the rebuild then filled).
    Once recovery is complete, the latest record of each key is what the owner
    rebuilds its state from (`recovered`, see `Recovered`), decoding the values with
    the table's value codec (`value_loads`). The keys are UTF-8 text (the "str" codec)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recovered: list[Recovered] = []  # oldest first, until the owner takes them
        self._read: list[_Block] = []  # what the recovery under way has read, in order
        self._records_read = 0  # records in `_read`
        self._compact_at = COMPACT_FROM  # `_read` is compacted when it holds this many records

    @property
    def value_loads(self) -> Callable[[bytes], Any]:
        """The table's value codec's decoder (looked up once per read-back, not per entry)."""
        return codecs.get_codec(self.value_serializer).loads

    async def on_changelog_event(self, event: Any) -> None:
        """The recovery loop hands over each event it has not seen: kept now, in
        order, and a bulk's records let go (the loop keeps its events in a buffer until
        `recovery_buffer_size` of them, which would hold whole fetches)."""
        message = event.message
        records = getattr(message, "records", None)
        self.apply_records((message,) if records is None else records)
        if records is not None:
            message.records = ()
        await super().on_changelog_event(event)

    def apply_changelog_batch(self, batch: Iterable[Any]) -> None:
        """Nothing left to do: each event was kept as it came (`on_changelog_event`).
        (Not `recovery_buffer_size=1` instead: Faust then keeps reading the changelog
        into the store after recovery, a second copy of the state.)"""

    def apply_records(self, records: Sequence[Any]) -> None:
        """Changelog records (key and value bytes, `None` deletes), kept in the order
        read; the latest of a key is its entry, as in Faust's memory store."""
        if not len(records):
            return
        self._read.append(_Block.of_records(records))
        self._records_read += len(records)
        if self._records_read >= self._compact_at:
            # A changelog holds every version written until Kafka's cleaner compacts
            # it (not the active segment: days of an entry written at every batch);
            # kept down to the latest of each key whenever what was read doubles.
            self._read = latest_records(self._read)
            self._records_read = sum(map(len, self._read))
            self._compact_at = max(COMPACT_FROM, 2 * self._records_read)

    async def on_recovery_completed(self, active_tps: Any, standby_tps: Any) -> None:
        await super().on_recovery_completed(active_tps, standby_tps)
        if self._read:
            # as the memory store keeps only the keys of the partitions now active
            active = {partition for _, partition in active_tps}
            self.recovered.append(Recovered.latest(self._read, active))
        self._read, self._records_read, self._compact_at = [], 0, COMPACT_FROM


class _Block:
    """Changelog records read together: their keys and their values in two buffers,
    where each ends in each, their partitions, and which delete their key. Large
    values' buffers are mappings of their own (`_mapped`), given back the moment the
    block is let go (`Recovered.entries(consume=True)`)."""

    __slots__ = ("keys", "key_ends", "values", "value_ends", "partitions", "deletes")

    @classmethod
    def of_records(cls, records: Sequence[Any]) -> "_Block":
        block = cls()
        n = len(records)
        keys = [record.key for record in records]
        values = [record.value for record in records]
        block.deletes = np.fromiter((value is None for value in values), dtype=bool, count=n)
        block.key_ends = np.cumsum(np.fromiter(map(len, keys), dtype=np.int64, count=n))
        block.value_ends = np.cumsum(np.fromiter((0 if v is None else len(v) for v in values), dtype=np.int64, count=n))
        block.partitions = np.fromiter((record.partition for record in records), dtype=np.int32, count=n)
        block.keys = b"".join(keys)
        block.values = _mapped(b"".join(value for value in values if value is not None))
        return block

    def __len__(self) -> int:
        return len(self.key_ends)

    def entries(self, rows: np.ndarray) -> Iterator[tuple[str, bytes, int]]:
        key_starts, value_starts = _starts(self.key_ends, rows), _starts(self.value_ends, rows)
        keys, values = memoryview(self.keys), memoryview(self.values)
        for key_start, key_end, value_start, value_end, partition in zip(
                key_starts.tolist(), self.key_ends[rows].tolist(), value_starts.tolist(),
                self.value_ends[rows].tolist(), self.partitions[rows].tolist()):
            yield str(keys[key_start:key_end], "utf-8"), values[value_start:value_end].tobytes(), partition

    def keeping(self, rows: np.ndarray) -> "_Block":
        """A block of only these records (their bytes gathered on numpy)."""
        block = _Block()
        block.keys, block.key_ends = _gather(self.keys, self.key_ends, rows)
        values, block.value_ends = _gather(self.values, self.value_ends, rows)
        block.values = _mapped(values)
        block.partitions, block.deletes = self.partitions[rows], self.deletes[rows]
        return block

    def key(self, i: int) -> str:
        return self.keys[self.key_ends[i - 1] if i else 0:self.key_ends[i]].decode()

    def value(self, i: int) -> bytes:
        return self.values[self.value_ends[i - 1] if i else 0:self.value_ends[i]]

    def ending_with(self, suffix: bytes) -> Iterator[int]:
        """The records whose key ends with `suffix`, found in the key buffer (C's
        search: no string per record)."""
        at = self.keys.find(suffix)
        while at >= 0:
            end = at + len(suffix)
            i = int(np.searchsorted(self.key_ends, end))
            if i < len(self) and self.key_ends[i] == end:
                yield i
            at = self.keys.find(suffix, at + 1)

    def identities(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each record's key as (its length, two independent 64-bit hashes of its bytes),
        computed on numpy over the keys of each length as one matrix."""
        first = np.empty(len(self), dtype=np.uint64)
        second = np.empty(len(self), dtype=np.uint64)
        for _, rows, chars in equal_length_keys(self.keys, self.key_ends):
            fnv = np.full(len(rows), _FNV_OFFSET, dtype=np.uint64)  # FNV-1a
            poly = np.zeros(len(rows), dtype=np.uint64)  # a polynomial over the bytes, another odd multiplier
            for column in chars.T.astype(np.uint64):
                fnv = (fnv ^ column) * _FNV_PRIME
                poly = (poly + column + np.uint64(1)) * _POLY
            first[rows], second[rows] = fnv, poly
        return np.diff(self.key_ends, prepend=0), first, second


_FNV_OFFSET, _FNV_PRIME = np.uint64(0xCBF29CE484222325), np.uint64(0x100000001B3)
_POLY = np.uint64(0x9E3779B97F4A7C15)


def _starts(ends: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Where each of these entries begins: where the one before it ends."""
    return np.where(rows > 0, ends[np.maximum(rows - 1, 0)], 0)


COMPACT_FROM = 1_000_000  # records read before a recovery's buffers are first compacted
MAPPED_FROM = 1 << 16  # bytes: a block's values from this size are a mapping of their own


def _mapped(data: bytes) -> bytes | mmap.mmap:
    """`data`, from MAPPED_FROM bytes on copied into an anonymous mapping: given back
    to the system when the block is let go. (Not left to malloc: once a large block
    is freed, glibc raises its mapping threshold and takes the next ones from its
    heap, which keeps what they free until trimmed: the read-back blocks a rebuild
    let go then stayed resident to the end of the rebuild, ~900 MB at its peak.)"""
    if len(data) < MAPPED_FROM:
        return data
    mapping = mmap.mmap(-1, len(data))
    mapping[:] = data
    return mapping


def _gather(buffer: bytes | mmap.mmap, ends: np.ndarray, rows: np.ndarray) -> tuple[bytes, np.ndarray]:
    """The bytes of these entries of `buffer` (each ending at `ends`), joined, and
    where each ends now."""
    starts = _starts(ends, rows)
    lengths = ends[rows] - starts
    new_ends = np.cumsum(lengths)
    total = int(new_ends[-1]) if len(rows) else 0
    # each byte's place in `buffer`: its place in the output plus its entry's shift
    source = np.repeat(starts - (new_ends - lengths), lengths) + np.arange(total)
    return np.frombuffer(buffer, dtype=np.uint8)[source].tobytes(), new_ends


def latest_records(blocks: list[_Block], active: set[int] | None = None) -> list[_Block]:
    """Blocks of only the latest record of each key among `blocks` (read in this
    order), unless it deletes the key or (`active` given) its partition is not in
    `active`; `blocks` is emptied, each let go as its records are copied."""
    if not blocks:
        return []
    lengths, first, second = (np.concatenate(parts) for parts in zip(*(block.identities() for block in blocks)))
    index = np.arange(len(lengths))
    by_key = np.lexsort((index, second, first, lengths))  # a key's records together, in the order read
    last = np.ones(len(by_key), dtype=bool)
    last[:-1] = ~((lengths[by_key][1:] == lengths[by_key][:-1]) & (first[by_key][1:] == first[by_key][:-1])
                  & (second[by_key][1:] == second[by_key][:-1]))
    kept = np.zeros(len(lengths), dtype=bool)
    kept[by_key[last]] = True
    del lengths, first, second, index, by_key, last
    kept &= ~np.concatenate([block.deletes for block in blocks])
    if active is not None:
        kept &= np.isin(np.concatenate([block.partitions for block in blocks]),
                        np.fromiter(active, dtype=np.int64, count=len(active)))
    compacted, at = [], 0
    for b, block in enumerate(blocks):
        rows = np.flatnonzero(kept[at:at + len(block)])
        at += len(block)
        blocks[b] = None
        if len(rows):
            compacted.append(block if len(rows) == len(block) else block.keeping(rows))
    blocks.clear()
    return compacted


class Recovered:
    """The entries a recovery read back: the latest record of each key, unless it
    deletes the key or is of a partition no longer active, in blocks as read.

    Why not the store: recovery filled it with millions of small objects (a key
    string and a value per entry) among as many temporaries; the state rebuilt from
    it made its long-lived objects (order ids, records) in the holes among them, so
    that emptying the store freed almost no arena of Python's allocator (a restarted
    worker held twice the memory of one that had read the same orders), and the
    store itself was the peak of a restart. Read with `consume`, each block is given
    back as soon as its entries are read (bench/RESULTS.md).

    A key is known by its length and two 64-bit hashes of its bytes (`_Block.identities`):
    two different keys of a recovery taken for one would need both hashes to collide
    (~2^-128 a pair)."""

    __slots__ = ("blocks", "firsts", "partitions", "kept")

    def __init__(self, blocks: list[_Block | None]):
        self.blocks = blocks  # None once consumed
        self.firsts = np.cumsum([0] + [len(block) for block in blocks[:-1]], dtype=np.int64)
        self.partitions = np.concatenate([block.partitions for block in blocks]) if blocks else np.empty(0, np.int32)
        self.kept = np.ones(len(self.partitions), dtype=bool)  # False: left out by `keep_only`

    @classmethod
    def latest(cls, blocks: list[_Block], active: set[int]) -> "Recovered":
        """The latest record of each key among `blocks` (read in this order) is its
        entry, if it does not delete it and its partition is in `active`."""
        return cls(latest_records(blocks, active))

    def __len__(self) -> int:
        return int(self.kept.sum())

    def keep_only(self, partitions: set[int]) -> int:
        """Leave out the entries of other partitions than `partitions`; how many."""
        before = len(self)
        self.kept &= np.isin(self.partitions, np.fromiter(partitions, dtype=np.int64, count=len(partitions)))
        return before - len(self)

    def entries(self, consume: bool = False) -> Iterator[tuple[str, bytes, int]]:
        """(key, value bytes, partition) of each entry, in the order read, a block at
        a time (its offsets made Python ints at once: all at once, they were ~200 MB of
        temporaries at the peak of a rebuild of 2,000,000 entries). `consume`: each
        block is let go once read (a second read raises)."""
        for b, first, block in self._blocks():
            yield from block.entries(np.flatnonzero(self.kept[first:first + len(block)]))
            if consume:
                self.blocks[b] = None

    def _blocks(self) -> Iterator[tuple[int, int, _Block]]:
        """(index, its first record's number, block) of each block, none consumed yet."""
        for b, block in enumerate(self.blocks):
            if block is None:
                raise ValueError("these entries were read and let go already")
            yield b, int(self.firsts[b]), block

    def ending_with(self, suffix: str) -> Iterator[tuple[str, bytes, int]]:
        """(key, value bytes, partition) of each entry whose key ends with `suffix` (a
        few among millions: read before the rest, see `EarlyWarnings.restore`)."""
        for _, first, block in self._blocks():
            for i in block.ending_with(suffix.encode()):
                if self.kept[first + i]:
                    yield block.key(i), block.value(i), int(block.partitions[i])


def bulk_topics(app: Any) -> frozenset[str]:
    """The changelog topics of the app's bulk-restored tables."""
    return frozenset(table.changelog_topic.get_topic_name() for table in app.tables.values()
                     if isinstance(table, BulkRestoredTable))
