"""`supplymon demo`: the monitor on live simulated traffic, all on this machine.

Starts the embedded broker and a worker on the data dir, plays the simulator's
hospitals, distributors and products onto the input topics at `--speed` times
event time, prints alerts as the worker raises them, and ends (or on Ctrl-C)
with a summary read back from ClickHouse.
"""
from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from datetime import datetime

import orjson
from aiokafka import AIOKafkaConsumer

from supplymon.core.alerts import local_time
from supplymon.publish import Publisher, bootstrap_servers
from supplymon.runner import embedded_stack
from supplymon.settings import SHANGHAI, Settings
from supplymon.simulate import generate



async def _print_alerts(settings: Settings, out) -> None:
    consumer = AIOKafkaConsumer(settings.topics.alerts, bootstrap_servers=bootstrap_servers(settings),
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        async for message in consumer:
            alert = orjson.loads(message.value)
            state = "resolved" if alert["resolved_at"] else "RAISED"
            english = alert["message"].split(" / ", 1)[-1]
            print(f"[{local_time(alert['raised_at'])}] {alert['severity']:>8} {state:>8} "
                  f"{alert['kind']}: {english}", file=out, flush=True)
    finally:
        await consumer.stop()


async def _play(settings: Settings, args, out) -> int:
    # Simulated time starts now and runs ahead of the wall clock, so the worker's
    # live ticks (wall-clock time) never overtake it.
    start = datetime.now(SHANGHAI).replace(minute=0, second=0, microsecond=0)
    # Each run is new traffic: ids carry the run's start, so a rerun on the same data
    # dir adds to what is stored instead of repeating it (as duplicates).
    events = generate(days=int(args.days) or 1, orders_per_day=args.orders_per_day, seed=args.seed, start=start,
                      prefix=f"{start:%y%m%d%H}-")
    printer = asyncio.create_task(_print_alerts(settings, out))
    sent = 0
    try:
        async with Publisher(settings, speed=args.speed) as publisher:
            last_report = time.monotonic()
            for event in events:
                await publisher.publish(orjson.dumps(event))
                sent += 1
                if time.monotonic() - last_report > 10:
                    last_report = time.monotonic()
                    print(f"-- simulated time {event['ts'][:16]}, {sent:,} events sent", file=out, flush=True)
        return publisher.stats
    finally:
        await asyncio.sleep(1.0)  # let the last alerts print
        printer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await printer


def run_demo(settings: Settings, args, out=sys.stdout) -> int:
    print(f"supplymon demo: starting the embedded broker and a worker on {settings.data_dir} ...", file=out, flush=True)
    with embedded_stack(settings, live=True) as (settings, worker):
        print(f"metrics at {worker.web}/metrics; ad-hoc SQL: supplymon sql --data-dir {settings.data_dir} "
              f"\"SELECT ...\"\nplaying {args.days:g} simulated days at {args.speed:g}x; Ctrl-C stops",
              file=out, flush=True)
        stats = None
        try:
            stats = asyncio.run(_play(settings, args, out))
            worker.wait_stored(stats.end_offsets, sum(stats.end_offsets.values()))
        except KeyboardInterrupt:
            print("\nstopping ...", file=out, flush=True)
        print(_summary(worker), file=out, flush=True)
    return 0


def _summary(worker) -> str:
    def rows(sql: str) -> list[dict]:
        return [orjson.loads(line) for line in worker.query(sql).splitlines()]

    (totals,) = rows(
        "SELECT count() AS orders, countIf(on_time = 1) AS delivered_on_time, countIf(on_time = 0) AS missed,"
        " round(avg(response_hours), 1) AS mean_response_hours FROM supplymon.order_facts FINAL")
    alerts = rows("SELECT kind, count() AS n, countIf(resolved_at IS NULL) AS open"
                  " FROM supplymon.alerts FINAL GROUP BY kind ORDER BY kind")
    worst = rows("SELECT distributor_id, count() AS orders, round(100 * avg(on_time), 1) AS on_time_pct"
                 " FROM supplymon.order_facts FINAL WHERE on_time IS NOT NULL"
                 " GROUP BY distributor_id ORDER BY on_time_pct LIMIT 3")
    lines = [
        "== summary ==",
        f"orders: {totals['orders']:,}; delivered on time: {totals['delivered_on_time']:,}; late or undelivered: "
        f"{totals['missed']:,}; mean response time: {totals['mean_response_hours']} h",
        "alerts: " + (", ".join(f"{a['kind']} {a['n']} ({a['open']} open)" for a in alerts) or "none"),
        "weakest distributors by on-time delivery: "
        + ", ".join(f"{w['distributor_id']} {w['on_time_pct']}% of {w['orders']}" for w in worst),
    ]
    return "\n".join(lines)
