"""Market conduct the policy notices forbid (contract section 3). Pure logic, no I/O.

Manufacturer side (`ManufacturerConduct`, one per manufacturer group; a product's
orders all share its manufacturer, so the product rules live there too):
- `distributor_limit_exceeded` per manufacturer+city (hulunbuir-2024 一厂一区两配送);
- `price_linkage_overdue` and `price_rise` per product+region, `price_inconsistent`
  per product+city (hulunbuir-2024 价格全国联动, fuxin-2020 同城同价, 恶意涨价).
Distributor side (`DistributorConduct`, measured at each day's end with the
delivery rate): `remote_refusal` and `short_supply` (fuxin-2020).

State is bounded whatever the traffic: windows reach 180 days back, so no order
is kept. Prices: per product, region and day only the orders that are a lowest
price of the day from their time on or up to it (`add_point`: with one price a
day, the day's first and last order), enough to answer "lowest price between a
and b" exactly for bounds in different days. Distributor limit: per city and
distributor the last accepting answer. Both are joins (a point or an answer
added twice, or in any order, gives the same state), so a replayed batch or a
restart changes nothing.

Evaluation runs in event time: an order is checked at its `ts` against the orders
before it (those at the same instant do not see each other), so raised and
resolved instants are exact and do not depend on batching. An order or answer
read after stream time passed it (late) is checked at `now + 1 ms`, like the
other early warnings.
"""
from __future__ import annotations

import heapq
from typing import Iterable, Sequence

import numpy as np

from supplymon.core.alerts import local_time
from supplymon.core.signals import (ANSWERED_AT, D_ANSWERED_AT, D_CONFIRMED, D_DECISION, D_ORDERED_AT, D_QUANTITY,
                                    DECISION, DISTRIBUTOR, ORDERED_AT, PRODUCT, REGION, RURAL, UNIT_PRICE)
from supplymon.core.delivery_columns import DeliveryColumns
from supplymon.core.warnings import NEVER, Episode, Transition
from supplymon.core.windows import DAY_MS
from supplymon.settings import Rules

ACCEPTING = ("accepted", "partial")
# Prices and rates are compared with this much slack, so that exactly 0.5 % (or
# exactly 10 %) is not "more than" it by a rounding error.
EPSILON = 1e-9


def more_than(a: float, b: float) -> bool:
    return a - b > EPSILON * max(1.0, abs(b))


def above(price: float, base: float) -> float | None:
    """How much `price` is above `base`, as a fraction (None over a price of 0)."""
    return round(price / base - 1, 4) if base else None


def city_of(region_code: str) -> str:
    """The city of a 6-digit division code: its first 4 digits + 00."""
    return region_code[:4] + "00"


def add_point(points: Sequence, ts: int, price: float) -> list:
    """A day's points (flat [ts, price, ...], by ts) with the order (ts, price) added:
    only the orders lower than every earlier one of the day, or lower than every
    later one, are kept; the others can never be a lowest price of a window that
    starts or ends in the day."""
    if points and ts > points[-2]:  # the usual case: the day's latest order
        # The kept points stay the running lowest from the start; from the end, only
        # those below the new one (the new, last one always is).
        prices = points[1::2]
        below_later, best = [False] * len(prices), float("inf")
        for k in range(len(prices) - 1, -1, -1):
            if prices[k] < best:
                below_later[k], best = True, prices[k]
        out, best = [], float("inf")
        for k, p in enumerate(prices):
            if p < best or (below_later[k] and p < price):
                out += (points[2 * k], p)
            best = min(best, p)
        out += (ts, price)
        return out
    return add_point_by_sort(points, ts, price)


def add_point_by_sort(points: Sequence, ts: int, price: float) -> list:
    """`add_point` in general (an order anywhere in the day): the day's points and the
    order sorted, then the running lowest kept from the start and from the end."""
    pairs = list(zip(points[::2], points[1::2]))
    if pairs:
        pairs = sorted({*pairs, (ts, price)})
    else:
        pairs.append((ts, price))
    kept, best = set(), float("inf")
    for pair in pairs:
        if pair[1] < best:
            kept.add(pair)
            best = pair[1]
    best = float("inf")
    for pair in reversed(pairs):
        if pair[1] < best:
            kept.add(pair)
            best = pair[1]
    return [v for pair in sorted(kept) for v in pair]


_DAYS: dict[int, int] = {}  # one int object per day number (one a day: a few hundred a year)


def same_day(day: int) -> int:
    """`day`, as the one object every product and region keeps for it."""
    return _DAYS.setdefault(day, day)


class RegionPrices:
    """The prices a product was ordered at in one region, by day (`add_point`)."""

    __slots__ = ("days", "_whole")

    def __init__(self, days: dict | None = None):
        self.days: dict[int, tuple] = days or {}  # day -> its points, flat (ts, price, ...)
        self._whole: dict[tuple[int, int], tuple | None] = {}  # cache: lowest of whole days lo..hi

    def add(self, ts: int, price: float) -> int:
        day = same_day(ts // DAY_MS)
        self.days[day] = tuple(add_point(self.days.get(day, ()), ts, price))
        if self._whole:
            self._whole = {k: v for k, v in self._whole.items() if not k[0] <= day <= k[1]}
        return day

    def _whole_days(self, lo: int, hi: int) -> tuple | None:
        key = (lo, hi)
        if key not in self._whole:
            best = None
            for day, points in self.days.items():
                if lo <= day <= hi:
                    for n in range(0, len(points), 2):
                        if best is None or (points[n + 1], points[n]) < best:
                            best = (points[n + 1], points[n])
            if len(self._whole) > 8:
                self._whole.clear()
            self._whole[key] = best
        return self._whole[key]

    def lowest(self, a: int, b: int) -> tuple[float, int] | None:
        """(lowest price, when) of the orders with ts in [a, b] (a and b in different
        days, or b the last instant merged), or None."""
        da, db = a // DAY_MS, b // DAY_MS
        best = self._whole_days(da + 1, db - 1) if db - da > 1 else None
        for day in {da, db}:
            points = self.days.get(day, ())
            for n in range(0, len(points), 2):
                if a <= points[n] <= b and (best is None or (points[n + 1], points[n]) < best):
                    best = (points[n + 1], points[n])
        return best

    def drop_before(self, day: int) -> list[int]:
        gone = [d for d in self.days if d < day]
        for d in gone:
            del self.days[d]
        if gone:
            self._whole.clear()
        return gone


def _seen(price: float, ts: int, region: str, order_id: str | None = None) -> dict:
    """A price with where and when it was seen (ts in epoch ms, at in Asia/Shanghai)."""
    out = {"unit_price": price, "ts": ts, "at": local_time(ts), "region_code": region}
    if order_id is not None:
        out["order_id"] = order_id
    return out


class ManufacturerConduct:
    """The conduct rules of one manufacturer's products and distributors.

    Fed the manufacturer's supply records (`observe`), advanced in event time
    (`advance`). Transitions come as (subject, Transition), subject a dict of
    product_id / region_code / manufacturer_id; for a city, region_code is the
    city's code. Its state is a set of table entries (`take_writes`, `load`)."""

    use_floor = True  # False: no shortcut (the reference in tests)

    def __init__(self, rules: Rules, manufacturer_id: str = ""):
        self.manufacturer_id = manufacturer_id
        self.max_distributors = int(rules.distributor_limit_max_distributors)
        self.limit_window = rules.ms("distributor_limit_window_days")
        self.limit_quiet = rules.ms("distributor_limit_quiet_hours")
        self.link_tolerance, self.link_lag = rules.price_linkage_tolerance, rules.ms("price_linkage_lag_days")
        self.link_lookback = rules.ms("price_linkage_lookback_days")
        self.same_tolerance, self.same_window = rules.price_inconsistent_tolerance, rules.ms(
            "price_inconsistent_window_days")
        self.rise_tolerance, self.rise_window = rules.price_rise_tolerance, rules.ms("price_rise_window_days")
        self.memory = max(self.link_lookback, self.rise_window, self.same_window)
        self.now: int | None = None
        # Restoring: the restored state's `now`, read before its records (`EarlyWarnings.restore`):
        # what they would queue not ahead of it was applied, and is not queued (`load("now")` drops
        # it anyway; queued first, it was ~1.5 million tuples at once for a million orders).
        self.applied_until: int | None = None
        self.prices: dict[str, dict[str, RegionPrices]] = {}  # product -> region -> prices
        # product -> its lowest price kept, any region and day (absent: not known yet). No
        # window's lowest is below it: an order not above it by a tolerance cannot raise.
        self.floor: dict[str, float] = {}
        # (product, region) -> [raised_at, price that resolves it, details]: price_rise / price_linkage_overdue
        self.rises: dict[tuple[str, str], list] = {}
        self.links: dict[tuple[str, str], list] = {}
        self.same: dict[tuple[str, str], Episode] = {}  # (product, city): price_inconsistent
        self.last_accept: dict[str, dict[str, int]] = {}  # city -> distributor -> last accepting answer
        self.limits: dict[str, Episode] = {}  # city: distributor_limit_exceeded
        self.limit_next: dict[str, int] = {}  # city with an open episode -> its next instant of change
        # Orders and accepting answers ahead of `now`, each a heap of tuples (a set for duplicates).
        self.orders: list[tuple] = []  # (check at, ts, product, region, price, order_id)
        self.accepts: list[tuple] = []  # (check at, ts, city, distributor)
        self._queued: set[tuple] = set()
        self._heaped = True  # False: items were appended since the heaps were last put in order
        self.dirty: set[str] = set()  # table entries changed (see take_writes)
        self._forgot_on: int | None = None  # the day of the last _forget (once a day is enough)

    # -- input -------------------------------------------------------------------
    def observe(self, order_id: str, old: list | None, new: list) -> None:
        """An order's supply record, `old` the one held before (None: first seen)."""
        if old is None and new[UNIT_PRICE] is not None:
            self._queue(self.orders, (new[ORDERED_AT], new[PRODUCT], new[REGION], new[UNIT_PRICE], order_id))
        answered = new[ANSWERED_AT]
        if answered is not None and new[DECISION] in ACCEPTING and (
                old is None or old[ANSWERED_AT] != answered or old[DECISION] not in ACCEPTING):
            self._queue(self.accepts, (answered, city_of(new[REGION]), new[DISTRIBUTOR]))

    def _queue(self, heap: list, item: tuple) -> None:
        if item in self._queued or (self.applied_until is not None and item[0] <= self.applied_until):
            return
        self._queued.add(item)
        late = self.now is not None and item[0] <= self.now
        heap.append((self.now + 1 if late else item[0], *item))  # a batch's items: one heapify, not a push each
        self._heaped = False

    # -- evaluation --------------------------------------------------------------
    def next_change(self) -> int | None:
        if not self._heaped:
            heapq.heapify(self.orders)
            heapq.heapify(self.accepts)
            self._heaped = True
        best = self.orders[0][0] if self.orders else None
        if self.accepts and (best is None or self.accepts[0][0] < best):
            best = self.accepts[0][0]
        if self.same or self.limit_next:
            candidates = [c for c in (e.next_check() for e in self.same.values()) if c is not None]
            candidates += self.limit_next.values()
            if best is not None:
                candidates.append(best)
            best = min(candidates) if candidates else None
        return best

    def advance(self, to: int) -> list[tuple[dict, Transition]]:
        out: list[tuple[dict, Transition]] = []
        while True:
            t = self.next_change()
            if t is None or t > to:
                break
            self._step(t, out)
            self.now = t
        if self.now is None or to > self.now:
            self.now = to
        return out

    def _step(self, t: int, out: list) -> None:
        for (product, city), episode in list(self.same.items()) if self.same else ():  # quiet for a window: resolved
            if episode.next_check() is not None and episode.next_check() <= t:
                self._emit(out, "price_inconsistent", {"product_id": product, "region_code": city},
                           episode.observe(t, False, dict))
                if episode.raised_at is None:
                    del self.same[(product, city)]
                self.dirty.add(f"e:{product}")
        due = []
        while self.orders and self.orders[0][0] == t:
            item = heapq.heappop(self.orders)
            self._queued.discard(item[1:])
            due.append(item)
        for _, ts, product, region, price, order_id in due:  # against the orders before t
            self._check_order(t, ts, product, region, price, order_id, out)
        for _, ts, product, region, price, _ in due:
            regions = self.prices.get(product)
            if regions is None:
                regions = self.prices[product] = {}
            prices = regions.get(region)
            if prices is None:
                prices = regions[region] = RegionPrices()
            prices.add(ts, price)
            if product in self.floor and price < self.floor[product]:
                self.floor[product] = price
            self.dirty.add(f"p:{product}|{region}|{ts // DAY_MS}")
        cities = set()
        while self.accepts and self.accepts[0][0] == t:
            item = heapq.heappop(self.accepts)
            self._queued.discard(item[1:])
            _, ts, city, distributor = item
            last = self.last_accept.setdefault(city, {})
            last[distributor] = max(last.get(distributor, ts), ts)
            cities.add(city)
        if self.limit_next:
            cities.update(city for city, at in self.limit_next.items() if at <= t)
        for city in sorted(cities):
            self._check_limit(t, city, out)
        if t // DAY_MS != self._forgot_on:
            self._forgot_on = t // DAY_MS
            self._forget(t)

    def _emit(self, out: list, kind: str, subject: dict, transitions: list[Transition]) -> None:
        for transition in transitions:
            transition.kind = kind
            out.append((dict(subject, manufacturer_id=self.manufacturer_id), transition))

    def _floor(self, product: str) -> float:
        floor = self.floor.get(product)
        if floor is None:
            points = [p[n] for prices in self.prices.get(product, {}).values() for p in prices.days.values()
                      for n in range(1, len(p), 2)]
            floor = self.floor[product] = min(points, default=float("inf"))
        return floor

    def _check_order(self, t: int, ts: int, product: str, region: str, price: float, order_id: str,
                     out: list) -> None:
        regions = self.prices.get(product, {})
        # The three rules compare the price with a lowest in a window, never below the
        # product's floor: if the floor does not make a rule hold, no window's lowest can.
        floor = self._floor(product) if self.use_floor else None
        if floor is None:  # the reference: every rule looks
            rise = same = link = True
        else:
            # Below 0 the tolerance's product is not monotone: no shortcut.
            rise = floor < 0 or more_than(price, floor * (1 + self.rise_tolerance))
            same = floor < 0 or more_than(price, floor * (1 + self.same_tolerance))
            link = more_than(price - floor, self.link_tolerance * price)
            if not (rise or same or link or self.rises or self.links):  # nothing to raise or resolve
                return
        subject = {"product_id": product, "region_code": region}
        made: list[dict] = []

        def order() -> dict:  # the order as seen: made once, and only for an alert's details
            if not made:
                made.append(_seen(price, ts, region, order_id))
            return made[0]

        for kind, episodes in (("price_rise", self.rises), ("price_linkage_overdue", self.links)):
            episode = episodes.get((product, region))
            if episode is not None and episode[0] < t and price <= episode[1]:  # a later order at that price
                details = dict(episode[2], resolved_by=order())
                self._emit(out, kind, subject, [Transition(episode[0], t, details)])
                del episodes[(product, region)]
                self.dirty.add(f"e:{product}")
        # price_rise: more than the tolerance above the region's lowest of the window before it.
        mine = regions.get(region) if rise else None
        lowest = mine.lowest(ts - self.rise_window, t - 1) if mine else None
        if (product, region) not in self.rises and lowest and more_than(price, lowest[0] * (1 + self.rise_tolerance)):
            details = {"order": order(), "lowest": _seen(lowest[0], lowest[1], region),
                       "increase": above(price, lowest[0]), "tolerance": self.rise_tolerance,
                       "window_days": self.rise_window / DAY_MS}
            self.rises[(product, region)] = [t, lowest[0], details]
            self._emit(out, "price_rise", subject, [Transition(t, None, details)])
            self.dirty.add(f"e:{product}")
        # price_linkage_overdue: a price lower elsewhere, lag to lookback days before, not followed.
        if link and (product, region) not in self.links:
            lower = None
            for other, prices in sorted(regions.items()):
                if other != region:
                    seen = prices.lowest(ts - self.link_lookback, ts - self.link_lag)
                    if seen and (lower is None or seen[0] < lower[0]):
                        lower = (*seen, other)
            if lower and more_than(price - lower[0], self.link_tolerance * price):
                details = {"order": order(), "lower": _seen(lower[0], lower[1], lower[2]),
                           "difference": round(1 - lower[0] / price, 4), "tolerance": self.link_tolerance,
                           "lag_days": self.link_lag / DAY_MS, "lookback_days": self.link_lookback / DAY_MS}
                self.links[(product, region)] = [t, lower[0], details]
                self._emit(out, "price_linkage_overdue", subject, [Transition(t, None, details)])
                self.dirty.add(f"e:{product}")
        # price_inconsistent: above another order of the product in the same city in the window before it.
        city, cheaper = city_of(region), None
        for other, prices in sorted(regions.items()) if same else ():
            if city_of(other) == city:
                seen = prices.lowest(ts - self.same_window, t - 1)
                if seen and (cheaper is None or seen[0] < cheaper[0]):
                    cheaper = (*seen, other)
        if cheaper and more_than(price, cheaper[0] * (1 + self.same_tolerance)):
            episode = self.same.setdefault((product, city), Episode(self.same_window))

            def details() -> dict:
                return {"order": order(), "lower": _seen(cheaper[0], cheaper[1], cheaper[2]),
                        "difference": above(price, cheaper[0]), "tolerance": self.same_tolerance,
                        "window_days": self.same_window / DAY_MS}
            # Holds at the order's instant only: resolved a window after the last such order.
            transitions = episode.observe(t, True, details) + episode.observe(t, False, dict)
            self._emit(out, "price_inconsistent", {"product_id": product, "region_code": city}, transitions)
            self.dirty.add(f"e:{product}")

    def _check_limit(self, t: int, city: str, out: list) -> None:
        last = self.last_accept.get(city, {})
        if len(last) <= self.max_distributors and city not in self.limits:  # cannot hold, nothing open
            return
        counted = sorted(d for d, at in last.items() if t - self.limit_window < at <= t)
        holds = len(counted) > self.max_distributors
        episode = self.limits.get(city)
        if episode is None:
            if not holds:
                return
            episode = self.limits[city] = Episode(self.limit_quiet)

        def details() -> dict:
            return {"distributors": counted, "last_accepted": {d: last[d] for d in counted},
                    "max_distributors": self.max_distributors, "window_days": self.limit_window / DAY_MS}
        self._emit(out, "distributor_limit_exceeded", {"region_code": city}, episode.observe(t, holds, details))
        if episode.raised_at is None:
            del self.limits[city]
        self._schedule_limit(city, t)
        self.dirty.add(f"l:{city}")

    def _schedule_limit(self, city: str, after: int | None) -> None:
        """An open episode changes when it has been quiet long enough, or (while it
        holds) when a counted distributor leaves the window."""
        self.limit_next.pop(city, None)
        episode = self.limits.get(city)
        if episode is None:
            return
        times = [episode.next_check()] if episode.stopped_at is not None else [
            at + self.limit_window for at in self.last_accept.get(city, {}).values()]
        times = [t for t in times if t is not None and (after is None or t > after)]
        if times:
            self.limit_next[city] = min(times)

    def _forget(self, t: int) -> None:
        """Drop the days and answers no window can reach from t on (a day's margin:
        this runs once a day)."""
        horizon = (t - self.memory) // DAY_MS - 1
        for product, regions in self.prices.items():
            for region, prices in regions.items():
                for day in prices.drop_before(horizon):
                    self.dirty.add(f"p:{product}|{region}|{day}")
                    self.floor.pop(product, None)
        for city, last in self.last_accept.items():
            gone = [d for d, at in last.items() if at <= t - self.limit_window]
            for d in gone:
                del last[d]
            if gone:
                self.dirty.add(f"l:{city}")

    # -- state -------------------------------------------------------------------
    def take_writes(self) -> dict[str, object]:
        """Changed table entries (item -> value, None: delete): "p:<product>|<region>|<day>"
        the day's points, "e:<product>" the product's episodes, "l:<city>" a city's
        answers and episode, "now"."""
        out: dict[str, object] = {}
        for item in self.dirty:
            kind, key = item.split(":", 1)
            if kind == "p":
                product, region, day = key.split("|")
                prices = self.prices.get(product, {}).get(region)
                out[item] = prices.days.get(int(day)) if prices else None
            elif kind == "e":
                out[item] = self._dump_episodes(key)
            else:
                last, episode = self.last_accept.get(key), self.limits.get(key)
                out[item] = {"last": last, "episode": episode.dump() if episode else None} if last or episode else None
        out["now"] = self.now
        self.dirty.clear()
        return out

    def _dump_episodes(self, product: str) -> dict | None:
        out = {"rise": {r: e for (p, r), e in self.rises.items() if p == product},
               "link": {r: e for (p, r), e in self.links.items() if p == product},
               "same": {c: e.dump() for (p, c), e in self.same.items() if p == product}}
        return out if any(out.values()) else None

    def load(self, item: str, value) -> None:
        """One table entry of `take_writes`."""
        if item == "now":
            self.now = value
            self.applied_until = None
            if value is None:  # never advanced: nothing queued was applied
                return
            # What was queued from the restored records and is not ahead of `now` was applied.
            self.orders = [o for o in self.orders if o[1] > value]
            self.accepts = [a for a in self.accepts if a[1] > value]
            heapq.heapify(self.orders)
            heapq.heapify(self.accepts)
            self._queued = {o[1:] for o in (*self.orders, *self.accepts)}
            for city in self.limits:
                self._schedule_limit(city, value)
            return
        kind, key = item.split(":", 1)
        if kind == "p":
            product, region, day = key.split("|")
            self.prices.setdefault(product, {}).setdefault(region, RegionPrices()).days[same_day(int(day))] = tuple(value)
            self.floor.pop(product, None)
        elif kind == "e":
            for region, episode in value["rise"].items():
                self.rises[(key, region)] = episode
            for region, episode in value["link"].items():
                self.links[(key, region)] = episode
            for city, dumped in value["same"].items():
                episode = self.same[(key, city)] = Episode(self.same_window)
                episode.load(dumped)
        else:
            self.last_accept[key] = dict(value["last"] or {})
            if value["episode"]:
                episode = self.limits[key] = Episode(self.limit_quiet)
                episode.load(value["episode"])
                self._schedule_limit(key, self.now)

    @property
    def size(self) -> int:
        """Points and answers kept (for the memory benchmark)."""
        points = sum(len(p) // 2 for regions in self.prices.values() for r in regions.values() for p in r.days.values())
        return points + sum(map(len, self.last_accept.values()))


class DistributorConduct:
    """remote_refusal and short_supply of one distributor, measured at day ends over
    the distributor's delivery records (core/signals.py)."""

    def __init__(self, rules: Rules):
        self.remote_window = rules.ms("remote_refusal_window_days")
        self.remote_min, self.remote_rate = int(rules.remote_refusal_min_orders), rules.remote_refusal_rate
        self.remote_ratio = rules.remote_refusal_ratio
        self.short_window = rules.ms("short_supply_window_days")
        self.short_min, self.short_below = int(rules.short_supply_min_orders), rules.short_supply_fill_rate_below
        self.memory = max(self.remote_window, self.short_window)
        self.open: dict[str, list | None] = {"remote_refusal": None, "short_supply": None}  # [raised_at, details]

    def figures(self, records: Iterable[list], end: int) -> dict[str, dict]:
        """The figures of both rules at the day end `end` (a scan of the records: the
        reference of `figures_at`)."""
        rural = [0, 0]  # orders, rejected
        urban = [0, 0]
        accepting = [0, 0, 0]  # orders, ordered, confirmed
        for rec in records:
            at = rec[D_ORDERED_AT]
            if at is None:
                continue
            answered = rec[D_ANSWERED_AT]
            if end - self.remote_window < at <= end:
                side = rural if rec[RURAL] else urban
                side[0] += 1
                side[1] += answered is not None and answered <= end and rec[D_DECISION] == "rejected"
            if answered is not None and end - self.short_window < answered <= end and rec[D_DECISION] in ACCEPTING:
                accepting[0] += 1
                accepting[1] += rec[D_QUANTITY]
                accepting[2] += rec[D_CONFIRMED]
        return self._figures(rural, urban, accepting)

    def figures_at(self, cols: DeliveryColumns, ends: Sequence[int]) -> list[dict[str, dict]]:
        """`figures(records, end)` for each of `ends`, counted on the records' columns
        (core/delivery_columns.py)."""
        kept = cols.at != NEVER  # an order not known to be placed does not count
        at, answered, rural = cols.at[kept], cols.answered[kept], cols.rural[kept]
        rejected, accepting = cols.rejected[kept], cols.accepting[kept]
        quantity, confirmed = cols.quantity[kept], cols.confirmed[kept]
        out = []
        for end in ends:
            placed = (at > end - self.remote_window) & (at <= end)
            refused = placed & (answered <= end) & rejected
            counted = accepting & (answered > end - self.short_window) & (answered <= end)
            out.append(self._figures(
                [int((placed & rural).sum()), int((refused & rural).sum())],
                [int((placed & ~rural).sum()), int((refused & ~rural).sum())],
                [int(counted.sum()), int(quantity[counted].sum()), int(confirmed[counted].sum())]))
        return out

    def _figures(self, rural: list[int], urban: list[int], accepting: list[int]) -> dict[str, dict]:
        rate = round(rural[1] / rural[0], 4) if rural[0] else None
        urban_rate = round(urban[1] / urban[0], 4) if urban[0] else None
        return {
            "remote_refusal": {"rural_orders": rural[0], "rural_rejected": rural[1], "rural_rejection_rate": rate,
                               "urban_orders": urban[0], "urban_rejected": urban[1],
                               "urban_rejection_rate": urban_rate, "min_rate": self.remote_rate,
                               "ratio": self.remote_ratio, "window_days": self.remote_window / DAY_MS},
            "short_supply": {"accepted_orders": accepting[0], "ordered_quantity": accepting[1],
                             "confirmed_quantity": accepting[2],
                             "fill_rate": round(accepting[2] / accepting[1], 4) if accepting[1] else None,
                             "fill_rate_below": self.short_below, "window_days": self.short_window / DAY_MS}}

    def holds(self, kind: str, f: dict) -> bool:
        if kind == "remote_refusal":
            # Exact in integers: rejected/orders >= rate and >= ratio x urban rejected/urban orders.
            orders, rejected = f["rural_orders"], f["rural_rejected"]
            return (orders >= self.remote_min and not more_than(self.remote_rate * orders, rejected)
                    and not more_than(self.remote_ratio * f["urban_rejected"] * orders,
                                      rejected * max(f["urban_orders"], 1)))
        return f["accepted_orders"] >= self.short_min and more_than(
            self.short_below * f["ordered_quantity"], f["confirmed_quantity"])

    def measure(self, records: Iterable[list], end: int, figures: dict | None = None) -> list[Transition]:
        """The transitions at the day end `end` (`figures`: those at `end`, if known)."""
        out = []
        for kind, f in (figures or self.figures(records, end)).items():
            holds, episode = self.holds(kind, f), self.open[kind]
            if holds and episode is None:
                self.open[kind] = [end, f]
                out.append(Transition(end, None, f, kind))
            elif not holds and episode is not None:
                out.append(Transition(episode[0], end, dict(episode[1], resolved=f), kind))
                self.open[kind] = None
        return out

    def keeps(self, rec: list, horizon: int) -> bool:
        """Whether a record can count in a window ending after `horizon` + memory."""
        return max(rec[D_ORDERED_AT] or 0, rec[D_ANSWERED_AT] or 0) > horizon

    @staticmethod
    def keeps_on(cols: DeliveryColumns, horizon: int) -> np.ndarray:
        """`keeps` of each record, on their columns (None counts as 0)."""
        return np.maximum(np.where(cols.at == NEVER, 0, cols.at), np.where(cols.answered == NEVER, 0, cols.answered)) > horizon

