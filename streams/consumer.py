"""supplymon's Faust consumer: Faust's aiokafka consumer with two changes.

1. Offsets skipped by a fetch are not taken as acknowledged. Faust's fetch loop
   (`Consumer._drain_messages`) records a jump in a partition's offsets as a "gap"
   (`_add_gap`), and `_new_offset` then counts every gap offset below the highest
   acknowledged one as acknowledged: meant for offsets the log lacks (compaction,
   transaction markers). But a jump also comes when a fetch that landed during a
   rebalance was discarded: then, once the missing messages were read again and
   the first of them acknowledged, the commit passed over the rest before they
   were processed, and a worker restarted or taking the partition over never saw
   them (measured: a whole partition's orders missing after a second worker
   joined). Here a jump records nothing; the agents' continuity check
   (streams/continuity.py) reads the missing messages again, and only offsets it
   finds really absent from the log are recorded, with `mark_absent`.
2. A message is delivered without four asyncio tasks. Faust delivers every message
   through `wait_first(callback(message), suspend_flow.wait())`, which wraps the
   delivery, the flow's suspend event and the consumer's stopped and crashed
   events in tasks and waits for the first: measured here, about a third of the
   whole pipeline's time. While the flow is not suspended, this consumer awaits
   the delivery directly. What differs: a delivery already under way when a
   rebalance suspends the flow is finished instead of dropped (the agent ignores
   messages of partitions it no longer holds); a suspended flow takes Faust's
   own path.

And it tells where a partition newly assigned starts (`start_offsets`): the
continuity check begins each partition there, so a first message further on is a
gap read again, not where the partition begins.

3. On the embedded broker, fetches wait at most `fetch_max_wait_ms` (set by
   streams/app.py) instead of Faust's 1.5 s. Kafka answers a waiting fetch as
   soon as data arrives; the embedded broker (Tansu) answers it only when it
   looks again, late in the wait (measured: a message produced to an idle topic
   was read 14-628 ms later at a 1.5 s wait, 1-33 ms at 100 ms), which a quiet
   input added to an alert's or a tick's latency. A shorter wait costs a few idle
   fetch requests a second.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Iterable

from aiokafka.structs import TopicPartition
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer
from faust.types import TP
from mode.services import WaitResults

log = logging.getLogger(__name__)

ASK_TIMEOUT = 30.0  # seconds for the broker to say where a partition was committed


class ShortFetchWaitThread(AIOKafkaConsumerThread):
    """Faust's consumer thread, its aiokafka consumer given the consumer's
    `fetch_max_wait_ms` (see 3.) before it starts (its fetcher reads it then)."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        reader = super()._create_worker_consumer(transport)
        wait = self.consumer.fetch_max_wait_ms
        if wait is not None:
            reader._fetch_max_wait_ms = wait
        return reader


class WorkerConsumer(Consumer):
    fetch_max_wait_ms: int | None = None  # None: Faust's (see 3.)

    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return ShortFetchWaitThread(self, loop=self.loop, beacon=self.beacon)

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        """A jump in the delivered offsets: not known to be absent from the log (see 1.)."""

    async def mark_absent(self, tp: TP, first: int, last: int) -> None:
        """Offsets `first`..`last` of `tp` are not in the log: commits may pass over them."""
        await super()._add_gap(tp, first, last)

    async def start_offsets(self, tps: Iterable[TP]) -> dict:
        """Where each of these partitions, newly assigned, is read from: the group's
        committed offset, asked of the broker (not Faust's copy, which a rebalance
        empties and only refills once the streams resume), else the log's first
        offset (nothing committed yet: the consumer starts at the earliest). A
        partition neither can be told for is left out."""
        thread = self._thread  # the aiokafka consumer runs on a thread of its own
        reader = thread._ensure_consumer()
        out: dict = {}
        for tp in tps:
            try:
                committed = await asyncio.wait_for(
                    thread.call_thread(reader.committed, TopicPartition(tp.topic, tp.partition)), ASK_TIMEOUT)
                if committed is None:
                    committed = (await self.earliest_offsets(tp)).get(tp)
            except Exception:
                log.warning("could not ask where %s:%d was committed", tp.topic, tp.partition, exc_info=True)
                continue
            if committed is not None:
                out[tp] = committed
        return out

    async def wait_first(self, *coros: Any, timeout: Any = None) -> WaitResults:
        if len(coros) == 2 and timeout is None and self._is_delivery(coros[1]):
            deliver, suspended = coros
            if not self.suspend_flow.is_set() and not self.should_stop:
                suspended.close()  # never started: nothing to wait for
                return WaitResults([deliver], [await deliver], False)
        return await super().wait_first(*coros, timeout=timeout)

    def verify_event_path(self, now: float, tp: TP) -> None:
        """Faust's periodic check that each assigned partition is fetched and processed,
        less the tables' changelogs: outside a recovery nothing reads them (Faust keeps
        them paused) while this worker writes to them, so the check took every healthy
        worker's changelog partitions for stalled streams ("Stream has not started
        processing", an error every few seconds once the worker had run
        `stream_processing_timeout`, five minutes)."""
        if self._is_changelog_tp(tp):
            return None
        return super().verify_event_path(now, tp)

    def _is_delivery(self, coro: Any) -> bool:
        """`coro` is `self.suspend_flow.wait()`, as only `_drain_messages` passes it."""
        frame = getattr(coro, "cr_frame", None)
        return frame is not None and frame.f_locals.get("self") is self.suspend_flow


def install(app: Any) -> None:
    """Make `app` create its consumer from `WorkerConsumer` (the Kafka transport)."""
    transport = app.transport
    if issubclass(WorkerConsumer, transport.Consumer):
        transport.Consumer = WorkerConsumer
