"""The worker's view of the systems it depends on: is ClickHouse (the store) up,
is Kafka (the broker) up, since when.

The sink reports each write's outcome, a probe each broker check; an outage's
start and end are logged once each (not at every retry), counted, and shown on
`/health` and in the gauge `supplymon_up{system="store"|"broker"}`. No
rule reads this: it is for operators, so it may use the wall clock.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
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
        self.failures = 0  # every failure reported (a probe's success does not undo a later one)
        self.last_ok = float("-inf")  # when a success was last reported

    def ok(self) -> None:
        self.last_ok = self.clock()
        if self.up is False:
            log.warning("%s已恢复，中断 %.1f 秒 / %s is back after %.1f s down",
                        self.zh, self.down_seconds(), self.system, self.down_seconds())
        if self.up is not True:
            self.up, self.since = True, self.clock()
            metrics.system_up.labels(self.system).set(1)

    def ok_unless_failed_since(self, failures: int) -> None:
        """A probe's success, unless a failure was reported after the probe began (a
        write that failed meanwhile knows better)."""
        if self.failures == failures:
            self.ok()

    def failed(self, error: BaseException | str) -> None:
        self.failures += 1
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

# The worker's exit code when the broker it read from lost its log (the embedded
# broker exited, or the broker answering is another one: a new cluster id). Its
# state and offsets refer to a log that is gone: the embedded stack must be started
# again (a fresh broker, rebuilt from ClickHouse), which a restart of the worker does.
EXIT_BROKER_LOST = 75  # EX_TEMPFAIL
broker_lost = ""  # why, once it happened


def lose_broker(reason_zh: str, reason_en: str, worker_file: Path | None = None) -> None:
    """The broker's log is gone: say why and end this process at once with
    EXIT_BROKER_LOST. Not a graceful stop: that would wait on writes to a broker that
    is gone, or commit this worker's offsets into a broker whose log they do not
    describe; an end like SIGKILL's loses nothing (the next start rebuilds from
    ClickHouse, whose rows are written before anything is acknowledged)."""
    global broker_lost
    if broker_lost:
        return
    broker_lost = reason_en
    log.error("%s：本进程的状态与偏移量对应的日志已不存在，退出（代码 %d），重启后将从 ClickHouse 重建 / %s: "
              "this worker's state and offsets refer to a log that is gone; exiting (code %d) to be "
              "restarted, which rebuilds from ClickHouse", reason_zh, EXIT_BROKER_LOST, reason_en, EXIT_BROKER_LOST)
    broker.failed(reason_en)
    if worker_file is not None:
        worker_file.unlink(missing_ok=True)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_BROKER_LOST)


class ClusterIdentity:
    """The broker's cluster id as first seen; a different one later means another
    broker (the embedded broker takes a new id at every start: supplymon/embedded.py)."""

    def __init__(self) -> None:
        self.cluster_id: str | None = None

    def replaced(self, cluster_id: str | None) -> bool:
        if not cluster_id:
            return False
        if self.cluster_id is None:
            self.cluster_id = cluster_id
            return False
        return cluster_id != self.cluster_id


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
