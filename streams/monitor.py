"""The worker's Faust monitor: Faust's own, without its per-message bookkeeping.

Faust calls its sensors four times per message (message in, stream event in and
out, message out); its default Monitor counts and times each (a dict and two
clock reads per event). supplymon's figures are its Prometheus metrics, so the
per-message hooks do nothing here; every other hook (commits, sends, tables,
rebalances, web) keeps Faust's statistics. It is also the one sensor the worker
has, so an extra sensor does not add its own per-message calls: code that must
run once a rebalance has fully completed registers with `after_rebalance`.
"""
from __future__ import annotations

from typing import Any, Callable

from faust.sensors import Monitor

_after_rebalance: list[Callable[[], None]] = []


def after_rebalance(callback: Callable[[], None]) -> None:
    """Call `callback` whenever a rebalance has fully completed: partitions at their
    committed offsets, tables recovered, fetching again."""
    _after_rebalance.append(callback)


class WorkerMonitor(Monitor):
    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        pass

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        return None

    def on_stream_event_out(self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None) -> None:
        pass

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        pass

    def on_rebalance_end(self, app: Any, state: dict) -> None:
        super().on_rebalance_end(app, state)
        for callback in _after_rebalance:
            callback()
