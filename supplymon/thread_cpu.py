"""CPU seconds per thread of the worker, for `/metrics`
(`supplymon_thread_cpu_seconds{thread=...}`).

The worker's time is not all on its event loop: Faust reads Kafka on a consumer
thread of its own, the store's inserts run on the `clickhouse` thread (and chdb's
native threads), the embedded broker is another process. Per Python thread
(named as `threading` names it, a pool's number dropped) from the thread's CPU
clock; `native` is the rest of the process's CPU (threads Python did not start:
chdb's). bench/pipeline.py prints them beside the dataflow's stages, so the cost
outside the dataflow shows.
"""
from __future__ import annotations

import re
import threading
import time
from typing import Iterator

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector


def thread_cpu() -> dict[str, float]:
    """CPU seconds by thread name (pools summed), and `native` for the rest."""
    out: dict[str, float] = {}
    for thread in threading.enumerate():
        try:
            seconds = time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        except (OSError, TypeError, OverflowError):  # ended meanwhile, or not started
            continue
        name = re.sub(r"[_-]\d+$", "", thread.name)
        out[name] = out.get(name, 0.0) + seconds
    out["native"] = max(0.0, time.process_time() - sum(out.values()))
    return out


class ThreadCpuCollector(Collector):
    @staticmethod
    def _family() -> CounterMetricFamily:
        return CounterMetricFamily("supplymon_thread_cpu_seconds",
                                   "CPU seconds of the worker's threads, by thread (native: threads "
                                   "Python did not start, chdb's)", labels=["thread"])

    def describe(self) -> Iterator[CounterMetricFamily]:
        yield self._family()

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = self._family()
        for name, seconds in sorted(thread_cpu().items()):
            family.add_metric([name], seconds)
        yield family
