"""Reading each partition in sequence: Faust can lose fetched messages around a
rebalance, so an agent checks offset continuity and reads a gap again (see
streams/continuity.py). Shared by every agent that keeps state."""
from __future__ import annotations

import logging

from faust.types import EventT

from streams.app import app
from streams.continuity import OffsetContinuity, Verdict
from supplymon import metrics

log = logging.getLogger(__name__)


def withhold_acks(events: list[EventT]) -> None:
    """Keep these events from being acknowledged (take_events acks a whole batch), so
    no commit passes over them: they will be read again."""
    for event in events:
        event.message.acked = True


async def in_sequence(continuity: OffsetContinuity, events: list[EventT]) -> list[EventT]:
    """The events that continue each partition's sequence; on a gap, read it again."""
    out, withheld, seeks = [], [], {}
    assigned = app.consumer.assignment()
    for event in events:
        message = event.message
        if message.tp not in assigned:  # fetched before a rebalance took the partition away
            withheld.append(event)
            continue
        verdict = continuity.check(message.tp, message.offset)
        if verdict is Verdict.PROCESS:
            out.append(event)
        else:
            # SKIP: read already; acknowledged with its first reading, once that is stored.
            withheld.append(event)
            if verdict is Verdict.SEEK:
                seeks[message.tp] = continuity.expected(message.tp)
    withhold_acks(withheld)
    for tp, expected in list(seeks.items()):
        if continuity.seeking_since(tp) == 0:
            metrics.offset_gaps.inc()
            log.warning("offsets from %d of %s:%d were not delivered (lost by the consumer in a rebalance); "
                        "reading them again", expected, tp.topic, tp.partition)
        continuity.sought(tp)
        resumed = continuity.accept_gap(tp)
        if resumed is not None:
            log.error("offsets %d..%d of %s:%d do not exist in the log; going on from %d",
                      expected, resumed - 1, tp.topic, tp.partition, resumed)
            del seeks[tp]
    if seeks:
        # seek_wait runs on the consumer's own thread and resets Faust's read offsets,
        # so the messages come again even after stale ones moved them on.
        await app.consumer.seek_wait(seeks)
    return out
