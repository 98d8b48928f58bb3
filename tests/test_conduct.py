"""Market-conduct rules at their edges (supplymon/core/conduct.py, contract section 3):
2 vs 3 distributors, 29 vs 31 days, a 0.5 % difference, 19 vs 20 orders, the 2x
ratio; their exact raise and resolve instants; their state bounded and restorable."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from supplymon.core.alerts import warning_alert_row
from supplymon.core.conduct import ManufacturerConduct, RegionPrices, add_point, add_point_by_sort, city_of
from supplymon.core.signals import delivery_record, supply_record
from supplymon.core.warnings import DeliveryRateMonitor, ManufacturerWatch
from supplymon.core.windows import DAY_MS as D
from supplymon.settings import HOUR_MS as H, ConfigError, Rules
from tests.test_warnings import T0

A, B, C = "150702", "150721", "360702"  # A and B in city 150700, C in 360700


class Watch:
    """A manufacturer's watch fed order by order; `run(to)` the conduct alerts as
    (kind, subject, raised_at, resolved_at, details)."""

    def __init__(self):
        self.watch, self.n = ManufacturerWatch(Rules(), "M1"), 0

    def order(self, region: str, at: int, price: float, product: str = "P1", dist: str = "D1",
              answer: str | None = None, answered_at: int | None = None) -> str:
        self.n += 1
        oid = f"O{self.n}"
        self.watch.upsert(oid, supply_record(p=product, rg=region, i="I1", dist=dist, at=at, q=10,
                                             rt=answered_at if answer else None, d=answer,
                                             c=10 if answer else None, r=None, u=price))
        return oid

    def run(self, to: int) -> list[tuple]:
        return [(t.kind, s.get("product_id") or s["manufacturer_id"], s["region_code"], t.raised_at, t.resolved_at,
                 t.details) for s, t in self.watch.conduct.advance(to)]


def kinds(alerts: list[tuple]) -> list[tuple]:
    return [a[:5] for a in alerts]


def test_city_is_the_first_four_digits_and_00():
    assert city_of("150702") == city_of("150785") == "150700"


# -- distributor_limit_exceeded -------------------------------------------------------

def test_two_distributors_are_allowed_the_third_raises_at_its_answer():
    w = Watch()
    for n, dist in enumerate(("D1", "D2")):
        w.order(A, T0 + n * D, 10, dist=dist, answer="accepted", answered_at=T0 + n * D + H)
    w.order(B, T0 + 2 * D, 10, dist="D2", answer="partial", answered_at=T0 + 2 * D + H)  # same city, counted once
    w.order(A, T0 + 3 * D, 10, dist="D3", answer="rejected", answered_at=T0 + 3 * D + H)  # a refusal does not count
    w.order(C, T0 + 3 * D, 10, dist="D4", answer="accepted", answered_at=T0 + 3 * D + H)  # another city
    assert kinds(w.run(T0 + 10 * D)) == []
    w.order(B, T0 + 11 * D, 10, dist="D3", answer="accepted", answered_at=T0 + 11 * D + 2 * H)
    (raised,) = w.run(T0 + 20 * D)
    assert raised[:5] == ("distributor_limit_exceeded", "M1", "150700", T0 + 11 * D + 2 * H, None)
    assert raised[5]["distributors"] == ["D1", "D2", "D3"]


@pytest.mark.parametrize("days, raises", [(89, True), (91, False)])
def test_distributors_count_over_the_trailing_90_days(days, raises):
    w = Watch()
    w.order(A, T0, 10, dist="D1", answer="accepted", answered_at=T0 + H)
    w.order(A, T0 + D, 10, dist="D2", answer="accepted", answered_at=T0 + D + H)
    w.order(A, T0 + days * D, 10, dist="D3", answer="accepted", answered_at=T0 + days * D + H)
    assert bool(w.run(T0 + 100 * D)) == raises


def test_the_limit_resolves_a_day_after_a_distributor_left_the_window():
    w = Watch()
    for n, dist in enumerate(("D1", "D2", "D3")):
        w.order(A, T0 + n * H, 10, dist=dist, answer="accepted", answered_at=T0 + n * H + 1)
    w.order(A, T0 + 50 * D, 10, dist="D2", answer="accepted", answered_at=T0 + 50 * D)
    w.order(A, T0 + 50 * D, 10, dist="D3", answer="accepted", answered_at=T0 + 50 * D)
    # D1 answered last at 00:00:00.001; it leaves the window 90 days later, resolved 24 h after.
    alerts = kinds(w.run(T0 + 200 * D))
    assert alerts == [("distributor_limit_exceeded", "M1", "150700", T0 + 2 * H + 1, None),
                      ("distributor_limit_exceeded", "M1", "150700", T0 + 2 * H + 1, T0 + 1 + 90 * D + 24 * H)]


# -- price_linkage_overdue -------------------------------------------------------------

@pytest.mark.parametrize("days, raises", [(29, False), (31, True), (179, True), (181, False)])
def test_a_lower_price_elsewhere_must_be_followed_within_30_days(days, raises):
    w = Watch()
    w.order(C, T0, 90)  # cut in another city
    w.order(A, T0 + days * D, 100)
    alerts = kinds(w.run(T0 + 200 * D))
    assert [a[0] for a in alerts if a[0] == "price_linkage_overdue"] == (["price_linkage_overdue"] if raises else [])


@pytest.mark.parametrize("lower, raises", [(199.0, False), (198.99, True)])
def test_linkage_needs_more_than_half_a_percent(lower, raises):
    w = Watch()
    w.order(C, T0, lower)
    w.order(A, T0 + 40 * D, 200.0)  # 1.00 below 200 is exactly 0.5 % of it
    assert bool(w.run(T0 + 50 * D)) == raises


def test_linkage_is_raised_at_the_order_and_resolved_by_an_order_at_the_lower_price():
    w = Watch()
    w.order(C, T0 + 5 * H, 90)
    w.order(A, T0 + 35 * D, 100)
    oid = w.order(A, T0 + 36 * D, 100)  # still high: the same episode
    w.order(A, T0 + 40 * D, 95)  # lower, not yet at 90
    w.order(A, T0 + 41 * D + 3 * H, 90)
    alerts = w.run(T0 + 60 * D)
    assert kinds(alerts) == [("price_linkage_overdue", "P1", A, T0 + 35 * D, None),
                             ("price_linkage_overdue", "P1", A, T0 + 35 * D, T0 + 41 * D + 3 * H)]
    details = alerts[0][5]
    assert details["order"]["unit_price"] == 100 and details["lower"] == {
        "unit_price": 90, "ts": T0 + 5 * H, "at": "2026-03-01 05:00", "region_code": C}
    assert oid not in str(details)


# -- price_inconsistent ------------------------------------------------------------------

@pytest.mark.parametrize("price, raises", [(100.5, False), (100.51, True), (99.0, False)])
def test_same_city_same_price_within_half_a_percent(price, raises):
    w = Watch()
    w.order(A, T0, 100.0)
    w.order(B, T0 + 6 * D, price)
    assert bool(w.run(T0 + 20 * D)) == raises


def test_same_city_price_looks_back_7_days_and_resolves_7_days_after_the_last_such_order():
    w = Watch()
    w.order(A, T0, 100.0)
    w.order(B, T0 + 8 * D, 110.0)  # 8 days later: nothing to compare with
    w.order(C, T0 + 8 * D, 120.0)  # another city
    assert kinds(w.run(T0 + 9 * D)) == []
    w.order(A, T0 + 10 * D, 100.0)
    w.order(B, T0 + 11 * D, 110.0)
    w.order(B, T0 + 12 * D, 110.0)
    alerts = w.run(T0 + 30 * D)
    assert kinds(alerts) == [("price_inconsistent", "P1", "150700", T0 + 11 * D, None),
                             ("price_inconsistent", "P1", "150700", T0 + 11 * D, T0 + 19 * D)]
    assert alerts[0][5]["lower"] == {"unit_price": 100.0, "ts": T0 + 10 * D, "at": "2026-03-11 00:00", "region_code": A}


def test_orders_at_the_same_instant_do_not_compare_with_each_other():
    w = Watch()
    w.order(A, T0, 100.0)
    w.order(B, T0, 110.0)
    assert w.run(T0 + D) == []


# -- price_rise --------------------------------------------------------------------------

@pytest.mark.parametrize("price, raises", [(105.0, False), (105.01, True)])
def test_a_rise_of_more_than_5_percent_over_the_90_day_lowest(price, raises):
    w = Watch()
    w.order(A, T0, 110.0)
    w.order(A, T0 + D, 100.0)
    w.order(A, T0 + 2 * D, 103.0)
    w.order(A, T0 + 80 * D, price)
    # (103 a day after 100 is also a second price in the city: price_inconsistent.)
    assert [a[0] for a in w.run(T0 + 85 * D) if a[0] == "price_rise"] == (["price_rise"] if raises else [])


def test_a_rise_is_resolved_by_the_first_later_order_at_or_below_the_lowest():
    w = Watch()
    w.order(A, T0, 100.0)
    w.order(A, T0 + 91 * D, 120.0)  # the lowest left the window: nothing to rise above
    w.order(A, T0 + 92 * D, 130.0)
    w.order(A, T0 + 93 * D, 125.0)
    w.order(A, T0 + 94 * D, 120.0)
    alerts = [a for a in w.run(T0 + 100 * D) if a[0] == "price_rise"]
    assert kinds(alerts) == [("price_rise", "P1", A, T0 + 92 * D, None),
                             ("price_rise", "P1", A, T0 + 92 * D, T0 + 94 * D)]
    assert alerts[0][5]["lowest"]["unit_price"] == 120.0 and alerts[0][5]["increase"] == round(130 / 120 - 1, 4)


# -- the state --------------------------------------------------------------------------

def test_a_day_keeps_only_its_running_lowest_prices_from_either_end():
    points = []
    for ts, price in ((1, 10.0), (2, 10.0), (3, 12.0), (4, 9.0), (5, 11.0), (6, 11.0)):
        points = add_point(points, ts, price)
    assert points == [1, 10.0, 4, 9.0, 6, 11.0]
    assert add_point(points, 4, 9.0) == points  # the same order twice changes nothing


@settings(max_examples=300, deadline=None)
@given(orders=st.lists(st.tuples(st.integers(0, 30), st.sampled_from((9.0, 10.0, 10.0, 11.0, 12.5))), max_size=40))
def test_a_days_points_equal_the_sorted_reference(orders):
    """`add_point` (its fast path for the day's latest order included) keeps the same
    points as the sort of all points (`add_point_by_sort`, its general path), in any
    order of arrival."""
    points, reference = (), []
    for ts, price in orders:
        points = tuple(add_point(points, ts, price))
        reference = add_point_by_sort(reference, ts, price)
        assert list(points) == reference


def test_state_is_bounded_by_price_changes_not_orders():
    w = Watch()
    for n in range(400 * 5):  # 400 days, five orders a day at one price
        w.order(A if n % 2 else B, T0 + n * D // 5, 100.0)
    w.run(T0 + 400 * D)
    # The price days of the 180-day memory (and a day's margin), each with its first and last order.
    assert w.watch.conduct.size <= 2 * 2 * 183


def test_restored_from_its_table_entries_it_goes_on_exactly():
    def feed(w: Watch, orders):
        for region, at, price in orders:
            w.order(region, at, price)

    first = [(C, T0, 90.0), (A, T0 + 35 * D, 100.0), (A, T0 + 36 * D, 101.0)]
    later = [(B, T0 + 37 * D, 102.0), (A, T0 + 38 * D, 90.0)]
    straight = Watch()
    feed(straight, first)
    before = kinds(straight.run(T0 + 36 * D + H))
    table = {k: v for k, v in straight.watch.conduct.take_writes().items() if v is not None}
    feed(straight, later)
    after = kinds(straight.run(T0 + 60 * D))
    restored = ManufacturerConduct(Rules(), "M1")
    for item, value in table.items():
        restored.load(item, value)
    w = Watch()
    w.watch.conduct = restored
    w.n = 10
    feed(w, later)
    assert before and after and kinds(w.run(T0 + 60 * D)) == after


def test_a_restore_that_knows_the_conduct_clock_first_queues_only_what_is_ahead_of_it():
    """Records read back queue their orders and acceptances for the checks; those not
    ahead of the restored `now` were checked already (`load("now")` drops them). Told
    the clock before the records, the conduct never queues them: the same queues,
    without a million tuples at once in a big restore."""
    def restored(clock_first: bool) -> tuple[int, ManufacturerConduct]:
        conduct = ManufacturerConduct(Rules(), "M1")
        if clock_first:
            conduct.applied_until = T0 + 5 * D
        for n in range(10):
            at = T0 + n * D
            conduct.observe(f"O{n}", None, supply_record(p="P1", rg=A, i="I1", dist="D1", at=at, q=1, rt=at + H,
                                                         d="accepted", c=1, u=100.0))
        queued = len(conduct.orders) + len(conduct.accepts)
        conduct.load("now", T0 + 5 * D)
        return queued, conduct

    late_queued, late = restored(False)
    early_queued, early = restored(True)
    assert (late_queued, early_queued) == (20, 9)  # orders after day 5, answers from 01:00 of day 5 on
    assert (sorted(late.orders), sorted(late.accepts), late._queued) == (
        sorted(early.orders), sorted(early.accepts), early._queued)
    assert early.applied_until is None and len(early.orders) == 4


# -- remote_refusal and short_supply ----------------------------------------------------

def distributor_alerts(rural: int, rural_rejected: int, urban: int, urban_rejected: int,
                       accepted: int = 0, ordered: int = 100, confirmed: int = 100) -> list[tuple]:
    m = DeliveryRateMonitor()
    n = 0

    def add(rural_area: bool, decision: str, q: int = 10, c: int = 10) -> None:
        nonlocal n
        n += 1
        at = T0 + n * 60_000
        m.upsert(f"O{n}", delivery_record(dl=at + 48 * H, g=False, ot=at + 20 * H, at=at, ru=rural_area, q=q,
                                          rt=at + H, d=decision, c=c if decision != "rejected" else 0))
    for k in range(rural):
        add(True, "rejected" if k < rural_rejected else "accepted")
    for k in range(urban):
        add(False, "rejected" if k < urban_rejected else "accepted")
    for _ in range(accepted):
        add(False, "partial", ordered, confirmed)
    return [(t.kind, t.raised_at, t.resolved_at) for _, t in m.advance(T0 + 40 * D)
            if t.kind in ("remote_refusal", "short_supply")]


def test_remote_refusal_needs_20_rural_orders():
    assert distributor_alerts(19, 2, 40, 0) == []
    assert distributor_alerts(20, 2, 40, 0) == [("remote_refusal", T0 + D, None),
                                                ("remote_refusal", T0 + D, T0 + 31 * D)]


@pytest.mark.parametrize("urban_rejected, raises", [(2, True), (3, False)])
def test_remote_refusal_needs_twice_the_urban_rate(urban_rejected, raises):
    # Rural 4/40 = 10 %; urban 2/40 = 5 % (exactly half), or 3/40 = 7.5 %.
    assert bool(distributor_alerts(40, 4, 40, urban_rejected)) == raises


def test_remote_refusal_needs_a_tenth_of_rural_orders_rejected():
    assert distributor_alerts(30, 2, 0, 0) == []  # 6.7 %
    assert distributor_alerts(30, 3, 0, 0)[0][0] == "remote_refusal"  # exactly 10 %


@pytest.mark.parametrize("accepted, confirmed, raises", [(19, 50, False), (20, 89, True), (20, 90, False)])
def test_short_supply_below_90_percent_over_20_accepted_orders(accepted, confirmed, raises):
    assert bool(distributor_alerts(0, 0, 0, 0, accepted, 100, confirmed)) == raises


def test_short_supply_resolves_at_the_first_day_end_it_no_longer_holds():
    alerts = distributor_alerts(0, 0, 0, 0, 20, 100, 50)
    # Answered on day 0; the 30-day window leaves them behind at the end of day 30.
    assert alerts == [("short_supply", T0 + D, None), ("short_supply", T0 + D, T0 + 31 * D)]


def test_conduct_alert_rows_name_their_subject_and_say_it_in_chinese_first():
    w = Watch()
    w.order(A, T0, 100.0)
    w.order(B, T0 + D, 110.0)
    ((kind, product, city, raised_at, _, details),) = w.run(T0 + 2 * D)
    row = warning_alert_row(kind, {"product_id": product, "region_code": city, "manufacturer_id": "M1"},
                            raised_at, None, details)
    assert row["subject_type"] == "product_city" and row["region_code"] == "150700"
    assert row["message"].startswith("2026-03-02 00:00 起产品 P1（生产企业 M1）在 150700 市同城不同价")
    assert " / Since 2026-03-02 00:00 product P1 of M1 has two prices in city 150700" in row["message"]
    again = warning_alert_row(kind, {"product_id": product, "region_code": city, "manufacturer_id": "M1"},
                              raised_at, raised_at + D, details)
    assert again["alert_id"] == row["alert_id"]


# -- the rules file -----------------------------------------------------------------------

def test_the_rules_file_sets_every_conduct_number(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text("[distributor_limit]\nmax_distributors = 3\nwindow_days = 60\n"
                    "[price_rise]\ntolerance = 0.1\n[remote_refusal]\nratio = 3\n")
    rules = Rules.load(path)
    assert (rules.distributor_limit_max_distributors, rules.distributor_limit_window_days) == (3, 60)
    assert rules.price_rise_tolerance == 0.1 and rules.remote_refusal_ratio == 3
    assert rules.price_linkage_lag_days == 30  # the rest keep the contract's defaults
    conduct = ManufacturerConduct(rules, "M1")
    for n, dist in enumerate(("D1", "D2", "D3")):
        conduct.observe(f"O{n}", None, supply_record(p="P1", rg=A, i="I", dist=dist, at=T0 + n * H, q=1,
                                                     rt=T0 + n * H + 1, d="accepted", c=1, u=100.0))
    assert conduct.advance(T0 + D) == []  # three are allowed now


@pytest.mark.parametrize("text, message", [
    ("[price_linkage]\nlag_days = 200\n", "lag_days must be shorter than price_linkage.lookback_days"),
    ("[price_inconsistent]\ntolerance = 5\n", "price_inconsistent_tolerance is a fraction"),
    ("[short_supply]\nmin_orders = 2.5\n", "short_supply_min_orders must be a whole number"),
    ("[price_rise]\nwindow = 3\n", "unknown key price_rise.window"),
])
def test_bad_conduct_rules_are_refused_with_a_clear_error(tmp_path, text, message):
    path = tmp_path / "rules.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        Rules.load(path)


def test_a_price_above_a_free_order_raises_without_a_ratio():
    w = Watch()
    w.order(A, T0, 0.0)
    w.order(A, T0 + D, 10.0)
    alerts = {a[0]: a for a in w.run(T0 + 2 * D)}
    assert alerts["price_rise"][5]["increase"] is None and alerts["price_inconsistent"][5]["difference"] is None
    row = warning_alert_row("price_rise", {"product_id": "P1", "region_code": A, "manufacturer_id": "M1"},
                            T0 + D, None, alerts["price_rise"][5])
    assert "n/a" in row["message"]


@settings(max_examples=300, deadline=None)
@given(orders=st.lists(st.tuples(st.integers(0, 6 * D), st.sampled_from([9.5, 10.0, 10.04, 10.05, 11.0, 12.0])),
                       max_size=40),
       a=st.integers(0, 6 * D), span=st.integers(D, 5 * D))
def test_the_kept_points_answer_every_window_like_all_the_orders(orders, a, span):
    """Lowest price over [a, b] with a and b in different days: the day points give
    what a pass over every order gives, in whatever order the orders came."""
    b = a + span
    prices = RegionPrices()
    for ts, price in orders:
        prices.add(ts, price)
    inside = [(price, ts) for ts, price in orders if a <= ts <= b]
    got = prices.lowest(a, b)
    assert (got[0] if got else None) == (min(inside)[0] if inside else None)
    again = RegionPrices()
    for ts, price in reversed(orders):
        again.add(ts, price)
    assert again.days == prices.days


@settings(max_examples=100, deadline=None)
@given(orders=st.lists(st.tuples(st.integers(0, 200 * D), st.sampled_from([A, B, C]),
                                 st.sampled_from([90.0, 95.0, 100.0, 106.0]), st.sampled_from(["D1", "D2", "D3", "D4"])),
                       min_size=1, max_size=30),
       cuts=st.lists(st.integers(0, 200 * D), max_size=6))
def test_the_same_orders_in_any_batches_raise_the_same_alerts(orders, cuts):
    """All at once and evaluated at the end, or in time order with stream time
    advancing between batches (each order read before stream time passes it)."""
    def feed(w: Watch, batch):
        for at, region, price, dist in batch:
            w.order(region, at, price, dist=dist, answer="accepted", answered_at=at + H)

    ordered = sorted(orders)
    once = Watch()
    feed(once, ordered)
    want = kinds(once.run(300 * D))
    stepwise, got, done = Watch(), [], 0
    for cut in sorted(cuts) + [300 * D]:
        batch = [o for o in ordered[done:] if o[0] <= cut]
        done += len(batch)
        feed(stepwise, batch)
        got += kinds(stepwise.run(cut))
    assert sorted(got, key=str) == sorted(want, key=str)


@settings(max_examples=150, deadline=None)
@given(orders=st.lists(st.tuples(st.integers(0, 200 * D), st.sampled_from([A, B, C]),
                                 st.sampled_from([0.0, 90.0, 95.0, 99.6, 100.0, 100.4, 106.0]),  # prices are >= 0 (schemas)
                                 st.sampled_from(["P1", "P2"])), min_size=1, max_size=40),
       cuts=st.lists(st.integers(0, 200 * D), max_size=6), late=st.integers(0, 5))
def test_the_price_floor_shortcut_raises_what_every_lookup_raises(orders, cuts, late):
    """An order not above its product's lowest kept price by a rule's tolerance skips
    that rule's window lookups: the alerts, details included, and the table entries
    equal those of the reference that looks every time (late orders, days forgotten)."""
    fast, reference = Watch(), Watch()
    reference.watch.conduct.use_floor = False
    ordered = sorted(orders)
    ordered = ordered[late:] + ordered[:late]  # a few read after stream time passed them
    done = 0
    for cut in sorted(cuts) + [400 * D]:
        batch = ordered[done:done + max(1, len(ordered) // (len(cuts) + 1))]
        done += len(batch)
        for w in (fast, reference):
            for at, region, price, product in batch:
                w.order(region, at, price, product=product)
        assert fast.run(cut) == reference.run(cut)
        assert fast.watch.conduct.take_writes() == reference.watch.conduct.take_writes()


@settings(max_examples=100, deadline=None)
@given(orders=st.lists(st.tuples(st.integers(0, 40 * D), st.booleans(), st.one_of(st.none(), st.integers(-D, 5 * D)),
                                 st.sampled_from(["accepted", "partial", "rejected"]), st.integers(1, 50)),
                       max_size=150),
       first_day=st.integers(0, 45), days=st.integers(1, 6))
def test_distributor_conduct_figures_on_columns_equal_the_scan(orders, first_day, days):
    """remote_refusal's and short_supply's figures counted on columns for several day
    ends at once equal the scan of the records per day end (the reference)."""
    from supplymon.core.conduct import DistributorConduct
    from supplymon.core.delivery_columns import DeliveryColumns

    conduct = DistributorConduct(Rules())
    records = [delivery_record(T0 + at + D, False, None, T0 + at, rural, quantity,
                               None if answered is None else T0 + at + answered,
                               None if answered is None else decision,
                               None if answered is None else quantity // (1 + (decision != "accepted")))
               for at, rural, answered, decision, quantity in orders]
    records.append(delivery_record(T0, True, None))  # an order known by its outcome only
    ends = range(T0 + first_day * D, T0 + (first_day + days) * D, D)
    assert conduct.figures_at(DeliveryColumns.of(records), ends) == [conduct.figures(records, end) for end in ends]
