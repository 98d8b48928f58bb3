"""Channel clients: each sends one rendered `Message` and raises `DeliveryError`
(or `Throttled`) when the receiver did not take it. A vendor's error code in an
HTTP 200 answer is a failure, not a success."""
from __future__ import annotations

from typing import Protocol

from supplymon.notify.render import Message


# The longest markdown each robot takes (bytes, UTF-8): WeCom's documented 4,096;
# DingTalk and Feishu take more (about 20 KB and 30 KB), kept under that here.
MESSAGE_BYTES = {"wecom": 4096, "dingtalk": 18_000, "feishu": 28_000}


class DeliveryError(Exception):
    """Not delivered. `retriable`: worth trying again (network, 5xx, busy)."""

    def __init__(self, message: str, retriable: bool = True):
        super().__init__(message)
        self.retriable = retriable


class Throttled(DeliveryError):
    """The receiver refused for too many messages: wait, then send what waits folded."""


class ChannelClient(Protocol):
    async def send(self, message: Message) -> None: ...


def http_failure(status: int, text: str) -> DeliveryError:
    if status == 429:
        return Throttled(f"HTTP 429: {text[:200]}")
    return DeliveryError(f"HTTP {status}: {text[:200]}", retriable=status >= 500 or status in (408, 425))
