"""Consumer lag for Prometheus (`supplymon_consumer_lag_messages`): per assigned input
partition, the high watermark of the last fetch minus the next offset this worker has
stored (or the group committed). Refreshed every few seconds on the wall clock; a
partition no longer assigned is dropped."""
from __future__ import annotations

from agents.progress import stored_offsets
from streams.app import app, settings
from supplymon import metrics

LAG_INTERVAL_SECONDS = 5.0


def consumer_lag(assigned, highwater, stored: dict[str, int]) -> dict[tuple[str, str], int]:
    """(topic, partition) -> messages behind, for the assigned partitions whose high
    watermark is known."""
    out = {}
    for tp in assigned:
        end = highwater(tp)
        if end is None or end < 0:
            continue
        out[(tp.topic, str(tp.partition))] = max(0, end - stored.get(f"{tp.topic}:{tp.partition}", 0))
    return out


@app.timer(LAG_INTERVAL_SECONDS)
async def update_consumer_lag() -> None:
    inputs = set(settings.topics.inputs)
    assigned = [tp for tp in app.consumer.assignment() if tp.topic in inputs]
    lag = consumer_lag(assigned, app.consumer.highwater, stored_offsets(inputs))
    metrics.consumer_lag.clear()
    for (topic, partition), behind in lag.items():
        metrics.consumer_lag.labels(topic, partition).set(behind)
