"""`supplymon replay FILE`: publish a history (JSON Lines, optionally .gz).

With `--embedded`: start the embedded stack on the data dir, publish every line,
wait until the worker has processed and stored all of it, stop, exit 0. Without:
publish to the configured Kafka. Either way as fast as possible, or paced at
`--speed` event-time seconds per second.
"""
from __future__ import annotations

import asyncio
import gzip
import sys
import time
from pathlib import Path
from typing import IO, Iterator

import orjson

from supplymon.publish import Publisher, ensure_topics
from supplymon.runner import RunError, embedded_stack
from supplymon.settings import Settings


def open_history(path: Path) -> IO[bytes]:
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise RunError(f"cannot read {path}: {exc.strerror}") from None
    if handle.read(2) == b"\x1f\x8b":  # gzip magic, whatever the file is called
        handle.close()
        return gzip.open(path, "rb")
    handle.seek(0)
    return handle


def read_lines(path: Path) -> Iterator[bytes]:
    with open_history(path) as handle:
        try:
            for line in handle:
                if line.strip():
                    yield line
        except (OSError, EOFError) as exc:
            raise RunError(f"{path} is damaged: {exc}") from None


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


async def _publish(settings: Settings, path: Path, speed: float | None, meter: Meter):
    async with Publisher(settings, speed=speed) as publisher:
        for n, line in enumerate(read_lines(path), 1):
            await publisher.publish(line)
            meter(n)
        await publisher.flush()
        meter(publisher.stats.events + publisher.stats.ticks, force=True)
    return publisher.stats


def replay(settings: Settings, path: Path, embedded: bool, speed: float | None = None) -> int:
    if not path.exists():
        raise RunError(f"{path} does not exist")
    if not embedded:
        if settings.embedded_kafka:
            raise RunError("no Kafka configured: set SUPPLYMON_KAFKA=kafka://host:port, or use --embedded")
        ensure_topics(settings)
        stats = asyncio.run(_publish(settings, path, speed, Meter("published")))
        print(f"published {stats.events:,} events and {stats.ticks:,} ticks "
              f"({stats.unreadable:,} unreadable lines, left to the worker's dead-letter topic)")
        return 0
    with embedded_stack(settings, live=False) as (settings, worker):
        stats = asyncio.run(_publish(settings, path, speed, Meter("published")))
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
