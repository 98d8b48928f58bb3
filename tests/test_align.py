"""streams/align.py: the input topics read in step, without losing, reordering within a
partition or acknowledging past a held record."""
from __future__ import annotations

from typing import NamedTuple

from hypothesis import given, settings, strategies as st

from streams.align import Aligner
from streams.batches import next_offsets


class TP(NamedTuple):
    topic: str
    partition: int


class Rec(NamedTuple):
    offset: int
    timestamp: int | None


ORDERS, RESPONSES = TP("orders", 0), TP("responses", 0)


def recs(tp: TP, first: int, times: list[int]) -> list[tuple[TP, Rec]]:
    return [(tp, Rec(first + i, ts)) for i, ts in enumerate(times)]


def test_a_topic_ahead_of_a_sibling_behind_waits_for_it():
    aligner = Aligner(caught_up=0)
    # responses read up to 500, orders only up to 200 with more in their log
    out = aligner.take(recs(ORDERS, 0, [100, 200]) + recs(RESPONSES, 0, [150, 250, 500]),
                       {ORDERS: 40, RESPONSES: 0}, now=0.0)
    assert out == recs(ORDERS, 0, [100, 200]) + recs(RESPONSES, 0, [150])
    assert len(aligner) == 2
    # the orders catch up to 300: the response at 250 goes, the one at 500 still waits
    out = aligner.take(recs(ORDERS, 2, [300]), {ORDERS: 10, RESPONSES: 0}, now=0.1)
    assert out == recs(RESPONSES, 1, [250]) + recs(ORDERS, 2, [300])
    # the orders reach the end of their log: nothing waits
    out = aligner.take([], {ORDERS: 0, RESPONSES: 0}, now=0.2)
    assert out == recs(RESPONSES, 2, [500]) and len(aligner) == 0


def test_nothing_waits_for_a_sibling_caught_up_or_of_another_partition_number():
    aligner = Aligner(caught_up=500)
    batch = recs(ORDERS, 0, [100]) + recs(RESPONSES, 0, [900])
    assert aligner.take(batch, {ORDERS: 500, RESPONSES: 0}, now=0.0) == batch  # live: a fetch round behind
    other = TP("orders", 1)
    aligner = Aligner(caught_up=0)
    batch = recs(other, 0, [100]) + recs(RESPONSES, 0, [900])
    assert aligner.take(batch, {other: 1000, RESPONSES: 0}, now=0.0) == batch


def test_waiting_is_bounded_in_time_and_count():
    aligner = Aligner(max_wait=2.0, caught_up=0)
    lag = {ORDERS: 100, RESPONSES: 0}
    aligner.take(recs(ORDERS, 0, [100]) + recs(RESPONSES, 0, [500]), lag, now=10.0)
    assert aligner.take([], lag, now=11.9) == [] and len(aligner) == 1
    assert aligner.take([], lag, now=12.0) == recs(RESPONSES, 0, [500])
    aligner = Aligner(max_held=3, caught_up=0)
    aligner.take(recs(ORDERS, 0, [100]), lag, now=0.0)
    assert aligner.take(recs(RESPONSES, 0, [200, 300, 400]), lag, now=0.0) == []
    assert aligner.take(recs(RESPONSES, 3, [500]), lag, now=0.0) == recs(RESPONSES, 0, [200, 300, 400, 500])


def test_a_held_record_is_a_suffix_and_clear_forgets_it():
    aligner = Aligner(caught_up=0)
    # a record without a usable time, or earlier than the bound, after a held one waits too
    out = aligner.take(recs(ORDERS, 0, [100]) + recs(RESPONSES, 0, [50, 300, 80, None]),
                       {ORDERS: 5, RESPONSES: 0}, now=0.0)
    assert out == recs(ORDERS, 0, [100]) + recs(RESPONSES, 0, [50])
    assert next_offsets(out)[RESPONSES] == 1  # acknowledged up to the first held record only
    aligner.clear()
    assert len(aligner) == 0 and aligner.take([], {ORDERS: 5, RESPONSES: 0}, now=0.0) == []


TPS = [TP(topic, p) for topic in ("orders", "responses", "arrivals") for p in (0, 1)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.lists(st.tuples(st.sampled_from(TPS), st.integers(0, 1000)), max_size=12),
                          st.dictionaries(st.sampled_from(TPS), st.integers(0, 3000)),
                          st.floats(0, 3)), max_size=8),
       st.integers(1, 20))
def test_every_record_comes_out_once_in_its_partitions_order(takes, max_held):
    aligner = Aligner(max_held=max_held, max_wait=2.0, caught_up=100)
    offsets = {tp: 0 for tp in TPS}
    sent: dict[TP, list[int]] = {tp: [] for tp in TPS}
    got: dict[TP, list[int]] = {tp: [] for tp in TPS}
    now = 0.0
    for batch, lag, step in takes:
        now += step
        positions = []
        for tp, ts in batch:
            positions.append((tp, Rec(offsets[tp], ts)))
            sent[tp].append(offsets[tp])
            offsets[tp] += 1
        for tp, record in aligner.take(positions, lag, now):
            got[tp].append(record.offset)
        for tp, held in aligner.held.items():  # what waits comes after all that went
            assert not got[tp] or held[0].offset > got[tp][-1]
    for tp, record in aligner.take([], {}, now):  # every log at its end: all goes
        got[tp].append(record.offset)
    assert got == sent and len(aligner) == 0
