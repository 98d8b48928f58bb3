"""The worker's view of the systems it depends on: is ClickHouse (the store) up,
is Kafka (the broker) up, since when.

The sink reports each write's outcome, a probe each broker check; an outage's
start and end are logged once each (not at every retry), counted, and shown on
`/health` and in the gauges `supplymon_store_up` / `supplymon_broker_up`. No
rule reads this: it is for operators, so it may use the wall clock.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import Callable

from supplymon import metrics

log = logging.getLogger(__name__)


class Availability:
    """Up or down (or not known yet), since when, and the last error."""

    def __init__(self, system: str, zh: str, clock: Callable[[], float] = time.time):
        self.system = system  # metric label and log name: "store", "broker"
        self.zh = zh
        self.clock = clock
        self.up: bool | None = None
        self.since = clock()
        self.last_error = ""
        self.outages = 0

    def ok(self) -> None:
        if self.up is False:
            log.warning("%s已恢复，中断 %.1f 秒 / %s is back after %.1f s down",
                        self.zh, self.down_seconds(), self.system, self.down_seconds())
        if self.up is not True:
            self.up, self.since = True, self.clock()
            metrics.system_up.labels(self.system).set(1)

    def failed(self, error: BaseException | str) -> None:
        self.last_error = str(error).strip().splitlines()[0][:500] if str(error).strip() else type(error).__name__
        if self.up is not False:
            self.up, self.since = False, self.clock()
            self.outages += 1
            metrics.outages.labels(self.system).inc()
            metrics.system_up.labels(self.system).set(0)
            log.warning("%s不可用，等待恢复（数据不会丢失）/ %s is unavailable, waiting for it "
                        "(nothing is lost): %s", self.zh, self.system, self.last_error)

    def down_seconds(self) -> float:
        return round(self.clock() - self.since, 1) if self.up is False else 0.0

    def report(self) -> dict:
        return {
            "up": self.up,
            "since": datetime.fromtimestamp(self.since, timezone.utc).isoformat(timespec="seconds"),
            "down_seconds": self.down_seconds(),
            "outages": self.outages,
            "last_error": self.last_error if self.up is False else "",
        }


store = Availability("store", "ClickHouse 存储")
broker = Availability("broker", "Kafka 代理")


def stream_lag_seconds(stream_time_ms: int | None, now: float | None = None) -> float | None:
    """How far stream time is behind the wall clock (large in a replay of old events)."""
    if stream_time_ms is None:
        return None
    return round((now if now is not None else time.time()) - stream_time_ms / 1000, 1)


def status(assigned: bool) -> tuple[bool, dict]:
    """(ready, report): ready when the store and broker are up and the worker holds its
    partitions."""
    report = {"store": store.report(), "broker": broker.report(), "assigned": assigned}
    ready = store.up is not False and broker.up is True and assigned
    report["status"] = "ok" if ready else ("starting" if store.up is not False and broker.up is not False
                                           else "degraded")
    return ready, report
