"""Throughput benchmark, every figure measured in one run on the embedded broker.

    make bench                       # 200,000 events, 4 partitions
    python -m bench.pipeline --events 50000

1. raw ceiling: a bare aiokafka consumer + json.loads over the input topics;
2. the peer: a quixstreams app, 1 h tumbling count per distributor (group_by);
3. supplymon end to end: first event published to last fact stored, one worker;
4. the worker's peak RSS and RSS per open order.
Prints a table, then `pipeline/peer = P`, and last `pipeline/raw = R`.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from supplymon.embedded import EmbeddedBroker, free_port
from supplymon.publish import Publisher, ensure_topics
from supplymon.runner import WorkerProcess
from supplymon.settings import Settings
from supplymon.simulate import generate

EVENTS_PER_ORDER = 3.9  # what the simulator averages (order, answer, shipments, arrivals)


def history(events: int, seed: int = 7) -> list[bytes]:
    days = 14
    per_day = max(1, int(events / EVENTS_PER_ORDER / days))
    lines = [orjson.dumps(e) for e in generate(days=days, orders_per_day=per_day, seed=seed)]
    return lines[:events]


async def publish(settings: Settings, lines: list[bytes]) -> tuple[float, dict[str, int]]:
    started = time.perf_counter()
    async with Publisher(settings) as publisher:
        for line in lines:
            await publisher.publish(line)
    return time.perf_counter() - started, publisher.stats.end_offsets


async def raw_ceiling(settings: Settings, end_offsets: dict[str, int]) -> float:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_url.removeprefix("kafka://"),
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=4 << 20, fetch_max_bytes=64 << 20)
    await consumer.start()
    tps = [TopicPartition(topic, int(partition))
           for topic, partition in (key.rsplit(":", 1) for key in end_offsets)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    total, seen = sum(end_offsets.values()), 0
    started = time.perf_counter()
    try:
        while seen < total:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batches.values():
                for record in records:
                    json.loads(record.value)
                seen += len(records)
    finally:
        await consumer.stop()
    return total / (time.perf_counter() - started)


def peer(settings: Settings, total: int, state_dir: Path) -> float:
    """quixstreams: 1 h tumbling count per distributor over the same input topics."""
    from quixstreams import Application

    processed = [0]
    first = [0.0]
    done = threading.Event()

    inputs = set(settings.topics.inputs)

    def on_processed(topic: str, partition: int, offset: int) -> None:
        # Timed from its first message: group join and topic creation are not throughput.
        # Only input messages count (group_by re-reads each from a repartition topic).
        if topic not in inputs:
            return
        processed[0] += 1
        if processed[0] == 1:
            first[0] = time.perf_counter()
        if processed[0] >= total:
            done.set()
            app.stop()

    app = Application(broker_address=settings.kafka_url.removeprefix("kafka://"),
                      consumer_group=f"bench-peer-{os.getpid()}", auto_offset_reset="earliest",
                      state_dir=str(state_dir), loglevel="ERROR", on_message_processed=on_processed)
    for name in settings.topics.inputs:
        topic = app.topic(name, value_deserializer="json")
        sdf = app.dataframe(topic)
        sdf = sdf.filter(lambda v: isinstance(v, dict) and "distributor_id" in v)
        sdf = sdf.group_by("distributor_id", name=f"dist-{name.rsplit('.', 1)[-1]}")
        sdf.tumbling_window(3_600_000).count().final()
    app.run()
    return total / (time.perf_counter() - first[0]) if done.is_set() else float("nan")


def rss_kib(pid: int, field: str = "VmHWM") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def pipeline(settings: Settings, lines: list[bytes], data_dir: Path) -> tuple[float, int, int]:
    web = free_port()
    worker_settings = replace(settings, data_dir=data_dir, web_port=web, live_tick_seconds=0,
                              app_id=f"bench-{os.getpid()}", topics=replace(
                                  settings.topics, **{f: f"pipe.{getattr(settings.topics, f)}" for f in (
                                      "orders", "responses", "shipments", "arrivals", "deadletter", "alerts")}))
    ensure_topics(worker_settings)
    (data_dir / "logs").mkdir(parents=True, exist_ok=True)
    worker = WorkerProcess(worker_settings, data_dir / "logs" / "worker.log").start()
    try:
        worker.wait_ready()
        started = time.perf_counter()
        _, end_offsets = asyncio.run(publish(worker_settings, lines))
        worker.wait_stored(end_offsets, sum(end_offsets.values()))
        elapsed = time.perf_counter() - started
        peak = rss_kib(worker.process.pid)
        orders = json.loads(worker.query("SELECT count() AS n FROM supplymon.order_facts FINAL"))["n"]
        return sum(end_offsets.values()) / elapsed, peak, orders
    finally:
        worker.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="supplymon-bench-"))
    try:
        lines = history(args.events)
        size = sum(map(len, lines)) / len(lines)
        with EmbeddedBroker() as broker:
            settings = replace(Settings.from_env({}), kafka_url=broker.url, partitions=args.partitions)
            ensure_topics(settings)
            publish_s, end_offsets = asyncio.run(publish(settings, lines))
            messages = sum(end_offsets.values())  # ticks fan out to every partition
            raw = asyncio.run(raw_ceiling(settings, end_offsets))
            peer_rate = peer(settings, messages, work / "peer-state")
            pipe_rate, peak_kib, orders = pipeline(settings, lines, work / "data")
        rows = [
            ("messages (events, ticks fanned out)", f"{messages:,}", f"~{size:.0f} B/event, {args.partitions} partitions"),
            ("batched producer (supplymon Publisher)", f"{messages / publish_s:,.0f}/s", ""),
            ("raw ceiling: aiokafka + json.loads", f"{raw:,.0f}/s", ""),
            ("peer: quixstreams 1 h tumbling count per distributor", f"{peer_rate:,.0f}/s", "from its first message"),
            ("supplymon end to end (publish -> stored)", f"{pipe_rate:,.0f}/s", "one worker, already joined"),
            ("worker peak RSS", f"{peak_kib / 1024:,.0f} MiB", f"{orders:,} orders, "
             f"{peak_kib * 1024 / max(orders, 1):,.0f} B/order (whole process)"),
        ]
        width = max(len(r[0]) for r in rows)
        print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
        for name, value, note in rows:
            print(f"{name:<{width}}  {value:>14}  {note}")
        print(f"pipeline/peer = {pipe_rate / peer_rate:.2f}")
        print(f"pipeline/raw = {pipe_rate / raw:.3f}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
