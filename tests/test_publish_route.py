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

