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
  distributor, far above 70 % (`low_delivery_rate`);
- each manufacturer names two distributors per city and they carry its products
  there (`distributor_limit_exceeded`); prices are one national price per product,
  a few cut once, in each city at one instant and everywhere within 3 days
  (`price_linkage_overdue`, `price_inconsistent`, `price_rise`); rejections hit
  rural and urban orders alike and shortfalls are small (`remote_refusal`,
  `short_supply`).

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
- `third-distributor`: from day 1, a third distributor takes one product's orders
  in one region of a city where its manufacturer named two.
- `price-lag`: a product's national price is cut on day 1, but a hospital of a
  region in another city keeps buying it at the old price for over 30 days.
- `price-split`: for 5 days, a product costs 3 % more in one region of a city.
- `price-rise`: a far hospital buys a product on day 0, then 12 % dearer for a week
  from day 8.
- `remote-refusal`: from day 1, a distributor turns down a fifth of its orders
  outside the city area as too remote.
- `short-supply`: from day 1, a distributor confirms only 80-86 % of the quantity
  of the orders it accepts.
- `all`: every story at once, on different subjects.

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

from supplymon.core.conduct import city_of
from supplymon.settings import SHANGHAI

DEFAULT_START = datetime(2026, 3, 1, tzinfo=SHANGHAI)
REGIONS = ("150702", "150721", "150781", "150785", "360702", "360721")
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)

SCENARIOS = ("shortage", "surge", "bad-distributor", "third-distributor", "price-lag", "price-split", "price-rise",
             "remote-refusal", "short-supply")
SCENARIO_CHOICES = SCENARIOS + ("all",)
# Simulated days each story needs to be told up to its alert (see `Story.due_by`).
MIN_DAYS = {"shortage": 2, "surge": 10, "bad-distributor": 4, "third-distributor": 3, "price-lag": 33,
            "price-split": 3, "price-rise": 10, "remote-refusal": 4, "short-supply": 4}

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
# Healthy prices: one national price per product; a few products get a cut during a
# history, which reaches each city at one instant, every city within CUT_SPREAD_HOURS.
CUT_SHARE = 0.15
CUT_FACTOR = (0.90, 0.97)
CUT_SPREAD_HOURS = 72.0
SPLIT_DAYS, SPLIT_FACTOR = 5, 1.03  # price-split: one region of a city 3 % dearer for 5 days
# price-rise: a far hospital buys on day 0, then (after more than a week, so that it is
# a rise, not a second price within the week) 12 % dearer for a week from day RISE_FROM.
RISE_FROM, RISE_DAYS, RISE_FACTOR = 8, 7, 1.12
LAG_CUT = 0.92  # price-lag: the national cut the far region does not follow
FAR_ORDERS_PER_DAY = 2  # orders a day from the far region's institution (price-lag, price-rise)
REMOTE_REFUSED = 0.2  # remote-refusal: share of its orders outside the city area turned down
SHORT_CONFIRMED = (0.80, 0.86)  # short-supply: share of the quantity it confirms on what it accepts


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
    named: dict[tuple[str, str], list[Distributor]]  # (manufacturer, city) -> its (at most) two distributors

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
        # 一厂一区两配送: each manufacturer names two distributors in a city, and they carry
        # its products there (those of the two that serve the region, or either).
        named = {}
        for mfr in sorted({p.manufacturer_id for p in prods}):
            for city in sorted({city_of(r) for r in region_codes}):
                serving = [d for d in dists if any(city_of(r) == city for r in d.regions)] or dists
                named[(mfr, city)] = rng.sample(serving, min(2, len(serving)))
        carrier = {}
        for p in prods:
            for r in region_codes:
                pair = named[(p.manufacturer_id, city_of(r))]
                carrier[(p.id, r)] = rng.choice([d for d in pair if r in d.regions] or pair)
        return cls(insts, prods, dists, carrier, named)

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
    manufacturer_id: str | None = None  # manufacturer_city: the manufacturer
    summary_zh: str = ""  # the summary in Chinese (people read it first)

    @property
    def subject(self) -> tuple[str, str] | str:
        """As in the alerts table: the distributor, (product, region), (product, city)
        or (manufacturer, city)."""
        if self.subject_type == "distributor":
            return self.distributor_id
        if self.subject_type == "manufacturer_city":
            return (self.manufacturer_id, city_of(self.region_code))
        if self.subject_type == "product_city":
            return (self.product_id, city_of(self.region_code))
        return (self.product_id, self.region_code)

    @property
    def due_by(self) -> datetime:
        return self.starts_at + self.within

    def subject_text(self) -> str:
        """The subject for people, Chinese then English."""
        if self.subject_type == "distributor":
            return f"配送企业 {self.distributor_id} / distributor {self.distributor_id}"
        city = city_of(self.region_code or "")
        if self.subject_type == "manufacturer_city":
            return f"生产企业 {self.manufacturer_id}（{city} 市）/ manufacturer {self.manufacturer_id} in city {city}"
        if self.subject_type == "product_city":
            return f"产品 {self.product_id}（{city} 市）/ product {self.product_id} in city {city}"
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
    rural_refused: float = 0.0  # orders outside the city area turned down as too remote, this share
    confirmed_share: tuple[float, float] | None = None  # what it accepts, only this share confirmed


def _answer(rng: random.Random, order: _Order, twist: _Twist | None) -> tuple[str, int, str | None]:
    quantity = order.quantity
    if twist and twist.turned_away:
        if quantity == 1 or rng.random() < 0.5:
            return "rejected", 0, "out_of_stock"
        return "partial", rng.randint(1, max(1, quantity * 3 // 10)), "out_of_stock"
    if twist and twist.rural_refused and order.inst.area == "rural" and rng.random() < twist.rural_refused:
        return "rejected", 0, "remote_area"
    decision, confirmed, reason = _healthy_answer(rng, order)
    if twist and twist.confirmed_share and decision != "rejected":
        short = math.ceil(quantity * rng.uniform(*twist.confirmed_share))
        if short < confirmed:
            return "partial", short, "other"
    return decision, confirmed, reason


def _healthy_answer(rng: random.Random, order: _Order) -> tuple[str, int, str | None]:
    quantity = order.quantity
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
    third: tuple[Product, str, Distributor]  # a product+region moved to a third distributor
    split: tuple[Product, str]  # a region of a city with a second price
    lag: Product  # cut in the city, not followed in a far region
    rise: Product  # dearer in a far region for a week
    far: tuple[str, str]  # two regions of a city the world does not have (price-lag, price-rise)
    refuser: Distributor
    shorter: Distributor

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
        # The conduct stories: products with no healthy price cut, each its own.
        taken = {short[0].id, surge[0].id} | set(_cut_products(world))
        free = sorted((p for p in world.products if p.id not in taken), key=lambda p: (not p.vbp, p.id))
        if len(free) < 4:
            raise ScenarioError("the world has too few products for every story")
        third_product, split_product, lag, rise = free[:4]
        third_region = by_size[-1]
        named = world.named[(third_product.manufacturer_id, city_of(third_region))]
        others = [d for d in world.distributors if d not in named and d is not bad]
        third = min(others, key=lambda d: (third_region not in d.regions, d.id))
        split_region = by_size[0]
        cities = {city_of(r) for r in by_size}
        far = [r for r in REGIONS if city_of(r) not in cities][:2]
        if len(far) < 2:
            far = ["990101", "990102"]  # a made-up city when the world spans every known one
        # Two distributors of their own: not the bad one, not the third, carrying no other story's product.
        busy = {bad.id, third.id} | {world.carrier[(p.id, r)].id for p, r in (short, surge)}
        def rural_demand(d: Distributor) -> int:
            return sum(sum(i.area == "rural" for i in world.in_region(r)) for (p, r), c in world.carrier.items() if c is d)
        free_dists = sorted((d for d in world.distributors if d.id not in busy), key=lambda d: (-rural_demand(d), d.id))
        if len(free_dists) < 2:
            raise ScenarioError("the world has too few distributors for every story")
        return cls(bad, short, surge, (third_product, third_region, third), (split_product, split_region), lag, rise,
                   (far[0], far[1]), free_dists[0], free_dists[1])


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


def _set_price(order: _Order, price: float) -> None:
    order.events[0][1]["unit_price"] = price


def _cut_products(world: World) -> list[str]:
    """The products whose national price is cut during a healthy history (the world's alone)."""
    return [p.id for p in world.products
            if zlib.crc32(f"cut:{p.id}:{p.unit_price}".encode()) % 1000 < CUT_SHARE * 1000]


def _healthy_prices(orders: list[_Order], world: World, seed: int, start: datetime, days: int) -> None:
    """One national price per product; a few are cut on some day from the third on, in
    each city at one instant, in every city within CUT_SPREAD_HOURS."""
    rng = random.Random(f"{seed}:prices")
    cities = sorted({city_of(r) for r in REGIONS} | {city_of(i.region_code) for i in world.institutions})
    cuts = {}
    for product_id in _cut_products(world):
        day = 2 + int(rng.random() * max(1, days - 2))
        factor = rng.uniform(*CUT_FACTOR)
        cuts[product_id] = factor, {c: start + day * DAY + timedelta(hours=rng.uniform(0, CUT_SPREAD_HOURS))
                                    for c in cities}
    for order in orders:
        cut = cuts.get(order.product.id)
        if cut and order.at >= cut[1][city_of(order.inst.region_code)]:
            _set_price(order, round(order.product.unit_price * cut[0], 2))


def _far_orders(world: World, product: Product, region: str, rng: random.Random, start: datetime, end: datetime,
                next_n: int, price_at, orders_on=lambda day: True) -> list[_Order]:
    """FAR_ORDERS_PER_DAY orders a day of `product` from a hospital of `region` (a city
    the world does not have), delivered by the product's distributor at home."""
    inst = Institution(f"INS{region}", region, "urban", False)
    home = sorted({i.region_code for i in world.institutions})[0]
    dist = world.carrier[(product.id, home)]
    out: list[_Order] = []
    day = start
    while day < end:
        for _ in range(FAR_ORDERS_PER_DAY if orders_on(day) else 0):
            at = _order_time(rng, day)
            if at <= end:
                order = _Order(next_n + len(out), at, inst, product, dist, rng.randint(*QUANTITY))
                _set_price(order, price_at(at))
                order.events += _fate(rng, order)
                out.append(order)
        day += DAY
    return out


def _third_distributor(world: World, cast: _Cast, orders: list[_Order], rng: random.Random, start: datetime,
                       end: datetime, next_n: int) -> tuple[Story, dict[int, _Twist], list[_Order]]:
    product, region, third = cast.third
    begins = start + DAY
    twists = {}
    for order in orders:
        if order.product is product and order.inst.region_code == region and order.at >= begins:
            order.dist = third
            order.events[0][1]["distributor_id"] = third.id
            twists[order.n] = _Twist()  # its answer and deliveries come from the third distributor
    named = ", ".join(d.id for d in world.named[(product.manufacturer_id, city_of(region))])
    story = Story("third-distributor", "distributor_limit_exceeded", "manufacturer_city", product.id, region,
                  third.id, begins, end, timedelta(days=2), (),
                  f"{product.manufacturer_id} names {named} in city {city_of(region)}, but from day 1 a third "
                  f"distributor, {third.id}, takes and delivers the orders for {product.id} in region {region}.",
                  manufacturer_id=product.manufacturer_id,
                  summary_zh=f"生产企业 {product.manufacturer_id} 在 {city_of(region)} 市指定的配送企业为 {named.replace(', ', '、')}，但自第 1 天起"
                             f"第三家配送企业 {third.id} 承接并配送 {region} 的 {product.id} 订单。")
    return story, twists, []


def _price_lag(world: World, cast: _Cast, orders: list[_Order], rng: random.Random, start: datetime,
               end: datetime, next_n: int) -> tuple[Story, dict[int, _Twist], list[_Order]]:
    product, region = cast.lag, cast.far[0]
    begins = start + DAY
    cut = round(product.unit_price * LAG_CUT, 2)
    for order in orders:
        if order.product is product and order.at >= begins:
            _set_price(order, cut)
    extra = _far_orders(world, product, region, rng, start, end, next_n, lambda at: product.unit_price)
    story = Story("price-lag", "price_linkage_overdue", "product_region", product.id, region, extra[0].dist.id,
                  begins, end, timedelta(days=32), (),
                  f"the national price of {product.id} is cut from {product.unit_price} to {cut} on day 1, but a "
                  f"hospital of region {region} (another city) keeps buying it at {product.unit_price}: after "
                  f"30 days the cut is overdue there.",
                  summary_zh=f"{product.id} 的全国价格于第 1 天由 {product.unit_price} 降至 {cut}，但 {region}（另一城市）"
                             f"的一家医院仍按 {product.unit_price} 采购：30 天后该地区的联动调价即已逾期。")
    return story, {}, extra


def _price_split(world: World, cast: _Cast, orders: list[_Order], rng: random.Random, start: datetime,
                 end: datetime, next_n: int) -> tuple[Story, dict[int, _Twist], list[_Order]]:
    product, region = cast.split
    begins = start + DAY
    ends = min(begins + SPLIT_DAYS * DAY, end)
    dearer = round(product.unit_price * SPLIT_FACTOR, 2)
    for order in orders:
        if order.product is product and order.inst.region_code == region and begins <= order.at < ends:
            _set_price(order, dearer)
    story = Story("price-split", "price_inconsistent", "product_city", product.id, region,
                  world.carrier[(product.id, region)].id, begins, ends, timedelta(days=1), (),
                  f"for {SPLIT_DAYS} days from day 1, {product.id} costs {dearer} in region {region} instead of "
                  f"{product.unit_price} elsewhere in city {city_of(region)}.",
                  summary_zh=f"自第 1 天起 {SPLIT_DAYS} 天内，{product.id} 在 {region} 的价格为 {dearer}，而 "
                             f"{city_of(region)} 市其他地区为 {product.unit_price}。")
    return story, {}, []


def _price_rise(world: World, cast: _Cast, orders: list[_Order], rng: random.Random, start: datetime,
                end: datetime, next_n: int) -> tuple[Story, dict[int, _Twist], list[_Order]]:
    product, region = cast.rise, cast.far[1]
    begins = start + RISE_FROM * DAY
    ends = min(begins + RISE_DAYS * DAY, end)
    dearer = round(product.unit_price * RISE_FACTOR, 2)
    extra = _far_orders(world, product, region, rng, start, end, next_n,
                        lambda at: dearer if begins <= at < ends else product.unit_price,
                        lambda day: day < start + DAY or day >= begins)
    story = Story("price-rise", "price_rise", "product_region", product.id, region, extra[0].dist.id, begins, ends,
                  timedelta(days=1), (),
                  f"a hospital of region {region} buys {product.id} at {product.unit_price} on day 0, then from day "
                  f"{RISE_FROM} at {dearer} ({RISE_FACTOR - 1:.0%} more) for {RISE_DAYS} days, then at "
                  f"{product.unit_price} again.",
                  summary_zh=f"{region} 的一家医院第 0 天按 {product.unit_price} 采购 {product.id}，自第 {RISE_FROM} 天起 "
                             f"{RISE_DAYS} 天按 {dearer}（上涨 {RISE_FACTOR - 1:.0%}）采购，之后恢复 {product.unit_price}。")
    return story, {}, extra


def _distributor_story(scenario: str, kind: str, dist: Distributor, twist: _Twist, summary: str, summary_zh: str):
    def tell(world: World, cast: _Cast, orders: list[_Order], rng: random.Random, start: datetime,
             end: datetime, next_n: int) -> tuple[Story, dict[int, _Twist], list[_Order]]:
        who = getattr(cast, dist)
        begins = start + DAY
        twists = {o.n: twist for o in orders if o.dist is who and o.at >= begins}
        return (Story(scenario, kind, "distributor", None, None, who.id, begins, end, timedelta(days=3), (),
                      f"distributor {who.id} {summary}", summary_zh=f"配送企业 {who.id} {summary_zh}"), twists, [])
    return tell


TELLERS = {"shortage": _shortage, "surge": _surge, "bad-distributor": _bad_distributor,
           "third-distributor": _third_distributor, "price-lag": _price_lag, "price-split": _price_split,
           "price-rise": _price_rise,
           "remote-refusal": _distributor_story(
               "remote-refusal", "remote_refusal", "refuser", _Twist(rural_refused=REMOTE_REFUSED),
               f"turns down {REMOTE_REFUSED:.0%} of the orders of institutions outside the city area as too "
               f"remote from day 1.",
               f"自第 1 天起以路远为由拒绝主城区外医疗机构 {REMOTE_REFUSED:.0%} 的订单。"),
           "short-supply": _distributor_story(
               "short-supply", "short_supply", "shorter", _Twist(confirmed_share=SHORT_CONFIRMED),
               f"confirms only {SHORT_CONFIRMED[0]:.0%}-{SHORT_CONFIRMED[1]:.0%} of the quantity of the orders it "
               f"accepts from day 1.",
               f"自第 1 天起对其接受的订单只确认 {SHORT_CONFIRMED[0]:.0%}-{SHORT_CONFIRMED[1]:.0%} 的数量。")}


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
    _healthy_prices(orders, world, seed, start, days)
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
