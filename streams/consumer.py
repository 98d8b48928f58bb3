"""A Faust consumer that hands each fetched message to the streams without four
asyncio tasks per message.

Faust's fetch loop (`Consumer._drain_messages`) delivers every message through
`wait_first(callback(message), suspend_flow.wait())`, which wraps the delivery,
the flow's suspend event and the consumer's stopped and crashed events in tasks
and waits for the first: measured here, that was about a third of the whole
pipeline's time. While the flow is not suspended, this consumer awaits the
delivery directly. What differs: a delivery already under way when a rebalance
suspends the flow is finished instead of dropped (the agent ignores messages of
partitions it no longer holds); a suspended flow takes Faust's own path.
"""
from __future__ import annotations

from typing import Any

from faust.transport.drivers.aiokafka import Consumer
from mode.services import WaitResults


class DirectDeliveryConsumer(Consumer):
    async def wait_first(self, *coros: Any, timeout: Any = None) -> WaitResults:
        if len(coros) == 2 and timeout is None and self._is_delivery(coros[1]):
            deliver, suspended = coros
            if not self.suspend_flow.is_set() and not self.should_stop:
                suspended.close()  # never started: nothing to wait for
                return WaitResults([deliver], [await deliver], False)
        return await super().wait_first(*coros, timeout=timeout)

    def _is_delivery(self, coro: Any) -> bool:
        """`coro` is `self.suspend_flow.wait()`, as only `_drain_messages` passes it."""
        frame = getattr(coro, "cr_frame", None)
        return frame is not None and frame.f_locals.get("self") is self.suspend_flow


def install(app: Any) -> None:
    """Make `app` create its consumer from `DirectDeliveryConsumer` (the Kafka transport)."""
    transport = app.transport
    if issubclass(DirectDeliveryConsumer, transport.Consumer):
        transport.Consumer = DirectDeliveryConsumer
