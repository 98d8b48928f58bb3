"""However far one advance moves stream time, every order's deadlines fire and its
final fact, alerts and window parts are stored before its state is dropped; the
same whatever the batch size (end to end: embedded broker, worker, chdb)."""
from __future__ import annotations

from pathlib import Path

import orjson

from supplymon.simulate import generate
from tests.conftest import sql_rows, supplymon
from tests.reference import expected_facts, parse_ms
from tests.test_end_to_end import ALERTS_SQL, FACT_SQL

LONE = {"event_id": "lone-o", "kind": "order", "ts": "2026-03-02T09:30:00+08:00", "order_id": "LONE",
        "institution_id": "H-LONE", "region_code": "150102", "area": "rural", "grassroots": True,
        "distributor_id": "D-LONE", "manufacturer_id": "M-LONE", "product_id": "P-LONE",
        "product_kind": "drug", "vbp": True, "quantity": 12, "unit_price": 3.5}
# A platform silent for three weeks (or a worker down that long): 24 days after the last event.
WEEKS_LATER = {"event_id": "tick-weeks-later", "kind": "tick", "ts": "2026-03-27T00:00:00+08:00"}
PARTS_SQL = ("SELECT family, subject, toUnixTimestamp64Milli(window_start) AS start, partition, orders, responded,"
             " rejected, delivered_on_time, delivered_late, undelivered, ordered_quantity, delivered_quantity,"
             " response_hours, closed FROM supplymon.window_parts FINAL ORDER BY family, subject, start, partition")


def write(path: Path, events: list[dict]) -> None:
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))


def test_an_order_then_a_tick_weeks_later_with_any_batch_size(tmp_path):
    events = list(generate(days=2, orders_per_day=40, seed=3))
    events.insert(len(events) // 2, LONE)
    events.append(WEEKS_LATER)
    history = tmp_path / "history.jsonl"
    write(history, events)
    expected = expected_facts(events)
    results = []
    for batch_size in ("1", "50000"):
        data = tmp_path / f"data-{batch_size}"
        result = supplymon("replay", str(history), "--embedded", "--data-dir", str(data), "--partitions", "2",
                           env={"SUPPLYMON_BATCH_SIZE": batch_size})
        assert result.returncode == 0, result.stderr[-3000:]
        facts, alerts, parts = (sql_rows(data, sql) for sql in (FACT_SQL, ALERTS_SQL, PARTS_SQL))
        results.append((facts, alerts, parts))

        # Every order is stored, settled: the advance passed all its deadlines.
        assert {f["order_id"] for f in facts} == set(expected)
        assert all(f["on_time"] is not None for f in facts)
        lone = next(f for f in facts if f["order_id"] == "LONE")
        placed = parse_ms(LONE["ts"])
        assert (lone["on_time"], lone["decision"], lone["deadline_at"]) == (0, None, placed + 48 * 3_600_000)
        assert sorted((a["kind"], a["raised_at"]) for a in alerts if a["order_id"] == "LONE") == sorted([
            ("delivery_overdue", "2026-03-04 09:30:00.000"), ("response_overdue", "2026-03-04 09:30:00.000"),
            ("response_escalation", "2026-03-05 09:30:00.000")])
        # Its windows were written with it, closed.
        lone_parts = [p for p in parts if "D-LONE" in p["subject"] or "P-LONE" in p["subject"]]
        assert len(lone_parts) == 3 and all(p["closed"] == 1 and p["undelivered"] == 1 for p in lone_parts)
    one, all_at_once = results
    for name, a, b in zip(("facts", "alerts", "window parts"), one, all_at_once):
        assert a == b, name
