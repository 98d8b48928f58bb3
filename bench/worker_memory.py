"""A worker's memory holding N open orders with the early warnings on
(`python -m bench.worker_memory`; default 1,000,000 orders).

The issue's target "1,000,000 open orders with the early warnings on in < 2 GB RSS
on one worker", measured on a real worker: the embedded broker, one `supplymon
worker` process (Faust, the batch intake, the order flow, the early warnings,
chdb storing every event), and the events of N orders published to it: every
order placed, every other one answered, none shipped or arrived, placed within
20 hours (none passes a deadline: all stay open and raise nothing) in January
2026 (in the past: the intake's future check passes, and stream time stays
within the early warnings' 29 days of every order, so they keep them all). A tick
every 1,000 orders, stamped with the last order's time, tells every input partition
the time, as the live ticks do (the shipment and arrival topics get no event, and
stream time is the least over all partitions: without ticks it would never move,
and what waits for it, e.g. the market-conduct checks' queues, would pile up). The
events are bench/order_memory.py's, so `python -m bench.order_memory --warnings`
at the same N is the same state without the worker around it.

By default every event is published at once and the worker reads them as a
backlog (a catch-up after an outage, or a replay); `--backlog N` publishes at most
N events ahead of what the worker stored, as a platform sends them to a worker
that keeps up. Catching up, a worker reads the answers' topic ahead of the
orders' (its records are smaller: more of them per fetch), and an answer read
before its order waits in the flow as a dict (~3 KB) until the order comes: the
most seen waiting is printed.

Once every offset and every signal is stored, prints the orders the worker holds
(its `/state`), its RSS now and at its peak (VmRSS, VmHWM), what of it is anonymous
memory (the heap: state, buffers, chdb's caches) and what mapped files (chdb's
library), the bytes per order, and whether it is under 2 GB (2,000,000,000 bytes).
`--restart`: then a new worker on the same data dir and broker, as after a crash or
when a rebalance hands it every partition; prints how long until it holds the
orders again (read back from the changelogs) and its early warnings their records,
and its memory then. Progress goes to stderr.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import orjson

from bench.order_memory import T0, _iso, lines
from bench.pipeline import _start_worker, _worker_settings, rss_kib
from supplymon.embedded import EmbeddedBroker
from supplymon.publish import Publisher, ensure_topics
from supplymon.runner import WorkerProcess
from supplymon.settings import HOUR_MS, Settings

LIMIT = 2_000_000_000  # the target, bytes
SPAN_MS = 20 * HOUR_MS  # orders placed within a day: none passes a deadline
TICK_EVERY = 1000  # orders between two ticks
FIELDS = ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem")


def _status(pid: int) -> dict[str, int]:
    """The worker's memory figures, in bytes (/proc/PID/status)."""
    return {field: rss_kib(pid, field) * 1024 for field in FIELDS}


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def publish_orders(settings: Settings, orders: int, worker: WorkerProcess | None = None,
                         backlog: int = 0) -> dict[str, int]:
    """The events of `orders` open orders; returns the end offsets per partition.
    `backlog` > 0: at most that many events published and not stored yet (`worker`'s
    progress), as a platform sends them to a worker that keeps up; 0: all at once."""
    started = time.perf_counter()
    step = max(1, orders // 20)
    async with Publisher(settings) as publisher:
        for n in range(orders):
            at = T0 + n * SPAN_MS // orders
            for _, line in lines(n, at):
                await publisher.publish(line)
            if (n + 1) % TICK_EVERY == 0 or n + 1 == orders:
                # Every input partition told the time, as the live ticks do: stream time is the
                # least over them, and the shipment and arrival topics carry no event here.
                await publisher.publish(orjson.dumps({"event_id": f"tick-{n}", "kind": "tick", "ts": _iso(at)}))
                if backlog and worker is not None:
                    await publisher.flush()
                    while (sum(publisher.stats.end_offsets.values())
                           - sum(worker.progress()["offsets"].values()) > backlog):
                        await asyncio.sleep(0.2)
            if (n + 1) % step == 0:
                _say(f"  published {n + 1:>10,} orders ({publisher.stats.events:,} events, "
                     f"{time.perf_counter() - started:,.0f} s)")
    return publisher.stats.end_offsets


def measure(orders: int, partitions: int, work: Path, backlog: int = 0, hold: float = 0.0,
            restart: bool = False) -> dict:
    with EmbeddedBroker() as broker:
        settings = replace(Settings.from_env({}).with_embedded_broker(broker.url), partitions=partitions)
        worker_settings = _worker_settings(settings, work / "data", "wmem")
        ensure_topics(worker_settings)
        _say(f"starting a worker (data dir {worker_settings.data_dir}) ...")
        worker = _start_worker(worker_settings)
        try:
            pid = worker.process.pid
            idle = _status(pid)
            _say(f"  ready, RSS {idle['VmRSS'] / 2**20:,.0f} MiB; publishing {orders:,} open orders ...")
            started = time.perf_counter()
            end_offsets = asyncio.run(publish_orders(worker_settings, orders, worker, backlog))
            published = time.perf_counter() - started
            total = sum(end_offsets.values())
            last, waiting = [0.0], [0]

            def report(done: int, total: int) -> None:
                if time.monotonic() - last[0] >= 10 or done >= total:
                    last[0] = time.monotonic()
                    # Answers read ahead of their orders wait in the flow (as dicts, not columns).
                    not_placed = json.loads(worker.get("/state", timeout=60))["not_placed"]
                    waiting[0] = max(waiting[0], not_placed)
                    _say(f"  stored {done:>10,} of {total:,} events, worker RSS "
                         f"{rss_kib(pid, 'VmRSS') / 1024:,.0f} MiB, {not_placed:,} orders not placed yet")

            worker.wait_stored(end_offsets, total, report)
            stored = time.perf_counter() - started
            state = json.loads(worker.get("/state", timeout=60))
            times = worker.progress()["stream_time"].values()
            stream_time = min(times) if times else None
            time.sleep(12.0)  # quiet: the worker gives back what its last batches freed (agents/heap.py, 10 s)
            held = _status(pid)
            if hold and not restart:
                _say(f"  holding the worker (pid {pid}) {hold:.0f} s for inspection ...")
                time.sleep(hold)
        finally:
            worker.stop()
        restarted = _restart(worker_settings, state, hold) if restart else None
    return {"orders": orders, "events": total, "partitions": partitions, "state": state, "idle": idle,
            "held": held, "publish_s": published, "stored_s": stored, "stream_time": stream_time,
            "backlog": backlog, "most_not_placed": waiting[0], "restarted": restarted}


def _restart(settings: Settings, before: dict, hold: float = 0.0) -> dict:
    """A new worker on the same data dir and broker (a restart, or the worker a
    rebalance hands every partition): how long until it holds the orders and the
    early warnings' records of `before` (the first worker's /state) again, read back
    from the changelogs, and its memory then."""
    orders, records = before["orders"], before["early_warnings"]["records"]
    _say(f"restarting the worker: restoring {orders:,} order states from the changelogs ...")
    started = time.perf_counter()
    worker = WorkerProcess(settings, settings.data_dir / "logs" / "worker-restarted.log").start()
    try:
        pid = worker.process.pid
        worker.wait_ready(timeout=900)
        ready = time.perf_counter() - started
        deadline = time.monotonic() + 900
        while (held := json.loads(worker.get("/state", timeout=60))["orders"]) < orders:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the restarted worker holds {held:,} of {orders:,} orders after 900 s")
            time.sleep(0.5)
        restored = time.perf_counter() - started
        # the early warnings rebuild at their first signals once recovery is over
        while (state := json.loads(worker.get("/state", timeout=60)))["early_warnings"]["records"] < records:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the restarted worker's early warnings hold {state['early_warnings']['records']:,}"
                                   f" of {records:,} records after 900 s")
            time.sleep(0.5)
        rebuilt = time.perf_counter() - started
        time.sleep(12.0)  # quiet, as above
        status = _status(pid)
        if hold:
            _say(f"  holding the restarted worker (pid {pid}) {hold:.0f} s for inspection ...")
            time.sleep(hold)
        return {"ready_s": ready, "restored_s": restored, "rebuilt_s": rebuilt, "orders": held,
                "records": state["early_warnings"]["records"], "status": status}
    finally:
        worker.stop()


def report(m: dict) -> None:
    state, idle, held = m["state"], m["idle"], m["held"]
    orders = state["orders"]
    mib = 2**20
    print(f"one worker holding open orders with the early warnings on ({m['events']:,} events, "
          f"{m['partitions']} partitions, stored in {m['stored_s']:,.0f} s; "
          + (f"at most {m['backlog']:,} events behind)" if m["backlog"] else "published at once, read as a backlog)"))
    if m["stream_time"] is not None:
        print(f"  stream time then                  {_iso(int(m['stream_time']))}")
    print(f"  orders held (its /state)          {orders:>14,}  of {m['orders']:,} published "
          f"({state['not_placed']:,} not placed, {state['unsettled']:,} unsettled)")
    print(f"  answers read ahead of their order {m['most_not_placed']:>14,}  at most (held as dicts until their "
          "order comes; seen every 10 s once all was published)")
    print(f"  order table's columns             {state['bytes'] / mib:>10,.0f} MiB  "
          f"{state['bytes'] / max(orders, 1):,.0f} B/order (allocated capacity)")
    print(f"  worker RSS idle (ready, no event) {idle['VmRSS'] / mib:>10,.0f} MiB")
    print(f"  worker RSS now                    {held['VmRSS'] / mib:>10,.0f} MiB  "
          f"anonymous {held['RssAnon'] / mib:,.0f}, files {held['RssFile'] / mib:,.0f}, "
          f"shared {held['RssShmem'] / mib:,.0f}")
    print(f"  worker RSS peak (VmHWM)           {held['VmHWM'] / mib:>10,.0f} MiB")
    print(f"  per order held                    {held['VmRSS'] / max(orders, 1):>10,.0f} B  whole process; "
          f"{(held['VmRSS'] - idle['VmRSS']) / max(orders, 1):,.0f} B over the idle worker")
    _verdicts(held)
    restarted = m.get("restarted")
    if restarted:
        status = restarted["status"]
        print(f"restarted on the same data dir: {restarted['orders']:,} orders held again in "
              f"{restarted['restored_s']:,.0f} s (ready, every input partition assigned, after "
              f"{restarted['ready_s']:,.0f} s), the early warnings' {restarted['records']:,} records after "
              f"{restarted['rebuilt_s']:,.0f} s")
        print(f"  worker RSS now                    {status['VmRSS'] / mib:>10,.0f} MiB  "
              f"anonymous {status['RssAnon'] / mib:,.0f}, files {status['RssFile'] / mib:,.0f}")
        print(f"  worker RSS peak (VmHWM)           {status['VmHWM'] / mib:>10,.0f} MiB")
        _verdicts(status)


def _verdicts(status: dict) -> None:
    for name, value in (("now", status["VmRSS"]), ("peak", status["VmHWM"])):
        verdict = "under" if value < LIMIT else "OVER"
        print(f"  {name:<4} {value:>14,} B = {value / 2**30:.2f} GiB: {verdict} 2 GB ({LIMIT:,} B)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--backlog", type=int, default=0,
                        help="publish at most this many events ahead of what the worker stored (default 0: "
                             "all at once, the worker catching up on a backlog)")
    parser.add_argument("--json", action="store_true", help="the figures as one JSON line")
    parser.add_argument("--hold", type=float, default=0.0, metavar="SECONDS",
                        help="keep the worker (with --restart, the restarted one) running this long once measured "
                             "(to inspect it, e.g. with gdb)")
    parser.add_argument("--restart", action="store_true",
                        help="then restart the worker on the same data dir: time to hold the orders again, its memory")
    parser.add_argument("--keep", action="store_true", help="keep the data dir (the worker's log) afterwards")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="supplymon-wmem-"))
    try:
        m = measure(args.orders, args.partitions, work, args.backlog, args.hold, args.restart)
        if args.json:
            print(json.dumps(m))
        else:
            report(m)
        return 0
    finally:
        if args.keep:
            _say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
