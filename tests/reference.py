"""An independent, deliberately plain computation of `order_facts` (contract §3, §4).

The end-to-end tests compare the streaming system against this. It shares no code
with supplymon: whole history in memory, sort, look.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Iterable

HOUR = 3_600_000
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# The schema's required fields per kind (events.schema.json); an event lacking one is ignored.
REQUIRED = {
    "order": ("order_id", "institution_id", "region_code", "area", "grassroots", "distributor_id",
              "manufacturer_id", "product_id", "product_kind", "vbp", "quantity", "unit_price"),
    "response": ("order_id", "distributor_id", "decision", "confirmed_quantity"),
    "arrival": ("order_id", "shipment_id", "institution_id", "quantity", "received_at"),
    "shipment": ("order_id", "shipment_id", "distributor_id", "quantity"),
    "tick": (),
}


def parse_ms(text: str) -> int:
    """Epoch milliseconds, in exact integer arithmetic (no float rounding)."""
    return (datetime.fromisoformat(text) - EPOCH) // timedelta(milliseconds=1)


def _parses(text) -> bool:
    try:
        parse_ms(text)
        return True
    except (TypeError, ValueError):
        return False


def expected_facts(events: Iterable[dict], urban_hours: float = 24, rural_hours: float = 48) -> dict[str, dict]:
    seen: set[str] = set()
    by_kind: dict[str, list[dict]] = {k: [] for k in REQUIRED}
    end = None
    for event in events:
        if not isinstance(event, dict) or event.get("kind") not in REQUIRED:
            continue
        if any(name not in event for name in ("event_id", "ts", *REQUIRED[event["kind"]])):
            continue
        if not _parses(event["ts"]) or (event["kind"] == "arrival" and not _parses(event["received_at"])):
            continue
        if event["event_id"] in seen:
            continue
        seen.add(event["event_id"])
        by_kind[event["kind"]].append(event)
        ts = parse_ms(event["ts"])
        end = ts if end is None else max(end, ts)

    facts = {}
    for order in by_kind["order"]:
        if order["order_id"] in facts:
            continue  # a second order event for the same order is refused
        ordered_at = parse_ms(order["ts"])
        hours = urban_hours if order["area"] == "urban" else rural_hours
        facts[order["order_id"]] = {
            "ordered_at": ordered_at, "deadline_at": ordered_at + int(hours * HOUR), "quantity": order["quantity"],
            "distributor_id": order.get("distributor_id"),
            "responses": [], "arrivals": [],
        }
    for response in by_kind["response"]:
        if response["order_id"] in facts:
            facts[response["order_id"]]["responses"].append(response)
    for arrival in by_kind["arrival"]:
        if arrival["order_id"] in facts:
            facts[arrival["order_id"]]["arrivals"].append(arrival)

    out = {}
    for order_id, f in facts.items():
        responses = sorted(f["responses"], key=lambda r: (parse_ms(r["ts"]), r["event_id"]))
        first = responses[0] if responses else None
        received = [parse_ms(a["received_at"]) for a in f["arrivals"]]
        first_received = min(received) if received else None
        if first and first["decision"] == "rejected":
            on_time = 0
        elif first_received is not None:
            on_time = 1 if first_received <= f["deadline_at"] else 0
        elif end > f["deadline_at"]:
            on_time = 0
        else:
            on_time = None
        responded_at = parse_ms(first["ts"]) if first else None
        out[order_id] = {
            "ordered_at": f["ordered_at"],
            "deadline_at": f["deadline_at"],
            "decision": first["decision"] if first else None,
            "confirmed_quantity": first["confirmed_quantity"] if first else None,
            "responded_at": responded_at,
            "response_hours": (responded_at - f["ordered_at"]) / HOUR if first else None,
            "delivered_quantity": sum(a["quantity"] for a in f["arrivals"]),
            "first_received_at": first_received,
            "on_time": on_time,
            "distributor_id": f["distributor_id"],
            "quantity": f["quantity"],
            "arrivals": len(f["arrivals"]),
        }
    return out


def _quantile_exact(values: list[float], level: float) -> float | None:
    """ClickHouse's quantileExact: the element at floor(level * n) of the sorted values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(int(level * len(ordered)), len(ordered) - 1)]


def expected_distributor_daily(facts: dict[str, dict]) -> dict[tuple[str, str], dict]:
    """Contract §4 `distributor_daily`, keyed by (day 'YYYY-MM-DD' in Asia/Shanghai, distributor)."""
    shanghai = timezone(timedelta(hours=8))
    rows: dict[tuple[str, str], dict] = {}
    hours: dict[tuple[str, str], list[float]] = {}
    for f in facts.values():
        day = datetime.fromtimestamp(f["ordered_at"] / 1000, shanghai).strftime("%Y-%m-%d")
        key = (day, f["distributor_id"])
        row = rows.setdefault(key, dict.fromkeys(
            ("orders", "responded", "responded_within_24h", "rejected", "delivered_on_time", "delivered_late",
             "undelivered", "ordered_quantity", "delivered_quantity"), 0))
        row["orders"] += 1
        if f["responded_at"] is not None:
            row["responded"] += 1
            row["responded_within_24h"] += f["responded_at"] - f["ordered_at"] <= 24 * HOUR
            hours.setdefault(key, []).append(f["response_hours"])
        row["rejected"] += f["decision"] == "rejected"
        row["delivered_on_time"] += f["on_time"] == 1
        row["delivered_late"] += f["on_time"] == 0 and f["arrivals"] > 0
        row["undelivered"] += f["on_time"] == 0 and f["arrivals"] == 0
        row["ordered_quantity"] += f["quantity"]
        row["delivered_quantity"] += f["delivered_quantity"]
    for key, row in rows.items():
        row["response_p50_hours"] = _quantile_exact(hours.get(key, []), 0.5)
        row["response_p90_hours"] = _quantile_exact(hours.get(key, []), 0.9)
    return rows
