"""The early warnings' fast answers to "does the rule hold at t" equal the rule
applied to the full figures (the reference, kept for the alerts' details), over
random subjects: sparse and busy, answered or not, bursts after long histories."""
from __future__ import annotations

from hypothesis import given, settings, strategies as st

from supplymon.core.instants import advance_on_columns
from supplymon.core.signals import supply_record
from supplymon.core.warnings import ProductRegion
from supplymon.core.windows import DAY_MS, FAMILIES
from supplymon.settings import HOUR_MS as H, Rules

T0 = FAMILIES[0].start(1_772_323_200_000)

order = st.tuples(
    st.integers(0, 12 * DAY_MS),  # ordered at, from T0
    st.integers(1, 300),  # quantity
    st.one_of(st.none(), st.integers(-H, 90 * H)),  # answered, after ordered
    st.sampled_from(("accepted", "partial", "rejected")),
    st.sampled_from((None, "out_of_stock", "price")),
    st.integers(0, 5),  # institution
    st.floats(0, 1),  # share confirmed
)


@settings(max_examples=150, deadline=None)
@given(history=st.lists(order, max_size=25), burst=st.lists(order, max_size=45),
       burst_day=st.integers(7, 12), probes=st.lists(st.integers(-2 * DAY_MS, 3 * DAY_MS), min_size=1, max_size=20))
def test_fast_holds_equal_the_rules_on_their_figures(history, burst, burst_day, probes):
    subject = ProductRegion()
    # The burst: orders packed into a few hours of one day, after the spread history.
    burst = [(burst_day * DAY_MS + at % (6 * H), *rest) for at, *rest in burst]
    for n, (at, quantity, answered, decision, reason, institution, share) in enumerate(history + burst):
        confirmed = quantity if decision == "accepted" else 0 if decision == "rejected" else int(quantity * share)
        subject.upsert(f"O{n}", supply_record("P", "R", f"I{institution}", f"D{n % 3}", T0 + at, quantity,
                                              None if answered is None else T0 + at + answered,
                                              None if answered is None else decision,
                                              None if answered is None else confirmed, reason))
    for probe in sorted(probes):
        t = T0 + burst_day * DAY_MS + probe
        assert subject.shortage_holds_at(t) == subject.shortage_holds(subject.shortage_figures(t))
        assert subject.surge_holds_at(t) == subject.surge_holds(subject.surge_figures(t, distributors=False))


def test_the_fast_holds_are_exercised_both_ways():
    """The generator above can make each rule hold and not hold (so equality means something)."""
    subject = ProductRegion()
    for n in range(30):  # a week and more of small orders, then 25 large ones within hours
        subject.upsert(f"H{n}", supply_record("P", "R", "I", "D", T0 + n * 9 * H, 10))
    for n in range(25):
        subject.upsert(f"B{n}", supply_record("P", "R", f"I{n % 4}", "D", T0 + 12 * DAY_MS + n * 60_000, 100,
                                              T0 + 12 * DAY_MS + n * 60_000 + H, "rejected", 0, "out_of_stock"))
    t = T0 + 12 * DAY_MS + 3 * H
    assert subject.surge_holds_at(t) and subject.shortage_holds_at(t)
    assert not subject.surge_holds_at(T0 + 5 * DAY_MS) and not subject.shortage_holds_at(T0 + 5 * DAY_MS)


delivery = st.tuples(st.integers(0, 40 * DAY_MS), st.booleans(),
                     st.one_of(st.none(), st.integers(-DAY_MS, 3 * DAY_MS)))


@settings(max_examples=100, deadline=None)
@given(orders=st.lists(delivery, max_size=200), first_day=st.integers(0, 45), days=st.integers(1, 6))
def test_delivery_rates_on_columns_equal_the_scan(orders, first_day, days):
    """A busy distributor's rates counted on columns for several day ends at once
    equal the scan of its records per day end and scope (the reference)."""
    from supplymon.core.signals import delivery_record
    from supplymon.core.warnings import COLUMNS_FROM, DeliveryRateMonitor

    monitor = DeliveryRateMonitor()
    for n, (deadline, grassroots, on_time_after) in enumerate(orders):
        monitor.upsert(f"O{n}", delivery_record(T0 + deadline, grassroots,
                                                None if on_time_after is None else T0 + deadline + on_time_after))
    ends = range(T0 + first_day * DAY_MS, T0 + (first_day + days) * DAY_MS, DAY_MS)
    assert monitor._rates(ends) == {end: (monitor._rate(end, False), monitor._rate(end, True)) for end in ends}
    assert COLUMNS_FROM < 200  # the columns are taken in some examples


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(st.tuples(order, st.integers(0, 3 * DAY_MS)), min_size=1, max_size=40))
def test_a_subject_that_cannot_alert_skips_its_instants_alike(steps):
    """`advance` (which skips the instants of a subject that cannot alert) and
    `advance_by_instants` (the reference) give the same transitions, metas and next
    instants after every step of upserts and advances, few orders or many."""
    skipping, reference = ProductRegion(), ProductRegion()
    clock, skipped = T0, 0
    for n, ((at, quantity, answered, decision, reason, institution, share), ahead) in enumerate(steps):
        confirmed = quantity if decision == "accepted" else 0 if decision == "rejected" else int(quantity * share)
        at = T0 + at // 4  # within 3 days: some subjects reach the rules' counts
        record = supply_record("P", "R", f"I{institution}", "D", at, quantity,
                               None if answered is None else at + answered,
                               None if answered is None else decision,
                               None if answered is None else confirmed, reason)
        assert skipping.upsert(f"O{n % 30}", list(record)) == reference.upsert(f"O{n % 30}", list(record))
        clock += ahead
        skipped += skipping.cannot_alert()
        got = [(t.kind, t.raised_at, t.resolved_at, t.details) for t in skipping.advance(clock)]
        want = [(t.kind, t.raised_at, t.resolved_at, t.details) for t in reference.advance_by_instants(clock)]
        assert got == want
        assert skipping.dump_meta() == reference.dump_meta()
        assert skipping.next_change() == reference.next_change()


# Small thresholds, so that short random histories open and resolve episodes often.
SMALL = Rules(shortage_min_answered_orders=3, shortage_institutions=2, shortage_quiet_hours=5,
              surge_min_orders=3, surge_min_history_days=1, surge_max_history_days=3, surge_quiet_hours=7,
              shortage_window_hours=30, surge_window_hours=10)
step = st.tuples(
    st.integers(0, 40),  # the order (ids repeat: corrections)
    st.integers(-DAY_MS, 6 * H),  # ordered at, around the clock (behind it: late)
    st.integers(1, 300),  # quantity
    st.one_of(st.none(), st.integers(-H, 40 * H)),  # answered, after ordered
    st.sampled_from(("accepted", "partial", "rejected")),
    st.sampled_from((None, "out_of_stock")),
    st.integers(0, 4),  # institution
    st.integers(0, 12 * H),  # then the clock moves this far (0: an advance to the same instant)
    st.booleans(),  # evict after the advance
)


def _transitions(transitions) -> list[tuple]:
    return [(t.kind, t.raised_at, t.resolved_at, t.details) for t in transitions]


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(step, min_size=1, max_size=60), rules=st.sampled_from((SMALL, Rules())),
       bursts=st.integers(1, 6), history=st.integers(0, 16))
def test_the_advance_on_columns_equals_the_advance_by_instants(steps, rules, bursts, history):
    """`advance_on_columns` (all candidate instants at once) and `advance_by_instants`
    (the reference: one instant after the other) give the same transitions, details
    included, the same metas and the same next instants after every step: late
    records, corrections, evictions, episodes opening and resolving, advances that
    do not move the clock."""
    on_columns, reference = ProductRegion(rules), ProductRegion(rules)
    clock = T0 + 3 * DAY_MS
    for n in range(history):  # small orders over the days before: a baseline for surges
        for subject in (on_columns, reference):
            subject.upsert(f"H{n}", supply_record("P", "R", "I", "D", T0 + n * 4 * H, 5, T0 + n * 4 * H + H,
                                                  "accepted", 5))
    for n, (oid, at, quantity, answered, decision, reason, institution, ahead, evict) in enumerate(steps):
        for b in range(bursts if n % 5 == 0 else 1):  # now and then several orders at once
            at_ms = clock + at + b * 60_000
            confirmed = quantity if decision == "accepted" else 0 if decision == "rejected" else quantity // 3
            record = supply_record("P", "R", f"I{institution}", f"D{oid % 3}", at_ms, quantity,
                                   None if answered is None else at_ms + answered,
                                   None if answered is None else decision,
                                   None if answered is None else confirmed, reason)
            assert on_columns.upsert(f"O{oid + 41 * b}", list(record)) == reference.upsert(f"O{oid + 41 * b}", list(record))
        clock += ahead
        assert _transitions(advance_on_columns(on_columns, clock)) == _transitions(reference.advance_by_instants(clock))
        assert on_columns.dump_meta() == reference.dump_meta()
        assert on_columns.next_change() == reference.next_change()
        if evict:
            assert on_columns.evict() == reference.evict()


def test_the_advance_on_columns_opens_and_resolves_episodes():
    """The generator above reaches both rules' episodes, raised and resolved (so the
    equality means something): a scripted case of the same shape."""
    subject, clock, seen = ProductRegion(SMALL), T0 + 3 * DAY_MS, set()
    for n in range(12):  # a day of small orders, then a burst of large ones turned away
        subject.upsert(f"H{n}", supply_record("P", "R", "I", "D", T0 + n * 2 * H, 10, T0 + n * 2 * H + H,
                                              "accepted", 10))
    for n in range(6):
        at = clock + n * 60_000
        subject.upsert(f"B{n}", supply_record("P", "R", f"I{n % 3}", "D", at, 100, at + H, "rejected", 0,
                                              "out_of_stock"))
    for hours in (2, 80):
        seen |= {(t.kind, t.resolved_at is None) for t in advance_on_columns(subject, clock + hours * H)}
    assert seen == {("supply_shortage", True), ("supply_shortage", False), ("demand_surge", True),
                    ("demand_surge", False)}
