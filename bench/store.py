"""Store path throughput (`python -m bench.store`): rows/s into embedded ClickHouse
(chdb) by the previous path (clickhouse-connect's Native insert of Python rows, 2,000
rows per insert: one lifecycle batch) and by the Arrow path (rows to an Arrow table
typed by the DDL, `insert_arrow`) at 2,000 rows per insert and at the write-behind's
default of `store_insert_rows` (10,000), measured in one run, rounds alternated, the
best round of each kept. Rows as the lifecycle agent makes them: order facts (epoch
ms, flags as bools, nulls) and raw events (~220-byte payloads). Two controls: the
Native path at 10,000 rows per insert (what the insert size alone gives), and the
Arrow insert of tables already built (what a core producing columns would pay).
"""
from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from pathlib import Path

import orjson

from supplymon.arrow_schema import to_arrow
from supplymon.settings import Settings
from supplymon.store import Store

T0 = 1_767_225_600_000
H = 3_600_000


def order_facts(rnd: random.Random, count: int) -> list[dict]:
    rows = []
    for n in range(count):
        ordered = T0 + rnd.randrange(365 * 24) * H
        answered = rnd.random() < 0.9
        rows.append({
            "order_id": f"O{n:09d}", "ordered_at": ordered, "institution_id": f"H{rnd.randrange(2000):05d}",
            "region_code": f"1504{rnd.randrange(20):02d}", "area": rnd.choice(["urban", "rural"]),
            "grassroots": rnd.random() < 0.33, "distributor_id": f"D{rnd.randrange(300):04d}",
            "manufacturer_id": f"M{rnd.randrange(100):03d}", "product_id": f"P{rnd.randrange(500):04d}",
            "product_kind": "drug", "vbp": rnd.random() < 0.4, "quantity": rnd.randrange(1, 500),
            "unit_price": round(rnd.uniform(0.5, 300), 2), "responded_at": ordered + 2 * H if answered else None,
            "decision": "accepted" if answered else None, "confirmed_quantity": 10 if answered else None,
            "reject_reason": None, "first_shipped_at": ordered + 3 * H if answered else None,
            "first_received_at": ordered + 5 * H if answered else None,
            "first_confirmed_at": ordered + 6 * H if answered else None, "delivered_quantity": 10,
            "shipments": 1, "arrivals": 1, "deadline_at": ordered + 24 * H, "response_deadline_at": ordered + 48 * H,
            "on_time": (1 if rnd.random() < 0.9 else 0) if answered else None,
            "response_hours": 2.0 if answered else None, "version": n,
        })
    return rows


def raw_events(rnd: random.Random, count: int) -> list[dict]:
    rows = []
    for n in range(count):
        ts = T0 + n * 1000
        payload = orjson.dumps({"event_id": f"e{n:012d}", "kind": "order", "ts": ts, "order_id": f"O{n:09d}",
                                "institution_id": f"H{rnd.randrange(2000):05d}", "distributor_id": "D0001",
                                "product_id": f"P{rnd.randrange(500):04d}", "quantity": 10, "unit_price": 3.5,
                                "region_code": "150402", "area": "urban"}).decode()
        rows.append({"event_id": f"e{n:012d}", "kind": "order", "ts": ts, "order_id": f"O{n:09d}",
                     "payload": payload, "topic": "supply.orders", "partition": n % 4, "offset": n // 4})
    return rows


def timed(insert, table: str, rows: list[dict], per_insert: int) -> float:
    """Rows per second inserting `rows` in inserts of `per_insert` rows."""
    if hasattr(insert, "prepare"):
        insert.prepare(table, rows, per_insert)
    started = time.perf_counter()
    for first in range(0, len(rows), per_insert):
        insert(table, rows[first:first + per_insert])
    return len(rows) / (time.perf_counter() - started)


def prebuilt(store: Store):
    """An insert of rows already in Arrow tables (built outside the timing)."""
    built: dict[tuple[str, int, int], object] = {}

    def insert(table: str, rows: list[dict]) -> None:
        store.insert_arrow(table, built[table, id(rows[0]), len(rows)])

    def prepare(table: str, rows: list[dict], per_insert: int) -> None:
        for first in range(0, len(rows), per_insert):
            chunk = rows[first:first + per_insert]
            built[table, id(chunk[0]), len(chunk)] = to_arrow(table, chunk)

    insert.prepare = prepare
    return insert


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000, help="rows per table and path, per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-store-"))
    settings = Settings(data_dir=tmp / "data")
    big = settings.store_insert_rows
    store = Store(settings)
    store.migrate()
    rnd = random.Random(15)
    tables = {"order_facts": order_facts(rnd, args.rows), "events_raw": raw_events(rnd, args.rows)}
    paths = {"native, 2,000 rows/insert (before)": (store.insert_native, 2000),
             "arrow, 2,000 rows/insert": (store.insert, 2000),
             f"arrow, {big:,} rows/insert (now)": (store.insert, big),
             f"native, {big:,} rows/insert (control)": (store.insert_native, big),
             f"arrow built, {big:,} rows/insert (control)": (prebuilt(store), big)}
    best: dict[tuple[str, str], float] = {}
    try:
        for _ in range(args.rounds):
            for table, rows in tables.items():
                for name, (insert, per_insert) in paths.items():
                    rate = timed(insert, table, rows, per_insert)
                    best[table, name] = max(best.get((table, name), 0.0), rate)
    finally:
        store.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"store path, chdb, {args.rows:,} rows per table, best of {args.rounds} alternated rounds:")
    for table in tables:
        for name in paths:
            print(f"  {table:12s} {name:42s} {best[table, name]:>10,.0f} rows/s")
    for table in tables:
        before, arrow_small, now, _, _ = (best[table, name] for name in paths)
        print(f"store {table}: arrow/native = {arrow_small / before:.2f} at 2,000 rows/insert; "
              f"now/before = {now / before:.2f}")


if __name__ == "__main__":
    main()
