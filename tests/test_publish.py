"""The publisher (supplymon/publish.py `Publisher`: `replay`, the demo, the embedded
worker's rebuild) on the embedded broker: each event on its kind's topic in the
partition the producer's default partitioner picks for its order_id, every
partition's messages in the order published, stamped with their event time; a tick
on every input partition; a line that is not an event on the orders topic; the
end offsets it reports are those of what it wrote."""
from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import datetime

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from supplymon.embedded import EmbeddedBroker
from supplymon.publish import Publisher, ensure_topics
from supplymon.settings import Settings
from supplymon.simulate import generate

TICK = {"event_id": "t1", "kind": "tick", "ts": "2026-03-09T00:00:00+08:00"}


async def _publish_and_read(settings: Settings, lines: list[bytes]):
    async with Publisher(settings, window=700) as publisher:  # several windows, several sends
        for line in lines:
            await publisher.publish(line)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_url.removeprefix("kafka://"),
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for topic in settings.topics.inputs for p in range(settings.partitions)]
        consumer.assign(tps)
        messages = []
        while batch := await consumer.getmany(timeout_ms=1000):
            messages += [m for ms in batch.values() for m in ms]
        return publisher.stats, messages
    finally:
        await consumer.stop()


def test_events_land_in_their_order_partition_in_order_ticks_everywhere():
    events = list(generate(days=3, orders_per_day=400, seed=5))
    lines = [orjson.dumps(e) for e in events[:1200]] + [orjson.dumps(TICK), b'{"kind": "order"'] \
        + [orjson.dumps(e) for e in events[1200:2500]]
    with EmbeddedBroker() as broker:
        settings = Settings.from_env({}).with_embedded_broker(broker.url)
        ensure_topics(settings)
        stats, messages = asyncio.run(_publish_and_read(settings, lines))
    partitions = list(range(settings.partitions))
    partitioner = DefaultPartitioner()
    read: dict[tuple[str, int], list[bytes]] = defaultdict(list)
    for m in sorted(messages, key=lambda m: (m.topic, m.partition, m.offset)):
        read[(m.topic, m.partition)].append(m.value)
        doc = orjson.loads(m.value) if m.value != b'{"kind": "order"' else None
        if doc is None:  # not an event: the orders topic, for the worker to dead-letter
            assert (m.topic, m.partition, m.key) == (settings.topics.orders, 0, None)
        elif doc["kind"] == "tick":
            assert m.key is None
        else:
            assert m.topic == settings.topics.for_kind(doc["kind"])
            assert m.key == doc["order_id"].encode()
            assert m.partition == partitioner(m.key, partitions, partitions)
            assert m.timestamp == int(datetime.fromisoformat(doc["ts"]).timestamp() * 1000)
    # each partition's messages in the order they were published
    for key, values in read.items():  # a subsequence of the lines published
        rest = iter(lines)
        assert all(any(line == value for line in rest) for value in values), key
    ticks = [(m.topic, m.partition) for m in messages if m.value == orjson.dumps(TICK)]
    assert sorted(ticks) == sorted((t, p) for t in settings.topics.inputs for p in partitions)
    fanned_out = len(settings.topics.inputs) * settings.partitions
    ticked = sum(1 for line in lines if b'"kind":"tick"' in line)  # the simulator's hourly ticks, and TICK
    assert len(messages) == len(lines) - ticked + ticked * fanned_out
    assert stats.events == len(lines) - ticked and stats.ticks == ticked and stats.unreadable == 1
    assert stats.end_offsets == {f"{t}:{p}": len(values) for (t, p), values in read.items()}


def test_a_line_published_alone_goes_out_without_waiting_for_more_or_a_flush():
    """A live source's event is on Kafka after the publisher's linger, while the
    publisher is still open and nothing else is published."""
    event = {"event_id": "o1", "kind": "order", "ts": "2026-03-01T08:00:00+08:00", "order_id": "O1"}

    async def go(settings: Settings):
        async with Publisher(settings) as publisher:
            await publisher.publish(orjson.dumps(event))
            consumer = AIOKafkaConsumer(settings.topics.orders, bootstrap_servers=settings.kafka_url.removeprefix(
                "kafka://"), auto_offset_reset="earliest", enable_auto_commit=False)
            await consumer.start()
            try:
                batch = await consumer.getmany(timeout_ms=10_000)
                read = [orjson.loads(m.value) for ms in batch.values() for m in ms]
            finally:
                await consumer.stop()
        return read

    with EmbeddedBroker() as broker:
        settings = Settings.from_env({}).with_embedded_broker(broker.url)
        ensure_topics(settings)
        read = asyncio.run(go(settings))
    assert read == [event]
