"""The live clock: in live mode the worker stands in for the platform's ticks.

When the platform goes quiet nothing moves stream time, and deadlines would wait
for the next event. Every `live_tick_seconds` this publishes a tick stamped with
the wall clock to every partition of every input topic. Ticks travel through the
topics like any event, so a worker that is behind reads them only after the
backlog before them: they never fire a deadline early. Replays turn this off.
"""
from __future__ import annotations

from datetime import datetime, timezone

import orjson

from streams.app import app, settings
from supplymon.settings import SHANGHAI


def live_tick(now: datetime) -> bytes:
    ts = now.astimezone(SHANGHAI).isoformat(timespec="milliseconds")
    return orjson.dumps({"event_id": f"tick-live-{int(now.timestamp() * 1000)}", "kind": "tick", "ts": ts})


if settings.live_tick_seconds > 0:

    @app.timer(settings.live_tick_seconds, on_leader=True)
    async def publish_live_tick() -> None:
        value = live_tick(datetime.now(timezone.utc))
        for topic in settings.topics.inputs:
            partitions = app.consumer.topic_partitions(topic) or settings.partitions
            for partition in range(partitions):
                await app.producer.send(topic, key=None, value=value, partition=partition,
                                        timestamp=None, headers=None)
