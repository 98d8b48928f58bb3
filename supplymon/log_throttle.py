"""Fewer copies of the same client error while a broker is away.

While Kafka is unreachable, aiokafka logs each failed connect, fetch, metadata
update and coordinator lookup: ~70 lines a second here (580 in an 8 s outage),
which would bury an hour's outage under 250,000 lines. supplymon logs an outage's
start and end itself (supplymon/health.py); of the client's own messages, each
one (logger and message template) is shown once per `window` seconds, with how
many were left out.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

THROTTLED_LOGGERS = ("aiokafka", "kafka")


class RepeatThrottle(logging.Filter):
    def __init__(self, window: float = 30.0, prefixes: tuple[str, ...] = THROTTLED_LOGGERS,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.window = window
        self.prefixes = prefixes
        self.clock = clock
        self._shown: dict[tuple[str, str], tuple[float, int]] = {}  # key -> (shown at, left out since)

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes):
            return True
        key = (record.name, str(record.msg))
        now = self.clock()
        shown = self._shown.get(key)
        if shown is not None and now - shown[0] < self.window:
            self._shown[key] = (shown[0], shown[1] + 1)
            return False
        if shown is not None and shown[1]:
            record.msg = f"{record.msg} (同类消息 {shown[1]} 条未显示 / {shown[1]} more like this not shown " \
                         f"in the last {self.window:.0f} s)"
        self._shown[key] = (now, 0)
        return True


def throttle_client_logs(logger: logging.Logger, window: float = 30.0) -> None:
    """Add the throttle to every handler of `logger` (the root logger, once set up)."""
    throttle = RepeatThrottle(window)
    for handler in logger.handlers:
        handler.addFilter(throttle)
