"""Faust's own delivery ceiling: a worker with supplymon's app settings and consumer
whose agent takes batches of input messages and does nothing with them.

    python -m bench.faust_floor KAFKA_URL TOTAL DATA_DIR TOPIC [TOPIC...]

Prints `floor <messages/s>`, from the first message delivered to the last (the
group join excluded), then exits. Run by bench/pipeline.py in a process of its own: the
figure bounds what any pipeline built on Faust agents reaches on this machine.
"""
from __future__ import annotations

import asyncio
import os
import sys
import time


def main(argv: list[str]) -> int:
    kafka_url, total, data_dir, topics = argv[0], int(argv[1]), argv[2], argv[3:]
    os.environ.update({"SUPPLYMON_KAFKA": kafka_url, "SUPPLYMON_APP_ID": f"bench-floor-{os.getpid()}",
                       "SUPPLYMON_DATA_DIR": data_dir})
    asyncio.set_event_loop(asyncio.new_event_loop())
    from faust.worker import Worker

    from streams.app import app, settings

    source = app.topic(*topics, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    seen, started = [0], [0.0]

    @app.agent(source)
    async def floor(stream):
        async for events in stream.take_events(settings.batch_size, within=settings.batch_seconds):
            if not seen[0]:
                started[0] = time.perf_counter()
            seen[0] += len(events)
            if seen[0] >= total:
                print(f"floor {total / (time.perf_counter() - started[0]):.0f}", flush=True)
                os._exit(0)  # the figure is out; nothing of this worker is worth a clean stop

    Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False).execute_from_commandline()
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
