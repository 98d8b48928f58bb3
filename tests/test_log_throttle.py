"""A broker outage's repeated client errors are shown once per window, with a count."""
from __future__ import annotations

import logging

from supplymon.log_throttle import RepeatThrottle


def _record(name: str, msg: str, *args) -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)


def test_repeats_are_counted_and_shown_once_per_window():
    now = [0.0]
    throttle = RepeatThrottle(window=30, clock=lambda: now[0])
    shown = []
    for second in range(70):
        now[0] = float(second)
        for node in (1, 2):
            record = _record("aiokafka.conn", "Unable connect to node with id %s: %s", node, "refused")
            if throttle.filter(record):
                shown.append((second, record.getMessage()))
    assert [s for s, _ in shown] == [0, 30, 60]
    assert shown[0][1] == "Unable connect to node with id 1: refused"
    assert "59 more like this not shown in the last 30 s" in shown[1][1]
    assert "同类消息 59 条未显示" in shown[1][1]


def test_other_loggers_and_other_messages_pass():
    throttle = RepeatThrottle(window=30, clock=lambda: 0.0)
    assert all(throttle.filter(_record("supplymon.health", "store is unavailable")) for _ in range(3))
    assert throttle.filter(_record("aiokafka.client", "Unable to update metadata from %s", 1))
    assert throttle.filter(_record("aiokafka.consumer.fetcher", "Failed fetch messages from %s: %s", 1, "x"))
    assert not throttle.filter(_record("aiokafka.client", "Unable to update metadata from %s", 2))
