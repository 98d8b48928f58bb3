"""Memory of the order states the lifecycle holds (`python -m bench.order_memory`).

Places N orders (half of them answered, none delivered: all stay open) through
the order flow (supplymon/core/columnar_flow.py, as `replay --direct` runs it: no
snapshots, the flow holds the states as columns) and prints the process's RSS
growth per open order, with the table's own column bytes. `--reference` runs the
per-event flow instead, its states kept as the direct replay kept them (orjson
bytes per order in a dict); `--warnings` runs the columnar flow and the early
warnings as `replay --direct` does (the signals of every order fed to them), the
issue's "1,000,000 open orders with the early warnings on" without the store and
the broker, and prints the process's whole RSS too. With no flag all three run,
each in a process of its own (RSS is per process), and all are printed. After each batch the heap's free
pages are given back as the worker and the direct replay do
(supplymon/gcpolicy.py `release_free_heap`).
"""
from __future__ import annotations

import argparse
import gc
import io
import json
import os
import subprocess
import sys
import time
from dataclasses import replace

import orjson

from bench.pipeline import rss_kib
from supplymon.core.columnar_flow import OrderFlow
from supplymon.core.flow import Partition, Record, ReferenceOrderFlow
from supplymon.direct import DirectReplay, Progress
from supplymon.gcpolicy import release_free_heap
from supplymon.settings import HOUR_MS, Settings

T0 = 1_767_225_600_000  # 2026-01-01 UTC
BATCH = 20_000


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def lines(n: int, at: int):
    oid = f"ORD{n:010d}"
    yield "supply.orders", orjson.dumps({
        "event_id": f"o-{n}", "kind": "order", "ts": _iso(at), "order_id": oid, "institution_id": f"INS{n % 2000:05d}",
        "region_code": f"{330100 + 100 * (n % 50)}", "area": "urban" if n % 2 else "rural", "grassroots": n % 3 == 0,
        "distributor_id": f"DST{n % 80:03d}", "manufacturer_id": f"MFR{n % 200:03d}", "product_id": f"P{n % 3000:05d}",
        "product_kind": "drug", "vbp": True, "quantity": 1 + n % 400, "unit_price": 2.5})
    if n % 2:
        yield "supply.responses", orjson.dumps({
            "event_id": f"r-{n}", "kind": "response", "ts": _iso(at + HOUR_MS), "order_id": oid,
            "distributor_id": f"DST{n % 80:03d}", "decision": "accepted", "confirmed_quantity": 1 + n % 400})


def measure(orders: int, mode: str) -> dict:
    settings = replace(Settings.from_env({}), partitions=1, allow_future=True)
    inputs = [Partition(topic, 0) for topic in settings.topics.inputs]
    reference, warnings = mode == "reference", None
    if reference:
        flow, states = ReferenceOrderFlow.from_settings(settings, trust_rebuilt=True), {}
    elif mode == "warnings":
        replay, states = DirectReplay(settings, None, Progress(io.StringIO())), None
        flow, warnings = replay.flow, replay
    else:
        flow, states = OrderFlow.from_settings(settings, trust_rebuilt=True, snapshots=False), None
    flow.restore(inputs, ())
    gc.collect()
    base = rss_kib(os.getpid(), "VmRSS")
    started = time.perf_counter()
    offset = 0
    span = 20 * HOUR_MS  # every order placed within a day: none passes a deadline, all stay open
    for first in range(0, orders, BATCH):
        records = []
        for n in range(first, min(orders, first + BATCH)):
            for topic, value in lines(n, T0 + n * span // orders):
                records.append(Record(topic, 0, offset, 0, None, value))
                offset += 1
        if warnings is not None:
            out = warnings.step(records, 0)
        else:
            out = flow.process(records, inputs, (states or {}).get, 0)
        if states is not None:
            for order_id, snapshot in out.snapshots.items():
                states[order_id] = snapshot
        events = len(records)
        del records, out
        release_free_heap(events)
    gc.collect()
    grown = (rss_kib(os.getpid(), "VmRSS") - base) * 1024
    result = {"orders": orders, "open": len(flow), "rss_bytes_per_order": grown / orders,
              "rss_bytes": rss_kib(os.getpid(), "VmRSS") * 1024, "seconds": time.perf_counter() - started}
    if not reference:
        result["column_bytes_per_order"] = flow.table.nbytes() / orders
    return result


def _print(name: str, result: dict) -> None:
    print(name)
    print(f"  open orders held                 {result['open']:>14,}")
    print(f"  RSS growth per open order        {result['rss_bytes_per_order']:>12,.0f} B")
    if "column_bytes_per_order" in result:
        print(f"    of which the table's columns   {result['column_bytes_per_order']:>12,.0f} B (capacity doubled)")
    print(f"  RSS growth for the whole         {result['rss_bytes_per_order'] * result['orders'] / 2**20:>12,.0f} MiB")
    print(f"  the process's RSS then           {result['rss_bytes'] / 2**20:>12,.0f} MiB")
    print(f"  time                             {result['seconds']:>12,.1f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--reference", action="store_true", help="only the per-event flow and its dict store")
    parser.add_argument("--columns", action="store_true", help="only the columnar flow")
    parser.add_argument("--warnings", action="store_true", help="only the columnar flow with the early warnings")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    names = {"columns": "columnar flow (OrderTable)", "reference": "per-event flow, dict store",
             "warnings": "columnar flow and the early warnings (as replay --direct, no store)"}
    mode = next((m for m in names if getattr(args, m)), None)
    if mode is not None:
        result = measure(args.orders, mode)
        if args.json:
            print(json.dumps(result))
        else:
            _print(names[mode], result)
        return 0
    for mode, name in names.items():
        flag = f"--{mode}"
        done = subprocess.run([sys.executable, "-m", "bench.order_memory", "--orders", str(args.orders), flag,
                               "--json"], check=True, capture_output=True, text=True)
        _print(name, json.loads(done.stdout))
    return 0


if __name__ == "__main__":
    sys.exit(main())
