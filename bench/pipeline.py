"""Throughput benchmark, every figure measured in one run on the embedded broker.

    make bench                       # 200,000 events, 4 partitions
    python -m bench.pipeline --events 50000
    python -m bench.pipeline --events 50000 --only pipeline,live   # some parts alone (see --help)

1. raw ceiling: a bare aiokafka consumer + json.loads over the input topics;
2. the peer: a quixstreams app, 1 h tumbling count per distributor (group_by);
   and Faust's own ceiling: supplymon's Faust app with an agent that takes the
   messages in batches and does nothing (bench/faust_floor.py);
3. supplymon end to end: first event published to last fact stored, one worker;
4. the worker's peak RSS, and the bytes of the order table's columns per order
   held (its `/state`); the seconds its stages took (decode, lifecycle, windows,
   signals, early warnings, store) in us/event, and the two decoders over the
   same lines;
5. live alert latency at a steady 2,000 events/s (another worker, live event
   times, deadlines of seconds): from the tick that takes stream time past a
   deadline being published to the alert arriving on the alerts topic; and where
   the worker's batches spent their wall time, stage by stage (agents/latency.py).
6. `replay FILE --direct` against a `json.loads` loop over the same file (bench/direct.py).
Prints a table, then `live alert p99 = ...`, `pipeline/peer = P`, `direct/raw = D`, and last
`pipeline/raw = R` (each ratio when its parts ran).
"""
from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import fields, replace
from datetime import datetime
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from supplymon.core import jsonbytes
from supplymon.embedded import EmbeddedBroker, free_port
from supplymon.publish import Publisher, ensure_topics
from supplymon.runner import WorkerProcess
from supplymon.settings import SHANGHAI, Rules, Settings, Topics
from supplymon.simulate import generate, min_days

EVENTS_PER_ORDER = 3.9  # what the simulator averages (order, answer, shipments, arrivals)


def history(events: int, seed: int = 7) -> list[bytes]:
    days = max(14, min_days("all"))  # every story needs its days
    per_day = max(1, int(events / EVENTS_PER_ORDER / days))
    # Every story told, so every rule (early warnings too) has work to do.
    lines = [jsonbytes.dumps(e) for e in generate(days=days, orders_per_day=per_day, seed=seed, scenario="all")]
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


def faust_floor(settings: Settings, total: int, data_dir: Path, mode: str) -> float:
    """messages/s of an agent doing nothing, in a worker of its own (bench/faust_floor.py):
    `batches` through the batch intake, `messages` through Faust's per-message path."""
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "bench.faust_floor", settings.kafka_url, str(total), str(data_dir), mode,
               *settings.topics.inputs]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                              cwd=Path(__file__).resolve().parent.parent)
    except subprocess.TimeoutExpired:
        # A reference figure only: the rest of the bench still runs (the figure is printed as nan).
        print(f"bench.faust_floor ({mode}) did not deliver {total:,} messages within 600 s", file=sys.stderr)
        return float("nan")
    found = re.search(r"floor (\d+)", done.stdout)
    if found is None:
        raise RuntimeError(f"bench.faust_floor failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return float(found.group(1))


def rss_kib(pid: int, field: str = "VmHWM") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _worker_settings(settings: Settings, data_dir: Path, prefix: str, **overrides) -> Settings:
    """Settings for a bench worker: its own topics, group, data dir and web port."""
    topics = Topics(**{f.name: f"{prefix}.{f.default}" for f in fields(Topics)})
    return replace(settings, data_dir=data_dir, web_port=free_port(), live_tick_seconds=0,
                   app_id=f"bench-{prefix}-{os.getpid()}", topics=topics, **overrides)


def _start_worker(settings: Settings) -> WorkerProcess:
    ensure_topics(settings)
    (settings.data_dir / "logs").mkdir(parents=True, exist_ok=True)
    worker = WorkerProcess(settings, settings.data_dir / "logs" / "worker.log").start()
    worker.wait_ready()
    return worker


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pipeline(settings: Settings, lines: list[bytes], data_dir: Path,
             broker_pid: int) -> tuple[float, int, dict, dict, int]:
    """Returns messages/s, the worker's peak RSS (KiB), its /state (orders, bytes),
    the seconds it spent per stage (its metrics; and the CPU seconds of the broker
    and of this process, the publisher, as "process:<name>") and the messages published."""
    worker_settings = _worker_settings(settings, data_dir, "pipe")
    worker = _start_worker(worker_settings)
    try:
        idle = stage_seconds(worker.get("/metrics", timeout=60).decode())  # start-up, before any event
        broker_cpu, own_cpu = process_cpu(broker_pid), process_cpu(os.getpid())
        started = time.perf_counter()
        _, end_offsets = asyncio.run(publish(worker_settings, lines))
        worker.wait_stored(end_offsets, sum(end_offsets.values()))
        elapsed = time.perf_counter() - started
        others = {"process:broker (Tansu)": process_cpu(broker_pid) - broker_cpu,
                  "process:publisher (this bench's process)": process_cpu(os.getpid()) - own_cpu}
        peak = rss_kib(worker.process.pid)
        state = json.loads(worker.get("/state", timeout=60))
        stages = stage_seconds(worker.get("/metrics", timeout=60).decode())
        stages = {name: seconds - idle.get(name, 0.0) for name, seconds in stages.items()}
        stages["end to end (wall)"] = elapsed
        stages.update(others)
        messages = sum(end_offsets.values())
        return messages / elapsed, peak, state, stages, messages
    finally:
        worker.stop()


STAGES = ("decode", "lifecycle", "windows", "signals", "early_warnings")


def stage_seconds(metrics_text: str) -> dict[str, float]:
    """Seconds per stage from a worker's /metrics: `supplymon_stage_seconds_total`, and
    the store's inserts (`supplymon_sink_write_seconds_sum`, on the store's thread);
    CPU seconds per thread (`supplymon_thread_cpu_seconds_total`) as "thread:<name>"."""
    out = {stage: 0.0 for stage in STAGES}
    for line in metrics_text.splitlines():
        found = re.match(r'supplymon_stage_seconds_total\{stage="(\w+)"\} (\S+)', line)
        threads = re.match(r'supplymon_thread_cpu_seconds_total\{thread="([^"]+)"\} (\S+)', line)
        if found:
            out[found.group(1)] = float(found.group(2))
        elif threads:
            out[f"thread:{threads.group(1)}"] = float(threads.group(2))
        elif line.startswith("supplymon_per_event_path_events_total "):
            out["per_event_path"] = float(line.split()[1])
        elif line.startswith("supplymon_sink_write_seconds_sum "):
            out["store"] = float(line.split()[1])
    return out


def decode_rates(lines: list[bytes], repeat: int = 3) -> tuple[float, float]:
    """us/event of the full validator (orjson + Python checks, one line at a time) and
    of the batch decode (msgspec Structs, falling back to it), best of `repeat`."""
    from schemas.events import parse_event
    from schemas.fast_events import decode_batch

    def best(run) -> float:
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            run()
            times.append(time.perf_counter() - started)
        return min(times) / len(lines) * 1e6

    full = best(lambda: [parse_event(line) for line in lines])
    fast = best(lambda: [decode_batch(lines[i:i + 2000]) for i in range(0, len(lines), 2000)])
    return full, fast


# Live latency: deadlines of seconds, so that alerts fire while the load runs.
LIVE_RULES = "[response]\noverdue_hours = {o!r}\nescalation_hours = {e!r}\n".format(o=2 / 3600, e=4 / 3600)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, SHANGHAI).isoformat(timespec="milliseconds")


def _live_order(i: int, ms: int) -> dict:
    return {"event_id": f"live-o{i}", "kind": "order", "ts": _iso(ms), "order_id": f"LIVE{i}",
            "institution_id": f"H{i % 300}", "region_code": "150102", "area": "urban", "grassroots": False,
            "distributor_id": f"D{i % 20}", "manufacturer_id": f"M{i % 7}", "product_id": f"P{i % 50}",
            "product_kind": "drug", "vbp": True, "quantity": 10, "unit_price": 2.5}


def _live_response(i: int, ms: int) -> dict:
    return {"event_id": f"live-r{i}", "kind": "response", "ts": _iso(ms), "order_id": f"LIVE{i}",
            "distributor_id": f"D{i % 20}", "decision": "accepted", "confirmed_quantity": 10}


async def _drive_live(settings: Settings, rate: int, seconds: float, settle: float) -> tuple[list, list, int]:
    """Publish orders (every 10th never answered) and their responses 1 s later at
    `rate` events/s, with event time = now, and a tick to every partition every 50 ms;
    meanwhile read the alerts topic. Returns ticks [(ts ms, published at)], alerts
    [(raised_at ms, seen at)] and the events published."""
    # A short fetch wait: the embedded broker answers a waiting fetch late (streams/consumer.py, 3.),
    # which would time this reader, not the worker.
    consumer = AIOKafkaConsumer(settings.topics.alerts, bootstrap_servers=settings.kafka_url.removeprefix("kafka://"),
                                enable_auto_commit=False, auto_offset_reset="earliest", group_id=None,
                                fetch_max_wait_ms=10)
    await consumer.start()
    alerts: list[tuple[int, float]] = []
    stop = asyncio.Event()

    async def read_alerts() -> None:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=20)
            seen = time.time()
            for records in batches.values():
                alerts.extend((orjson.loads(r.value)["raised_at"], seen) for r in records)

    reader = asyncio.create_task(read_alerts())
    ticks: list[tuple[int, float]] = []
    published = 0
    try:
        async with Publisher(settings) as publisher:
            orders_per_second = rate / 1.9  # 9 of 10 orders are answered: rate events/s in all
            begin, n, answer = time.time(), 0, deque()
            next_tick = begin
            while True:
                now = time.time()
                if now >= next_tick:
                    ms = int(now * 1000)
                    ticks.append((ms, now))
                    await publisher.publish(orjson.dumps({"event_id": f"live-t{ms}", "kind": "tick", "ts": _iso(ms)}))
                    next_tick += 0.05
                    if now - begin > seconds + settle:
                        break
                if now - begin <= seconds:
                    ms = int(now * 1000)
                    while n < (now - begin) * orders_per_second:
                        await publisher.publish(orjson.dumps(_live_order(n, ms)))
                        if n % 10:
                            answer.append((ms + 1000, n))
                        n += 1
                        published += 1
                    while answer and answer[0][0] <= ms:
                        _, i = answer.popleft()
                        await publisher.publish(orjson.dumps(_live_response(i, ms)))
                        published += 1
                await asyncio.sleep(max(0.0, 0.01 - (time.time() - now)))
        await asyncio.sleep(2.0)  # the last alerts
    finally:
        stop.set()
        await reader
        await consumer.stop()
    return ticks, alerts, published


def live_latency(settings: Settings, data_dir: Path, rate: int = 2000, seconds: float = 20.0) -> dict:
    """Alert latency at a steady `rate`: per alert, from the first tick published with
    an event time past its deadline (when the watermark can pass it) to the alert
    being read from the alerts topic."""
    data_dir.mkdir(parents=True, exist_ok=True)
    rules_path = data_dir / "live-rules.toml"
    rules_path.write_text(LIVE_RULES)
    # Topics and group of its own (the data dir's name): a second run on the same topics would
    # read the first run's alerts (timed against its own first tick) and resume its group.
    worker_settings = _worker_settings(settings, data_dir, data_dir.name, rules_file=str(rules_path),
                                       rules=Rules.load(rules_path))
    worker = _start_worker(worker_settings)
    try:
        started = time.perf_counter()
        ticks, alerts, published = asyncio.run(_drive_live(worker_settings, rate, seconds, settle=5.0))
        elapsed = time.perf_counter() - started
        metrics_text = worker.get("/metrics", timeout=60).decode()
        batch_stages, cpu = batch_latency(metrics_text), stage_seconds(metrics_text)
    finally:
        worker.stop()
    tick_ts = [ts for ts, _ in ticks]
    latencies = []
    for raised_at, seen in alerts:
        i = bisect.bisect_right(tick_ts, raised_at)  # the first tick later than the deadline
        if i < len(ticks):
            latencies.append((seen - ticks[i][1]) * 1000)
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")

    return {"p50": pct(0.5), "p99": pct(0.99), "alerts": len(latencies), "rate": published / seconds,
            "elapsed": elapsed, "stages": batch_stages, "cpu": cpu}


def batch_latency(metrics_text: str) -> dict[str, dict]:
    """Per stage of `supplymon_batch_latency_seconds` (agents/latency.py): batches,
    mean seconds, and the histogram's p99 (the upper bound of its bucket)."""
    out: dict[str, dict] = {}
    for line in metrics_text.splitlines():
        found = re.match(r'supplymon_batch_latency_seconds_(bucket|sum|count)\{(.*)\} (\S+)', line)
        if not found:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', found.group(2)))
        entry = out.setdefault(labels["stage"], {"buckets": []})
        if found.group(1) == "bucket":
            entry["buckets"].append((float(labels["le"]), float(found.group(3))))
        else:
            entry[found.group(1)] = float(found.group(3))
    for entry in out.values():
        count = entry.get("count", 0.0)
        entry["mean"] = entry.get("sum", 0.0) / count if count else float("nan")
        entry["p99"] = next((le for le, n in sorted(entry.pop("buckets")) if count and n >= 0.99 * count),
                            float("nan"))
    return out


def print_batch_latency(live: dict, title: str) -> None:
    """Where a batch's wall time went in the live run, stage by stage (agents/latency.py)."""
    stages = live.get("stages") or {}
    if not stages:
        return
    print(f"{title}: batch wall time per stage".ljust(48) + "  mean ms  p99 ms (bucket)  batches")
    for stage in ("queued", "computed", "gathered", "stored", "announced", "acked", "alerted"):
        entry = stages.get(stage)
        if entry:
            name = "alerted (fetch -> alerts sent; with alerts)" if stage == "alerted" else stage
            print(f"  {name:<46} {entry['mean'] * 1000:>7.1f}  {entry['p99'] * 1000:>8.0f}         "
                  f"{entry.get('count', 0):>7,.0f}")
    cpu = live.get("cpu") or {}
    if cpu:  # the worker's CPU over its whole life (start-up included), seconds
        parts = [f"{name} {cpu.get(name, 0.0):.1f}" for name in STAGES]
        parts += [f"{THREADS.get(name[7:], name[7:]).split(' (')[0]} {seconds:.1f}"
                  for name, seconds in sorted(cpu.items()) if name.startswith("thread:")]
        print(f"  worker CPU s (whole run, start-up included): {', '.join(parts)}")


def direct_replay(events: int, partitions: int) -> dict:
    """bench/direct.py in a process of its own (the embedded store: one data dir a process)."""
    result = subprocess.run([sys.executable, "-m", "bench.direct", "--json", "--events", str(events),
                             "--partitions", str(partitions)], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.splitlines()[-1])


PARTS = ("raw", "peer", "floor", "pipeline", "live", "decode", "direct")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--only", default=",".join(PARTS),
                        help=f"comma-separated parts to run, of {','.join(PARTS)} (default: all); "
                             "e.g. --only pipeline,live. A ratio is printed when both its parts ran. "
                             "`live` alone runs at 2,000 events/s and at --half-rate")
    parser.add_argument("--half-rate", type=int, default=0,
                        help="events/s of the second live run when `pipeline` does not run (default 1,000)")
    args = parser.parse_args(argv)
    only = {part.strip() for part in args.only.split(",") if part.strip()}
    unknown = only - set(PARTS)
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))} (known: {', '.join(PARTS)})")
    work = Path(tempfile.mkdtemp(prefix="supplymon-bench-"))
    r: dict = {}
    try:
        lines = history(args.events)
        size = sum(map(len, lines)) / len(lines)
        with EmbeddedBroker() as broker:
            settings = replace(Settings.from_env({}).with_embedded_broker(broker.url), partitions=args.partitions)
            ensure_topics(settings)
            if only & {"raw", "peer", "floor"}:
                publish_s, end_offsets = asyncio.run(publish(settings, lines))
                r["messages"] = sum(end_offsets.values())  # ticks fan out to every partition
                r["publish"] = r["messages"] / publish_s
            if "raw" in only:
                r["raw"] = asyncio.run(raw_ceiling(settings, end_offsets))
            if "peer" in only:
                r["peer"] = peer(settings, r["messages"], work / "peer-state")
            if "floor" in only:
                r["floor"] = faust_floor(settings, r["messages"], work / "floor", "messages")
                r["batch_floor"] = faust_floor(settings, r["messages"], work / "batch-floor", "batches")
            if "pipeline" in only:
                r["pipe"], r["peak_kib"], r["state"], r["stages"], r["messages"] = pipeline(
                    settings, lines, work / "data", broker.process.pid)
            if "live" in only:
                r["live"] = live_latency(settings, work / "live")
                # Also at half of what the worker sustained: a figure that means the same on a slower machine.
                half = int(r["pipe"] / 2) if "pipe" in r else (args.half_rate or 1000)
                r["live_half"] = live_latency(settings, work / "live-half", rate=max(100, half))
        if "decode" in only:
            r["full_us"], r["fast_us"] = decode_rates(lines)
        if "direct" in only:
            r["direct"] = direct_replay(args.events, args.partitions)
        report(r, size, args.partitions)
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(r: dict, size: float, partitions: int) -> None:
    """The table of what ran, then the ratios whose parts ran (`pipeline/raw` last)."""
    rows = []
    if "messages" in r:
        rows.append(("messages (events, ticks fanned out)", f"{r['messages']:,}",
                     f"~{size:.0f} B/event, {partitions} partitions"))
    if "publish" in r:
        # supplymon end to end is timed from the first event published: it can be no
        # faster than the publisher alone, whatever the worker does.
        rows.append(("batched producer (supplymon Publisher)", f"{r['publish']:,.0f}/s",
                     f"the most end to end can be; publisher/peer = {r['publish'] / r['peer']:.2f}"
                     if "peer" in r else ""))
    if "raw" in r:
        rows.append(("raw ceiling: aiokafka + json.loads", f"{r['raw']:,.0f}/s", ""))
    if "peer" in r:
        rows.append(("peer: quixstreams 1 h tumbling count per distributor", f"{r['peer']:,.0f}/s",
                     "from its first message"))
    if "floor" in r:
        rows.append(("Faust floor: supplymon's app, an agent doing nothing", f"{r['floor']:,.0f}/s",
                     "per message (take_events)" + (f"; floor/peer = {r['floor'] / r['peer']:.2f}" if "peer" in r else "")))
        rows.append(("batch floor: the same, whole fetched batches", f"{r['batch_floor']:,.0f}/s",
                     "batch intake, acked per batch" + (f"; batch floor/raw = {r['batch_floor'] / r['raw']:.2f}"
                                                        if "raw" in r else "")))
    if "pipe" in r:
        orders, state, peak_kib = r["state"]["orders"], r["state"], r["peak_kib"]
        rows.append(("supplymon end to end (publish -> stored)", f"{r['pipe']:,.0f}/s",
                     "one worker, already joined" + (f"; {r['pipe'] / r['batch_floor']:.2f} of the batch floor"
                                                     if "batch_floor" in r else "")))
        rows.append(("worker peak RSS", f"{peak_kib / 1024:,.0f} MiB", f"{orders:,} orders held by the flow, "
                     f"{peak_kib * 1024 / max(orders, 1):,.0f} B/order (whole process)"))
        rows.append(("order table's columns (allocated)", f"{state['bytes'] / max(orders, 1):,.0f} B/order",
                     f"{state['bytes'] / 1048576:,.1f} MiB for {orders:,} orders (capacity doubles as it grows)"))
    if "live" in r:
        live, live_half = r["live"], r["live_half"]
        rows.append(("live alert latency p50 / p99", f"{live['p50']:,.0f} / {live['p99']:,.0f} ms",
                     f"{live['alerts']:,} alerts at {live['rate']:,.0f} events/s"
                     + (" (more than the worker sustains here: a backlog grows)"
                        if "pipe" in r and live["rate"] > r["pipe"] else "")))
        rows.append(("live alert latency p50 / p99, half load" if "pipe" in r else "live alert latency p50 / p99, lower load",
                     f"{live_half['p50']:,.0f} / {live_half['p99']:,.0f} ms",
                     f"{live_half['alerts']:,} alerts at {live_half['rate']:,.0f} events/s"))
    if "direct" in r:
        rows.append(("raw: json.loads over the history file", f"{r['direct']['raw']:,.0f}/s", ""))
        rows.append(("replay --direct (file -> stored, no broker)", f"{r['direct']['direct']:,.0f}/s",
                     f"{r['direct']['events']:,} events; bench/direct.py"))
        cpu_us = r["direct"]["cpu_us"]
        bound = (os.cpu_count() or 1) * 1e6 / cpu_us
        rows.append(("replay --direct, CPU of all its processes and threads", f"{cpu_us:.1f} us/event",
                     f"on {os.cpu_count()} CPUs at most {bound:,.0f}/s: "
                     f"direct/raw <= {bound / r['direct']['raw']:.2f}"))
    width = max((len(row[0]) for row in rows), default=0)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>14}  {note}")
    if "full_us" in r:
        print(f"decode, full validator (orjson + checks)  {r['full_us']:>8.2f} us/event")
        print(f"decode, msgspec batch (+ fallback)        {r['fast_us']:>8.2f} us/event  "
              f"fast/full = {r['fast_us'] / r['full_us']:.2f}")
    if "stages" in r:
        print_stages(r["stages"], r["messages"])
    if "live" in r:
        print_batch_latency(r["live"], f"live, {r['live']['rate']:,.0f} events/s")
        print_batch_latency(r["live_half"], f"live, {r['live_half']['rate']:,.0f} events/s")
        print(f"live alert p99 = {r['live']['p99']:,.0f} ms at {r['live']['rate']:,.0f} events/s (target < 1,000)")
    if "pipe" in r and "peer" in r:
        # Were the worker, the broker and the publisher always busy in parallel, the run
        # could go no faster than their CPU per event allows on this machine's CPUs.
        cpu = machine_cpu(r["stages"])
        if cpu:
            bound = (os.cpu_count() or 1) * r["messages"] / cpu
            print(f"at most {bound:,.0f}/s on {os.cpu_count()} CPUs at this CPU per event: "
                  f"pipeline/peer <= {bound / r['peer']:.2f}")
        print(f"pipeline/peer = {r['pipe'] / r['peer']:.2f}")
    if "direct" in r:
        print(f"direct/raw = {r['direct']['direct'] / r['direct']['raw']:.3f}")
    if "pipe" in r and "raw" in r:
        print(f"pipeline/raw = {r['pipe'] / r['raw']:.3f}")


THREADS = {"MainThread": "main thread (event loop: Faust, agents, sends)", "Thread": "Faust's consumer thread (fetches)",
           "clickhouse": "store thread (Arrow rows, inserts)", "native": "native threads (chdb)"}


def print_stages(stages: dict[str, float], events: int) -> None:
    """Per stage, us per event in the pipeline run, and its share of the wall time:
    CPU time of the worker's main thread, and the store's inserts (wall time on
    their own thread, beside the others); then the CPU of each of the worker's
    threads over the run, and what of the main thread's is outside the stages
    (Kafka intake, sends, changelogs, Faust, the agents' shells)."""
    wall = stages["end to end (wall)"]

    def line(name: str, seconds: float) -> None:
        print(f"  {name:<46} {seconds / events * 1e6:>8.1f}   {seconds / wall:>6.1%}")

    print(f"per stage, pipeline run ({events:,} messages)".ljust(48) + "us/event   share of wall")
    untimed = [name for name in STAGES if not stages.get(name)]
    for name in (*STAGES, "store", "end to end (wall)"):
        if name not in untimed:
            line("lifecycle (the dataflow, flow.process)" if name == "lifecycle" and untimed else name,
                 stages.get(name, 0.0))
    if untimed:
        print(f"  (not timed apart by the worker, inside the dataflow's figure: {', '.join(untimed)})")
    if "per_event_path" in stages:
        print(f"  events applied one by one (the per-event core's rare cases): {stages['per_event_path']:,.0f}"
              f" ({stages['per_event_path'] / events:.1%} of the messages)")
    threads = {name.removeprefix("thread:"): seconds for name, seconds in stages.items() if name.startswith("thread:")}
    if not threads:
        rest = wall - sum(stages.get(name, 0.0) for name in STAGES)
        line("rest (Kafka intake, sends, changelogs, waits)", rest)
        return
    print("CPU per thread over the run".ljust(48) + "us/event   share of wall")
    for name, seconds in sorted(threads.items(), key=lambda item: -item[1]):
        line(THREADS.get(name, name), seconds)
    main = threads.get("MainThread", 0.0)
    line("main thread outside the stages", main - sum(stages.get(name, 0.0) for name in STAGES))
    line("worker process, all threads", sum(threads.values()))
    processes = {name.removeprefix("process:"): seconds for name, seconds in stages.items()
                 if name.startswith("process:")}
    for name, seconds in processes.items():
        line(name, seconds)
    if processes:
        line("the machine: worker, broker and publisher", machine_cpu(stages))


def machine_cpu(stages: dict[str, float]) -> float:
    """CPU seconds of the pipeline run over the worker's threads, the broker and the publisher."""
    return sum(seconds for name, seconds in stages.items() if name.startswith(("thread:", "process:")))


if __name__ == "__main__":
    sys.exit(main())
