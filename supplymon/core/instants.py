"""A product+region's advance on columns (pure): the instants at which its figures
can change, the shortage and surge conditions at all of them at once (numpy),
then the episodes moved only at the instants where one of them can change.

`ProductRegion.advance_by_instants` (core/warnings.py) evaluates the same instants
one at a time and stays the reference: the two give the same transitions, the same
state after, whatever the records (tests/test_warning_fast_paths.py).

Between two instants of the candidate set an episode's `observe` changes nothing
unless its condition is the one that moves it (raised: the condition stops
holding; not raised or quiet: it holds) or its quiet time runs out; so only those
instants are visited, and an instant of an episode's quiet time that is not a
candidate is evaluated alone, as the reference does.
"""
from __future__ import annotations

import bisect
import heapq
from typing import TYPE_CHECKING

import numpy as np

from supplymon.core.signals import ANSWERED_AT, CONFIRMED, DECISION, INSTITUTION, QUANTITY, REASON
from supplymon.core.windows import DAY_MS

if TYPE_CHECKING:
    from supplymon.core.warnings import ProductRegion, Transition

I64 = np.int64
NONE = 1 << 62  # an unanswered order's answer time: after every instant


def candidates(pr: ProductRegion, ats: np.ndarray, to: int) -> np.ndarray:
    """Every instant in (now, to] that `_next_instant` would give, one after the other
    (sorted, unique): an order entering or leaving a window, a first answer still
    ahead, the surge baseline growing or its first day's orders leaving it, now + 1
    after a late record."""
    now = pr.now
    lower = -NONE if now is None else now
    parts = []
    for offset in pr.offsets:
        lo, hi = np.searchsorted(ats, (lower - offset, to - offset), "right")
        parts.append(ats[lo:hi] + offset)
    answers = [a for a in pr.answers if lower < a <= to]
    if answers:
        parts.append(np.array(answers, I64))
    if pr.late:
        parts.append(np.array([now + 1], I64))
    if len(ats) >= pr.surge_min_orders and pr.first_order is not None:
        # The baseline's changes (see _next_baseline_change): the first order's day
        # k days on, and each order of that first day k days on, k = 1 .. most, + recent.
        first, most = pr.first_order, pr.surge_max_days
        days = np.arange(1, most + 1, dtype=I64) * DAY_MS + pr.recent
        first_day = ats[:np.searchsorted(ats, first + DAY_MS, "left")]
        parts.append(first + days)
        if len(first_day):
            parts.append((first_day[:, None] + days[None, :]).ravel())
    if not parts:
        return np.empty(0, I64)
    every = np.unique(np.concatenate(parts))
    return every[(every > lower) & (every <= to)]


def shortage_holds(pr: ProductRegion, ats: np.ndarray, records: list, times: np.ndarray) -> np.ndarray:
    """`shortage_holds_at(t)` for each t of `times`: an order counts over
    [max(ordered_at, answered_at), ordered_at + window), so the sums at t are the
    running sums of the spans started by t less those ended by t."""
    n = len(records)
    answered_at = np.fromiter((NONE if r[ANSWERED_AT] is None else r[ANSWERED_AT] for r in records), I64, n)
    start, end = np.maximum(ats, answered_at), ats + pr.shortage_window
    counted = (answered_at != NONE) & (start < end)
    idx = np.flatnonzero(counted)
    quantity = np.fromiter((records[i][QUANTITY] for i in idx), I64, len(idx))
    confirmed = np.fromiter((records[i][CONFIRMED] for i in idx), I64, len(idx))
    start, end = start[idx], end[idx]

    def running(at: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        order = np.argsort(at, kind="stable")
        k = np.searchsorted(at[order], times, "right")
        return k, np.concatenate(([0], np.cumsum(quantity[order])))[k], \
            np.concatenate(([0], np.cumsum(confirmed[order])))[k]

    (i, qi, ci), (j, qj, cj) = running(start), running(end)
    answered, ordered, confirmed_sum = i - j, qi - qj, ci - cj
    holds = (answered >= pr.shortage_min_answered) & (confirmed_sum < pr.shortage_fill_rate * ordered)
    away = [k for k, i in enumerate(idx) if records[i][REASON] == "out_of_stock"
            and records[i][DECISION] in ("rejected", "partial")]
    if len(away) and not holds.all():
        names = [records[idx[k]][INSTITUTION] for k in away]
        codes = {name: c for c, name in enumerate(dict.fromkeys(names))}
        at_t = (start[away][:, None] <= times[None, :]) & (times[None, :] < end[away][:, None])
        seen = np.zeros((len(codes), len(times)), bool)
        np.logical_or.at(seen, np.array([codes[name] for name in names]), at_t)
        holds |= seen.sum(axis=0) >= pr.shortage_institutions
    elif pr.shortage_institutions <= 0:
        holds[:] = True
    return holds


def surge_holds(pr: ProductRegion, ats: np.ndarray, records: list, times: np.ndarray) -> np.ndarray:
    """`surge_holds_at(t)` for each t of `times`, from running sums of the quantities."""
    quantity = np.fromiter((r[QUANTITY] for r in records), I64, len(records))
    running = np.concatenate(([0], np.cumsum(quantity)))
    lo = np.searchsorted(ats, times - pr.recent, "right")
    hi = np.searchsorted(ats, times, "right")
    if pr.first_order is None:
        days = np.zeros(len(times), I64)
    else:
        days = np.minimum(pr.surge_max_days, np.maximum(0, (times - pr.recent - pr.first_order) // DAY_MS))
    able = (hi - lo >= pr.surge_min_orders) & (days >= pr.surge_min_days) & (days > 0)
    base_lo = np.searchsorted(ats, times - pr.recent - days * DAY_MS, "right")
    baseline = running[lo] - running[base_lo]
    return able & (running[hi] - running[lo] > pr.surge_factor * baseline / np.where(days > 0, days, 1))


def _next_index(holds: np.ndarray, value: bool) -> list[int]:
    """For each position, the first position at or after it where `holds` is `value`
    (len if none), and one more entry for the end."""
    m = len(holds)
    at = np.where(holds == value, np.arange(m), m)
    return [*np.minimum.accumulate(at[::-1])[::-1].tolist(), m]


def advance_on_columns(pr: ProductRegion, to: int) -> list[Transition]:
    """`pr.advance_by_instants(to)`, computed on columns (see the module's doc)."""
    index, records = pr.index, pr.records
    ats = np.fromiter((at for at, _ in index), I64, len(index))
    times = candidates(pr, ats, to)
    out: list[Transition] = []
    if len(times) or pr.shortage.next_check() is not None or pr.surge.next_check() is not None:
        recs = [records[oid] for _, oid in index]
        rules = [("supply_shortage", pr.shortage, shortage_holds(pr, ats, recs, times), pr.shortage_holds_at,
                  pr.shortage_figures),
                 ("demand_surge", pr.surge, surge_holds(pr, ats, recs, times), pr.surge_holds_at, pr.surge_figures)]
        nexts = [(_next_index(holds, True), _next_index(holds, False)) for _, _, holds, _, _ in rules]
        instants, m, i = times.tolist(), len(times), 0
        while True:
            # The next instant where an episode can move: its condition turning, or its quiet time out.
            t = None
            for (_, episode, _, _, _), (when_true, when_false) in zip(rules, nexts):
                moving = episode.raised_at is None or episode.stopped_at is not None
                j = (when_true if moving else when_false)[i]
                for c in (instants[j] if j < m else None, episode.next_check()):
                    if c is not None and (t is None or c < t):
                        t = c
            if t is None or t > to:
                break
            k = bisect.bisect_left(instants, t, i)
            exact = k < m and instants[k] == t
            for kind, episode, holds, holds_at, figures in rules:
                at_t = bool(holds[k]) if exact else holds_at(t)
                for transition in episode.observe(t, at_t, lambda t=t, figures=figures: figures(t)):
                    transition.kind = kind
                    out.append(transition)
            pr.now = t
            i = k + 1 if exact else k
        if m:  # an instant was evaluated: the late record has been seen
            pr.late = False
    if pr.now is None or to > pr.now:
        pr.now = to
    while pr.answers and pr.answers[0] <= pr.now:
        heapq.heappop(pr.answers)
    pr._sweep = None
    return out
