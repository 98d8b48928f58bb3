"""Early warnings over sliding event-time windows (contract section 3):
`supply_shortage` and `demand_surge` per product+region, `low_delivery_rate` per
distributor. Pure logic: a monitor per subject takes what happened (orders,
first answers, deliveries) stamped with event time, and `advance(t)` evaluates
every instant up to `t` at which its condition can change, in time order, so
the raised and resolved instants are exact and independent of reading order.

Not wired to the agents yet: feeding these monitors needs the order outcomes
repartitioned by product+region and by distributor, with the watermark carried
along (see the issue notes).
"""
from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass
from typing import Any

from supplymon.core.windows import DAY_MS, FAMILIES
from supplymon.settings import HOUR_MS

DAILY = FAMILIES[0]


@dataclass
class Transition:
    """An episode starting (`resolved_at` None) or ending."""

    raised_at: int
    resolved_at: int | None
    details: dict


@dataclass
class Episode:
    """Raised at the first instant a condition holds; resolved once it has not held
    for `quiet_ms` (at the instant it stopped holding + `quiet_ms`)."""

    quiet_ms: int
    raised_at: int | None = None
    stopped_at: int | None = None

    def observe(self, t: int, holds: bool, details: dict) -> list[Transition]:
        out = []
        if self.raised_at is not None and self.stopped_at is not None and t >= self.stopped_at + self.quiet_ms:
            out.append(Transition(self.raised_at, self.stopped_at + self.quiet_ms, details))
            self.raised_at = self.stopped_at = None
        if holds:
            self.stopped_at = None
            if self.raised_at is None:
                self.raised_at = t
                out.append(Transition(t, None, details))
        elif self.raised_at is not None and self.stopped_at is None:
            self.stopped_at = t
        return out

    def next_check(self) -> int | None:
        return None if self.stopped_at is None else self.stopped_at + self.quiet_ms


class SlidingMonitor:
    """Applies timed changes in order and evaluates the condition after each instant."""

    def __init__(self, quiet_ms: int):
        self.episode = Episode(quiet_ms)
        self._queue: list[tuple[int, int, str, Any]] = []
        self._seq = itertools.count()

    def _at(self, t: int, action: str, payload: Any = None) -> None:
        heapq.heappush(self._queue, (t, next(self._seq), action, payload))

    def advance(self, to: int) -> list[Transition]:
        out: list[Transition] = []
        while True:
            check = self.episode.next_check()
            next_change = self._queue[0][0] if self._queue else None
            if check is not None and check <= to and (next_change is None or check < next_change):
                out += self.episode.observe(check, self.holds(check), self.details(check))
                continue
            if next_change is None or next_change > to:
                return out
            t = next_change
            while self._queue and self._queue[0][0] == t:
                _, _, action, payload = heapq.heappop(self._queue)
                getattr(self, "_" + action)(t, payload)
            out += self.episode.observe(t, self.holds(t), self.details(t))

    def holds(self, t: int) -> bool:
        raise NotImplementedError

    def details(self, t: int) -> dict:
        raise NotImplementedError


class ShortageMonitor(SlidingMonitor):
    """supply_shortage for one product+region: over the orders placed in the trailing
    72 h, >= 3 institutions turned away for `out_of_stock`, or a quantity fill rate
    below 80 % over >= 20 answered orders."""

    def __init__(self, window_ms: int = 72 * HOUR_MS, institutions: int = 3, min_answered: int = 20,
                 fill_rate: float = 0.8, quiet_ms: int = 24 * HOUR_MS):
        super().__init__(quiet_ms)
        self.window_ms, self.institutions, self.min_answered, self.fill_rate = (
            window_ms, institutions, min_answered, fill_rate)
        self.orders: dict[str, dict] = {}  # in the window: order_id -> {institution, quantity, answer}

    def order(self, order_id: str, institution_id: str, ordered_at: int, quantity: int) -> None:
        self._at(ordered_at, "enter", (order_id, institution_id, quantity))
        self._at(ordered_at + self.window_ms, "leave", order_id)

    def answer(self, order_id: str, ts: int, decision: str, confirmed: int, reason: str | None) -> None:
        self._at(ts, "answered", (order_id, decision, confirmed, reason))

    def _enter(self, t: int, payload) -> None:
        order_id, institution, quantity = payload
        self.orders[order_id] = {"institution": institution, "quantity": quantity, "answer": None}

    def _leave(self, t: int, order_id: str) -> None:
        self.orders.pop(order_id, None)

    def _answered(self, t: int, payload) -> None:
        order_id, decision, confirmed, reason = payload
        order = self.orders.get(order_id)
        if order is not None and order["answer"] is None:  # the first answer counts
            order["answer"] = (decision, confirmed, reason)

    def _figures(self) -> tuple[set[str], int, int, int]:
        turned_away, answered, ordered, confirmed = set(), 0, 0, 0
        for order in self.orders.values():
            if order["answer"] is None:
                continue
            decision, qty, reason = order["answer"]
            answered += 1
            ordered += order["quantity"]
            confirmed += qty
            if decision in ("rejected", "partial") and reason == "out_of_stock":
                turned_away.add(order["institution"])
        return turned_away, answered, ordered, confirmed

    def holds(self, t: int) -> bool:
        turned_away, answered, ordered, confirmed = self._figures()
        low_fill = answered >= self.min_answered and confirmed < self.fill_rate * ordered
        return len(turned_away) >= self.institutions or low_fill

    def details(self, t: int) -> dict:
        turned_away, answered, ordered, confirmed = self._figures()
        return {"institutions_out_of_stock": sorted(turned_away), "answered_orders": answered,
                "ordered_quantity": ordered, "confirmed_quantity": confirmed,
                "fill_rate": round(confirmed / ordered, 4) if ordered else None}


class SurgeMonitor(SlidingMonitor):
    """demand_surge for one product+region: >= 20 orders in the trailing 24 h whose
    quantity exceeds 3x the mean daily quantity of the h whole days before them,
    h = days since the first order (at most 28; no alert before 7)."""

    def __init__(self, recent_ms: int = 24 * HOUR_MS, min_orders: int = 20, factor: float = 3.0,
                 min_days: int = 7, max_days: int = 28, quiet_ms: int = 24 * HOUR_MS):
        super().__init__(quiet_ms)
        self.recent_ms, self.min_orders, self.factor, self.min_days, self.max_days = (
            recent_ms, min_orders, factor, min_days, max_days)
        self.first_order: int | None = None
        self.placed: list[tuple[int, int]] = []  # (ordered_at, quantity), in time order

    def order(self, ordered_at: int, quantity: int) -> None:
        self._at(ordered_at, "placed", quantity)
        # The condition also changes when orders age out of the last 24 h and, day by
        # day, when the baseline grows or its oldest orders leave it.
        self._at(ordered_at + self.recent_ms, "tick")
        for day in range(self.max_days + 2):
            self._at(ordered_at + self.recent_ms + day * DAY_MS, "tick")

    def _placed(self, t: int, quantity: int) -> None:
        self.first_order = t if self.first_order is None else self.first_order
        self.placed.append((t, quantity))
        # Orders older than any baseline can reach are no longer needed.
        horizon = t - self.recent_ms - (self.max_days + 1) * DAY_MS
        while self.placed and self.placed[0][0] <= horizon:
            self.placed.pop(0)

    def _tick(self, t: int, payload) -> None:
        pass

    def _figures(self, t: int) -> tuple[int, int, int, float | None]:
        recent_start = t - self.recent_ms
        recent = [q for at, q in self.placed if recent_start < at <= t]
        if self.first_order is None:
            return len(recent), sum(recent), 0, None
        history_days = min(self.max_days, max(0, (recent_start - self.first_order) // DAY_MS))
        if history_days < self.min_days:
            return len(recent), sum(recent), history_days, None
        base_start = recent_start - history_days * DAY_MS
        baseline = sum(q for at, q in self.placed if base_start < at <= recent_start)
        return len(recent), sum(recent), history_days, baseline / history_days

    def holds(self, t: int) -> bool:
        count, quantity, _, mean_daily = self._figures(t)
        return mean_daily is not None and count >= self.min_orders and quantity > self.factor * mean_daily

    def details(self, t: int) -> dict:
        count, quantity, days, mean_daily = self._figures(t)
        return {"orders_24h": count, "quantity_24h": quantity, "baseline_days": days,
                "baseline_mean_daily_quantity": None if mean_daily is None else round(mean_daily, 3)}


class DeliveryRateMonitor:
    """low_delivery_rate for one distributor: at the end of each day (Asia/Shanghai),
    the on-time rate over orders whose deadline fell in the trailing 30 days; below
    70 % over >= 20 orders raises (at that day's end), back at >= 70 % resolves.
    Measured separately over all orders and over grassroots institutions."""

    def __init__(self, window_ms: int = 30 * DAY_MS, min_orders: int = 20, threshold: float = 0.7):
        self.window_ms, self.min_orders, self.threshold = window_ms, min_orders, threshold
        self.orders: dict[str, dict] = {}
        self.open: dict[str, int | None] = {"all": None, "grassroots": None}  # scope -> raised_at
        self.measured_until: int | None = None

    def outcome(self, order_id: str, deadline_at: int, grassroots: bool, on_time_since: int | None) -> None:
        """The order's deadline, and since when it is known to be delivered on time
        (the confirmation of its first receipt, if that was in time); otherwise it
        counts as not on time once its deadline has passed."""
        self.orders[order_id] = {"deadline": deadline_at, "grassroots": grassroots, "one": on_time_since}

    def _rate(self, day_end: int, grassroots_only: bool) -> tuple[int, int]:
        counted = on_time = 0
        for order in self.orders.values():
            if not (day_end - self.window_ms < order["deadline"] <= day_end):
                continue
            if grassroots_only and not order["grassroots"]:
                continue
            counted += 1
            on_time += order["one"] is not None and order["one"] <= day_end
        return counted, on_time

    def advance(self, to: int) -> list[tuple[str, Transition]]:
        """Measure every day that ended by `to` (and was not measured yet)."""
        out = []
        day_end = DAILY.start(to)  # the last day end at or before `to`
        first = day_end if self.measured_until is None else self.measured_until + DAY_MS
        for end in range(first, day_end + 1, DAY_MS):
            for scope in ("all", "grassroots"):
                counted, on_time = self._rate(end, scope == "grassroots")
                details = {"scope": scope, "orders": counted, "on_time": on_time,
                           "on_time_rate": round(on_time / counted, 4) if counted else None}
                low = counted >= self.min_orders and on_time < self.threshold * counted
                if low and self.open[scope] is None:
                    self.open[scope] = end
                    out.append((scope, Transition(end, None, details)))
                elif self.open[scope] is not None and counted and on_time >= self.threshold * counted:
                    out.append((scope, Transition(self.open[scope], end, details)))
                    self.open[scope] = None
            self.measured_until = end
        # Orders whose deadline left every future window are no longer needed.
        for order_id in [k for k, o in self.orders.items() if o["deadline"] <= day_end - self.window_ms]:
            del self.orders[order_id]
        return out
