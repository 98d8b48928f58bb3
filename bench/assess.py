"""Time of the periodic assessment on a year of stored facts (`python -m bench.assess`).

Writes N order facts (spread over a year, D distributors, 2,000 institutions, a
third grassroots, a tenth late or undelivered) into a fresh embedded store, then
times `assess` (aggregation, scoring, storing, printing) and `assess vbp` for one
month, as the command runs them, on the store directly.
"""
from __future__ import annotations

import argparse
import io
import random
import shutil
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path

from supplymon.assess import StoreAccess, print_assessment, print_vbp, run_assessment, run_vbp
from supplymon.core.assessment import AssessmentRules
from supplymon.settings import SHANGHAI, Settings
from supplymon.store import Store

START = datetime(2025, 7, 1, tzinfo=SHANGHAI)
BATCH = 100_000


def facts(rnd: random.Random, first: int, count: int, distributors: int) -> list[dict]:
    rows = []
    for n in range(first, first + count):
        ordered = START + timedelta(seconds=rnd.randrange(365 * 86400))
        on_time = 0 if rnd.random() < 0.1 else 1
        received = ordered + timedelta(hours=30 if rnd.random() < 0.5 and not on_time else 5)
        rows.append({
            "order_id": f"O{n:09d}", "ordered_at": ordered, "institution_id": f"H{rnd.randrange(2000):05d}",
            "region_code": "150402", "area": "urban", "grassroots": int(rnd.random() < 0.33),
            "distributor_id": f"D{rnd.randrange(distributors):04d}", "manufacturer_id": "M1",
            "product_id": f"P{rnd.randrange(500):04d}", "product_kind": "drug", "vbp": int(rnd.random() < 0.4),
            "quantity": 10, "unit_price": 3.5, "responded_at": ordered + timedelta(hours=2), "decision": "accepted",
            "confirmed_quantity": 10, "reject_reason": None, "first_shipped_at": ordered + timedelta(hours=3),
            "first_received_at": received, "first_confirmed_at": received, "delivered_quantity": 10,
            "shipments": 1, "arrivals": 1, "deadline_at": ordered + timedelta(hours=24),
            "response_deadline_at": ordered + timedelta(hours=48), "on_time": on_time, "response_hours": 2.0,
            "version": 1,
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--distributors", type=int, default=300)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="supplymon-bench-assess-"))
    try:
        store = Store(Settings(data_dir=root))
        store.migrate()
        rnd = random.Random(5)
        started = time.perf_counter()
        for first in range(0, args.orders, BATCH):
            store.insert("order_facts", facts(rnd, first, min(BATCH, args.orders - first), args.distributors))
        print(f"stored {args.orders:,} facts in {time.perf_counter() - started:.1f} s")
        access = StoreAccess(store.query, store.insert_json)
        rules = AssessmentRules()
        started = time.perf_counter()
        run = run_assessment(access, rules, date(2025, 7, 1), date(2026, 6, 30), None, None)
        print_assessment(access, run, "JSONEachRow", io.BytesIO())
        print(f"assess: {len(run.rows)} distributors over {args.orders:,} orders in "
              f"{time.perf_counter() - started:.2f} s")
        started = time.perf_counter()
        vbp = run_vbp(access, rules, "2026-05", None, None)
        print_vbp(access, vbp, "JSONEachRow", io.BytesIO())
        print(f"assess vbp: {len(vbp.institutions)} institutions in {time.perf_counter() - started:.2f} s")
        store.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
