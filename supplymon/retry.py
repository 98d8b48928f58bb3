"""Retrying an action until it succeeds, with exponential backoff.

Used where giving up would lose data that was accepted: the ClickHouse sink and
the table changelogs hold their batch unacknowledged and try again until the
store or Kafka is back.
"""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, TypeVar

T = TypeVar("T")


async def retry_until_done(action: Callable[[], Awaitable[T]], *,
                           on_retry: Callable[[int, float, Exception], Awaitable[None]],
                           retriable: Callable[[Exception], bool] = lambda exc: True,
                           first_delay: float = 0.5, max_delay: float = 10.0) -> T:
    """`await action()` until it returns. After a failure that is `retriable`, calls
    `on_retry(attempt, delay, error)` (attempt counts from 1), waits `delay` (doubled
    each time, up to `max_delay`) and tries again; any other failure is raised."""
    delay, attempt = first_delay, 1
    while True:
        try:
            return await action()
        except Exception as exc:
            if not retriable(exc):
                raise
            await on_retry(attempt, delay, exc)
            await asyncio.sleep(delay)
            delay, attempt = min(delay * 2, max_delay), attempt + 1
