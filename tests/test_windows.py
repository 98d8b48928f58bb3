"""Windowed tables: day boundaries in Asia/Shanghai, corrections, closing, expiry."""
from __future__ import annotations

from supplymon.core.lifecycle import OrderLifecycle, new_state
from supplymon.core.windows import COUNTS, DAY_MS, FAMILIES, Windows, contribution, part_row
from supplymon.settings import HOUR_MS as H, Rules
from tests.test_lifecycle import T0, arrival, order, response

DAILY = FAMILIES[0]


def test_days_are_calendar_days_in_shanghai():
    # T0 is 2026-03-01 08:00 in Shanghai; the day began at 00:00 Shanghai = 16:00 UTC the day before.
    assert DAILY.start(T0) == T0 - 8 * H
    assert DAILY.start(T0 - 8 * H) == T0 - 8 * H
    assert DAILY.start(T0 - 8 * H - 1) == T0 - 8 * H - DAY_MS
    assert FAMILIES[1].start(T0 + 59 * 60_000) == T0


def facts_along(events, watermark=None):
    life = OrderLifecycle(Rules())
    state = new_state("O1")
    out = []
    for event in events:
        life.apply(state, event)
        out.append(life.fact(state))
    if watermark is not None:
        life.advance(state, watermark)
        out.append(life.fact(state))
    return out


def daily_part(windows):
    ((key, part),) = [(k, p) for k, p in windows.parts.items() if k[0] == "distributor_daily"]
    return part_row(key, part)


def test_an_order_counts_once_with_its_latest_outcome():
    windows = Windows(Rules())
    old, version = None, 0
    for fact in facts_along([order(), response(T0 + 30 * H), arrival(T0 + 31 * H, T0 + 30 * H)],
                            watermark=T0 + 100 * H):
        old = windows.update(fact, 0, old, version)
        version = fact["version"]
    row = daily_part(windows)
    assert (row["orders"], row["responded"], row["responded_within_24h"]) == (1, 1, 0)
    assert (row["delivered_on_time"], row["delivered_late"], row["undelivered"]) == (0, 1, 0)
    assert row["response_hours"] == [30.0] and row["version"] == 2 * version


def test_late_arrival_moves_an_order_from_undelivered_to_on_time():
    windows = Windows(Rules())
    placed, answered = facts_along([order(), response(T0 + H)])
    overdue = dict(answered, on_time=0, version=answered["version"] + 1)
    delivered = dict(overdue, on_time=1, arrivals=1, delivered_quantity=10, version=overdue["version"] + 8)
    old, version = None, 0
    for fact in (placed, answered, overdue):
        old, version = windows.update(fact, 0, old, version), fact["version"]
    assert daily_part(windows)["undelivered"] == 1
    windows.update(delivered, 0, old, version)
    row = daily_part(windows)
    assert (row["undelivered"], row["delivered_on_time"], row["delivered_quantity"]) == (0, 1, 10)


def test_windows_close_after_every_deadline_and_expire_with_retention():
    rules = Rules()
    windows = Windows(rules)
    (fact,) = facts_along([order()])
    windows.update(fact, 0, None, 0)
    day_start = DAILY.start(T0)
    windows.take_dirty()
    closes = day_start + DAY_MS + 72 * H
    windows.advance(closes)
    assert not any(p.closed for k, p in windows.parts.items() if k[0] == "distributor_daily")
    windows.advance(closes + 1)
    assert daily_part(windows)["closed"] == 1
    assert any(k[0] == "distributor_daily" for k, _ in windows.take_dirty())  # the close is written
    windows.advance(day_start + 72 * H + rules.ms("retention_days") + 1)
    assert not any(k[0] == "distributor_daily" for k in windows.parts)
    # A correction after expiry does not resurrect the window.
    windows.update(fact, 0, None, 0)
    assert not any(k[0] == "distributor_daily" for k in windows.parts)


def test_contribution_of_a_rejected_order():
    (_, fact) = facts_along([order(), response(T0 + H, "rejected", 0, reason="price")])
    c = contribution(fact)
    assert c[:7] == [1, 1, 1, 1, 0, 0, 1]  # orders, responded, within 24 h, rejected, -, -, undelivered


def test_a_part_takes_each_order_s_new_contribution_in_place_of_its_old_one():
    (placed,) = facts_along([order()])
    a = dict(placed, responded_at=T0 + 5 * H, decision="accepted", response_hours=5.0, version=2)
    b = dict(a, order_id="O2", quantity=20, responded_at=T0 + 3 * H, response_hours=3.0, version=3)
    windows = Windows(Rules())
    contrib_a, contrib_b = windows.update_facts([a, b], [0, 0], [None, None], [0, 0])
    assert daily_part(windows)["response_hours"] == [3.0, 5.0] and daily_part(windows)["version"] == 2 * 5
    # a's first answer corrected to an earlier one (2 h), then a's goods arrive on time
    a2 = dict(a, responded_at=T0 + 2 * H, response_hours=2.0, version=4)
    (contrib_a2,) = windows.update_facts([a2], [0], [contrib_a], [2])
    a3 = dict(a2, on_time=1, arrivals=1, delivered_quantity=placed["quantity"], version=6)
    windows.update(a3, 0, contrib_a2, 4)
    row = daily_part(windows)
    assert row["response_hours"] == [2.0, 3.0] and row["version"] == 2 * 9
    assert {name: row[name] for name in COUNTS} == {
        "orders": 2, "responded": 2, "responded_within_24h": 2, "rejected": 0, "delivered_on_time": 1,
        "delivered_late": 0, "undelivered": 0, "ordered_quantity": placed["quantity"] + 20,
        "delivered_quantity": placed["quantity"]}


def _written_after(batches):
    """The window-part rows written, last per key, when an order's facts arrive in
    `batches` (lists of facts, each batch then advanced to its watermark)."""
    windows, old, version, written = Windows(Rules()), None, 0, {}
    for facts, watermark in batches:
        for fact in facts:
            old, version = windows.update(fact, 0, old, version), fact["version"]
        windows.advance(watermark)
        written.update((key, part_row(key, part)) for key, part in windows.take_dirty())
    return written


def test_a_window_settled_and_expired_by_one_advance_is_written_whatever_the_batches():
    """An order, then time jumping past its window's expiry: with the jump in a batch
    of its own or in the order's batch, the same final part rows are written (closed,
    with the order's final outcome) before the parts leave memory."""
    weeks = T0 + 24 * 24 * H
    placed, settled = facts_along([order()], watermark=weeks)
    apart = _written_after([([placed], T0), ([settled], weeks)])
    together = _written_after([([placed, settled], weeks)])
    assert apart == together and apart
    assert all(row["closed"] == 1 and row["orders"] == 1 and row["undelivered"] == 1 for row in apart.values())
    assert len(apart) == len(FAMILIES)
