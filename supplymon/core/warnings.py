"""Early warnings over sliding event-time windows (contract section 3):
`supply_shortage` and `demand_surge` per product+region, `low_delivery_rate` per
distributor, and with them the market-conduct rules of core/conduct.py (in the
manufacturer's and the distributor's group). Pure logic, no I/O.

Each subject keeps one record per order (upserted: the same record twice changes
nothing, a corrected record replaces the old one) and the instant `now` up to
which it has been evaluated. `advance(t)` evaluates, in time order, every instant
in (now, t] at which its condition can change, so the raised and resolved
instants are exact and do not depend on reading order or batch boundaries. A
record that arrives after `now` has passed one of its instants (late data) takes
effect at `now + 1 ms`.

Everything is plain data (`dump()`/`load()`), so the agent can keep it in a
changelogged table: a record per order and a small meta entry per subject.
"""
from __future__ import annotations

import bisect
import heapq
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

import numpy as np

from supplymon.core.delivery_columns import DeliveryRows
from supplymon.core.due import DueIndex
from supplymon.core.supply_columns import CODES, NAMES, RecordsView, SupplyRows
from supplymon.core.signals import (ANSWERED_AT, CONFIRMED, DEADLINE, DECISION, DISTRIBUTOR,
                                    GRASSROOTS, INSTITUTION, ON_TIME_SINCE, ORDERED_AT, PRODUCT, QUANTITY, REASON,
                                    REGION, delivery_record, supply_record)
from supplymon.core.windows import DAY_MS, FAMILIES
from supplymon.settings import HOUR_MS, Rules

DAILY = FAMILIES[0]
DEFAULT_RULES = Rules()
NEVER = 1 << 62  # "not on time" as an instant after every day end


@dataclass
class Transition:
    """An episode starting (`resolved_at` None) or ending; `details` are the figures
    at the instant it was raised."""

    raised_at: int
    resolved_at: int | None
    details: dict
    kind: str = ""
    scope: str = ""


@dataclass(slots=True)  # one or two per subject, tens of thousands of subjects
class Episode:
    """Raised at the first instant a condition holds; resolved once it has not held
    for `quiet_ms` (at the instant it stopped holding + `quiet_ms`)."""

    quiet_ms: int
    raised_at: int | None = None
    stopped_at: int | None = None
    details: dict = field(default_factory=dict)

    def observe(self, t: int, holds: bool, details: Callable[[], dict]) -> list[Transition]:
        out = []
        if self.raised_at is not None and self.stopped_at is not None and t >= self.stopped_at + self.quiet_ms:
            out.append(Transition(self.raised_at, self.stopped_at + self.quiet_ms, self.details))
            self.raised_at = self.stopped_at = None
            self.details = {}
        if holds:
            self.stopped_at = None
            if self.raised_at is None:
                self.raised_at, self.details = t, details()
                out.append(Transition(t, None, self.details))
        elif self.raised_at is not None and self.stopped_at is None:
            self.stopped_at = t
        return out

    def next_check(self) -> int | None:
        return None if self.stopped_at is None else self.stopped_at + self.quiet_ms

    def dump(self) -> list:
        return [self.raised_at, self.stopped_at, self.details]

    def load(self, data: list) -> None:
        self.raised_at, self.stopped_at, self.details = data


class ProductRegion(SupplyRows):
    """One product in one region: `supply_shortage` and `demand_surge`.

    Records: one supply_record (core/signals.py) per order: institution, ordered
    at, quantity, distributor, first answer's ts, decision, confirmed, reason (the
    answer fields None until answered), held as columns in time order
    (core/supply_columns.py).
    """

    # Slots: a subject's attributes without a dict of its own (~1 KB less per subject).
    __slots__ = ("shortage_window", "shortage_institutions", "shortage_min_answered", "shortage_fill_rate", "recent",
                 "surge_min_orders", "surge_factor", "surge_min_days", "surge_max_days", "offsets",
                 "first_order", "now", "late", "answers", "shortage", "surge")

    def __init__(self, rules: Rules = DEFAULT_RULES):
        super().__init__()
        self.shortage_window = rules.ms("shortage_window_hours")
        self.shortage_institutions = int(rules.shortage_institutions)
        self.shortage_min_answered = int(rules.shortage_min_answered_orders)
        self.shortage_fill_rate = rules.shortage_fill_rate_below
        self.recent = rules.ms("surge_window_hours")
        self.surge_min_orders = int(rules.surge_min_orders)
        self.surge_factor = rules.surge_factor
        self.surge_min_days = int(rules.surge_min_history_days)
        self.surge_max_days = int(rules.surge_max_history_days)
        # An order changes a figure when it enters a window and when it leaves one: at
        # `ordered_at` plus each of these (the longest is also when it leaves memory).
        self.offsets = tuple(sorted({0, self.shortage_window, self.recent,
                                     self.recent + self.surge_max_days * DAY_MS}))
        self.first_order: int | None = None
        self.now: int | None = None
        self.late = False  # a record changed at or before `now`: evaluate at now + 1
        # First answers still ahead of `now` (a heap, popped once passed): the other
        # instants follow from `index` and `first_order` (see _next_instant).
        self.answers: list[int] = []
        self.shortage = Episode(rules.ms("shortage_quiet_hours"))
        self.surge = Episode(rules.ms("surge_quiet_hours"))

    @property
    def records(self) -> RecordsView:
        """order id -> record (each made on request)."""
        return RecordsView(self)

    @property
    def index(self) -> list[tuple[int, str]]:
        """(ordered_at, order_id) of the orders, in time order."""
        return list(zip(self.ats, self.ids))

    # -- input -------------------------------------------------------------------
    def upsert(self, order_id: str, record: list) -> bool:
        """Put an order's record; False if it was already there as it is."""
        return self.put_record(order_id, record)[0]

    def put_record(self, order_id: str, record: list) -> tuple[bool, list | None]:
        """`upsert`, and the record held before (None: first seen)."""
        changed, old = self.put(order_id, record)
        if not changed:
            return False, old
        at, rt = record[ORDERED_AT], record[ANSWERED_AT]
        if self.first_order is None or at < self.first_order:
            self.first_order = at
        if rt is not None and rt < at + self.shortage_window and (self.now is None or rt > self.now):
            heapq.heappush(self.answers, rt)
        if self.now is not None and (at <= self.now or (rt is not None and rt <= self.now)):
            self.late = True
        return True, old

    # -- evaluation --------------------------------------------------------------
    def _span(self, start: int, end: int) -> tuple[int, int]:
        """Rows of the orders placed in (start, end]."""
        return bisect.bisect_right(self.ats, start), bisect.bisect_right(self.ats, end)

    def _since(self, start: int, end: int) -> list[list]:
        """Records of orders placed in (start, end]."""
        lo, hi = self._span(start, end)
        return [self.record_at(n) for n in range(lo, hi)]

    def _quantity(self, lo: int, hi: int) -> int:
        """Total quantity of the orders at rows lo..hi-1."""
        return int(self.columns().q[lo:hi].sum()) if hi > lo else 0

    def shortage_figures(self, t: int) -> dict:
        turned_away, answered, ordered, confirmed, distributors = set(), 0, 0, 0, set()
        for rec in self._since(t - self.shortage_window, t):
            if rec[ANSWERED_AT] is None or rec[ANSWERED_AT] > t:
                continue
            answered += 1
            ordered += rec[QUANTITY]
            confirmed += rec[CONFIRMED]
            if rec[DECISION] in ("rejected", "partial") and rec[REASON] == "out_of_stock":
                turned_away.add(rec[INSTITUTION])
                distributors.add(rec[DISTRIBUTOR])
        return {"institutions_out_of_stock": sorted(turned_away), "answered_orders": answered,
                "ordered_quantity": ordered, "confirmed_quantity": confirmed,
                "fill_rate": round(confirmed / ordered, 4) if ordered else None,
                "distributors": sorted(distributors), "window_hours": self.shortage_window / HOUR_MS}

    def shortage_holds(self, f: dict) -> bool:
        return self._shortage_condition(f["answered_orders"], f["ordered_quantity"], f["confirmed_quantity"],
                                        lambda: len(f["institutions_out_of_stock"]))

    def _shortage_condition(self, answered: int, ordered: int, confirmed: int,
                            institutions: Callable[[], int]) -> bool:
        """The rule: a low fill rate over enough answered orders, or enough institutions
        turned away for lack of stock (counted only if the fill rate does not decide)."""
        if answered >= self.shortage_min_answered and confirmed < self.shortage_fill_rate * ordered:
            return True
        return institutions() >= self.shortage_institutions

    def shortage_holds_at(self, t: int) -> bool:
        """`shortage_holds(shortage_figures(t))`, summed on the window's columns."""
        lo, hi = self._span(t - self.shortage_window, t)
        if lo == hi:
            return self._shortage_condition(0, 0, 0, lambda: 0)
        cols = self.columns()
        counted = cols.rt[lo:hi] <= t  # an unanswered order's NONE is after every t
        return self._shortage_condition(
            int(counted.sum()), int(cols.q[lo:hi][counted].sum()), int(cols.c[lo:hi][counted].sum()),
            lambda: len(np.unique(cols.inst[lo:hi][counted & cols.turned_away()[lo:hi]])))

    def history_days(self, t: int) -> int:
        if self.first_order is None:
            return 0
        return min(self.surge_max_days, max(0, (t - self.recent - self.first_order) // DAY_MS))

    def surge_figures(self, t: int, distributors: bool = True) -> dict:
        """The surge's figures at `t`; the distributors of the last 24 h (a scan) only
        if asked: they are details, not needed to know whether the surge holds."""
        lo, hi = self._span(t - self.recent, t)
        days = self.history_days(t)
        figures = {"orders_24h": hi - lo, "quantity_24h": self._quantity(lo, hi),
                   "baseline_days": days, "baseline_mean_daily_quantity": None,
                   "window_hours": self.recent / HOUR_MS,
                   "distributors": sorted({NAMES[c] for c in self.columns().dist[lo:hi].tolist()})
                   if distributors else None}
        # The baseline (up to 28 days) only matters once there are enough orders.
        if days >= self.surge_min_days and hi - lo >= self.surge_min_orders:
            start = t - self.recent
            baseline = self._quantity(self._span(start - days * DAY_MS, start)[0], lo)
            figures["baseline_mean_daily_quantity"] = round(baseline / days, 3)
            figures["baseline_quantity"] = baseline
        return figures

    def surge_holds_at(self, t: int) -> bool:
        """`surge_holds(surge_figures(t))`, without the figures' dict: a subject with
        fewer orders in 24 h than a surge needs (most instants) answers from two
        bisections, no sums."""
        lo, hi = self._span(t - self.recent, t)
        if hi - lo < self.surge_min_orders:
            return False
        days = self.history_days(t)
        if days < self.surge_min_days:
            return False
        baseline = self._quantity(self._span(t - self.recent - days * DAY_MS, t - self.recent)[0], lo)
        return self._quantity(lo, hi) > self.surge_factor * baseline / days

    def surge_holds(self, f: dict) -> bool:
        if f["baseline_mean_daily_quantity"] is None or f["orders_24h"] < self.surge_min_orders:
            return False
        return f["quantity_24h"] > self.surge_factor * f["baseline_quantity"] / f["baseline_days"]

    def _next_instant(self) -> int | None:
        """The first instant after `now` at which a figure can change (a superset is fine)."""
        if self.late:
            return self.now + 1
        now, ats, answers = self.now, self.ats, self.answers
        while answers and now is not None and answers[0] <= now:
            heapq.heappop(answers)
        candidates = answers[:1]
        for offset in self.offsets:  # the first order entering or leaving a window after now
            i = 0 if now is None else bisect.bisect_right(ats, now - offset)
            if i < len(ats):
                candidates.append(ats[i] + offset)
        # The baseline's own changes matter only to a surge, which needs that many orders
        # in 24 h: a sparse subject skips them (most subjects: one every day for 28 days).
        baseline = self._next_baseline_change() if len(ats) >= self.surge_min_orders else None
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
        ats = self.ats
        lo = bisect.bisect_right(ats, d - most * day)  # orders with an instant after d
        hi = bisect.bisect_left(ats, first + day)  # orders of the first day
        if lo < hi:
            if d < first + day:  # nothing has left yet: the earliest order leaves first
                candidates.append(ats[lo] + day)
            else:  # y = d + 1 + ((at - d - 1) mod day): the order next in phase after d
                phase = (d + 1 - first) % day
                i = bisect.bisect_left(ats, first + phase, lo, hi)
                at = ats[i if i < hi else lo]
                candidates.append(d + 1 + (at - d - 1) % day)
        return min(candidates) + self.recent if candidates else None

    def next_change(self) -> int | None:
        candidates = [c for c in (self.shortage.next_check(), self.surge.next_check()) if c is not None]
        nxt = self._next_instant()
        if nxt is not None:
            candidates.append(nxt)
        return min(candidates) if candidates else None

    def cannot_alert(self) -> bool:
        """Neither rule can hold at any instant with the records held, and no episode
        is open: evaluating its instants would change nothing. Most subjects, sparse
        ones (fewer orders than either rule counts), are so between their orders."""
        if self.shortage.raised_at is not None or self.surge.raised_at is not None:
            return False
        if len(self.ids) >= self.shortage_min_answered or len(self.ids) >= self.surge_min_orders:
            return False
        return len(self.turned_away_institutions()) < self.shortage_institutions

    def advance(self, to: int) -> list[Transition]:
        """Evaluate every instant in (now, to] at which a figure can change; a subject
        that cannot alert moves its clock only (what the instants would have done)."""
        if not self.cannot_alert():
            return advance_on_columns(self, to)
        t = self.next_change()
        if t is not None and t <= to:
            self.late = False  # an instant would have been evaluated
        if self.now is None or to > self.now:
            self.now = to
        self._columns = None
        return []

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
        self._columns = None  # derived; not worth its memory between advances
        return out

    @property
    def memory(self) -> int:
        """How far back (ms) a window can reach: the orders kept."""
        return max(self.shortage_window, self.recent + self.surge_max_days * DAY_MS)

    def evict(self) -> list[str]:
        """Drop the orders no window can reach any more; their ids."""
        if self.now is None:
            return []
        return self.cut_front(bisect.bisect_right(self.ats, self.now - self.memory))

    # -- state -------------------------------------------------------------------
    def dump_meta(self) -> dict:
        return {"now": self.now, "first": self.first_order, "late": self.late,
                "shortage": self.shortage.dump(), "surge": self.surge.dump()}

    def load_meta(self, meta: dict) -> None:
        self.now, self.first_order, self.late = meta["now"], meta["first"], meta["late"]
        self.shortage.load(meta["shortage"])
        self.surge.load(meta["surge"])


class ShortageMonitor(ProductRegion):
    """`supply_shortage` alone, for one product+region (orders and answers given apart)."""

    def order(self, order_id: str, institution_id: str, ordered_at: int, quantity: int,
              distributor_id: str = "") -> None:
        rec = self.record(order_id) or supply_record("", "", "", "", 0, 0)
        rec[INSTITUTION], rec[ORDERED_AT], rec[QUANTITY], rec[DISTRIBUTOR] = institution_id, ordered_at, quantity, distributor_id
        self.upsert(order_id, rec)

    def answer(self, order_id: str, ts: int, decision: str, confirmed: int, reason: str | None) -> None:
        rec = self.record(order_id)
        if rec is not None and (rec[ANSWERED_AT] is None or ts < rec[ANSWERED_AT]):  # the first answer by ts counts
            rec[ANSWERED_AT], rec[DECISION], rec[CONFIRMED], rec[REASON] = ts, decision, confirmed, reason
            self.upsert(order_id, rec)

    def advance(self, to: int) -> list[Transition]:
        return [t for t in super().advance(to) if t.kind == "supply_shortage"]


class SurgeMonitor(ProductRegion):
    """`demand_surge` alone, for one product+region."""

    def order(self, ordered_at: int, quantity: int, order_id: str | None = None) -> None:
        order_id = order_id or f"#{len(self.ids)}"
        self.upsert(order_id, supply_record("", "", "", "", ordered_at, quantity))

    def advance(self, to: int) -> list[Transition]:
        return [t for t in super().advance(to) if t.kind == "demand_surge"]


class ManufacturerWatch:
    """The product+region subjects of one manufacturer's products, kept together so
    that a shortage can name the manufacturer's other distributors who could cover.
    Subjects are indexed by their next change, so a step touches only those due."""

    def __init__(self, rules: Rules = DEFAULT_RULES, manufacturer_id: str = ""):
        self.rules = rules
        self.conduct = conduct.ManufacturerConduct(rules, manufacturer_id)
        self.subjects: dict[tuple[str, str], ProductRegion] = {}
        self.due = DueIndex()
        self.touched: set[tuple[str, str]] = set()  # subjects whose meta changed (see take_touched)
        self.advanced: set[tuple[str, str]] = set()  # subjects advanced since the last evict()
        self.unscheduled: set[tuple[str, str]] = set()  # subjects upserted since their next change was indexed

    def __len__(self) -> int:
        """Order records held, over every subject."""
        return sum(map(len, self.subjects.values()))

    def subject(self, product_id: str, region_code: str) -> ProductRegion:
        key = (product_id, region_code)
        if key not in self.subjects:
            self.subjects[key] = ProductRegion(self.rules)
        return self.subjects[key]

    def upsert(self, order_id: str, record: list) -> bool:
        key = (record[PRODUCT], record[REGION])
        subject = self.subject(*key)
        changed, old = subject.put_record(order_id, record)
        # A record of an order older than any window here was seen before it was evicted.
        if changed and (old is not None or subject.now is None or record[ORDERED_AT] > subject.now - subject.memory):
            self.conduct.observe(order_id, old, record)
        if changed:  # indexed by its next change once the batch's records are in (_schedule)
            self.touched.add(key)
            self.unscheduled.add(key)
        return changed

    def _schedule(self) -> None:
        for key in self.unscheduled:
            if key in self.subjects:
                self.due.schedule(key, self.subjects[key].next_change())
        self.unscheduled.clear()

    def load_meta(self, product_id: str, region_code: str, meta: dict) -> None:
        subject = self.subject(product_id, region_code)
        subject.load_meta(meta)
        self.due.schedule((product_id, region_code), subject.next_change())

    def take_touched(self) -> dict[tuple[str, str], dict | None]:
        """The metas changed since the last call (None: the subject is gone)."""
        out = {key: (self.subjects[key].dump_meta() if key in self.subjects else None) for key in self.touched}
        self.touched.clear()
        return out

    def next_change(self) -> int | None:
        self._schedule()
        times = [t for t in (self.due.next_due(), self.conduct.next_change()) if t is not None]
        return min(times) if times else None

    def advance(self, to: int) -> list[tuple[tuple[str, str], Transition]]:
        self._schedule()
        out = []
        for key in self.due.pop_due(to + 1):
            subject = self.subjects[key]
            out += [(key, t) for t in subject.advance(to)]
            self.due.schedule(key, subject.next_change())
            self.touched.add(key)
            self.advanced.add(key)
        return out

    def evict(self) -> list[str]:
        gone = []
        for key in sorted(self.advanced):
            subject = self.subjects[key]
            gone += subject.evict()
            if not subject.ids and subject.shortage.raised_at is None and subject.surge.raised_at is None:
                del self.subjects[key]
                self.due.schedule(key, None)
                self.touched.add(key)
            else:
                self.due.schedule(key, subject.next_change())
        self.advanced.clear()
        return gone

    def coverers(self, product_id: str, region_code: str, t: int, exclude: Iterable[str]) -> list[str]:
        """Other distributors that delivered this manufacturer's products with full
        answers in the days before `t` every subject still remembers (29 by default:
        what is older may or may not be evicted yet, and the answer must not depend
        on when that happened; only a record read out of order, raising a subject
        behind the others, can make it so): same product first, then the same
        region, then elsewhere; at most three."""
        accepted = CODES.get("accepted")
        if accepted is None:  # no record was ever accepted
            return []
        excluded = [c for c in map(CODES.get, set(exclude)) if c is not None]
        score: dict[int, tuple[int, int]] = {}  # distributor code -> (best rank, -quantity)
        for (product, region), subject in self.subjects.items():
            lo, hi = subject._span(t - subject.memory, t)
            if hi <= lo:
                continue
            rank = 0 if product == product_id and region != region_code else 1 if region == region_code else 2
            rows = subject.columns()
            answered_at, dist, quantity = rows.rt[lo:hi], rows.dist[lo:hi], rows.q[lo:hi]
            # (an unanswered order's answer time is NONE: after every instant)
            full = (answered_at <= t) & (rows.d[lo:hi] == accepted) & ~np.isin(dist, excluded)
            if not full.any():
                continue
            dist, quantity = dist[full], quantity[full]
            order = np.argsort(dist, kind="stable")
            starts = np.flatnonzero(np.diff(dist[order], prepend=-1))
            for code, total in zip(dist[order][starts].tolist(), np.add.reduceat(quantity[order], starts).tolist()):
                best = score.get(code, (3, 0))
                score[code] = (min(best[0], rank), best[1] - total)
        return [d for _, d in sorted((figures, NAMES[code]) for code, figures in score.items())][:3]


class DeliveryRateMonitor:
    """low_delivery_rate for one distributor: at the end of each day (Asia/Shanghai),
    the on-time rate over orders whose deadline fell in the trailing 30 days; below
    70 % over >= 20 orders raises (at that day's end), back at >= 70 % resolves.
    Measured separately over all orders and over grassroots institutions."""

    SCOPES = ("all", "grassroots")

    def __init__(self, rules: Rules = DEFAULT_RULES):
        self.window_ms = rules.ms("delivery_rate_window_days")
        self.min_orders = int(rules.delivery_rate_min_orders)
        self.threshold = rules.delivery_rate_threshold
        self.rows = DeliveryRows()  # order_id -> delivery_record (core/signals.py), as packed rows
        self.open: dict[str, list | None] = {scope: None for scope in self.SCOPES}  # [raised_at, details]
        self.conduct = conduct.DistributorConduct(rules)  # remote_refusal, short_supply
        self.measured_until: int | None = None

    def __len__(self) -> int:
        """Order records held."""
        return len(self.rows)

    def outcome(self, order_id: str, deadline_at: int, grassroots: bool, on_time_since: int | None) -> None:
        """The order's deadline, and since when it is known to be delivered on time
        (the confirmation of its first receipt, if that was in time); otherwise it
        counts as not on time once its deadline has passed."""
        self.upsert(order_id, delivery_record(deadline_at, grassroots, on_time_since))

    @property
    def records(self) -> Mapping[str, list]:
        """order id -> record (each made on request: the scans of the references)."""
        return self.rows.records()

    def upsert(self, order_id: str, record: list) -> bool:
        return self.rows.put(order_id, record)

    def _rate(self, day_end: int, grassroots_only: bool) -> tuple[int, int]:
        counted = on_time = 0
        for rec in self.records.values():
            if not (day_end - self.window_ms < rec[DEADLINE] <= day_end):
                continue
            if grassroots_only and not rec[GRASSROOTS]:
                continue
            counted += 1
            on_time += rec[ON_TIME_SINCE] is not None and rec[ON_TIME_SINCE] <= day_end
        return counted, on_time

    def _rates(self, ends: range) -> dict[int, tuple[tuple[int, int], tuple[int, int]]]:
        """`_rate` at each day end of `ends`, overall and for grassroots, counted on the
        records' columns."""
        cols, out = self.rows.columns(), {}
        deadline, grassroots, since = cols.deadline, cols.grassroots, cols.since
        for end in ends:
            counted = (deadline > end - self.window_ms) & (deadline <= end)
            on_time = counted & (since <= end)
            out[end] = ((int(counted.sum()), int(on_time.sum())),
                        (int((counted & grassroots).sum()), int((on_time & grassroots).sum())))
        return out

    def next_change(self) -> int | None:
        if not self.rows and not any(self.open.values()) and not any(self.conduct.open.values()):
            return None
        if self.measured_until is None:
            return self._first_day_end() if self.rows else None
        return self.measured_until + DAY_MS

    def _first_day_end(self) -> int:
        """The first day end at or after the earliest deadline or order: nothing before it counts."""
        cols = self.rows.columns()
        placed = np.where((cols.at == NEVER) | (cols.at == 0), cols.deadline, cols.at)  # `ordered_at or deadline`
        first = int(np.minimum(cols.deadline, placed).min())
        return DAILY.start(first - 1) + DAY_MS

    def advance(self, to: int) -> list[tuple[str, Transition]]:
        """Measure every day that ended by `to` (and was not measured yet)."""
        out = []
        day_end = DAILY.start(to)  # the last day end at or before `to`
        if self.measured_until is not None:
            first = self.measured_until + DAY_MS
        elif self.rows:
            first = self._first_day_end()
        else:
            return out
        ends = range(first, day_end + 1, DAY_MS)
        rates = self._rates(ends) if ends else {}
        conducts = self.conduct.figures_at(self.rows.columns(), ends) if ends else []
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
        if not self.rows:
            return []
        cols = self.rows.columns()
        gone = (cols.deadline <= start - self.window_ms) & ~self.conduct.keeps_on(cols, start - self.conduct.memory)
        return self.rows.keep(~gone)

    def dump_meta(self) -> dict:
        return {"open": self.open, "measured_until": self.measured_until, "conduct": self.conduct.open}

    def load_meta(self, meta: dict) -> None:
        self.open, self.measured_until = dict(meta["open"]), meta["measured_until"]
        self.conduct.open.update(meta.get("conduct") or {})


__all__ = ["Transition", "Episode", "ProductRegion", "ShortageMonitor", "SurgeMonitor",
           "ManufacturerWatch", "DeliveryRateMonitor", "HOUR_MS"]

# Last: conduct.py builds on Episode and Transition above (used at run time only).
from supplymon.core import conduct  # noqa: E402
from supplymon.core.instants import advance_on_columns  # noqa: E402
