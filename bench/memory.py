"""Memory of the early warnings per order they keep (`python -m bench.memory`).

The early-warning core keeps every order of the last 29 days (by default): a record
for its manufacturer's product+region and one for its distributor, plus their table
entries (written to the changelog; the worker's store does not hold them, see
supplymon/core/early_warnings.py). This feeds the pure core (supplymon/core/early_warnings.py) the signals of
N orders spread over 28 days, as the lifecycle agent would send them, counts the
changes it writes to the changelog, and prints the process's RSS
growth per order. Subjects are product x region; the sparser they are (fewer
orders per product+region), the more each order costs.

The market-conduct rules (core/conduct.py) reach up to 180 days back but keep no
order: per product, region and day a price point or two, per city and distributor
the last acceptance. `--days 200` spreads the orders over 200 days, so that state
is at its full 180-day depth; the figure printed is then per order of the last
29 days (what the rest keeps), and the conduct state is counted apart.

A whole worker (Faust, chdb, the order flow and these together) holding N open
orders: `python -m bench.worker_memory`.
"""
from __future__ import annotations

import argparse
import gc
import os
import random
import sys
import time
import zlib

import orjson

from bench.pipeline import rss_kib
from supplymon.core.early_warnings import EarlyWarnings
from supplymon.core.signals import order_signals, pack
from supplymon.core.windows import DAY_MS
from supplymon.settings import HOUR_MS, Rules

T0 = 1_767_225_600_000  # 2026-01-01 UTC
BATCH = 2000
PARTITIONS = 4
SOURCE = "supply.orders:0"


def fact(rnd: random.Random, n: int, at: int, products: int, regions: int) -> dict:
    """An answered, delivered order's fact row (what order_signals reads)."""
    product, region = rnd.randrange(products), rnd.randrange(regions)
    return {"order_id": f"ORD-{n:010d}", "product_id": f"P{product:05d}", "manufacturer_id": f"M{product % 200:03d}",
            "region_code": f"{330100 + 100 * region}", "institution_id": f"H{rnd.randrange(2000):05d}",
            # 一厂一区两配送: the manufacturer's two distributors in the city.
            "distributor_id": f"D{(product % 200 * 7 + region * 3 + rnd.randrange(2)) % 80:03d}",
            "ordered_at": at, "quantity": rnd.randrange(1, 500),
            "responded_at": at + 3 * HOUR_MS, "decision": "accepted", "confirmed_quantity": 100, "reject_reason": None,
            "deadline_at": at + DAY_MS, "grassroots": rnd.random() < 0.3, "first_confirmed_at": at + 20 * HOUR_MS,
            "on_time": 1, "area": "rural" if rnd.random() < 0.5 else "urban",
            "unit_price": round(1 + product * 0.37, 2)}  # one national price per product


def measure(orders: int, products: int, regions: int, seed: int = 1, days: int = 28) -> dict:
    def partition_of(group: str) -> int:
        return zlib.crc32(group.encode()) % PARTITIONS

    warnings = EarlyWarnings(Rules(), partition_of)
    warnings.restore([], range(PARTITIONS), [SOURCE])
    written = 0  # changes sent to the changelog (the store holds none)
    rnd = random.Random(seed)
    gc.collect()
    base = rss_kib(os.getpid(), "VmRSS")
    started = time.perf_counter()
    at = T0
    for first in range(0, orders, BATCH):
        records: dict[str, dict] = {}
        for n in range(first, min(orders, first + BATCH)):
            at = T0 + n * days * DAY_MS // orders
            row = fact(rnd, n, at, products, regions)
            for group, record in order_signals(row):
                records.setdefault(group, {})[row["order_id"]] = record
        # Through orjson and back, as the signals travel: the records' strings are the decoder's.
        messages = [(p, orjson.loads(orjson.dumps(m)))
                    for p, m in pack(records, {SOURCE: at}, partition_of, PARTITIONS)]
        written += len(warnings.process(messages).writes)
    elapsed = time.perf_counter() - started
    gc.collect()
    grown = (rss_kib(os.getpid(), "VmRSS") - base) * 1024
    subjects = sum(len(getattr(g, "subjects", ())) for g in warnings.groups.values())
    kept = orders * min(1.0, 29 / days)  # the orders of the last 29 days (records kept)
    conduct = sum(g.conduct.size for g in warnings.groups.values() if hasattr(g, "subjects"))
    return {"orders": orders, "bytes": grown, "per_order": grown / kept, "subjects": subjects, "days": days,
            "written": written, "orders_per_s": orders / elapsed, "conduct_points": conduct, "kept": kept}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--regions", type=int, default=15)
    parser.add_argument("--days", type=int, default=28, help="days the orders are spread over (default 28)")
    args = parser.parse_args(argv)
    m = measure(args.orders, args.products, args.regions, days=args.days)
    print(f"early warnings: {m['orders']:,} orders over {m['days']} days, {m['subjects']:,} product+region subjects "
          f"({m['kept'] / max(m['subjects'], 1):,.1f} orders each kept)")
    print(f"  RSS +{m['bytes'] / 2**20:,.0f} MiB = {m['per_order']:,.0f} B per order kept "
          f"({m['written']:,} changelog writes, none held in the store); {m['orders_per_s']:,.0f} orders/s through the core")
    print(f"  market conduct: {m['conduct_points']:,} price points and acceptances kept "
          f"({m['conduct_points'] / m['kept']:,.2f} per order kept)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
