"""Table changes written a batch at a time.

Faust writes one changelog message per table update through its producer buffer:
a future, callbacks, sensors and a producer call per message, about a quarter of
the worker's time at one update per event. `BatchedChangelog.write(changes)`
applies a batch's changes to the table's store and produces them with aiokafka's
batch API (streams/producer.py), a request or so per changelog partition, and
returns once they are delivered. The messages are what Faust itself would write
(same topic, partition, key and value codecs, `None` for a delete), so Faust's
recovery reads them as usual; the store's persisted offsets (RocksDB) are kept as
Faust keeps them.

The last change of each partition goes in a record batch of its own: the embedded
broker's end offset of a partition, which Faust's recovery reads as the changelog's
highwater, would otherwise hide the rest of a multi-record last batch
(streams/producer.py).
"""
from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any, Callable, Iterator, Mapping

from aiokafka.errors import KafkaError, KafkaTimeoutError
from faust.types import TP

from streams.producer import BatchProducer, send_batches
from supplymon import metrics
from supplymon.retry import retry_until_done

log = logging.getLogger(__name__)


class BatchedChangelog:
    def __init__(self, table: Any, producer: BatchProducer, partition_of: Callable[[str], int],
                 encode: Callable[[Any], bytes]):
        self.table = table
        self.producer = producer
        self.partition_of = partition_of  # a key's changelog partition, unless its write says
        self.encode = encode  # the table's value codec
        # keys written while what recovery read back is not taken yet: theirs is stale
        self._written: set[str] = set()

    def reader(self) -> Callable[[str], Any]:
        """A get on the table's store itself: Faust's Table.get adds a sensor call and
        three layers of mapping per key (~5 % of the worker at one read per event)."""
        store = self.table.data
        inner = getattr(store, "data", None)  # the memory store keeps a plain dict
        return inner.get if type(inner) is dict else store.get

    def partition(self, key: str) -> int:
        """The changelog partition a key's entry in the store came from: the one
        recovery read it from (Faust's memory store notes it) or it was written to."""
        noted = getattr(self.table.data, "_key_partition", None)
        partition = noted.get(key) if noted is not None else None
        return self.partition_of(key) if partition is None else partition

    def keep_only(self, partitions: set[int]) -> int:
        """Drop the entries of partitions this worker no longer holds; how many. Faust's
        memory store forgets a revoked partition's keys only if it loaded them from the
        changelog itself, not those written since: left in, they would be taken for
        this worker's own after a rebalance (deadlines fired, states written back over
        the new owner's)."""
        store = self.table.data
        foreign = [key for key in store.keys() if self.partition(key) not in partitions]
        noted = getattr(store, "_key_partition", None)
        for key in foreign:
            store.pop(key, None)
            if noted is not None:
                noted.pop(key, None)
        return len(foreign) + sum(taken.keep_only(partitions) for taken in self._recovered())

    def items_ending_with(self, suffix: str) -> Iterator[tuple[str, Any]]:
        """The entries `items()` gives whose key ends with `suffix`, decoded, found
        without reading the others (for what a rebuild needs before the rest)."""
        loads = self.table.value_loads if self._recovered() else None  # (a plain table has none)
        for key, value, _ in self._read_back(lambda taken: taken.ending_with(suffix)):
            yield key, loads(value)
        store = self.table.data
        for key in [key for key in store.keys() if key.endswith(suffix)]:
            yield key, store[key]

    def items(self, consume: bool = False) -> Iterator[tuple[str, Any, int]]:
        """The entries recovery read back (streams/bulk_restore.py, decoded here; see
        `_read_back`) and the store's, each with its changelog partition (`partition`).
        `consume`: what recovery read back is let go as it is read (to read once, then
        `clear()`: an owner rebuilding its state does not hold the whole of it beside
        the state)."""
        loads = self.table.value_loads if self._recovered() else None  # (a plain table has none)
        for key, value, partition in self._read_back(lambda taken: taken.entries(consume)):
            yield key, loads(value), partition
        store = self.table.data
        for key in list(store.keys()):
            yield key, store[key], self.partition(key)

    def _read_back(self, read: Callable[[Any], Iterator[tuple[str, bytes, int]]]) -> Iterator[tuple[str, bytes, int]]:
        """What `read` gives of each recovery's entries (key, value bytes, partition):
        the latest recovery's first, a key once, none written since (theirs is stale)."""
        recovered, written = self._recovered(), self._written
        seen: set[str] | None = set() if len(recovered) > 1 else None
        for taken in reversed(recovered):
            for key, value, partition in read(taken):
                if key in written:
                    continue
                if seen is not None:
                    if key in seen:
                        continue
                    seen.add(key)
                yield key, value, partition

    def clear(self) -> int:
        """Empty the store and what recovery read back (its owner holds the state, see
        `write`); how many entries. Faust's memory store also keeps each recovered
        key's partition: forgotten too, or every key recovery read would stay in memory."""
        store = self.table.data
        count = len(store) + sum(map(len, self._recovered()))
        for key in list(store.keys()):
            store.pop(key, None)
        recovered = getattr(store, "_key_partition", None)
        if recovered is not None:
            recovered.clear()
        self._recovered().clear()
        self._written.clear()
        return count

    def _recovered(self) -> list:
        """What recovery read back and the owner has not taken yet (bulk-restored tables)."""
        return getattr(self.table, "recovered", [])

    async def write(self, changes: Mapping[str, Any], hold: bool = True,
                    partitions: Mapping[str, int] | None = None) -> None:
        """Apply `changes` (key -> value; None deletes) and deliver them to the changelog,
        each to its partition in `partitions` (the order states: their order's input
        partition, as Faust keeps a table entry on its input record's partition) or
        else `partition_of(key)`.
        `hold=False`: delivered but not held in the store; the owner keeps that state
        itself (more compactly) and reads the store only after a rebalance, as Faust's
        recovery refills it from the changelog."""
        if not changes:
            return
        if hold and hasattr(self.table, "recovered"):
            raise ValueError("a bulk-restored table's store holds nothing (what recovery reads is kept apart, "
                             "streams/bulk_restore.py): write its changes with hold=False")
        store = self.table.data
        # Not held: a key is taken out of the store only if the store has any (a plain
        # table's recovery fills it; a bulk-restored table's is always empty).
        forget = hold or len(store) > 0
        if self._recovered():
            self._written.update(changes)
        noted = getattr(store, "_key_partition", None) if forget else None
        partition_of, encode = self.partition_of, self.encode
        given = partitions or {}
        by_partition: dict[int, list[tuple[bytes, bytes | None]]] = defaultdict(list)
        for key, value in changes.items():
            partition = given.get(key)
            if hold and value is not None:
                store[key] = value
                if noted is not None and partition is not None:  # as recovery notes it, for `partition()`
                    noted[key] = partition
            elif forget:
                store.pop(key, None)
                if noted is not None:
                    noted.pop(key, None)
            if partition is None:
                partition = partition_of(key)
            by_partition[partition].append((key.encode(), None if value is None else encode(value)))
        topic = self.table.changelog_topic.get_topic_name()

        async def resend(attempt: int, delay: float, exc: Exception) -> None:
            metrics.sink_retries.labels(topic).inc()
            log.warning("changelog %s: %d changes not delivered (%r); sending again in %.1fs",
                        topic, len(changes), exc, delay)

        # aiokafka already retried within its request timeout: Kafka is away. The batch
        # is not acknowledged until its changes are in, so wait and send again (the
        # same values: a resend changes nothing); a non-retriable error is a bug.
        await retry_until_done(lambda: self._deliver(topic, by_partition), on_retry=resend,
                               retriable=lambda exc: isinstance(exc, KafkaError)
                               and (exc.retriable or isinstance(exc, KafkaTimeoutError)))

    async def _deliver(self, topic: str, by_partition: Mapping[int, list[tuple[bytes, bytes | None]]]) -> None:
        producer = await self.producer.get()
        store = self.table.data
        sent = []
        for partition, messages in by_partition.items():
            sent += [(partition, count, delivery)
                     for count, delivery in await send_batches(producer, topic, partition, messages)]
        for partition, count, delivery in sent:
            metadata = await delivery
            store.set_persisted_offset(TP(topic, partition), metadata.offset + count - 1)
