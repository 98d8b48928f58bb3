"""Robot rate limits (WeCom and DingTalk: 20 messages a minute; Feishu 100).

Pure: the caller passes the time (the wall clock: a vendor counts real minutes;
no rule depends on it). Over the limit nothing is dropped: the alerts waiting
for an endpoint are folded into one digest message that takes a single slot.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass


class RateWindow:
    """At most `limit` messages in any `period` seconds (0: no limit); an endpoint
    that answered "too many" is `block`ed for a while."""

    def __init__(self, limit: int, period: float = 60.0):
        self.limit = limit
        self.period = period
        self._sent: deque[float] = deque()
        self._blocked_until = 0.0

    def _expire(self, now: float) -> None:
        while self._sent and self._sent[0] <= now - self.period:
            self._sent.popleft()

    def available(self, now: float) -> int:
        if now < self._blocked_until:
            return 0
        if not self.limit:
            return 1 << 30
        self._expire(now)
        return max(0, self.limit - len(self._sent))

    def next_free(self, now: float) -> float:
        """The earliest time a message may go (`now` if one may go now)."""
        if now < self._blocked_until:
            return self._blocked_until
        if self.available(now):
            return now
        return self._sent[0] + self.period

    def record(self, now: float) -> None:
        if self.limit:
            self._sent.append(now)

    def block(self, until: float) -> None:
        self._blocked_until = max(self._blocked_until, until)


class RateLimits:
    """Several windows at once (Feishu: 100 a minute and 5 a second): a message goes
    when every window has room."""

    def __init__(self, limits: list[tuple[int, float]]):
        self.windows = [RateWindow(limit, period) for limit, period in limits]

    def available(self, now: float) -> int:
        return min(window.available(now) for window in self.windows)

    def next_free(self, now: float) -> float:
        return max(window.next_free(now) for window in self.windows)

    def record(self, now: float) -> None:
        for window in self.windows:
            window.record(now)

    def block(self, until: float) -> None:
        for window in self.windows:
            window.block(until)


@dataclass(frozen=True)
class Plan:
    singles: int  # the first `singles` waiting alerts go one message each
    folded: int  # the next `folded` go together in one digest message (0: none)


def plan(waiting: int, available: int) -> Plan:
    """How to send `waiting` alerts with `available` slots: one message each while
    they fit; otherwise all but one slot one by one and the rest folded into the last."""
    if waiting <= 0 or available <= 0:
        return Plan(0, 0)
    if waiting <= available:
        return Plan(waiting, 0)
    return Plan(available - 1, waiting - (available - 1))
