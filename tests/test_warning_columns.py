"""A product+region's records held as columns (supplymon/core/supply_columns.py)
behave as the dict of record lists they replaced (tests/warnings_records_reference.py,
advanced instant by instant): over random steps of new orders, late ones, orders
at the same instant, corrections (of the answer, the quantity or the order time),
advances and evictions, the two give the same upsert answers, records held before,
transitions with their details, metas, next instants and evicted orders."""
from __future__ import annotations

from hypothesis import given, settings, strategies as st

from supplymon.core.signals import supply_record
from supplymon.core.supply_columns import INDEXED_FROM, NAMES, code, pack, unpack
from supplymon.core.warnings import ProductRegion
from supplymon.core.windows import DAY_MS
from supplymon.settings import HOUR_MS as H, Rules
from tests.test_warning_fast_paths import SMALL, T0, _transitions
from tests.warnings_records_reference import RecordsProductRegion

step = st.tuples(
    st.integers(0, 3 * INDEXED_FROM),  # the order (ids repeat: corrections; many: the indexed path)
    st.sampled_from((0, 0, 60_000, -H, -DAY_MS, 3 * H)),  # ordered at, from the clock (0 twice: ties)
    st.integers(1, 300),  # quantity
    st.one_of(st.none(), st.integers(-H, 40 * H)),  # answered, after ordered
    st.sampled_from(("accepted", "partial", "rejected")),
    st.sampled_from((None, "out_of_stock")),
    st.integers(0, 4),  # institution
    st.one_of(st.none(), st.floats(0, 50, allow_nan=False)),  # unit price
    st.sampled_from((0, 0, 0, 20 * 60_000, 5 * H, 30 * H)),  # then the clock moves this far
    st.sampled_from((False, False, True)),  # advance (and maybe evict) after the step
)


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(step, min_size=1, max_size=200), rules=st.sampled_from((SMALL, SMALL, Rules())))
def test_columns_behave_as_the_records_they_replaced(steps, rules):
    assert _compare(steps, rules)


def test_long_random_runs_behave_alike():
    """Long runs (thousands of steps): busy subjects found by their positions dict,
    evictions from the front, episodes raised and resolved many times."""
    import random

    seen = {"transitions": 0, "evicted": 0, "indexed": 0}
    for seed, rules in ((1, SMALL), (2, SMALL), (3, Rules())):
        rng = random.Random(seed)
        steps = [tuple(rng.choice(part) for part in CHOICES) for _ in range(1500)]
        for key, count in _compare(steps, rules).items():
            seen[key] += count
    assert seen["transitions"] > 50 and seen["evicted"] > 500 and seen["indexed"] > 100, seen


CHOICES = (range(3 * INDEXED_FROM), (0, 0, 60_000, -H, -DAY_MS, 3 * H), range(1, 300),
           (None, -H, 0, H, 3 * H, 40 * H), ("accepted", "partial", "rejected", "rejected"), (None, "out_of_stock"),
           range(5), (None, 10.0, 12.5), (0, 0, 0, 20 * 60_000, 20 * 60_000, 5 * H, 30 * H), (False, False, True))


def _compare(steps, rules) -> dict:
    """Run the steps on both; what was exercised."""
    seen = {"transitions": 0, "evicted": 0, "indexed": 0}
    columns, reference = ProductRegion(rules), RecordsProductRegion(rules)
    clock = T0 + 3 * DAY_MS
    for oid, at, quantity, answered, decision, reason, institution, price, ahead, advance in steps:
        at_ms = clock + at
        confirmed = quantity if decision == "accepted" else 0 if decision == "rejected" else quantity // 3
        record = supply_record("P", "R", f"I{institution}", f"D{oid % 3}", at_ms, quantity,
                               None if answered is None else at_ms + answered,
                               None if answered is None else decision,
                               None if answered is None else confirmed, reason, price)
        old = reference.records.get(f"O{oid}")
        changed, held = columns.put_record(f"O{oid}", list(record))
        assert changed == reference.upsert(f"O{oid}", list(record))
        assert held == old
        clock += ahead
        if advance:
            transitions = _transitions(columns.advance(clock))
            assert transitions == _transitions(reference.advance(clock))
            evicted = columns.evict()
            assert evicted == reference.evict()
            seen["transitions"] += len(transitions)
            seen["evicted"] += len(evicted)
            seen["indexed"] += columns.pos is not None
        assert columns.dump_meta() == reference.dump_meta()
        assert columns.next_change() == reference.next_change()
        assert columns.index == reference.index
    assert dict(columns.records) == reference.records
    if columns.pos is not None:  # the busy subject's positions follow every insert, move and eviction
        assert {oid: row - columns.shift for oid, row in columns.pos.items()} == {
            oid: n for n, oid in enumerate(columns.ids)}
    return seen


def test_a_record_comes_back_as_it_went_in():
    for record in (supply_record("P", "R", "I", "D", T0, 5),
                   supply_record("P", "R", "I", "D", T0, 5, T0 + H, "partial", 2, "out_of_stock", 12.75),
                   supply_record("", "", "", "", 0, 0, u=0.0)):
        assert unpack(record[4], pack(record)) == record
    assert NAMES[code("out_of_stock")] == "out_of_stock" and code(None) == 0
    assert unpack(T0, pack(supply_record("P", "R", "I", "D", T0, 5)))[10] is None  # no price: None, not NaN


def test_a_subject_keeps_a_few_dozen_bytes_per_order():
    """What the columns cost (the point of them): 8 bytes of time, a 56-byte row,
    an id reference; positions by dict only for busy subjects."""
    subject = ProductRegion()
    for n in range(1000):
        subject.upsert(f"O{n}", supply_record("P", "R", f"I{n % 7}", "D", T0 + n * 60_000, 5, T0 + n * 60_000 + H,
                                              "accepted", 5, None, 10.0))
    assert len(subject.rows) == 56 * 1000 and len(subject.ats) == 1000 and len(subject.pos) == 1000


def test_a_distributors_columns_behave_as_the_records_they_replaced():
    """A distributor's records as packed rows (supplymon/core/delivery_columns.py)
    against the dict of record lists with its figures by scan (the reference): over
    long random runs of new orders, corrections (late deliveries confirmed, answers
    changed), day ends measured and evictions, the same upsert answers, transitions
    with their details, metas, next instants and evicted orders, in the same order."""
    import random

    from supplymon.core.delivery_columns import pack as pack_delivery, unpack as unpack_delivery
    from supplymon.core.signals import delivery_record
    from supplymon.core.warnings import DeliveryRateMonitor
    from tests.warnings_records_reference import RecordsDeliveryRateMonitor

    small = Rules(delivery_rate_window_days=3, delivery_rate_min_orders=4, remote_refusal_window_days=4,
                  remote_refusal_min_orders=3, short_supply_window_days=3, short_supply_min_orders=3)
    seen = {"transitions": 0, "evicted": 0, "corrected": 0}
    for seed, rules in ((1, small), (2, small), (3, Rules())):
        rng = random.Random(seed)
        columns, reference = DeliveryRateMonitor(rules), RecordsDeliveryRateMonitor(rules)
        clock = T0
        for step in range(2500):
            clock += rng.choice((0, 0, 30 * 60_000, 2 * H, 9 * H))
            oid = f"O{rng.randrange(step + 1)}" if rng.random() < 0.3 else f"O{step}"  # corrections
            at = clock - rng.choice((0, 0, H, 2 * DAY_MS))
            answered = rng.choice((None, at + H, at + 30 * H))
            decision = None if answered is None else rng.choice(("accepted", "partial", "rejected", "rejected"))
            quantity = rng.randrange(1, 100)
            record = delivery_record(at + rng.choice((24, 48)) * H, rng.random() < 0.4,
                                     rng.choice((None, None, at + 20 * H, at + 70 * H)),
                                     rng.choice((at, at, None)), rng.choice((True, False, None)), quantity, answered,
                                     decision, None if answered is None else quantity // rng.choice((1, 2)))
            assert unpack_delivery(pack_delivery(record)) == record
            seen["corrected"] += oid in columns.rows.pos
            assert columns.upsert(oid, list(record)) == reference.upsert(oid, list(record))
            if step % 7 == 0:
                got = [(s, t.kind, t.raised_at, t.resolved_at, t.details, t.scope) for s, t in columns.advance(clock)]
                assert got == [(s, t.kind, t.raised_at, t.resolved_at, t.details, t.scope)
                               for s, t in reference.advance(clock)]
                evicted = columns.evict()
                assert evicted == reference.evict()
                seen["transitions"] += len(got)
                seen["evicted"] += len(evicted)
            assert columns.dump_meta() == reference.dump_meta()
            assert columns.next_change() == reference.next_change()
        assert dict(columns.records) == reference.records
    assert seen["transitions"] > 30 and seen["evicted"] > 1000 and seen["corrected"] > 300, seen
