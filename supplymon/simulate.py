"""A deterministic simulator of the procurement platform's traffic.

Hospitals and clinics order products; each product is delivered in a region by
one distributor; distributors answer (mostly in hours, sometimes late, rarely
never), ship in one or two parts, and institutions confirm receipt (sometimes a
day late). With `noise`, a few events are sent twice. Ticks mark the platform
clock. The same seed gives the same history.
"""
from __future__ import annotations

import gzip
import heapq
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterable, Iterator

import orjson

from supplymon.settings import SHANGHAI

DEFAULT_START = datetime(2026, 3, 1, tzinfo=SHANGHAI)
REGIONS = ("150702", "150721", "150781", "150785", "360702", "360721")


@dataclass(frozen=True)
class Institution:
    id: str
    region_code: str
    area: str
    grassroots: bool


@dataclass(frozen=True)
class Product:
    id: str
    kind: str
    vbp: bool
    unit_price: float
    manufacturer_id: str


@dataclass(frozen=True)
class Distributor:
    id: str
    regions: tuple[str, ...]  # the regions it serves
    typical_response_hours: float  # how quickly it usually answers
    rural_delay_hours: float  # extra transit time to institutions outside the city


@dataclass
class World:
    institutions: list[Institution]
    products: list[Product]
    distributors: list[Distributor]
    carrier: dict[tuple[str, str], Distributor]  # (product, region) -> its distributor

    @classmethod
    def build(cls, rng: random.Random, institutions: int = 60, distributors: int = 8,
              manufacturers: int = 6, products: int = 40, regions: int = 4) -> "World":
        region_codes = REGIONS[:regions]
        insts = []
        for n in range(1, institutions + 1):
            rural = rng.random() < 0.5
            insts.append(Institution(f"INS{n:04d}", rng.choice(region_codes), "rural" if rural else "urban",
                                     grassroots=rng.random() < (0.8 if rural else 0.2)))
        prods = [Product(f"P{n:04d}", rng.choice(("drug", "drug", "consumable")), rng.random() < 0.7,
                         round(rng.uniform(0.5, 300.0), 2), f"MFR{rng.randint(1, manufacturers):02d}")
                 for n in range(1, products + 1)]
        dists = []
        for n in range(1, distributors + 1):
            # Each serves a few regions; taking them in turn as a home region covers every region.
            served = set(rng.sample(region_codes, rng.randint(1, len(region_codes))))
            served.add(region_codes[(n - 1) % len(region_codes)])
            dists.append(Distributor(f"DST{n:02d}", tuple(sorted(served)), rng.uniform(3, 9), rng.uniform(4, 16)))
        carrier = {(p.id, r): rng.choice([d for d in dists if r in d.regions] or dists)
                   for p in prods for r in region_codes}
        return cls(insts, prods, dists, carrier)


def _iso(moment: datetime) -> str:
    return moment.astimezone(SHANGHAI).isoformat(timespec="milliseconds")


def _order_time(rng: random.Random, day: datetime) -> datetime:
    # Most orders are placed in working hours; a few at night.
    hour = rng.gauss(11, 3) if rng.random() < 0.9 else rng.uniform(0, 24)
    return day + timedelta(hours=min(max(hour, 0.0), 23.99), seconds=rng.randint(0, 59))


def _order_story(rng: random.Random, world: World, n: int, ordered: datetime,
                 prefix: str = "") -> list[tuple[datetime, dict]]:
    """One order line and what follows it, as (time, event) pairs."""
    inst = rng.choice(world.institutions)
    product = rng.choice(world.products)
    dist = world.carrier[(product.id, inst.region_code)]
    order_id = f"{prefix}ORD{n:06d}"
    quantity = rng.randint(1, 200)
    story = [(ordered, {
        "event_id": f"{prefix}o-{n:06d}", "kind": "order", "order_id": order_id, "institution_id": inst.id,
        "region_code": inst.region_code, "area": inst.area, "grassroots": inst.grassroots,
        "distributor_id": dist.id, "manufacturer_id": product.manufacturer_id, "product_id": product.id,
        "product_kind": product.kind, "vbp": product.vbp, "quantity": quantity,
        "unit_price": product.unit_price})]
    fate = rng.random()
    if fate < 0.02:
        return story  # never answered
    # Mostly within the day (1-18 h), some after the 48 h response deadline, a few past 72 h.
    response_delay = (rng.uniform(1, 2 * dist.typical_response_hours) if fate < 0.90
                      else rng.uniform(30, 60) if fate < 0.97 else rng.uniform(72, 100))
    answered = ordered + timedelta(hours=response_delay)
    roll = rng.random()
    if roll < 0.06:
        decision, confirmed, reason = "rejected", 0, rng.choice(("price", "out_of_stock", "remote_area"))
    elif roll < 0.14 and quantity > 1:
        decision, confirmed, reason = "partial", rng.randint(1, quantity - 1), "out_of_stock"
    else:
        decision, confirmed, reason = "accepted", quantity, None
    response = {"event_id": f"{prefix}r-{n:06d}", "kind": "response", "order_id": order_id, "distributor_id": dist.id,
                "decision": decision, "confirmed_quantity": confirmed}
    if reason:
        response["reason"] = reason
    story.append((answered, response))
    if decision == "rejected" or rng.random() < 0.03:
        return story  # nothing ships
    parts = [confirmed] if confirmed < 2 or rng.random() < 0.8 else [confirmed // 2, confirmed - confirmed // 2]
    shipped = answered
    for k, part in enumerate(parts, 1):
        shipped += timedelta(hours=rng.uniform(0.5, 6))
        transit = rng.uniform(1, 8) + (dist.rural_delay_hours if inst.area == "rural" else 0)
        if rng.random() < 0.03:
            transit += rng.uniform(24, 48)  # held up on the road
        received = shipped + timedelta(hours=transit)
        confirm_delay = rng.uniform(24.5, 40) if rng.random() < 0.03 else rng.uniform(0.1, 8)
        accepted = part if rng.random() > 0.05 else rng.randint(0, part)
        story.append((shipped, {"event_id": f"{prefix}s-{n:06d}-{k}", "kind": "shipment", "order_id": order_id,
                                "shipment_id": f"{prefix}SH{n:06d}-{k}", "distributor_id": dist.id, "quantity": part}))
        story.append((received + timedelta(hours=confirm_delay), {
            "event_id": f"{prefix}a-{n:06d}-{k}", "kind": "arrival", "order_id": order_id,
            "shipment_id": f"{prefix}SH{n:06d}-{k}", "institution_id": inst.id, "quantity": accepted,
            "received_at": _iso(received)}))
    return story


def generate(days: int = 7, orders_per_day: int = 500, seed: int = 7, start: datetime | None = None,
             noise: bool = True, tick_minutes: int = 60, prefix: str = "") -> Iterator[dict]:
    """Events sorted by `ts`; nothing later than `start + days`, which the last tick marks.

    `prefix` starts every event, order and shipment id (e.g. to tell runs apart)."""
    rng = random.Random(seed)
    world = World.build(rng)
    start = start or DEFAULT_START
    end = start + timedelta(days=days)
    timeline: list[tuple[datetime, int, dict]] = []
    seq = 0
    n = 0
    for day in range(days):
        for _ in range(max(0, round(rng.gauss(orders_per_day, orders_per_day * 0.05)))):
            n += 1
            for moment, event in _order_story(rng, world, n, _order_time(rng, start + timedelta(days=day)), prefix):
                if moment <= end:
                    seq += 1
                    timeline.append((moment, seq, event))
    tick = start
    while tick <= end:
        seq += 1
        timeline.append((tick, seq, {"event_id": f"tick-{_iso(tick)}", "kind": "tick"}))
        tick += timedelta(minutes=tick_minutes)
    if timeline[-1][0] != end:
        timeline.append((end, seq + 1, {"event_id": f"tick-{_iso(end)}", "kind": "tick"}))
    heapq.heapify(timeline)
    while timeline:
        moment, _, event = heapq.heappop(timeline)
        event = {"event_id": event["event_id"], "kind": event["kind"], "ts": _iso(moment),
                 **{k: v for k, v in event.items() if k not in ("event_id", "kind")}}
        yield event
        if noise and event["kind"] != "tick" and rng.random() < 0.005:
            yield dict(event)  # the platform sent it twice


def write_history(path: str | Path, events: Iterable[dict], gzip_out: bool | None = None) -> int:
    path = Path(path)
    compress = path.suffix == ".gz" if gzip_out is None else gzip_out
    count = 0
    with (gzip.open(path, "wb") if compress else open(path, "wb")) as out:
        for event in events:
            out.write(orjson.dumps(event) + b"\n")
            count += 1
    return count
