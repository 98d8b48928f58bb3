"""Keyed messages a batch at a time (streams/producer.py `send_keyed`, the worker's
alerts), on the embedded broker: each in the partition the producer's default
partitioner picks for its key, in order, every one delivered, and the broker's end
offsets covering them all (what a reader reads up to)."""
from __future__ import annotations

import asyncio

from aiokafka.partitioner import DefaultPartitioner

from streams.producer import BatchProducer, send_keyed
from supplymon.embedded import EmbeddedBroker
from supplymon.publish import ensure_topics
from supplymon.settings import Settings
from tests.test_changelog import TOPIC, _read_topic


def test_keyed_messages_land_where_the_default_partitioner_puts_them_all_delivered():
    sent = [(f"ALERT-{n % 97}-{'x' * (n % 13)}".encode(), f'{{"n":{n}}}'.encode()) for n in range(1500)]

    async def send_and_read(url: str):
        producer = BatchProducer(Settings.from_env({}).with_embedded_broker(url))
        try:
            deliveries = await send_keyed(await producer.get(), TOPIC, sent)
            assert 4 <= len(deliveries) < len(sent)  # record batches, not a message each
            await asyncio.gather(*deliveries)
        finally:
            await producer.stop()
        return await _read_topic(url)

    with EmbeddedBroker() as broker:
        ensure_topics(Settings.from_env({}).with_embedded_broker(broker.url))
        messages, ends, read_to = asyncio.run(send_and_read(broker.url))
    partitioner = DefaultPartitioner()
    for m in messages:
        assert m.partition == partitioner(m.key, [0, 1, 2, 3], [0, 1, 2, 3])
    by_partition = {}
    for m in sorted(messages, key=lambda m: (m.partition, m.offset)):
        by_partition.setdefault(m.partition, []).append((m.key, m.value))
    assert {p: ms for p, ms in by_partition.items()} == {
        p: [(k, v) for k, v in sent if partitioner(k, [0, 1, 2, 3], [0, 1, 2, 3]) == p] for p in by_partition}
    assert len(messages) == len(sent) == sum(ends.values())
    assert {tp.partition: end for tp, end in ends.items()} == {tp.partition: end for tp, end in read_to.items()}
