"""`supplymon demo`: the monitor on live simulated traffic, all on this machine.

Starts the embedded broker and a worker on the data dir, plays the simulator's
hospitals, distributors and products onto the input topics at `--speed` times
event time, prints alerts as the worker raises them, and ends (or on Ctrl-C)
with a summary read back from ClickHouse. With `--scenario`, the simulator tells
a story on top of the healthy traffic (supplymon/simulate.py): the demo says at
the start which early warning to watch for, and at the end whether it came.
"""
from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from dataclasses import replace
from datetime import datetime

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from supplymon.core.alerts import local_time
from supplymon.publish import Publisher, bootstrap_servers
from supplymon.runner import embedded_stack
from supplymon.settings import SHANGHAI, Settings
from supplymon.simulate import History, Story, generate

EARLY_WARNINGS = ("supply_shortage", "demand_surge", "low_delivery_rate", "distributor_limit_exceeded",
                  "price_linkage_overdue", "price_inconsistent", "price_rise", "remote_refusal", "short_supply")


async def _print_alerts(settings: Settings, out, positions: dict, to_the_end: bool = False) -> None:
    """Print alerts as they come, from `positions` (partition -> next offset, kept up
    to date) or the beginning; with `to_the_end`, return once the topic is read."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # metadata, for the partitions
        tps = [TopicPartition(settings.topics.alerts, p)
               for p in sorted(consumer.partitions_for_topic(settings.topics.alerts) or ())]
        consumer.assign(tps)
        for tp in tps:
            if tp.partition in positions:
                consumer.seek(tp, positions[tp.partition])
            else:
                await consumer.seek_to_beginning(tp)
        while True:
            batches = await consumer.getmany(timeout_ms=200)
            for tp, messages in batches.items():
                for message in messages:
                    alert = orjson.loads(message.value)
                    state = "resolved" if alert["resolved_at"] else "RAISED"
                    english = alert["message"].split(" / ", 1)[-1]
                    print(f"[{local_time(alert['raised_at'])}] {alert['severity']:>8} {state:>8} "
                          f"{alert['kind']}: {english}", file=out, flush=True)
                    positions[tp.partition] = message.offset + 1
            if to_the_end and not batches:
                # The fetch's high watermark, not end_offsets (see README: the embedded broker's limits).
                if all((consumer.highwater(tp) or 0) <= positions.get(tp.partition, 0) for tp in tps):
                    return
    finally:
        await consumer.stop()


async def _play(settings: Settings, args, events: History, printed: dict, out):
    printer = asyncio.create_task(_print_alerts(settings, out, printed))
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
        printer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await printer


def run_demo(settings: Settings, args, out=sys.stdout) -> int:
    # Simulated time starts now and runs ahead of the wall clock, so the worker's
    # live ticks (wall-clock time) never overtake it.
    start = datetime.now(SHANGHAI).replace(minute=0, second=0, microsecond=0)
    # Each run is new traffic: ids carry the run's start, so a rerun on the same data
    # dir adds to what is stored instead of repeating it (as duplicates). A scenario
    # the history is too short for fails here, before anything starts.
    events = generate(days=int(args.days) or 1, orders_per_day=args.orders_per_day, seed=args.seed, start=start,
                      prefix=f"{start:%y%m%d%H}-", scenario=args.scenario)
    for story in events.stories:
        wait = (story.starts_at - start).total_seconds() / args.speed
        print(f"story {story.describe()}\n    (it begins about {wait:.0f} s into the run)", file=out, flush=True)
    print(f"supplymon demo: starting the embedded broker and a worker on {settings.data_dir} ...", file=out, flush=True)
    # Simulated time runs ahead of the wall clock (that is the demo): the worker is
    # told to take a simulated future, which it refuses by default (future_timestamp).
    with embedded_stack(replace(settings, allow_future=True), live=True) as (settings, worker):
        print(f"metrics at {worker.web}/metrics; ad-hoc SQL: supplymon sql --data-dir {settings.data_dir} "
              f"\"SELECT ...\"\nplaying {args.days:g} simulated days at {args.speed:g}x "
              f"(about {args.days * 86400 / args.speed:.0f} s); Ctrl-C stops", file=out, flush=True)
        printed: dict[int, int] = {}  # alerts partition -> next offset to print
        try:
            stats = asyncio.run(_play(settings, args, events, printed, out))
            worker.wait_stored(stats.end_offsets, sum(stats.end_offsets.values()))
            # Everything is stored, so every alert is on the topic: print the rest.
            asyncio.run(_print_alerts(settings, out, printed, to_the_end=True))
        except KeyboardInterrupt:
            print("\nstopping ...", file=out, flush=True)
        print(_summary(worker, start, events.stories), file=out, flush=True)
    return 0


def _summary(worker, start: datetime, stories: list[Story]) -> str:
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
    warnings = rows(
        "SELECT kind, subject_type, product_id, region_code, distributor_id, JSONExtractString(details, 'scope') AS scope,"
        " JSONExtractString(details, 'manufacturer_id') AS manufacturer_id,"
        " toUnixTimestamp64Milli(raised_at) AS raised, toUnixTimestamp64Milli(resolved_at) AS resolved"
        " FROM supplymon.alerts FINAL WHERE kind IN ('" + "', '".join(EARLY_WARNINGS) + "')"
        f" AND toUnixTimestamp64Milli(raised_at) >= {int(start.timestamp() * 1000)} ORDER BY raised, kind")
    lines.append(f"early warnings in this run: {len(warnings) or 'none'}")
    lines += [f"  {_warning_line(w)}" for w in warnings]
    for story in stories:
        lines.append(_story_outcome(story, [w for w in warnings if _tells(story, w)]))
    return "\n".join(lines)


def _subject(warning: dict) -> str:
    if warning["subject_type"] == "distributor":
        scope = f" ({warning['scope'] or 'all'})" if warning["kind"] == "low_delivery_rate" else ""
        return f"distributor {warning['distributor_id']}{scope}"
    if warning["subject_type"] == "manufacturer_city":
        return f"manufacturer {warning['manufacturer_id']} in city {warning['region_code']}"
    if warning["subject_type"] == "product_city":
        return f"product {warning['product_id']} in city {warning['region_code']}"
    return f"product {warning['product_id']} in region {warning['region_code']}"


def _warning_line(w: dict) -> str:
    resolved = f"resolved {local_time(w['resolved'])}" if w["resolved"] is not None else "open"
    return f"{w['kind']} on {_subject(w)}: raised {local_time(w['raised'])}, {resolved}"


def _tells(story: Story, warning: dict) -> bool:
    """Whether `warning` is the alert `story` was told to raise."""
    if warning["kind"] != story.kind:
        return False
    if story.subject_type == "distributor":
        return warning["distributor_id"] == story.distributor_id
    if story.subject_type == "manufacturer_city":
        return (warning["manufacturer_id"], warning["region_code"]) == story.subject
    return (warning["product_id"], warning["region_code"]) == story.subject


def _story_outcome(story: Story, warnings: list[dict]) -> str:
    begun = int(story.starts_at.timestamp() * 1000)
    if not warnings:
        return (f"story {story.scenario}: no {story.kind} yet (due by {story.due_by:%Y-%m-%d %H:%M}; "
                "a run stopped early may end before it)")
    raised = ", ".join(f"{_subject(w)} {(w['raised'] - begun) / 3_600_000:.1f} h after the story began"
                       for w in warnings)
    return f"story {story.scenario}: {story.kind} raised on {raised}"
