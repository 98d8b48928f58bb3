"""Reading each partition in sequence: Faust can lose fetched messages around a
rebalance, so an agent checks offset continuity and reads a gap again (see
streams/continuity.py). Shared by every agent that keeps state: `follow` for the
batch intake (the lifecycle agent), `in_sequence` for Faust's per-message streams
(the signals, the notifier)."""
from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, Iterable, Mapping

from faust.types import EventT

from streams.app import app, settings
from streams.continuity import BatchPlan, OffsetContinuity
from streams.log_probe import first_offset_from
from supplymon import metrics

log = logging.getLogger(__name__)


def withhold_acks(events: list[EventT]) -> None:
    """Keep these events from being acknowledged (take_events acks a whole batch), so
    no commit passes over them: they will be read again."""
    for event in events:
        event.message.acked = True


async def follow(continuity: OffsetContinuity, positions: Iterable[tuple[Any, int]], assigned: Iterable[Any],
                 seek: Callable[[Mapping[Any, int]], Awaitable[None]]) -> BatchPlan:
    """The continuity plan of a batch's (partition, offset) pairs. A partition seen
    for the first time since its assignment starts at the group's commit (asked of
    the consumer; one it cannot tell yet is read again and asked again). A new gap
    is reported and read again (`seek(offsets)`); a gap suspected after many seeks
    is passed over only if the log itself shows the offsets absent (then the
    consumer is told, `mark_absent`, so its commits may pass over them)."""
    positions, assigned = list(positions), set(assigned)
    unknown = {tp for tp, _ in positions if tp in assigned and continuity.expected(tp) is None}
    again: dict = {}
    if unknown:
        for tp, offset in (await app.consumer.start_offsets(unknown)).items():
            continuity.start(tp, offset)
        for tp, offset in positions:
            if tp in unknown and continuity.expected(tp) is None:
                again[tp] = min(offset, again.get(tp, offset))
        assigned -= set(again)
    plan = continuity.plan(positions, assigned)
    plan.seek_to.update(again)
    for tp, expected in plan.new_gaps.items():
        metrics.offset_gaps.inc()
        log.warning("offsets from %d of %s:%d were not delivered (lost by the consumer in a rebalance); "
                    "reading them again", expected, tp.topic, tp.partition)
    for tp, expected in plan.suspected_gaps.items():
        resumed = await first_offset_from(settings, tp, expected)
        if resumed is None or resumed <= expected:  # it is there (or the log cannot say): read it again
            continuity.keep_seeking(tp)
            continue
        log.error("offsets %d..%d of %s:%d do not exist in the log; going on from %d",
                  expected, resumed - 1, tp.topic, tp.partition, resumed)
        continuity.accept_gap(tp, resumed)
        await app.consumer.mark_absent(tp, expected, resumed - 1)  # commits may pass over them
        plan.seek_to[tp] = resumed  # what was withheld past the gap comes again
    if plan.seek_to:
        await seek(plan.seek_to)
    return plan


async def in_sequence(continuity: OffsetContinuity, events: list[EventT]) -> list[EventT]:
    """The events that continue each partition's sequence; on a gap, read it again.
    seek_wait runs on the consumer's own thread and resets Faust's read offsets, so
    the messages come again even after stale ones moved them on."""
    plan = await follow(continuity, ((e.message.tp, e.message.offset) for e in events),
                        app.consumer.assignment(), app.consumer.seek_wait)
    withhold_acks([events[i] for i in plan.withheld])
    return [events[i] for i in plan.process]
