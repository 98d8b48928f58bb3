"""`supplymon replay FILE`: publish a history (JSON Lines, optionally .gz, or Parquet;
or, with `--from-clickhouse`, the stored `events_raw`: supplymon/sources.py).

With `--embedded`: start the embedded stack on the data dir, publish every line,
wait until the worker has processed and stored all of it, stop, exit 0. With
`--namespace NAME` (settings already namespaced): start a worker of that namespace
against the configured Kafka and ClickHouse (its own topics, consumer group and
database), publish, wait until all is stored, stop it; live monitoring is
untouched. Otherwise: publish to the configured Kafka. Either way as fast as
possible, or paced at `--speed` event-time seconds per second.
"""
from __future__ import annotations

import asyncio
import hashlib
import sys
import time
from contextlib import contextmanager
from dataclasses import replace
from typing import Callable, Iterable, Iterator

import orjson

from supplymon.embedded import free_port
from supplymon.publish import Publisher, ensure_topics
from supplymon.runner import RunError, WorkerProcess, embedded_stack, prepare_data_dir, store_query
from supplymon.settings import Settings


class Meter:
    """Prints progress to stderr at most once a second, and a last line at the end."""

    def __init__(self, label: str, out=sys.stderr):
        self.label = label
        self.out = out
        self.started = time.monotonic()
        self.last = 0.0

    def __call__(self, done: int, total: int | None = None, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < 1.0:
            return
        self.last = now
        rate = done / max(now - self.started, 1e-6)
        share = f"/{total:,} ({100 * done / total:.0f}%)" if total else ""
        print(f"{self.label}: {done:,}{share}, {rate:,.0f}/s", file=self.out, flush=True)


def stored_lines(settings: Settings) -> Callable[[bytes], bool]:
    """Whether a line is already in the store: an event whose event_id is in
    `events_raw` or `dead_letters`, or a line stored as it is in `dead_letters`
    (asked of the running worker's `/sql`, or of the store directly). Ticks are
    always sent again: a rebuild does not republish them (supplymon/runner.py), and
    one a partition has read already changes nothing there."""
    ids = set(store_query(settings, "SELECT event_id FROM supplymon.events_raw UNION DISTINCT "
                                    "SELECT assumeNotNull(event_id) FROM supplymon.dead_letters WHERE event_id IS NOT NULL",
                          "TSVRaw").decode().splitlines())
    digests = set(store_query(settings, "SELECT DISTINCT hex(MD5(original)) FROM supplymon.dead_letters",
                              "TSVRaw").decode().lower().splitlines())

    def stored(line: bytes) -> bool:
        raw = line.strip()
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            doc = None
        if isinstance(doc, dict) and doc.get("kind") == "tick":
            return False
        if isinstance(doc, dict) and isinstance(doc.get("event_id"), str) and doc["event_id"] in ids:
            return True
        return hashlib.md5(raw).hexdigest() in digests

    return stored


async def _publish(settings: Settings, lines: Iterable[bytes], speed: float | None, meter: Meter,
                   skip: Callable[[bytes], bool] | None = None):
    async with Publisher(settings, speed=speed) as publisher:
        skipped = 0
        for n, line in enumerate(lines, 1):
            if skip is not None and skip(line):
                skipped += 1
                continue
            await publisher.publish(line)
            meter(n)
        if skip is not None:
            print(f"skipped {skipped:,} lines already stored", file=sys.stderr, flush=True)
        await publisher.flush()
        meter(publisher.stats.events + publisher.stats.ticks, force=True)
    return publisher.stats


def replay(settings: Settings, lines: Iterable[bytes], embedded: bool, speed: float | None = None,
           skip_stored: bool = False) -> int:
    """Publish `lines` (supplymon.sources); with a worker of its own when embedded or
    namespaced, until all is stored."""
    if not embedded and settings.embedded_kafka:
        raise RunError("no Kafka configured: set SUPPLYMON_KAFKA=kafka://host:port, or use --embedded")
    if not embedded and not settings.namespace:
        ensure_topics(settings)
        skip = stored_lines(settings) if skip_stored else None
        stats = asyncio.run(_publish(settings, lines, speed, Meter("published"), skip))
        print(f"published {stats.events:,} events and {stats.ticks:,} ticks "
              f"({stats.unreadable:,} unreadable lines, left to the worker's dead-letter topic)")
        return 0
    stack = embedded_stack(settings, live=False) if embedded else namespace_stack(settings)
    with stack as (settings, worker):
        if settings.namespace:
            print(f"namespace {settings.namespace}: topics {settings.topics.orders} ..., consumer group "
                  f"{settings.app_id}, ClickHouse database {settings.clickhouse_database}", flush=True)
        skip = stored_lines(settings) if skip_stored else None
        stats = asyncio.run(_publish(settings, lines, speed, Meter("published"), skip))
        total = sum(stats.end_offsets.values())
        meter = Meter("processed and stored")
        worker.wait_stored(stats.end_offsets, total, report=meter)
        meter(total, total, force=True)
        print(summary(worker), flush=True)
        if settings.notify and settings.recipients_file:
            print(notified(worker), flush=True)
    return 0


def notified(worker) -> str:
    """Waits until the worker has sent the replay's notifications; what it sent."""
    from supplymon.notify.service import wait_notified

    wait_notified(lambda: orjson.loads(worker.get("/notify/progress")))
    rows = [orjson.loads(line) for line in worker.query(
        "SELECT status, count() AS n FROM supplymon.notifications FINAL GROUP BY status ORDER BY status").splitlines()]
    return "通知 / notifications: " + (", ".join(f"{r['n']:,} {r['status']}" for r in rows) or "none")


@contextmanager
def namespace_stack(settings: Settings) -> Iterator[tuple[Settings, WorkerProcess]]:
    """A worker of the namespace in `settings` against the configured Kafka (its own
    topics, created here) and ClickHouse (its own database), replaying: no live ticks."""
    logs = prepare_data_dir(settings)
    ensure_topics(settings)
    # Its web server is for this command only: on loopback, on a free port.
    settings = replace(settings, live_tick_seconds=0, web_host="127.0.0.1", web_port=free_port("127.0.0.1"))
    worker = WorkerProcess(settings, logs / "worker.log").start()
    try:
        worker.wait_ready()
        yield settings, worker
    finally:
        worker.stop()


def summary(worker) -> str:
    rows = [orjson.loads(line) for line in worker.query(
        "SELECT (SELECT count() FROM supplymon.events_raw FINAL) AS events,"
        " (SELECT count() FROM supplymon.order_facts FINAL) AS orders,"
        " (SELECT countIf(on_time = 1) FROM supplymon.order_facts FINAL) AS on_time,"
        " (SELECT countIf(on_time = 0) FROM supplymon.order_facts FINAL) AS late_or_undelivered,"
        " (SELECT count() FROM supplymon.alerts FINAL) AS alerts,"
        " (SELECT count() FROM supplymon.dead_letters FINAL) AS dead_letters").splitlines()]
    s = rows[0]
    return (f"stored: {s['events']:,} events, {s['orders']:,} orders "
            f"({s['on_time']:,} on time, {s['late_or_undelivered']:,} late or undelivered), "
            f"{s['alerts']:,} alerts, {s['dead_letters']:,} dead letters")
