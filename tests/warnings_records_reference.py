"""The early warnings' product+region subject and distributor monitor as they were
before their records became columns: dicts of record lists (and a sorted
(ordered_at, order_id) index). Kept as the references the columnar `ProductRegion`
and `DeliveryRateMonitor` (supplymon/core/warnings.py) are tested against
(tests/test_warning_columns.py): the subject advances instant by instant, the
distributor's figures are scans of its records.
"""
from __future__ import annotations

import bisect
import heapq
import itertools
from typing import Iterable

from supplymon.core.signals import (ANSWERED_AT, CONFIRMED, D_ORDERED_AT, DEADLINE, DECISION, DISTRIBUTOR, INSTITUTION,
                                    ORDERED_AT, QUANTITY, REASON, delivery_record)
from supplymon.core.warnings import DAILY, DEFAULT_RULES, DeliveryRateMonitor, ProductRegion, Transition
from supplymon.core.windows import DAY_MS
from supplymon.settings import HOUR_MS, Rules

# A window of at most this many orders is evaluated order by order; beyond, from
# running sums (the surge's kept by the subjects that needed them, ~40 bytes per
# order; the shortage's made once per advance).
SCAN_AT_MOST = 32


def _running(items: list[tuple[int, int, int]]) -> tuple[list[int], list[int], list[int], list[int]]:
    """(times, running counts, running quantities, running confirmed) of items
    (time, quantity, confirmed) sorted by time; the running lists start at 0."""
    times, counts, ordered, confirmed = [], [0], [0], [0]
    for time, quantity, confirmed_quantity in items:
        times.append(time)
        counts.append(counts[-1] + 1)
        ordered.append(ordered[-1] + quantity)
        confirmed.append(confirmed[-1] + confirmed_quantity)
    return times, counts, ordered, confirmed


class ShortageSweep:
    """The shortage's sums at any instant from `since` on, without a pass over the
    window per instant. An order counts at t when placed in (t - window, t] and
    answered by t: over [max(ordered_at, answered_at), ordered_at + window). So the
    answered orders, ordered and confirmed quantities at t are the running sums of
    the spans started by t minus those of the spans ended by t; the orders turned
    away for lack of stock (few) are kept as spans to count institutions."""

    def __init__(self, records: Iterable[list], window: int, since: int):
        self.since = since
        starts, ends, self.turned_away = [], [], []
        for rec in records:
            answered_at = rec[ANSWERED_AT]
            if answered_at is None:
                continue
            start, end = max(rec[ORDERED_AT], answered_at), rec[ORDERED_AT] + window
            if start >= end:
                continue
            starts.append((start, rec[QUANTITY], rec[CONFIRMED]))
            ends.append((end, rec[QUANTITY], rec[CONFIRMED]))
            if rec[DECISION] in ("rejected", "partial") and rec[REASON] == "out_of_stock":
                self.turned_away.append((start, end, rec[INSTITUTION]))
        starts.sort()
        ends.sort()
        self.started, self.ended = _running(starts), _running(ends)

    def sums(self, t: int) -> tuple[int, int, int]:
        """Answered orders, ordered quantity, confirmed quantity at `t`."""
        (s_times, s_counts, s_ordered, s_confirmed), (e_times, e_counts, e_ordered, e_confirmed) = self.started, self.ended
        i, j = bisect.bisect_right(s_times, t), bisect.bisect_right(e_times, t)
        return s_counts[i] - e_counts[j], s_ordered[i] - e_ordered[j], s_confirmed[i] - e_confirmed[j]

    def institutions(self, t: int) -> int:
        """Distinct institutions turned away for lack of stock, counted at `t`."""
        return len({institution for start, end, institution in self.turned_away if start <= t < end})


class RecordsProductRegion(ProductRegion):
    """One product in one region: `supply_shortage` and `demand_surge`, its records
    held as order_id -> supply_record (core/signals.py). The rules themselves (the
    figures, the conditions, the instants' bookkeeping) are `ProductRegion`'s; what
    is overridden is the storage and the advance on it.
    """

    __slots__ = ("records", "index", "_prefix", "_sweep")  # records and index: where the parent has views

    def __init__(self, rules: Rules = DEFAULT_RULES):
        super().__init__(rules)
        self.records: dict[str, list] = {}
        self.index: list[tuple[int, str]] = []  # (ordered_at, order_id), sorted
        # Running sums of the orders' quantities along `index` (None: rebuilt when next
        # needed), so a window's quantity is a difference of two, not a sum over 28 days.
        self._prefix: list[int] | None = None
        self._sweep: ShortageSweep | None = None  # made during an advance, dropped after it

    # -- input -------------------------------------------------------------------
    def upsert(self, order_id: str, record: list) -> bool:
        """Put an order's record; False if it was already there as it is."""
        old = self.records.get(order_id)
        if old == record:
            return False
        if old is not None and old[ORDERED_AT] != record[ORDERED_AT]:
            self.index.remove((old[ORDERED_AT], order_id))
            self._prefix = None
            old = None
        if old is None:
            entry, index = (record[ORDERED_AT], order_id), self.index
            if not index or entry > index[-1]:  # the usual case: orders come in time order
                index.append(entry)
                if self._prefix is not None:
                    self._prefix.append(self._prefix[-1] + record[QUANTITY])
            else:
                bisect.insort(index, entry)
                self._prefix = None
        elif old[QUANTITY] != record[QUANTITY]:
            self._prefix = None
        self.records[order_id] = record
        self._sweep = None
        at, rt = record[ORDERED_AT], record[ANSWERED_AT]
        if self.first_order is None or at < self.first_order:
            self.first_order = at
        if rt is not None and rt < at + self.shortage_window and (self.now is None or rt > self.now):
            heapq.heappush(self.answers, rt)
        if self.now is not None and (at <= self.now or (rt is not None and rt <= self.now)):
            self.late = True
        return True

    # -- evaluation --------------------------------------------------------------
    def _span(self, start: int, end: int) -> tuple[int, int]:
        """Positions in `index` of the orders placed in (start, end]."""
        index = self.index
        return bisect.bisect_right(index, (start, "\uffff")), bisect.bisect_right(index, (end, "\uffff"))

    def _since(self, start: int, end: int) -> list[list]:
        """Records of orders placed in (start, end]."""
        lo, hi = self._span(start, end)
        return [self.records[oid] for _, oid in self.index[lo:hi]]

    def _quantity(self, lo: int, hi: int) -> int:
        """Total quantity of the orders at positions lo..hi-1 of `index`."""
        prefix, records = self._prefix, self.records
        if prefix is None and hi - lo <= SCAN_AT_MOST:  # a sparse subject: no running sums kept
            return sum(records[oid][QUANTITY] for _, oid in self.index[lo:hi])
        if prefix is None:
            prefix = self._prefix = [0, *itertools.accumulate(records[oid][QUANTITY] for _, oid in self.index)]
        return prefix[hi] - prefix[lo]

    def shortage_holds_at(self, t: int) -> bool:
        """`shortage_holds(shortage_figures(t))`; a busy subject answers it from a
        sweep made once per advance instead of a pass over its window per instant."""
        lo, hi = self._span(t - self.shortage_window, t)
        if hi - lo <= SCAN_AT_MOST:
            return self._shortage_holds_by_scan(t, lo, hi)
        sweep = self._sweep
        if sweep is None or t < sweep.since:  # from the orders that can still count from t on
            sweep = self._sweep = ShortageSweep((self.records[oid] for _, oid in self.index[lo:]),
                                                self.shortage_window, t)
        return self._shortage_condition(*sweep.sums(t), lambda: sweep.institutions(t))

    def _shortage_holds_by_scan(self, t: int, lo: int, hi: int) -> bool:
        """`shortage_holds(shortage_figures(t))` for the orders at lo..hi-1 of `index`
        (those placed in the window): the sums without the figures' dict and lists."""
        records, answered, ordered, confirmed, turned_away = self.records, 0, 0, 0, set()
        for _, oid in self.index[lo:hi]:
            rec = records[oid]
            answered_at = rec[ANSWERED_AT]
            if answered_at is not None and answered_at <= t:
                answered += 1
                ordered += rec[QUANTITY]
                confirmed += rec[CONFIRMED]
                if rec[REASON] == "out_of_stock" and rec[DECISION] in ("rejected", "partial"):
                    turned_away.add(rec[INSTITUTION])
        return self._shortage_condition(answered, ordered, confirmed, turned_away.__len__)

    def surge_figures(self, t: int, distributors: bool = True) -> dict:
        """The surge's figures at `t`; the distributors of the last 24 h (a scan) only
        if asked: they are details, not needed to know whether the surge holds."""
        lo, hi = self._span(t - self.recent, t)
        days = self.history_days(t)
        figures = {"orders_24h": hi - lo, "quantity_24h": self._quantity(lo, hi),
                   "baseline_days": days, "baseline_mean_daily_quantity": None,
                   "window_hours": self.recent / HOUR_MS,
                   "distributors": sorted({self.records[oid][DISTRIBUTOR] for _, oid in self.index[lo:hi]})
                   if distributors else None}
        # The baseline (up to 28 days) only matters once there are enough orders.
        if days >= self.surge_min_days and hi - lo >= self.surge_min_orders:
            start = t - self.recent
            baseline = self._quantity(self._span(start - days * DAY_MS, start)[0], lo)
            figures["baseline_mean_daily_quantity"] = round(baseline / days, 3)
            figures["baseline_quantity"] = baseline
        return figures

    def _next_instant(self) -> int | None:
        """The first instant after `now` at which a figure can change (a superset is fine)."""
        if self.late:
            return self.now + 1
        now, index, answers = self.now, self.index, self.answers
        while answers and now is not None and answers[0] <= now:
            heapq.heappop(answers)
        candidates = answers[:1]
        for offset in self.offsets:  # the first order entering or leaving a window after now
            i = 0 if now is None else bisect.bisect_right(index, (now - offset, "\uffff"))
            if i < len(index):
                candidates.append(index[i][0] + offset)
        # The baseline's own changes matter only to a surge, which needs that many orders
        # in 24 h: a sparse subject skips them (most subjects: one every day for 28 days).
        baseline = self._next_baseline_change() if len(index) >= self.surge_min_orders else None
        if baseline is not None:
            candidates.append(baseline)
        return min(candidates) if candidates else None

    def _next_baseline_change(self) -> int | None:
        """While the surge baseline has fewer than its most days, it grows a day at
        first + recent + k days (k = 1 .. most) and its start moves within the first
        day of history, so each order of that day leaves it at ordered_at + recent +
        k days: the first of these instants after `now`, computed, not stored."""
        first, day, most = self.first_order, DAY_MS, self.surge_max_days
        if first is None:
            return None
        d = -(1 << 62) if self.now is None else self.now - self.recent  # instants > now are y + recent, y > d
        candidates = []
        k = max(1, (d - first) // day + 1)
        if k <= most:
            candidates.append(first + k * day)
        index = self.index
        lo = bisect.bisect_right(index, (d - most * day, "\uffff"))  # orders with an instant after d
        hi = bisect.bisect_left(index, (first + day, ""))  # orders of the first day
        if lo < hi:
            if d < first + day:  # nothing has left yet: the earliest order leaves first
                candidates.append(index[lo][0] + day)
            else:  # y = d + 1 + ((at - d - 1) mod day): the order next in phase after d
                phase = (d + 1 - first) % day
                i = bisect.bisect_left(index, (first + phase, ""), lo, hi)
                at = index[i if i < hi else lo][0]
                candidates.append(d + 1 + (at - d - 1) % day)
        return min(candidates) + self.recent if candidates else None

    def cannot_alert(self) -> bool:
        """Neither rule can hold at any instant with the records held, and no episode
        is open: evaluating its instants would change nothing. Most subjects, sparse
        ones (fewer orders than either rule counts), are so between their orders."""
        if self.shortage.raised_at is not None or self.surge.raised_at is not None:
            return False
        records = self.records
        if len(records) >= self.shortage_min_answered or len(records) >= self.surge_min_orders:
            return False
        turned_away = {rec[INSTITUTION] for rec in records.values()
                       if rec[ANSWERED_AT] is not None and rec[REASON] == "out_of_stock"
                       and rec[DECISION] in ("rejected", "partial")}
        return len(turned_away) < self.shortage_institutions

    def advance(self, to: int) -> list[Transition]:
        return self.advance_by_instants(to)

    def advance_by_instants(self, to: int) -> list[Transition]:
        """`advance` evaluating each instant (the reference for the shortcut)."""
        out: list[Transition] = []
        while True:
            t = self.next_change()
            if t is None or t > to:
                break
            # The figures themselves are an alert's details: made only when one is raised.
            for kind, episode, holds, details in (
                    ("supply_shortage", self.shortage, self.shortage_holds_at(t), lambda t=t: self.shortage_figures(t)),
                    ("demand_surge", self.surge, self.surge_holds_at(t), lambda t=t: self.surge_figures(t))):
                for transition in episode.observe(t, holds, details):
                    transition.kind = kind
                    out.append(transition)
            self.now, self.late = t, False
        if self.now is None or to > self.now:
            self.now = to
        self._sweep = None  # derived; not worth its memory between advances
        return out

    def evict(self) -> list[str]:
        """Drop the orders no window can reach any more; their ids."""
        if self.now is None:
            return []
        horizon = self.now - self.memory
        cut = bisect.bisect_right(self.index, (horizon, "\uffff"))
        gone = [oid for _, oid in self.index[:cut]]
        del self.index[:cut]
        if self._prefix is not None:
            del self._prefix[:cut]  # the sums left are offset alike: their differences hold
        for oid in gone:
            del self.records[oid]
        return gone


class RecordsDeliveryRateMonitor(DeliveryRateMonitor):
    """low_delivery_rate for one distributor, its records held as order_id ->
    delivery_record (core/signals.py) and its figures scans of them; the rules are
    `DeliveryRateMonitor`'s."""

    __slots__ = ("records",)  # a dict here, where the parent's is a view of its columns

    def __init__(self, rules: Rules = DEFAULT_RULES):
        super().__init__(rules)
        self.records: dict[str, list] = {}

    def upsert(self, order_id: str, record: list) -> bool:
        if self.records.get(order_id) == record:
            return False
        self.records[order_id] = record
        return True

    def _rates(self, ends: range) -> dict[int, tuple[tuple[int, int], tuple[int, int]]]:
        return {end: (self._rate(end, False), self._rate(end, True)) for end in ends}

    def next_change(self) -> int | None:
        if not self.records and not any(self.open.values()) and not any(self.conduct.open.values()):
            return None
        if self.measured_until is None:
            return self._first_day_end() if self.records else None
        return self.measured_until + DAY_MS

    def _first_day_end(self) -> int:
        """The first day end at or after the earliest deadline or order: nothing before it counts."""
        first = min(min(r[DEADLINE], r[D_ORDERED_AT] or r[DEADLINE]) for r in self.records.values())
        return DAILY.start(first - 1) + DAY_MS

    def advance(self, to: int) -> list[tuple[str, Transition]]:
        """Measure every day that ended by `to` (and was not measured yet)."""
        out = []
        day_end = DAILY.start(to)  # the last day end at or before `to`
        if self.measured_until is not None:
            first = self.measured_until + DAY_MS
        elif self.records:
            first = self._first_day_end()
        else:
            return out
        ends = range(first, day_end + 1, DAY_MS)
        rates = self._rates(ends) if ends else {}
        conducts = [self.conduct.figures(self.records.values(), end) for end in ends]
        for end, figures in zip(ends, conducts):
            for scope, (counted, on_time) in zip(self.SCOPES, rates[end]):
                low = counted >= self.min_orders and on_time < self.threshold * counted
                if low and self.open[scope] is None:
                    details = {"scope": scope, "orders": counted, "on_time": on_time,
                               "on_time_rate": round(on_time / counted, 4), "window_days": self.window_ms / DAY_MS,
                               "threshold": self.threshold}
                    self.open[scope] = [end, details]
                    out.append((scope, Transition(end, None, details, "low_delivery_rate", scope)))
                elif self.open[scope] is not None and counted and on_time >= self.threshold * counted:
                    raised_at, details = self.open[scope]
                    details = dict(details, resolved_orders=counted, resolved_on_time=on_time,
                                   resolved_rate=round(on_time / counted, 4))
                    out.append((scope, Transition(raised_at, end, details, "low_delivery_rate", scope)))
                    self.open[scope] = None
            out += [("", transition) for transition in self.conduct.measure(self.records.values(), end, figures)]
            self.measured_until = end
        return out

    def evict(self) -> list[str]:
        """Orders whose deadline left every future window."""
        if self.measured_until is None:
            return []
        start = self.measured_until + DAY_MS  # the next window's end
        gone = [k for k, r in self.records.items() if r[DEADLINE] <= start - self.window_ms
                and not self.conduct.keeps(r, start - self.conduct.memory)]
        for order_id in gone:
            del self.records[order_id]
        return gone
