"""Where the publisher and the direct replay put a line (supplymon/publish.py route):
a tick goes to every input partition, unless every partition would refuse it."""
from __future__ import annotations

import orjson

from supplymon.direct import Router
from supplymon.publish import route
from supplymon.settings import Settings

SETTINGS = Settings.from_env({})
TOPICS = SETTINGS.topics
NOW_MS = 1_790_000_000_000  # 2026-09-22


def line(**fields) -> bytes:
    return orjson.dumps({"event_id": "t1", "kind": "tick", "ts": "2026-03-01T09:00:00+08:00", **fields})


def test_a_valid_tick_fans_out_and_an_order_goes_to_its_topic_by_key():
    tick = route(line(), TOPICS)
    assert tick.topic is None and tick.readable and tick.ts is not None
    order = route(orjson.dumps({"event_id": "e1", "kind": "order", "order_id": "O1"}), TOPICS)
    assert order.topic == TOPICS.orders and order.key == b"O1"


def test_a_tick_the_validator_refuses_is_sent_once_for_the_worker_to_say_why():
    for bad in (line(ts="2026-03-01 09:00"), line(event_id=7), line(ts=None), line(ts="2026-13-01T09:00:00+08:00")):
        where = route(bad, TOPICS)
        assert (where.topic, where.readable) == (TOPICS.orders, False), bad


def test_a_tick_from_the_future_is_sent_once_unless_the_future_is_allowed():
    future = line(ts="2099-01-01T00:00:00+08:00")
    assert route(future, TOPICS, lambda ts: ts > NOW_MS).topic == TOPICS.orders
    assert route(future, TOPICS, lambda ts: False).topic is None
    records = list(Router(SETTINGS).records(future, NOW_MS))
    assert [(r.topic, r.partition) for r in records] == [(TOPICS.orders, 0)]
    allowed = Settings.from_env({"SUPPLYMON_ALLOW_FUTURE": "1"})
    assert len(list(Router(allowed).records(future, NOW_MS))) == len(TOPICS.inputs) * allowed.partitions


def test_records_off_their_keys_partition_are_found_once_per_partition_and_batch():
    """A producer that does not partition by order_id with murmur2 (librdkafka's CRC32
    default, say) is seen at once: the first keyed record of each partition is checked."""
    from typing import NamedTuple

    from supplymon.publish import key_partition, misplaced

    class TP(NamedTuple):
        topic: str
        partition: int

    class Rec(NamedTuple):
        key: bytes | None

    keys = [f"ORD-{n}".encode() for n in range(40)]
    right = [(TP("supply.orders", key_partition(k, 4)), Rec(k)) for k in keys]
    assert misplaced(right + [(TP("supply.orders", 3), Rec(None))], 4) == []  # a tick has no key
    wrong = [(TP("supply.responses", (key_partition(k, 4) + 1) % 4), Rec(k)) for k in keys]
    found = misplaced(wrong, 4)
    assert sorted(tp.partition for tp, _ in found) == sorted({tp.partition for tp, _ in wrong})
    assert all(expected == key_partition(next(r.key for t, r in wrong if t == tp), 4) for tp, expected in found)
