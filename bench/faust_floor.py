"""Faust's own delivery ceiling: a worker with supplymon's app settings and consumer
whose agent takes the input and does nothing with it.

    python -m bench.faust_floor KAFKA_URL TOTAL DATA_DIR MODE TOPIC [TOPIC...]

MODE `batches`: whole fetched batches through the batch intake (streams/batches.py),
each acknowledged, as the lifecycle agent reads them; MODE `messages`: Faust's
per-message path (`take_events` over the topics; the intake's batch topics
turned off), as the input was read before.

Prints `floor <messages/s>`, from the first message delivered to the last (the
group join excluded), then exits. Run by bench/pipeline.py in a process of its own: the
figure bounds what any pipeline built this way reaches on this machine.
"""
from __future__ import annotations

import asyncio
import os
import sys
import time

from supplymon.embedded import free_port


def main(argv: list[str]) -> int:
    kafka_url, total, data_dir, mode, topics = argv[0], int(argv[1]), argv[2], argv[3], argv[4:]
    os.environ.update({"SUPPLYMON_KAFKA": kafka_url, "SUPPLYMON_APP_ID": f"bench-floor-{os.getpid()}",
                       "SUPPLYMON_DATA_DIR": data_dir, "SUPPLYMON_WEB_PORT": str(free_port())})
    asyncio.set_event_loop(asyncio.new_event_loop())
    from faust.worker import Worker

    from streams.app import app, batch_intake, input_batches, settings
    from streams.batches import next_offsets

    seen, started = [0], [0.0]

    def count(n: int) -> None:
        if not seen[0]:
            started[0] = time.perf_counter()
        seen[0] += n
        if seen[0] >= total:
            print(f"floor {total / (time.perf_counter() - started[0]):.0f}", flush=True)
            os._exit(0)  # the figure is out; nothing of this worker is worth a clean stop

    if mode == "batches":
        @app.agent(input_batches)
        async def floor(stream):
            async for fetched in batch_intake.batches(stream):
                batch_intake.ack(fetched, next_offsets(fetched.positions()))
                count(len(fetched))
    else:
        app.transport.Consumer.batch_topics = frozenset()
        source = app.topic(*topics, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

        @app.agent(source)
        async def floor(stream):
            async for events in stream.take_events(settings.batch_size, within=settings.batch_seconds):
                count(len(events))

    Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False).execute_from_commandline()
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
