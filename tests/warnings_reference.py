"""The early warnings a whole history should raise, computed in one pass.

Unlike `reference.py`, this uses supplymon's own monitors (`supplymon.core.warnings`,
whose rule arithmetic the unit tests pin at its edges), but feeds them each order's
final record straight from the file and evaluates once, at the end. The streaming
system gets the same records in pieces, through partitions, signals, watermark marks,
batches and restarts: the end-to-end tests check that it ends with these alerts.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable

from supplymon.core.alerts import SUBJECT_IDS, SUBJECT_TYPE
from supplymon.core.signals import delivery_record, supply_record
from supplymon.core.warnings import DeliveryRateMonitor, ManufacturerWatch
from tests.reference import HOUR, parse_ms


def expected_warnings(events: Iterable[dict]) -> set[tuple]:
    """{(kind, subject, scope, raised_at, resolved_at)}; subject = (product, region) or distributor."""
    seen, orders, responses, arrivals, end = set(), {}, defaultdict(list), defaultdict(list), None
    for event in events:
        if event["event_id"] in seen:
            continue
        seen.add(event["event_id"])
        ts = parse_ms(event["ts"])
        end = ts if end is None else max(end, ts)
        if event["kind"] == "order":
            orders.setdefault(event["order_id"], event)
        elif event["kind"] == "response":
            responses[event["order_id"]].append((ts, event["event_id"], event))
        elif event["kind"] == "arrival":
            arrivals[event["order_id"]].append((ts, parse_ms(event["received_at"])))
    manufacturers: dict[str, ManufacturerWatch] = {}
    distributors: dict[str, DeliveryRateMonitor] = defaultdict(DeliveryRateMonitor)
    for order_id, order in orders.items():
        at = parse_ms(order["ts"])
        first = min(responses[order_id], key=lambda r: r[:2])[2] if responses[order_id] else None
        mfr = order["manufacturer_id"]
        manufacturers.setdefault(mfr, ManufacturerWatch(manufacturer_id=mfr)).upsert(order_id, supply_record(
            p=order["product_id"], rg=order["region_code"], i=order["institution_id"],
            dist=order["distributor_id"], at=at, q=order["quantity"],
            rt=parse_ms(first["ts"]) if first else None, d=first and first["decision"],
            c=first and first["confirmed_quantity"], r=first and first.get("reason"), u=order["unit_price"]))
        deadline = at + (24 if order["area"] == "urban" else 48) * HOUR
        on_time = (arrivals[order_id] and (first is None or first["decision"] != "rejected")
                   and min(r for _, r in arrivals[order_id]) <= deadline)
        distributors[order["distributor_id"]].upsert(order_id, delivery_record(
            deadline, order["grassroots"], min(ts for ts, _ in arrivals[order_id]) if on_time else None, at,
            order["area"] == "rural", order["quantity"], parse_ms(first["ts"]) if first else None,
            first and first["decision"], first and first["confirmed_quantity"]))
    out = set()
    for manufacturer, watch in manufacturers.items():
        for (product, region), t in watch.advance(end):
            out.add((t.kind, (product, region), "", t.raised_at, t.resolved_at))
        for subject, t in watch.conduct.advance(end):
            out.add((t.kind, conduct_subject(t.kind, subject), "", t.raised_at, t.resolved_at))
    for distributor, monitor in distributors.items():
        for scope, t in monitor.advance(end):
            out.add((t.kind, distributor, scope, t.raised_at, t.resolved_at))
    # An episode raised and resolved in the history leaves only its resolved row.
    resolved = {(k, s, sc, r) for k, s, sc, r, e in out if e is not None}
    return {w for w in out if w[4] is not None or w[:4] not in resolved}


def conduct_subject(kind: str, subject: dict) -> tuple | str:
    """A subject as `stored_warnings` gives it: (product, region), (product, city),
    (manufacturer, city) or the distributor."""
    names = SUBJECT_IDS[SUBJECT_TYPE.get(kind, "product_region")]
    return tuple(subject[name] for name in names) if len(names) > 1 else subject[names[0]]


WARNINGS_SQL = ("SELECT kind, product_id, region_code, distributor_id, JSONExtractString(details, 'scope') AS scope,"
                " toUnixTimestamp64Milli(raised_at) AS raised, toUnixTimestamp64Milli(resolved_at) AS resolved,"
                " JSONExtractString(details, 'manufacturer_id') AS manufacturer_id"
                " FROM supplymon.alerts FINAL"
                " WHERE subject_type IN ('product_region', 'distributor', 'manufacturer_city', 'product_city')")


def stored_warnings(rows: Iterable[dict]) -> set[tuple]:
    """The rows of WARNINGS_SQL in the shape of `expected_warnings`."""
    return {(r["kind"], conduct_subject(r["kind"], r), r["scope"], int(r["raised"]),
             None if r["resolved"] is None else int(r["resolved"])) for r in rows}
