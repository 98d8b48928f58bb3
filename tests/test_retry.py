"""retry_until_done: backoff doubling up to its cap, and only retriable failures retried."""
from __future__ import annotations

import asyncio

import pytest

from supplymon.retry import retry_until_done


def test_retries_with_doubling_capped_delays_until_the_action_succeeds():
    calls, retries = [], []

    async def flaky():
        calls.append(1)
        if len(calls) < 5:
            raise ConnectionError(f"down {len(calls)}")
        return "stored"

    async def on_retry(attempt, delay, exc):
        retries.append((attempt, delay, str(exc)))

    result = asyncio.run(retry_until_done(flaky, on_retry=on_retry, first_delay=0.001, max_delay=0.004))
    assert result == "stored" and len(calls) == 5
    assert retries == [(1, 0.001, "down 1"), (2, 0.002, "down 2"), (3, 0.004, "down 3"), (4, 0.004, "down 4")]


def test_a_failure_that_is_not_retriable_is_raised_at_once():
    calls = []

    async def broken():
        calls.append(1)
        raise ValueError("a bug, not an outage")

    async def on_retry(attempt, delay, exc):
        raise AssertionError("not to be retried")

    with pytest.raises(ValueError, match="a bug"):
        asyncio.run(retry_until_done(broken, on_retry=on_retry, retriable=lambda exc: isinstance(exc, OSError)))
    assert calls == [1]
