"""A deterministic simulator of the procurement platform's traffic, and the stories
it can tell on top of it.

Healthy traffic: hospitals and clinics order products; each product is delivered
in a region by one distributor; distributors answer (mostly in hours, sometimes
late, rarely never), ship in one or two parts, and institutions confirm receipt
(sometimes more than a day late). The noise is realistic but stays under every
early-warning threshold of the contract (section 3):

- demand is steady: each day's orders are shared out among the products and
  regions by their weight (rounded at random), not drawn independently, so a
  product's orders in 24 h stay near its daily mean and never triple by chance
  (`demand_surge`);
- rejections are occasional and mostly small orders turned down for price (or as
  too remote); partial confirmations are small shortfalls for pack sizes;
  `out_of_stock` is rare (about one order in 3,000), so the quantity fill rate of
  a product in a region stays far above 80 % and three institutions turned away
  in 72 h does not happen by chance (`supply_shortage`);
- deliveries arrive within their deadline unless an order is answered late, not
  answered, not shipped, or held up on the road: about 93 % on time for every
  distributor, far above 70 % (`low_delivery_rate`).

With `noise`, a few events are sent twice. Ticks mark the platform clock. The same
seed gives the same history.

Scenarios (`generate(scenario=...)`) inject a story into that traffic; every
other order is exactly as in the healthy history of the same seed:

- `shortage`: from day 1, a VBP drug runs out in the busiest region: for 72 h its
  distributor turns away (rejects, or confirms a small part of) every order for it
  with reason `out_of_stock`, while institutions of the region keep ordering it.
- `surge`: after at least 8 days of normal orders (so the rule's 7 whole days of
  history are there), orders for one drug in one region jump for two days to
  6 times their daily mean quantity or more (at least 30 extra orders a day).
- `bad-distributor`: from day 1 to the end, one distributor ignores a quarter of
  its orders and delivers to institutions outside the city area (mostly grassroots
  clinics) two to three days late.
- `all`: the three at once, on different subjects.

`History.stories` says what each injected story is, so that tests and the demo
know which alert to expect, for which subject, from when.
"""
from __future__ import annotations

import gzip
import heapq
import math
import random
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import orjson

from supplymon.settings import SHANGHAI

DEFAULT_START = datetime(2026, 3, 1, tzinfo=SHANGHAI)
REGIONS = ("150702", "150721", "150781", "150785", "360702", "360721")
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)

SCENARIOS = ("shortage", "surge", "bad-distributor")
SCENARIO_CHOICES = SCENARIOS + ("all",)
# Simulated days each story needs to be told up to its alert (see `Story.due_by`).
MIN_DAYS = {"shortage": 2, "surge": 10, "bad-distributor": 4}

QUANTITY = (1, 200)  # an order line's quantity, uniform
MEAN_QUANTITY = sum(QUANTITY) / 2
DUPLICATE_PER_MILLE = 5  # with `noise`, events sent twice
OUT_OF_STOCK_RATE = 0.0003  # healthy orders turned away for out_of_stock (each a small shortfall)
SHORTAGE_HOURS = 72  # how long the shortage story's distributor has none
SHORTAGE_EXTRA_INSTITUTIONS = 4  # institutions of the region that order the missing drug on day 1
SURGE_DAYS = 2
SURGE_FACTOR = 6  # the surge days' quantity, in multiples of the mean daily quantity before
SURGE_MIN_ORDERS = 30  # ... and at least this many orders a day
BAD_IGNORED = 0.25  # share of its orders the bad distributor never answers
BAD_RURAL_DELAY_HOURS = (44.0, 72.0)  # its extra time on the road outside the city area


class ScenarioError(ValueError):
    """A scenario that does not exist, or that the history is too short to tell."""


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
            # Answers in 1 to 2x its typical hours, ships within 4 h, 1-6 h on the road (plus
            # its rural delay outside the city): 22 h at most in the city, 38 h outside,
            # within the 24 h / 48 h delivery deadlines.
            dists.append(Distributor(f"DST{n:02d}", tuple(sorted(served)), rng.uniform(2, 6), rng.uniform(4, 16)))
        carrier = {(p.id, r): rng.choice([d for d in dists if r in d.regions] or dists)
                   for p in prods for r in region_codes}
        return cls(insts, prods, dists, carrier)

    def in_region(self, region_code: str) -> list[Institution]:
        return [i for i in self.institutions if i.region_code == region_code]

    def demand(self) -> list[tuple[Product, str, float]]:
        """(product, region, share of all orders): every product alike, regions by
        their number of institutions."""
        regions = sorted({i.region_code for i in self.institutions})
        share = {r: len(self.in_region(r)) / len(self.institutions) for r in regions}
        return [(p, r, share[r] / len(self.products)) for p in self.products for r in regions]


@dataclass(frozen=True)
class Story:
    """One injected story: which early warning it should raise, about what, from when.

    `subject` is (product_id, region_code) for `supply_shortage` and `demand_surge`,
    the distributor for `low_delivery_rate` (then raised in each of `scopes`). The
    story's behaviour applies from `starts_at` (event time) until `ends_at`; the
    rule's window says the alert is due by `due_by` = `starts_at` + `within`."""

    scenario: str
    kind: str  # the alert kind expected
    subject_type: str  # "product_region" or "distributor", as in the alerts table
    product_id: str | None
    region_code: str | None
    distributor_id: str  # for a product+region: the distributor that carries it there
    starts_at: datetime
    ends_at: datetime
    within: timedelta
    scopes: tuple[str, ...]  # low_delivery_rate: ("all", "grassroots"); otherwise ()
    summary: str  # what happens, in one sentence
    summary_zh: str = ""  # the same in Chinese (people read it first)

    @property
    def subject(self) -> tuple[str, str] | str:
        if self.subject_type == "distributor":
            return self.distributor_id
        return (self.product_id, self.region_code)

    @property
    def due_by(self) -> datetime:
        return self.starts_at + self.within

    def subject_text(self) -> str:
        """The subject for people, Chinese then English."""
        if self.subject_type == "distributor":
            return f"配送企业 {self.distributor_id} / distributor {self.distributor_id}"
        return (f"产品 {self.product_id}（{self.region_code}）/ product {self.product_id} "
                f"in region {self.region_code}")

    def describe(self) -> str:
        """The story and the alert to watch for, for people (Chinese, then English)."""
        scopes = f" ({', '.join(self.scopes)})" if self.scopes else ""
        zh = f"{self.summary_zh}\n    " if self.summary_zh else ""
        return (f"{self.scenario}: {zh}{self.summary}\n    预期预警 watch for {self.kind}{scopes} on "
                f"{self.subject_text()}, 最迟 due by {self.due_by:%Y-%m-%d %H:%M} "
                f"(故事开始 story from {self.starts_at:%Y-%m-%d %H:%M})")


def _iso(moment: datetime) -> str:
    return moment.astimezone(SHANGHAI).isoformat(timespec="milliseconds")


def _order_time(rng: random.Random, day: datetime) -> datetime:
    # Most orders are placed in working hours; a few at night.
    hour = rng.gauss(11, 3) if rng.random() < 0.9 else rng.uniform(0, 24)
    return day + timedelta(hours=min(max(hour, 0.0), 23.99), seconds=rng.randint(0, 59))


@dataclass
class _Order:
    n: int
    at: datetime
    inst: Institution
    product: Product
    dist: Distributor
    quantity: int
    events: list[tuple[datetime, dict]] = field(default_factory=list)  # the order and what follows it

    def __post_init__(self) -> None:
        if not self.events:
            self.events = [(self.at, {
                "event_id": f"o-{self.n:06d}", "kind": "order", "order_id": self.order_id,
                "institution_id": self.inst.id, "region_code": self.inst.region_code, "area": self.inst.area,
                "grassroots": self.inst.grassroots, "distributor_id": self.dist.id,
                "manufacturer_id": self.product.manufacturer_id, "product_id": self.product.id,
                "product_kind": self.product.kind, "vbp": self.product.vbp, "quantity": self.quantity,
                "unit_price": self.product.unit_price})]

    @property
    def order_id(self) -> str:
        return f"ORD{self.n:06d}"


@dataclass(frozen=True)
class _Twist:
    """How a story changes an order's fate."""

    turned_away: bool = False  # answered quickly with out_of_stock: rejected, or a small part confirmed
    ignored_share: float = 0.0  # never answered with this probability
    rural_delay: tuple[float, float] = (0.0, 0.0)  # extra hours on the road outside the city area


def _answer(rng: random.Random, order: _Order, twist: _Twist | None) -> tuple[str, int, str | None]:
    quantity = order.quantity
    if twist and twist.turned_away:
        if quantity == 1 or rng.random() < 0.5:
            return "rejected", 0, "out_of_stock"
        return "partial", rng.randint(1, max(1, quantity * 3 // 10)), "out_of_stock"
    roll = rng.random()
    if roll < 0.0002:
        return "rejected", 0, "qualification"  # a large order turned away: rare, or fill rates would dip
    if roll < 0.0002 + OUT_OF_STOCK_RATE:
        if quantity == 1:
            return "rejected", 0, "out_of_stock"
        return "partial", quantity - rng.randint(1, max(1, quantity // 5)), "out_of_stock"
    if quantity <= 20 and roll < 0.08:
        # Small orders do not pay at the procurement price (or the trip to a remote clinic).
        remote = order.inst.area == "rural" and rng.random() < 0.3
        return "rejected", 0, "remote_area" if remote else "price"
    if quantity >= 10 and 0.08 <= roll < 0.125:
        # Rounded down to whole packs: a small shortfall.
        return "partial", quantity - rng.randint(1, quantity // 10), "other"
    return "accepted", quantity, None


def _fate(rng: random.Random, order: _Order, twist: _Twist | None = None) -> list[tuple[datetime, dict]]:
    """The answer, shipments and arrivals that follow an order, as (time, event) pairs."""
    dist, n, order_id = order.dist, order.n, order.order_id
    if twist and twist.ignored_share and rng.random() < twist.ignored_share:
        return []
    fate = rng.random()
    if fate < 0.003:
        return []  # never answered
    if twist and twist.turned_away:
        response_delay = rng.uniform(0.5, 4)  # "none in stock" is quick to say
    else:
        # Mostly within the day; some after the 48 h response deadline, a few past 72 h.
        response_delay = (rng.uniform(1, 2 * dist.typical_response_hours) if fate < 0.985
                          else rng.uniform(30, 60) if fate < 0.997 else rng.uniform(72, 100))
    answered = order.at + timedelta(hours=response_delay)
    decision, confirmed, reason = _answer(rng, order, twist)
    response = {"event_id": f"r-{n:06d}", "kind": "response", "order_id": order_id, "distributor_id": dist.id,
                "decision": decision, "confirmed_quantity": confirmed}
    if reason:
        response["reason"] = reason
    story = [(answered, response)]
    if decision == "rejected" or rng.random() < 0.005:
        return story  # nothing ships
    parts = [confirmed] if confirmed < 2 or rng.random() < 0.8 else [confirmed // 2, confirmed - confirmed // 2]
    shipped = answered
    for k, part in enumerate(parts, 1):
        shipped += timedelta(hours=rng.uniform(0.5, 4))
        transit = rng.uniform(1, 6)
        if order.inst.area == "rural":
            transit += dist.rural_delay_hours + (rng.uniform(*twist.rural_delay) if twist else 0.0)
        if rng.random() < 0.01:
            transit += rng.uniform(24, 48)  # held up on the road
        received = shipped + timedelta(hours=transit)
        # Confirmed on the platform within hours, sometimes more than a day after arrival.
        confirm_delay = rng.uniform(24.5, 40) if rng.random() < 0.02 else rng.uniform(0.1, 8)
        accepted = part if rng.random() > 0.05 else rng.randint(0, part)
        story.append((shipped, {"event_id": f"s-{n:06d}-{k}", "kind": "shipment", "order_id": order_id,
                                "shipment_id": f"SH{n:06d}-{k}", "distributor_id": dist.id, "quantity": part}))
        story.append((received + timedelta(hours=confirm_delay), {
            "event_id": f"a-{n:06d}-{k}", "kind": "arrival", "order_id": order_id,
            "shipment_id": f"SH{n:06d}-{k}", "institution_id": order.inst.id, "quantity": accepted,
            "received_at": _iso(received)}))
    return story


def _healthy_orders(rng: random.Random, world: World, start: datetime, days: int,
                    orders_per_day: int) -> list[_Order]:
    """Each day's orders (about `orders_per_day`) shared out by demand: a product+region
    gets its share, rounded up or down at random, so its daily orders vary by at most one
    around the mean (scaled by the day's total)."""
    demand = world.demand()
    orders: list[_Order] = []
    for day in range(days):
        total = max(0, round(rng.gauss(orders_per_day, orders_per_day * 0.05)))
        midnight = start + day * DAY
        for product, region, share in demand:
            expected = total * share
            count = int(expected) + (rng.random() < expected - int(expected))
            institutions = world.in_region(region)
            for _ in range(count):
                order = _Order(len(orders) + 1, _order_time(rng, midnight), rng.choice(institutions), product,
                               world.carrier[(product.id, region)], rng.randint(*QUANTITY))
                order.events += _fate(rng, order)
                orders.append(order)
    return orders


# -- stories ------------------------------------------------------------------------

def _scenarios(scenario: str | Sequence[str] | None) -> list[str]:
    if scenario is None:
        return []
    names = [scenario] if isinstance(scenario, str) else list(scenario)
    out = []
    for name in names:
        if name not in SCENARIO_CHOICES:
            raise ScenarioError(f"unknown scenario {name!r}: choose from {', '.join(SCENARIO_CHOICES)}")
        out += SCENARIOS if name == "all" else [name]
    return [s for s in SCENARIOS if s in out]


def min_days(scenario: str | Sequence[str] | None) -> int:
    """The fewest simulated days in which `scenario` raises its alerts (1 without one)."""
    return max([1] + [MIN_DAYS[s] for s in _scenarios(scenario)])


@dataclass(frozen=True)
class _Cast:
    """Who plays in the stories: fixed by the world alone, so a story has the same
    subject whether it is told alone or with the others."""

    bad: Distributor
    short: tuple[Product, str]
    surge: tuple[Product, str]

    @classmethod
    def of(cls, world: World) -> "_Cast":
        # The bad distributor: the one with the most grassroots demand outside the city.
        def rural_grassroots(d: Distributor) -> int:
            return sum(sum(i.grassroots and i.area == "rural" for i in world.in_region(r))
                       for (p, r), c in world.carrier.items() if c is d)
        bad = max(world.distributors, key=lambda d: (rural_grassroots(d), d.id))
        by_size = sorted({i.region_code for i in world.institutions},
                         key=lambda r: (-len(world.in_region(r)), r))

        def pick(region: str, avoid: set[str]) -> tuple[Product, str]:
            # A VBP drug if there is one (any product otherwise) the bad distributor does not carry there.
            fits = [p for p in world.products if p.id not in avoid and world.carrier[(p.id, region)] is not bad]
            return min(fits, key=lambda p: (p.kind != "drug", not p.vbp, p.id)), region

        short = pick(by_size[0], set())
        surge = pick(by_size[1 if len(by_size) > 1 else 0], {short[0].id})
        return cls(bad, short, surge)


def _story_rng(seed: int, scenario: str) -> random.Random:
    return random.Random(f"{seed}:{scenario}")


def _shortage(world: World, cast: _Cast, orders: list[_Order], rng: random.Random, start: datetime,
              end: datetime, next_n: int) -> tuple[Story, dict[int, _Twist], list[_Order]]:
    product, region = cast.short
    dist = world.carrier[(product.id, region)]
    begins = start + DAY
    ends = begins + SHORTAGE_HOURS * HOUR
    twist = _Twist(turned_away=True)
    twists = {o.n: twist for o in orders
              if o.product is product and o.inst.region_code == region and begins <= o.at < ends}
    # Institutions of the region that order the drug on the first morning and are turned away.
    institutions = world.in_region(region)
    extra = []
    for k, inst in enumerate(rng.sample(institutions, min(SHORTAGE_EXTRA_INSTITUTIONS, len(institutions)))):
        at = begins + timedelta(hours=8 + 3 * k + rng.uniform(0, 2))
        order = _Order(next_n + k, at, inst, product, dist, rng.randint(20, 200))
        order.events += _fate(rng, order, twist)
        extra.append(order)
    story = Story("shortage", "supply_shortage", "product_region", product.id, region, dist.id, begins,
                  min(ends, end), timedelta(hours=72), (),
                  f"{product.id} ({'VBP ' if product.vbp else ''}{product.kind} of {product.manufacturer_id}) runs out of stock in region {region}: "
                  f"for {SHORTAGE_HOURS} h its distributor {dist.id} turns every order away with out_of_stock "
                  f"(rejected or a small part confirmed), {len(extra)} institutions of the region among them.",
                  summary_zh=f"{product.id}（{'集采' if product.vbp else ''}{'药品' if product.kind == 'drug' else '耗材'}，"
                  f"生产企业 {product.manufacturer_id}）在 {region} 断货：{SHORTAGE_HOURS} 小时内配送企业 {dist.id} "
                  f"以缺货为由拒绝或仅部分响应每一笔订单，其中包括该地区 {len(extra)} 家医疗机构。")
    return story, twists, extra


def _surge(world: World, cast: _Cast, orders: list[_Order], rng: random.Random, start: datetime,
           end: datetime, next_n: int) -> tuple[Story, dict[int, _Twist], list[_Order]]:
    product, region = cast.surge
    dist = world.carrier[(product.id, region)]
    mine = sorted((o for o in orders if o.product is product and o.inst.region_code == region), key=lambda o: o.at)
    if not mine:
        raise ScenarioError("surge: its product has no orders in this history (raise --orders-per-day)")
    # The first local midnight at least 8 days after the pair's first order: from then on,
    # the 24 h window is preceded by >= 7 whole days of history (the rule's minimum).
    first = mine[0].at
    begins = start + math.ceil((first + 8 * DAY - start) / DAY) * DAY
    if begins + DAY > end:
        raise ScenarioError(f"surge: {product.id} in {region} is first ordered {first:%Y-%m-%d %H:%M}; the surge "
                            f"comes 8 days later and needs that day in the history: at least "
                            f"{(begins + DAY - start) // DAY} days")
    baseline_start = max(first, begins - 28 * DAY)
    baseline_days = (begins - baseline_start) / DAY
    daily = sum(o.quantity for o in mine if baseline_start <= o.at < begins) / baseline_days
    per_day = max(SURGE_MIN_ORDERS, math.ceil(SURGE_FACTOR * daily / MEAN_QUANTITY))
    institutions = world.in_region(region)
    extra = []
    for day in range(SURGE_DAYS):
        for _ in range(per_day):
            order = _Order(next_n + len(extra), _order_time(rng, begins + day * DAY), rng.choice(institutions),
                           product, dist, rng.randint(*QUANTITY))
            order.events += _fate(rng, order)
            extra.append(order)
    story = Story("surge", "demand_surge", "product_region", product.id, region, dist.id, begins,
                  min(begins + SURGE_DAYS * DAY, end), timedelta(hours=24), (),
                  f"an epidemic-like surge: for {SURGE_DAYS} days, institutions of region {region} place "
                  f"{per_day} extra orders a day for {product.id} (about {per_day * MEAN_QUANTITY / daily:.0f}x "
                  f"the {daily:.0f} units a day ordered in the {baseline_days:.0f} days before).",
                  summary_zh=f"类似疫情的需求激增：{SURGE_DAYS} 天内 {region} 的医疗机构每天多下 {per_day} 笔 {product.id} 订单"
                  f"（约为此前 {baseline_days:.0f} 天日均 {daily:.0f} 件的 {per_day * MEAN_QUANTITY / daily:.0f} 倍）。")
    return story, {}, extra


def _bad_distributor(world: World, cast: _Cast, orders: list[_Order], rng: random.Random, start: datetime,
                     end: datetime, next_n: int) -> tuple[Story, dict[int, _Twist], list[_Order]]:
    dist = cast.bad
    begins = start + DAY
    twist = _Twist(ignored_share=BAD_IGNORED, rural_delay=BAD_RURAL_DELAY_HOURS)
    twists = {o.n: twist for o in orders if o.dist is dist and o.at >= begins}
    story = Story("bad-distributor", "low_delivery_rate", "distributor", None, None, dist.id, begins, end,
                  timedelta(days=30), ("all", "grassroots"),
                  f"distributor {dist.id} ignores {BAD_IGNORED:.0%} of its orders and delivers to institutions "
                  f"outside the city area (mostly grassroots) {BAD_RURAL_DELAY_HOURS[0]:.0f}-"
                  f"{BAD_RURAL_DELAY_HOURS[1]:.0f} h late.",
                  summary_zh=f"配送企业 {dist.id} 对 {BAD_IGNORED:.0%} 的订单不予响应，向主城区外（多为基层）医疗机构的配送晚到 "
                  f"{BAD_RURAL_DELAY_HOURS[0]:.0f}-{BAD_RURAL_DELAY_HOURS[1]:.0f} 小时。")
    return story, twists, []


TELLERS = {"shortage": _shortage, "surge": _surge, "bad-distributor": _bad_distributor}


# -- the history --------------------------------------------------------------------

class History(Iterator[dict]):
    """The events of a generated history in `ts` order (an iterator: read it once),
    and the stories injected into it."""

    def __init__(self, events: Iterator[dict], stories: list[Story]):
        self._events = events
        self.stories = stories

    def __iter__(self) -> "History":
        return self

    def __next__(self) -> dict:
        return next(self._events)


def generate(days: int = 7, orders_per_day: int = 500, seed: int = 7, start: datetime | None = None,
             noise: bool = True, tick_minutes: int = 60, prefix: str = "",
             scenario: str | Sequence[str] | None = None) -> History:
    """Events sorted by `ts`; nothing later than `start + days`, which the last tick marks.

    `prefix` starts every event, order and shipment id (e.g. to tell runs apart).
    `scenario`: None (healthy traffic), one of SCENARIO_CHOICES, or several names;
    raises ScenarioError for an unknown one or a history too short to tell it."""
    told = _scenarios(scenario)
    if days < min_days(told):
        raise ScenarioError(f"scenario {', '.join(told)} needs at least {min_days(told)} simulated days "
                            f"(got {days})")
    rng = random.Random(seed)
    world = World.build(rng)
    start = start or DEFAULT_START
    end = start + timedelta(days=days)
    orders = _healthy_orders(rng, world, start, days, orders_per_day)
    stories: list[Story] = []
    if told:
        cast = _Cast.of(world)
        extra: list[_Order] = []
        for name in told:
            story_rng = _story_rng(seed, name)
            story, twists, added = TELLERS[name](world, cast, orders, story_rng, start, end,
                                                 len(orders) + len(extra) + 1)
            for order in orders:
                if order.n in twists:
                    order.events[1:] = _fate(story_rng, order, twists[order.n])
            stories.append(story)
            extra += added
        orders += extra
    return History(_events(orders, start, end, tick_minutes, noise, seed, prefix), stories)


def _events(orders: list[_Order], start: datetime, end: datetime, tick_minutes: int, noise: bool, seed: int,
            prefix: str) -> Iterator[dict]:
    timeline: list[tuple[datetime, int, dict]] = []
    seq = 0
    for order in orders:
        for moment, event in order.events:
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
    prefixed = ("event_id", "order_id", "shipment_id")
    while timeline:
        moment, _, event = heapq.heappop(timeline)
        event = {"event_id": event["event_id"], "kind": event["kind"], "ts": _iso(moment),
                 **{k: v for k, v in event.items() if k not in ("event_id", "kind")}}
        if event["kind"] != "tick":
            for name in prefixed:
                if name in event:
                    event[name] = prefix + event[name]
        yield event
        # The platform sends a few events twice: which ones depends on the seed and the
        # event alone, so a story leaves the healthy traffic's duplicates as they were.
        if noise and event["kind"] != "tick" and \
                zlib.crc32(f"{seed}:{event['event_id']}".encode()) % 1000 < DUPLICATE_PER_MILLE:
            yield dict(event)


def write_history(path: str | Path, events: Iterable[dict], gzip_out: bool | None = None) -> int:
    path = Path(path)
    compress = path.suffix == ".gz" if gzip_out is None else gzip_out
    count = 0
    with (gzip.open(path, "wb") if compress else open(path, "wb")) as out:
        for event in events:
            out.write(orjson.dumps(event) + b"\n")
            count += 1
    return count
