"""The log itself, asked on the embedded broker whether an offset exists
(streams/log_probe.py): the continuity check passes over a gap only on its answer."""
from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer
from faust.types import TP

from streams.log_probe import first_offset_from
from supplymon.embedded import EmbeddedBroker, free_port
from supplymon.publish import ensure_topics
from supplymon.settings import Settings

TOPIC = "supply.alerts"


async def _publish(bootstrap: str, n: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for i in range(n):
            await producer.send_and_wait(TOPIC, f"m{i}".encode(), partition=1)
    finally:
        await producer.stop()


def test_the_log_answers_which_offset_comes_first_from_a_given_one():
    with EmbeddedBroker() as broker:
        settings = Settings.from_env({}).with_embedded_broker(broker.url)
        ensure_topics(settings)

        async def probe() -> list:
            await _publish(broker.bootstrap, 5)
            return [await first_offset_from(settings, TP(TOPIC, 1), offset, timeout_ms=2000)
                    for offset in (0, 3, 4, 5)]

        assert asyncio.run(probe()) == [0, 3, 4, None]  # past the end: nothing to say yet


def test_no_broker_no_answer():
    settings = Settings.from_env({}).with_embedded_broker(f"kafka://127.0.0.1:{free_port('127.0.0.1')}")
    assert asyncio.run(first_offset_from(settings, TP(TOPIC, 0), 0, timeout_ms=500)) is None
