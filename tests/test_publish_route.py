"""Where the publisher and the direct replay put a line (supplymon/publish.py route):
a tick goes to every input partition, unless every partition would refuse it."""
from __future__ import annotations

import random

import orjson
from aiokafka.partitioner import murmur2
from hypothesis import given, settings as hsettings, strategies as st

from schemas.fast_events import decode_columns
from supplymon.direct import Router
from supplymon.publish import key_partitions, route
from supplymon.settings import Settings
from tests.test_columnar_flow import hostile_lines

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


def test_the_direct_replay_routes_a_batch_as_it_routes_each_line_and_decodes_it_once():
    """`Router.batch` (the direct replay: each line decoded once, routed from the
    decoded fields) makes the records `Router.records` makes line by line, and the
    items the intake would decode from them, over hostile lines too: ticks, bad
    times, unknown fields, bad JSON, a line over the size limit, blank lines."""
    settings = Settings.from_env({"SUPPLYMON_PARTITIONS": "3"})
    lines = hostile_lines(random.Random(7), 40) + [
        line(), line(ts="2026-03-01 09:00"), line(ts="2099-01-01T00:00:00+08:00"), b"", b"   ",
        orjson.dumps({"event_id": "e9", "kind": "order", "order_id": "O9", "ts": "2026-03-01T09:00:00.5+08:00"}),
        orjson.dumps({"event_id": "e8", "kind": "response", "order_id": "O9", "x": 1}),
        b'{"kind": "shipment", "order_id": "O9", "ts": "2026-03-01T09:00:00+08:00"',
        b'{"kind": "arrival", "order_id": "' + b"x" * settings.max_event_bytes + b'"}']
    random.Random(1).shuffle(lines)
    router = Router(settings)
    one_by_one = [record for raw in lines for record in router.records(raw, NOW_MS)]
    records, decoded = Router(settings).batch(lines, NOW_MS)
    assert records == one_by_one
    assert len(decoded) == len(records) and len({r.topic for r in records}) == 4
    fresh = decode_columns([r.value for r in records])
    too_large = [i for i, r in enumerate(records) if r.headers]
    assert len(too_large) == 1 and decoded.items[too_large[0]] is None
    for i in set(range(len(records))) - set(too_large):
        assert (decoded.items[i], decoded.ts_ms[i], decoded.received_ms[i]) == (
            fresh.items[i], fresh.ts_ms[i], fresh.received_ms[i]), records[i].value


@hsettings(max_examples=200, deadline=None)
@given(keys=st.lists(st.binary(max_size=40), max_size=60), partitions=st.sampled_from([1, 3, 4, 16, 65_536]))
def test_key_partitions_pick_the_partitions_of_kafkas_murmur2(keys, partitions):
    """The batch partitioner (numpy) picks what aiokafka's murmur2 (the Java client's)
    picks for every key, of every length and byte."""
    assert key_partitions(keys, partitions).tolist() == [(murmur2(key) & 0x7FFFFFFF) % partitions for key in keys]
