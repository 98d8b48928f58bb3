"""Order states kept on their input partition (as Faust keeps a table entry on its
input record's partition), whatever consistent partitioner the producers use: the
order table's `part` column, the snapshots' changelog partitions, `keep_only` on a
rebalance, a restore from changelog partition p, and events read off their order's
partition (a producer that does not partition consistently) counted the same way
by the columnar flow and the per-event reference, batch for batch."""
from __future__ import annotations

import asyncio
import random
import zlib

import numpy as np
import orjson

from streams.changelog import BatchedChangelog
from supplymon.core.columnar_flow import OrderFlow
from supplymon.core.flow import Partition, Record
from supplymon.core.order_table import OrderTable
from supplymon.publish import key_partition
from tests.flow_compare import SideBySide
from tests.test_columnar_flow import _batches, _iso, _settings, history, hostile_lines

PARTITIONS = 4


def crc32_partition(key: bytes) -> int:
    """librdkafka's default partitioner (consistent: CRC32 of the key), not Kafka's murmur2."""
    return zlib.crc32(key) % PARTITIONS


def _repartitioned(batches, partition_of):
    """The batches with every keyed record moved to `partition_of(its record)` (ticks,
    unkeyed, stay on every partition as published)."""
    return [(lines, [r if r.key is None else r._replace(partition=partition_of(r)) for r in records], now_ms, decoded)
            for lines, records, now_ms, decoded in batches]


def _run(lines, partition_of, size=400):
    settings = _settings(PARTITIONS)
    inputs, batches = _batches(settings, lines, size)
    pair = SideBySide(settings, inputs)
    outs = []
    for _, records, now_ms, decoded in _repartitioned(batches, partition_of):
        expected, got = pair.step(records, now_ms, decoded)
        outs.append((expected, got))
    return pair, inputs, outs


def test_the_part_column_is_narrow():
    assert OrderTable(capacity=8).part.dtype == np.uint16


def test_a_consistent_partitioner_other_than_murmur2_keeps_each_order_on_its_input_partition():
    lines = history(6_000, seed=11)
    settings = _settings(PARTITIONS)
    inputs, batches = _batches(settings, lines, 400)
    pair = SideBySide(settings, inputs)
    shifted = _repartitioned(batches, lambda r: crc32_partition(r.key))
    keys = {r.key for _, records, _, _ in shifted for r in records if r.key is not None}
    assert sum(crc32_partition(k) != key_partition(k, PARTITIONS) for k in keys) > len(keys) // 2
    written: dict[str, int] = {}
    for _, records, now_ms, decoded in shifted:
        # rows, alerts, misplaced events (none), snapshots and their partitions: as the reference's
        expected, got = pair.assert_same(records, now_ms, decoded)
        assert not got.misplaced and not expected.misplaced
        assert set(got.partitions) >= set(got.snapshots)
        written.update(got.partitions)
    assert written and all(p == crc32_partition(order_id.encode()) for order_id, p in written.items())
    flow = pair.columnar
    rows = np.fromiter(flow.table.rows.values(), dtype=np.int64)
    assert all(int(flow.table.part[row]) == crc32_partition(oid.encode())
               for row, oid in zip(rows.tolist(), flow.table.oid[rows].tolist()))


def test_a_rebalance_keeps_the_orders_by_their_input_partition_not_their_key_hash():
    lines = history(6_000, seed=13)
    pair, inputs, _ = _run(lines, lambda r: crc32_partition(r.key))
    flow = pair.columnar
    held = set(flow.table.rows) | set(flow.pending)
    flow.restore([tp for tp in inputs if tp.partition != 1], (), keep_held=True)
    kept = set(flow.table.rows) | set(flow.pending)
    assert kept == {oid for oid in held if crc32_partition(oid.encode()) != 1}
    assert {oid for oid in held if key_partition(oid.encode(), PARTITIONS) == 1} & kept  # the hash is not asked


def test_a_state_read_back_from_changelog_partition_p_belongs_to_p():
    """Snapshots restored with the partition they were read from: that partition is
    the order's, whatever the snapshot says (states written by the key's hash before)."""
    lines = history(4_000, seed=17)
    pair, inputs, outs = _run(lines, lambda r: key_partition(r.key, PARTITIONS))
    held: dict[str, bytes] = {}
    for _, got in outs:
        for order_id, raw in got.snapshots.items():
            if raw is None:
                held.pop(order_id, None)
            else:
                held[order_id] = raw
    settings = _settings(PARTITIONS)
    restarted = OrderFlow.from_settings(settings, trust_rebuilt=True)
    read_back = [(order_id, raw, crc32_partition(order_id.encode())) for order_id, raw in held.items()]
    assert restarted.restore(inputs, read_back) == len(held)
    t = restarted.table
    for order_id, row in t.rows.items():
        assert int(t.part[row]) == crc32_partition(order_id.encode())
    for order_id, state in restarted.pending.items():
        assert state["p"] == crc32_partition(order_id.encode())
    restarted.restore([tp for tp in inputs if tp.partition == 2], (), keep_held=True)
    assert set(t.rows) | set(restarted.pending) == {oid for oid in held if crc32_partition(oid.encode()) == 2}


def _line(**fields) -> bytes:
    return orjson.dumps(fields)


def test_an_event_off_its_orders_partition_is_applied_counted_and_the_state_stays():
    """A response read from another partition than its order's: applied (the fact has
    its answer), counted for the partition it was read from, by both flows alike; the
    order's state stays on (is written to) the order's partition."""
    order = _line(event_id="o-1", kind="order", ts=_iso(0), order_id="ORD1", institution_id="I",
                  region_code="150781", area="urban", grassroots=False, distributor_id="D", manufacturer_id="M",
                  product_id="P", product_kind="drug", vbp=True, quantity=5, unit_price=2.0)
    response = _line(event_id="r-1", kind="response", ts=_iso(3_600_000), order_id="ORD1", distributor_id="D",
                     decision="accepted", confirmed_quantity=5)
    settings = _settings(PARTITIONS)
    inputs = [Partition(topic, p) for topic in settings.topics.inputs for p in range(PARTITIONS)]
    pair = SideBySide(settings, inputs)
    records = [Record(settings.topics.orders, 0, 0, 0, b"ORD1", order),
               Record(settings.topics.responses, 3, 0, 0, b"ORD1", response)]
    for size in (2, 1):  # both in one batch, then (on fresh flows) one batch each
        pair = SideBySide(settings, inputs)
        for start in range(0, 2, size):
            pair.assert_same(records[start:start + size], 1)
    pair = SideBySide(settings, inputs)
    expected, got = pair.step(records, 1)
    assert got.misplaced == expected.misplaced == {Partition(settings.topics.responses, 3): 1}
    assert got.partitions["ORD1"] == expected.partitions["ORD1"] == 0
    (fact,) = got.rows.dicts("order_facts")
    assert fact["decision"] == "accepted" and fact["responded_at"] is not None


def test_a_producer_partitioning_inconsistently_is_counted_alike_by_both_flows():
    """Each keyed record on a random partition (round-robin-like): the one case that
    cannot be kept right across a rebalance. Both flows apply, count and place it the
    same, batch for batch, over hostile mixes too."""
    total = 0
    for lines, size in ((history(3_000, seed=19), 300), (hostile_lines(random.Random(23), 60), 40)):
        settings = _settings(PARTITIONS)
        inputs, batches = _batches(settings, lines, size)
        pair = SideBySide(settings, inputs)
        rnd = random.Random(3)
        for _, records, now_ms, decoded in _repartitioned(batches, lambda r: rnd.randrange(PARTITIONS)):
            total += sum(pair.assert_same(records, now_ms, decoded)[1].misplaced.values())
    assert total > 100


class _Store(dict):
    """Faust's memory store as BatchedChangelog uses it: a dict, the partition recovery
    read each key from (`_key_partition`), the persisted offsets."""

    def __init__(self):
        super().__init__()
        self._key_partition: dict = {}

    def set_persisted_offset(self, tp, offset: int) -> None:
        pass


class _Table:
    def __init__(self):
        self.data = _Store()
        self.changelog_topic = type("Topic", (), {"get_topic_name": staticmethod(lambda: "order-changelog")})()


class _Delivered(BatchedChangelog):
    async def _deliver(self, topic, by_partition):
        self.delivered = {p: list(m) for p, m in by_partition.items()}


def test_the_changelog_writes_each_state_to_its_given_partition_and_keeps_by_the_recovered_one():
    table = _Table()
    changelog = _Delivered(table, None, lambda key: 3, bytes)  # the key's own partition: 3, unless given
    asyncio.run(changelog.write({"a": b"1", "b": None, "c": b"3"}, hold=False, partitions={"a": 0, "b": 1}))
    assert changelog.delivered == {0: [(b"a", b"1")], 1: [(b"b", None)], 3: [(b"c", b"3")]}
    # what recovery read back: each key with the partition it came from
    table.data.update({"x": b"x", "y": b"y", "z": b"z"})
    table.data._key_partition.update({"x": 0, "y": 2})
    assert sorted(changelog.items()) == [("x", b"x", 0), ("y", b"y", 2), ("z", b"z", 3)]
    assert changelog.keep_only({0, 1}) == 2
    assert dict(table.data) == {"x": b"x"} and table.data._key_partition == {"x": 0}
    # held writes note their given partition (keep_only asks it, not the key's)
    asyncio.run(changelog.write({"h": b"h"}, hold=True, partitions={"h": 1}))
    assert changelog.keep_only({1}) == 1 and dict(table.data) == {"h": b"h"}
