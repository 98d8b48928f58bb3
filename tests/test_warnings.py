"""Early-warning rules at the edges of their windows, and their state (pure monitors)."""
from __future__ import annotations

import orjson
from hypothesis import given, settings, strategies as st

from supplymon.core.alerts import warning_alert_row
from supplymon.core.signals import supply_record
from supplymon.core.warnings import DeliveryRateMonitor, ManufacturerWatch, ShortageMonitor, SurgeMonitor
from supplymon.core.windows import DAY_MS, FAMILIES
from supplymon.settings import HOUR_MS as H

T0 = FAMILIES[0].start(1_772_323_200_000)  # 2026-03-01 00:00 Shanghai


def test_shortage_by_three_institutions_out_of_stock_and_its_resolution():
    m = ShortageMonitor()
    for n, institution in enumerate(("I1", "I1", "I2", "I3")):
        m.order(f"O{n}", institution, T0 + n * H, 10)
        m.answer(f"O{n}", T0 + n * H + 30 * 60_000, "rejected", 0, "out_of_stock")
    # I1 twice counts once: the third *institution* (I2 at 02:30, I3 at 03:30) raises.
    (raised,) = m.advance(T0 + 10 * H)
    assert raised.raised_at == T0 + 3 * H + 30 * 60_000 and raised.resolved_at is None
    assert raised.details["institutions_out_of_stock"] == ["I1", "I2", "I3"]
    # O0 and O1 leave the 72 h window at 72 h and 73 h: I1 drops out at 73 h; 24 h later it resolves.
    assert m.advance(T0 + 73 * H + 24 * H - 1) == []
    (resolved,) = m.advance(T0 + 100 * H)
    assert resolved.raised_at == raised.raised_at and resolved.resolved_at == T0 + 97 * H


def test_shortage_by_fill_rate_needs_twenty_answered_orders():
    def run(n_orders: int, confirmed: int):
        m = ShortageMonitor()
        for n in range(n_orders):
            m.order(f"O{n}", f"I{n}", T0 + n * 60_000, 100)
            m.answer(f"O{n}", T0 + H + n * 60_000, "partial", confirmed, "other")
        return m.advance(T0 + 5 * H)
    assert run(19, 50) == []  # 19 answered orders are too few
    (raised,) = run(20, 79)  # 79 % over exactly 20
    assert raised.raised_at == T0 + H + 19 * 60_000 and raised.details["fill_rate"] == 0.79
    assert run(20, 80) == []  # 80 % is not below 80 %


def test_shortage_counts_first_answers_of_orders_in_the_window_only():
    m = ShortageMonitor()
    for n in range(3):
        m.order(f"O{n}", f"I{n}", T0 + n * 30 * H, 10)  # spread over 60 h
        m.answer(f"O{n}", T0 + n * 30 * H + H, "rejected", 0, "out_of_stock")
    m.answer("O0", T0 + 2 * H, "accepted", 10, None)  # a later answer does not replace the first
    assert len(m.advance(T0 + 70 * H)) == 1
    m2 = ShortageMonitor()
    for n in range(3):
        m2.order(f"O{n}", f"I{n}", T0 + n * 37 * H, 10)  # 74 h apart: never three in 72 h
        m2.answer(f"O{n}", T0 + n * 37 * H + H, "rejected", 0, "out_of_stock")
    assert m2.advance(T0 + 200 * H) == []


def surge_history(days: int, daily_orders: int = 2, quantity: int = 5) -> SurgeMonitor:
    m = SurgeMonitor()
    for day in range(days):
        for n in range(daily_orders):
            m.order(T0 + day * DAY_MS + (9 + n) * H, quantity)
    return m


def test_no_surge_before_seven_days_of_history():
    m = surge_history(6)  # days 0-5 at 10/day; 20 orders of 5 on day 7 from 08:00
    for n in range(20):
        m.order(T0 + 7 * DAY_MS + 8 * H + n * 60_000, 5)
    # The 24 h before 08:19 on day 7 start 6 days 23 h after the first order: h = 6.
    assert m.advance(T0 + 9 * DAY_MS) == []


def test_surge_raised_at_the_twentieth_order_and_resolved_a_day_after_it_ends():
    m = surge_history(7)  # days 0-6 at 10/day
    start = T0 + 8 * DAY_MS + 12 * H  # the 24 h before it begin 7 d 3 h after the first order: h = 7
    for n in range(20):
        m.order(start + n * 60_000, 5)  # 100 > 3 x (60 / 7) from the 20th order on
    (raised,) = m.advance(start + 20 * 60_000)
    assert raised.raised_at == start + 19 * 60_000
    assert raised.details["orders_24h"] == 20 and raised.details["baseline_days"] == 7
    assert raised.details["baseline_mean_daily_quantity"] == round(60 / 7, 3)
    # The first of the 20 leaves the last 24 h at start + 24 h; a day later it resolves.
    transitions = m.advance(start + 3 * DAY_MS)
    assert [t.resolved_at for t in transitions] == [start + 24 * H + 24 * H]


def test_nineteen_orders_are_not_a_surge():
    m = surge_history(10)
    for n in range(19):
        m.order(T0 + 11 * DAY_MS + 12 * H + n * 60_000, 50)
    assert m.advance(T0 + 14 * DAY_MS) == []


def test_low_delivery_rate_at_day_end_and_separately_for_grassroots():
    m = DeliveryRateMonitor()
    for n in range(20):
        grassroots = n < 10
        on_time = n not in range(0, 7)  # 7 late, all grassroots: 65 % overall, 30 % grassroots
        m.outcome(f"O{n}", T0 + n * H, grassroots, T0 + n * H - H if on_time else None)
    transitions = m.advance(T0 + DAY_MS + H)
    assert {(scope, t.raised_at) for scope, t in transitions} == {("all", T0 + DAY_MS)}
    # Grassroots has only 10 orders: too few to judge. Two late orders turn out on time:
    m.outcome("O0", T0, True, T0 + 30 * H)
    m.outcome("O1", T0 + H, True, T0 + 30 * H)
    (resolved,) = m.advance(T0 + 2 * DAY_MS)
    assert resolved[0] == "all" and resolved[1].resolved_at == T0 + 2 * DAY_MS
    assert resolved[1].details["resolved_rate"] == 0.75 and resolved[1].details["on_time_rate"] == 0.65


def _shortage_story(m) -> None:
    for n, institution in enumerate(("I1", "I2", "I3", "I4")):
        m.upsert(f"O{n}", supply_record(p="P1", rg="R1", i=institution, dist="D1", at=T0 + n * 20 * H,
                                        q=10, rt=T0 + n * 20 * H + H, d="rejected", c=0, r="out_of_stock"))


def test_a_monitor_restored_from_its_dump_continues_exactly():
    """The agent keeps records and metas in a table: a monitor rebuilt from them
    (after a restart at any instant) raises and resolves at the same instants."""
    whole = ManufacturerWatch()
    _shortage_story(whole)
    expected = [(k, t.kind, t.raised_at, t.resolved_at) for k, t in whole.advance(T0 + 10 * DAY_MS)]
    # I1-I3 turned away by 41 h; from 92 h only I3 and I4 are in the 72 h window: resolved 24 h later.
    assert [e[1:] for e in expected] == [("supply_shortage", T0 + 41 * H, None),
                                         ("supply_shortage", T0 + 41 * H, T0 + 116 * H)]
    for cut in (T0 + 30 * H, T0 + 41 * H, T0 + 100 * H, T0 + 130 * H):
        first = ManufacturerWatch()
        _shortage_story(first)
        got = [(k, t.kind, t.raised_at, t.resolved_at) for k, t in first.advance(cut)]
        metas = first.take_touched()
        restored = ManufacturerWatch()
        for key, subject in first.subjects.items():
            for order_id, record in subject.records.items():
                restored.upsert(order_id, orjson.loads(orjson.dumps(record)))
        for (product, region), meta in metas.items():
            restored.subject(product, region).load_meta(orjson.loads(orjson.dumps(meta)))
        got += [(k, t.kind, t.raised_at, t.resolved_at) for k, t in restored.advance(T0 + 10 * DAY_MS)]
        assert got == expected, cut


def test_records_are_upserts_and_late_ones_count_from_now():
    m = ShortageMonitor()
    m.order("O1", "I1", T0, 10)
    assert m.upsert("O1", list(m.records["O1"])) is False  # the same record again changes nothing
    m.answer("O1", T0 + H, "rejected", 0, "out_of_stock")
    m.order("O2", "I2", T0 + H, 10)
    m.answer("O2", T0 + 2 * H, "rejected", 0, "out_of_stock")
    assert m.advance(T0 + 5 * H) == []
    # An order read after stream time passed its instants: it takes effect 1 ms after `now`.
    m.order("O3", "I3", T0 + 2 * H, 10)
    m.answer("O3", T0 + 3 * H, "partial", 4, "out_of_stock")
    (raised,) = m.advance(T0 + 6 * H)
    assert raised.raised_at == T0 + 5 * H + 1


def test_evicted_orders_leave_no_state_behind():
    watch = ManufacturerWatch()
    _shortage_story(watch)
    watch.advance(T0 + 40 * DAY_MS)
    assert sorted(watch.evict()) == ["O0", "O1", "O2", "O3"]
    assert watch.subjects == {} and watch.take_touched() == {("P1", "R1"): None}
    rate = DeliveryRateMonitor()
    rate.outcome("O1", T0 + H, False, None)
    rate.advance(T0 + 31 * DAY_MS)
    assert rate.evict() == ["O1"] and rate.next_change() is None


def test_a_shortage_names_the_manufacturers_other_distributors():
    watch = ManufacturerWatch()
    _shortage_story(watch)
    for n, (product, region, dist) in enumerate((("P2", "R1", "D2"), ("P1", "R2", "D3"), ("P3", "R9", "D4"),
                                                 ("P2", "R1", "D5"))):
        watch.upsert(f"X{n}", supply_record(p=product, rg=region, i="I9", dist=dist, at=T0 + n * H, q=5,
                                            rt=T0 + n * H + H, d="accepted" if dist != "D5" else "rejected", c=5))
    # Same product elsewhere first, then the same region, then anywhere; D5 rejected; D1 is short.
    assert watch.coverers("P1", "R1", T0 + 3 * DAY_MS, ["D1"]) == ["D3", "D2", "D4"]


def _coverers_record_by_record(watch: ManufacturerWatch, product_id: str, region_code: str, t: int,
                               exclude: list[str]) -> list[str]:
    """`coverers` as it was written over the records one at a time (the reference)."""
    from supplymon.core.signals import ANSWERED_AT, DECISION, DISTRIBUTOR, QUANTITY
    exclude, score = set(exclude), {}
    for (product, region), subject in watch.subjects.items():
        rank = 0 if product == product_id and region != region_code else 1 if region == region_code else 2
        for rec in subject._since(t - subject.memory, t):
            dist = rec[DISTRIBUTOR]
            if rec[ANSWERED_AT] is not None and rec[ANSWERED_AT] <= t and rec[DECISION] == "accepted" \
                    and dist not in exclude:
                best = score.get(dist, (3, 0))
                score[dist] = (min(best[0], rank), best[1] - rec[QUANTITY])
    return [d for d, _ in sorted(score.items(), key=lambda kv: (kv[1], kv[0]))][:3]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["P1", "P2", "P3"]), st.sampled_from(["R1", "R2"]),
                          st.sampled_from(["D1", "D2", "D3", "D4", "D5"]), st.integers(0, 40 * 4),
                          st.one_of(st.none(), st.integers(0, 8)), st.sampled_from(["accepted", "rejected", "partial"]),
                          st.integers(1, 30)), min_size=5, max_size=60),
       st.sampled_from(["P1", "P2", "P9"]), st.sampled_from(["R1", "R2"]), st.integers(0, 45 * 4),
       st.lists(st.sampled_from(["D1", "D2", "D9"]), max_size=2))
def test_coverers_on_columns_are_those_of_the_records_one_by_one(orders, product, region, step, exclude):
    watch, steps = ManufacturerWatch(), 6 * H  # times on a 6 h grid: answers at the very instant asked of
    for n, (p, rg, dist, at, answer, decision, q) in enumerate(orders):
        placed = T0 + at * steps
        watch.upsert(f"O{n}", supply_record(p=p, rg=rg, i="I1", dist=dist, at=placed, q=q,
                                            rt=None if answer is None else placed + answer * steps,
                                            d=None if answer is None else decision,
                                            c=None if answer is None else q))
    t = T0 + step * steps
    assert watch.coverers(product, region, t, exclude) == _coverers_record_by_record(watch, product, region, t, exclude)


def test_warning_rows_have_stable_ids_and_plain_messages():
    subject = {"product_id": "P1", "region_code": "150702", "manufacturer_id": "M1"}
    details = {"institutions_out_of_stock": ["I1", "I2", "I3"], "answered_orders": 3, "ordered_quantity": 30,
               "confirmed_quantity": 0, "fill_rate": 0.0, "distributors": ["D1"], "could_cover": ["D2"],
               "window_hours": 72.0}
    raised = warning_alert_row("supply_shortage", subject, T0, None, details)
    resolved = warning_alert_row("supply_shortage", subject, T0, T0 + DAY_MS, details)
    again = warning_alert_row("supply_shortage", subject, T0 + DAY_MS, None, details)
    assert raised["alert_id"] == resolved["alert_id"] != again["alert_id"]
    assert resolved["version"] > raised["version"] and raised["severity"] == "critical"
    assert "D2" in raised["message"] and "缺货" in raised["message"] and "out of stock" in raised["message"]
    rate = warning_alert_row("low_delivery_rate", {"distributor_id": "D1"}, T0, None,
                             {"scope": "grassroots", "orders": 20, "on_time": 6, "on_time_rate": 0.3,
                              "window_days": 30.0, "threshold": 0.7}, "grassroots")
    assert rate["subject_type"] == "distributor" and "30%" in rate["message"] and "基层" in rate["message"]
    assert "72 h" in raised["message"] and "30 days" in rate["message"] and "below 70%" in rate["message"]
    assert rate["alert_id"] != warning_alert_row("low_delivery_rate", {"distributor_id": "D1"}, T0, None,
                                                 rate["details"], "all")["alert_id"]



def test_the_instants_evaluated_are_those_at_which_a_figure_can_change():
    """The next instants are computed from the sorted orders (not stored per order):
    walking them must visit exactly every instant at which an order enters or leaves
    a window, a first answer counts, or the surge baseline grows or loses an order
    of its first day, and nothing else."""
    import random
    rnd = random.Random(7)
    m = ShortageMonitor()
    sw, recent, most = m.shortage_window, m.recent, m.surge_max_days
    ats = sorted(T0 + rnd.randrange(40 * DAY_MS) for _ in range(60)) + [T0 + rnd.randrange(DAY_MS) for _ in range(8)]
    expected = set()
    first = min(ats)
    for n, at in enumerate(ats):
        m.order(f"O{n}", f"I{n % 5}", at, 10)
        expected |= {at, at + sw, at + recent, at + recent + most * DAY_MS}
        if n % 3:
            rt = at + rnd.randrange(2 * sw)
            m.answer(f"O{n}", rt, "accepted", 10, None)
            if rt < at + sw:
                expected.add(rt)
        if at < first + DAY_MS:  # an order of the first day leaves the growing baseline
            expected |= {at + recent + k * DAY_MS for k in range(1, most)}
    expected |= {first + recent + k * DAY_MS for k in range(1, most + 1)}  # the baseline grows a day
    visited = []
    while (t := m.next_change()) is not None:
        visited.append(t)
        m.advance(t)
    assert visited == sorted(expected)


def test_a_sparse_subject_skips_the_baseline_instants():
    """Fewer orders than a surge needs: the baseline's growth cannot matter, and a
    subject with one order is evaluated only when that order enters or leaves a window."""
    m = SurgeMonitor()
    m.order(T0, 10, "O1")
    visited = []
    while (t := m.next_change()) is not None:
        visited.append(t)
        m.advance(t)
    assert visited == sorted({T0 + o for o in m.offsets})


def test_surge_figures_from_running_sums_equal_sums_over_the_records():
    """The surge's quantities come from running sums kept along the orders' index
    (appended in time order, rebuilt after an insert in the middle or a changed
    quantity, cut with evictions): at every step they equal a plain sum over the
    records in each window."""
    import random

    from supplymon.core.signals import DISTRIBUTOR, ORDERED_AT, QUANTITY
    from supplymon.core.warnings import ProductRegion

    rng = random.Random(5)
    subject = ProductRegion()
    placed: dict[str, tuple[int, int]] = {}  # order id -> (ordered_at, quantity)
    clock, evicted, baselines = T0, 0, 0
    for step in range(3000):
        clock += rng.randrange(0, 40 * 60_000)
        roll = rng.random()
        if roll < 0.7 or not placed:  # a new order, now or (sometimes) hours late
            at = clock - (rng.randrange(0, 30 * H) if rng.random() < 0.1 else 0)
            order_id = f"O{step}"
        else:  # an order corrected: its quantity or even its time
            order_id = rng.choice(sorted(placed))
            at = placed[order_id][0] if rng.random() < 0.7 else placed[order_id][0] + rng.randrange(-H, H)
        quantity = rng.randrange(1, 500)
        subject.upsert(order_id, supply_record("P", "R", "I", f"D{quantity % 3}", at, quantity))
        placed[order_id] = (at, quantity)
        if step % 200 == 199:
            subject.now = clock - 2 * DAY_MS  # what no window reaches from here is evicted
            for gone in subject.evict():
                del placed[gone]
                evicted += 1
        t = clock + rng.randrange(0, 2 * H)
        figures = subject.surge_figures(t)
        recent = [q for a, q in placed.values() if t - subject.recent < a <= t]
        assert figures["orders_24h"] == len(recent) and figures["quantity_24h"] == sum(recent)
        assert figures["distributors"] == sorted({r[DISTRIBUTOR] for r in subject.records.values()
                                                  if t - subject.recent < r[ORDERED_AT] <= t})
        days = figures["baseline_days"]
        if "baseline_quantity" in figures:
            baselines += 1
            start = t - subject.recent
            assert figures["baseline_quantity"] == sum(q for a, q in placed.values()
                                                       if start - days * DAY_MS < a <= start)
        assert subject.surge_figures(t, distributors=False) == {**figures, "distributors": None}
        assert all(subject.records[o][QUANTITY] == q for o, (_, q) in placed.items())
    assert evicted > 100 and baselines > 1000  # both paths were taken


def test_shortage_from_a_sweep_equals_the_figures_over_the_window():
    """A busy subject answers "does the shortage hold at t" from its window's columns,
    and a sweep of the answered orders' spans (the records' design before columns)
    gives the same sums: at every instant both agree with the figures computed over
    the window."""
    import random

    from supplymon.core.warnings import ProductRegion
    from tests.warnings_records_reference import SCAN_AT_MOST, ShortageSweep

    rng = random.Random(11)
    subject = ProductRegion()
    clock, checked, held = T0, 0, 0
    for step in range(4000):
        clock += rng.randrange(0, 50 * 60_000)
        at = clock - (rng.randrange(0, 20 * H) if rng.random() < 0.1 else 0)
        quantity = rng.randrange(1, 100)
        # Mostly served, so that the shortage comes and goes (by fill rate or by institutions).
        decision = rng.choices(("accepted", "partial", "rejected"), weights=(84, 10, 6))[0]
        confirmed = {"accepted": quantity, "partial": rng.randrange(0, quantity), "rejected": 0}[decision]
        answered_at = None if rng.random() < 0.15 else at + rng.randrange(-H, 60 * H)
        reason = None if decision == "accepted" else rng.choice(("out_of_stock", "price", "other", "other"))
        institution = f"I{rng.randrange(12)}"
        subject.upsert(f"O{step}", supply_record("P", "R", institution, "D", at, quantity,
                                                 answered_at, decision, confirmed, reason))
        if step % 10:
            continue
        since = clock - rng.randrange(0, 10 * H)
        start, _ = subject._span(since - subject.shortage_window, since)
        sweep = ShortageSweep((subject.records[o] for _, o in subject.index[start:]), subject.shortage_window, since)
        for t in sorted(since + rng.randrange(0, 30 * H) for _ in range(8)):
            figures = subject.shortage_figures(t)
            assert sweep.sums(t) == (figures["answered_orders"], figures["ordered_quantity"],
                                     figures["confirmed_quantity"])
            assert sweep.institutions(t) == len(figures["institutions_out_of_stock"])
            expected = subject.shortage_holds(figures)
            assert subject.shortage_holds_at(t) == expected
            checked += 1
            held += expected
    assert checked > 3000 and 300 < held < checked - 300, held  # both answers
    assert SCAN_AT_MOST < 100
