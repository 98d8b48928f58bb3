"""The worker's own aiokafka producer, for what it writes in batches.

Faust sends one message at a time through its producer buffer: a future,
callbacks, sensors and a producer call per message (~25 us each, measured: the
alerts of a batch cost the worker ~3 us per event that way). What a batch writes
in numbers (its changelog entries, its alerts) goes instead through aiokafka's
batch API: the messages of a partition appended to record batches, one delivery
future per record batch. The messages are what Faust would write (same topic,
key and value bytes, the partition the default partitioner picks for the key).

The embedded broker reports a partition's end offset (ListOffsets: Faust's
recovery reads it as a changelog's highwater, a reader stops there) as the base
offset of its last record batch + 1: a multi-record last batch would hide all but
its first record. So the last message of each partition's sends goes in a record
batch of its own: the end offset is then right on the embedded broker, and nothing
changes on Kafka.
"""
from __future__ import annotations

import asyncio
from collections import defaultdict

from aiokafka import AIOKafkaProducer

from supplymon.publish import bootstrap_servers, keyed_partitions, record_batches
from supplymon.settings import Settings


class BatchProducer:
    """One aiokafka producer for the worker's batch writes, started on first use and
    stopped when the last agent using it lets it go (`acquire()` / `release()`)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._starting: asyncio.Lock | None = None
        self._users = 0

    def acquire(self) -> None:
        self._users += 1

    async def release(self) -> None:
        self._users -= 1
        if self._users <= 0:
            self._users = 0
            await self.stop()

    async def get(self) -> AIOKafkaProducer:
        if self._producer is None:
            self._starting = self._starting or asyncio.Lock()
            async with self._starting:
                if self._producer is None:
                    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers(self.settings), acks="all",
                                                max_batch_size=1 << 20, request_timeout_ms=30_000)
                    try:
                        await producer.start()
                    except BaseException:
                        await producer.stop()  # its connections, before the next try makes another
                        raise
                    self._producer = producer
        return self._producer

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()


async def send_batches(producer: AIOKafkaProducer, topic: str, partition: int,
                       messages: list[tuple[bytes | None, bytes | None]]) -> list[tuple[int, asyncio.Future]]:
    """Queue `messages` (key, value) to one partition in as few record batches as
    fit, the last message in one of its own (see above); (count, delivery) per
    record batch, in order."""
    sent = []
    for part in (messages[:-1], messages[-1:]):
        for count, batch in record_batches(producer, [(key, value, None, None) for key, value in part]):
            sent.append((count, await producer.send_batch(batch, topic, partition=partition)))
    return sent


async def send_keyed(producer: AIOKafkaProducer, topic: str,
                     messages: list[tuple[bytes, bytes]]) -> list[asyncio.Future]:
    """Queue keyed `messages` (key, value), each to the partition the producer's
    default partitioner would pick for its key (murmur2, on numpy for them all), in
    their order within a partition; the deliveries to await."""
    if not messages:
        return []
    by_partition: dict[int, list[tuple[bytes, bytes]]] = defaultdict(list)
    for message, partition in zip(messages, await keyed_partitions(producer, topic, [key for key, _ in messages])):
        by_partition[partition].append(message)
    return [delivery for partition, part in by_partition.items()
            for _, delivery in await send_batches(producer, topic, partition, part)]
