"""The early-warning agent: supply shortages, demand surges, weak distributors.

Thin shell around `supplymon.core.early_warnings`: reads the signals the lifecycle
agent sends (a message or so per batch: the changed records of orders by group;
marks that say how far each input partition has been read), lets the core apply
them and advance the monitors to stream time, stores the alert rows (retried
until stored), sends the alerts, then writes the changed records and metas to the
table (its changelog, retried until delivered), and lets the batch be
acknowledged. A failure on the way withholds the batch's acknowledgement.

The changes are delivered to the changelog but not held in the table's store
(the monitors hold that state, compactly: see core/early_warnings.py); after a
rebalance the core rebuilds the groups of newly held partitions from what
recovery read back into the store, keeps those it held throughout, and the store
is emptied again.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from faust.types import EventT
from mode import CrashingSupervisor

from agents.lifecycle import send_refused, sink
from agents.progress import mark_stored
from agents.sequence import in_sequence, withhold_acks
from agents.sink import Rows
from streams.app import (app, batch_producer, group_partition, send_alerts, settings, signals_topic,
                         warning_changelog)
from streams.continuity import OffsetContinuity
from supplymon import metrics
from supplymon.core.early_warnings import CONDUCT_CLOCK, EarlyWarnings
from supplymon.gcpolicy import release_heap
from supplymon.refusals import refused_alerts

log = logging.getLogger(__name__)

warnings = EarlyWarnings(settings.rules, group_partition)
continuity = OffsetContinuity()
_stale = True


@app.on_rebalance_complete.connect
async def _on_rebalance(sender: Any, **kwargs: Any) -> None:
    global _stale
    _stale = True


def _sources() -> set[str]:
    """Every input partition, as the cluster's metadata has them."""
    sources = set()
    for topic in settings.topics.inputs:
        count = app.consumer.topic_partitions(topic) or settings.partitions
        if count != settings.partitions:
            log.error("topic %s has %d partitions but SUPPLYMON_PARTITIONS is %d: set it to match",
                      topic, count, settings.partitions)
        sources.update(f"{topic}:{p}" for p in range(count))
    return sources


def _held() -> set:
    return {tp for tp in app.consumer.assignment() if tp.topic == settings.topics.signals}


async def process(events: list[EventT]) -> None:
    global _stale
    if _stale:
        _stale = False
        held = _held()
        partitions = {tp.partition for tp in held}
        continuity.keep_only(held)
        warning_changelog.keep_only(partitions)
        clocks = list(warning_changelog.items_ending_with(CONDUCT_CLOCK))
        entries = ((key, value) for key, value, _ in warning_changelog.items(consume=True))
        warnings.restore(entries, partitions, _sources(), keep_held=True, clocks=clocks)
        warning_changelog.clear()  # now in the monitors
        release_heap()  # the rebuild's temporaries, given back
        log.info("early warnings rebuilt: %d groups", len(warnings.groups))
    events = await in_sequence(continuity, events)
    try:
        await _evaluate(events)
    except BaseException:
        # Stopped or failed before the changes were in the changelog: take_events would
        # acknowledge the batch on the way out, and its records would be lost.
        withhold_acks(events)
        raise


async def _evaluate(events: list[EventT]) -> None:
    started = time.thread_time()  # CPU time, as the lifecycle's stages
    outcome = warnings.process((event.message.partition, event.value) for event in events)
    metrics.stage_seconds.labels("early_warnings").inc(time.thread_time() - started)
    now = warnings.stream_time()
    if now is not None:
        metrics.warning_time.set(now / 1000)
    metrics.warning_groups.set(len(warnings.groups))
    rows = Rows()
    for alert in outcome.alerts:
        rows.add("alerts", alert)
    # retried until stored; a row the store refuses goes to the dead letters
    refused = await sink.write(rows)
    await send_refused(refused)
    not_stored = refused_alerts(refused)  # not announced: the table does not hold them
    stored = [alert for alert in outcome.alerts if (alert["alert_id"], alert["version"]) not in not_stored]
    deliveries = await send_alerts(stored)
    for alert in stored:
        if alert["resolved_at"] is None:
            metrics.alerts_raised.labels(alert["kind"]).inc()
    # the alerts delivered, and the changes in the changelog, before the batch is marked stored
    await asyncio.gather(warning_changelog.write(outcome.writes, hold=False), *deliveries)
    mark_stored(event.message for event in events)


@app.agent(signals_topic, supervisor_strategy=CrashingSupervisor)  # see agents/lifecycle.py
async def early_warnings(stream):
    await sink.open()
    batch_producer.acquire()
    try:
        async for events in stream.take_events(settings.batch_size, within=settings.signals_batch_seconds):
            await process(events)
    finally:
        await batch_producer.release()
