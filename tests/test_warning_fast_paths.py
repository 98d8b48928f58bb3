"""The early warnings' fast answers to "does the rule hold at t" equal the rule
applied to the full figures (the reference, kept for the alerts' details), over
random subjects: sparse and busy, answered or not, bursts after long histories."""
from __future__ import annotations

from hypothesis import given, settings, strategies as st

from supplymon.core.signals import supply_record
from supplymon.core.warnings import ProductRegion
from supplymon.core.windows import DAY_MS, FAMILIES
from supplymon.settings import HOUR_MS as H

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
