"""supplymon/core/signals.py: the records of a batch of facts made a column at a time
are those made an order at a time."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

from supplymon.core.rows import Columns
from supplymon.core.signals import (delivery_records, distributor_group, manufacturer_group, order_signals,
                                    supply_records)

maybe_ms = st.none() | st.integers(1_700_000_000_000, 1_800_000_000_000)
facts = st.fixed_dictionaries({
    "order_id": st.text(min_size=1, max_size=6), "manufacturer_id": st.sampled_from(["M1", "M2"]),
    "distributor_id": st.sampled_from(["D1", "D2"]), "product_id": st.sampled_from(["P1", "P2"]),
    "region_code": st.sampled_from(["310101", "310230"]), "institution_id": st.sampled_from(["H1", "H2"]),
    "area": st.sampled_from(["urban", "rural"]), "grassroots": st.integers(0, 1),
    "ordered_at": st.integers(1_700_000_000_000, 1_800_000_000_000), "quantity": st.integers(1, 10**6),
    "responded_at": maybe_ms, "decision": st.none() | st.sampled_from(["accepted", "partial", "rejected"]),
    "confirmed_quantity": st.none() | st.integers(0, 10**6), "reject_reason": st.none() | st.just("out_of_stock"),
    "unit_price": st.none() | st.floats(0.01, 1e6), "deadline_at": st.integers(1_700_000_000_000, 1_800_000_000_000),
    "first_confirmed_at": maybe_ms, "on_time": st.none() | st.integers(0, 1),
})


@settings(max_examples=200, deadline=None)
@given(st.lists(facts, min_size=1, max_size=20))
def test_signal_records_made_a_column_at_a_time_are_order_signals(rows):
    """`supply_records` and `delivery_records` (what the columnar flow makes, for the
    rows whose fingerprint changed) with their groups, as `order_signals` makes them."""
    columns = Columns.from_rows(rows).data
    everyone = range(len(rows))
    groups0, records0 = list(map(manufacturer_group, columns["manufacturer_id"])), supply_records(columns, everyone)
    groups1, records1 = list(map(distributor_group, columns["distributor_id"])), delivery_records(columns, everyone)
    assert [[(g0, r0), (g1, r1)] for g0, r0, g1, r1 in zip(groups0, records0, groups1, records1)] == \
        [order_signals(row) for row in rows]
    assert len(groups0) == len(rows)


@given(st.lists(st.tuples(st.one_of(st.none(), st.integers(-2**63, 2**63 - 1)), st.booleans(),
                          st.floats(allow_nan=True), st.one_of(st.none(), st.text(max_size=12))),
                min_size=1, max_size=30))
def test_a_batch_of_records_folds_to_each_records_fingerprint(records):
    """`fold` over a batch's fields as uint64 columns equals `fingerprint` record by
    record: ints (None: NONE_VALUE), bools, floats by their bits, texts by `text_value`."""
    from supplymon.core.signals import NONE_VALUE, float_values, fingerprint, fold, int_values, text_value

    ints = np.array([0 if i is None else i for i, _, _, _ in records], dtype=np.int64)
    columns = [int_values(ints, np.array([i is not None for i, _, _, _ in records])),
               int_values(np.array([b for _, b, _, _ in records])),
               float_values(np.array([f for _, _, f, _ in records])),
               np.array([NONE_VALUE if t is None else text_value(t) for _, _, _, t in records], dtype=np.uint64)]
    prints = fold(columns).tolist()
    assert prints == [fingerprint(list(record)) for record in records]
    assert all(0 <= p < 2**63 for p in prints)  # never -1, "none sent yet"
