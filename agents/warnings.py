"""The early-warning agent: supply shortages, demand surges, weak distributors.

Reads the signals the lifecycle agent sends (a record per order, keyed by its
manufacturer's and its distributor's group) and the marks that say how far each
input partition has been read. Per signals partition, stream time is the minimum
mark over every input partition; the monitors of `supplymon.core.warnings` are
advanced to it and their transitions become alerts. Per batch: apply the records,
advance what is due, store the alert rows (retried until stored), send the alerts,
then write the changed records and subject metas to the table (its changelog), and
let the batch be acknowledged.
"""
from __future__ import annotations

import logging
from typing import Any

from faust.types import EventT

from agents.lifecycle import sink
from agents.progress import mark_stored
from agents.sequence import in_sequence, store_rows
from agents.sink import Rows
from streams.app import alerts_topic, app, group_partition, settings, signals_topic, warning_state
from streams.continuity import OffsetContinuity
from supplymon import metrics
from supplymon.core.alerts import warning_alert_row
from supplymon.core.due import DueIndex
from supplymon.core.warnings import DeliveryRateMonitor, ManufacturerWatch

log = logging.getLogger(__name__)

rules = settings.rules
groups: dict[str, ManufacturerWatch | DeliveryRateMonitor] = {}
due: dict[int, DueIndex] = {}  # signals partition -> groups by the next instant they can change
marks: dict[int, dict[str, int]] = {}  # signals partition -> input "topic:partition" -> event time
continuity = OffsetContinuity()
SOURCES: set[str] = set()  # every input "topic:partition" (stream time waits for a mark from each)
_stale = True


@app.on_rebalance_complete.connect
async def _on_rebalance(sender: Any, **kwargs: Any) -> None:
    global _stale
    _stale = True


def _watermark(partition: int) -> int | None:
    """Stream time of a signals partition: the least mark, once every input partition sent one."""
    seen = marks.get(partition, {})
    return min(seen.values()) if len(seen) >= len(SOURCES) else None


def _group(group: str) -> ManufacturerWatch | DeliveryRateMonitor:
    watch = groups.get(group)
    if watch is None:
        watch = groups[group] = ManufacturerWatch(rules) if group.startswith("m:") else DeliveryRateMonitor(rules)
    return watch


def _schedule(group: str) -> None:
    due.setdefault(group_partition(group), DueIndex()).schedule(group, groups[group].next_change())


def _find_sources() -> None:
    """Every input partition, as the cluster's metadata has them."""
    SOURCES.clear()
    for topic in settings.topics.inputs:
        count = app.consumer.topic_partitions(topic) or settings.partitions
        if count != settings.partitions:
            log.error("topic %s has %d partitions but SUPPLYMON_PARTITIONS is %d: set it to match",
                      topic, count, settings.partitions)
        SOURCES.update(f"{topic}:{p}" for p in range(count))


def _rebuild() -> None:
    """The monitors of the groups this worker holds, from the table."""
    _find_sources()
    groups.clear()
    due.clear()
    assigned = {tp.partition for tp in app.consumer.assignment() if tp.topic == settings.topics.signals}
    for partition in list(marks):
        if partition not in assigned:
            del marks[partition]
    metas = []
    for key, value in warning_state.items():
        group, item = key.split("|", 1)
        if item.startswith("o:"):
            _group(group).upsert(item[2:], value)
        else:
            metas.append((group, item, value))
    for group, item, value in metas:  # after the records: a meta sets `now` and the episodes
        watch = _group(group)
        if isinstance(watch, ManufacturerWatch):
            watch.subject(*item[2:].split("|", 1)).load_meta(value)
        else:
            watch.load_meta(value)
    for group, watch in groups.items():
        if isinstance(watch, ManufacturerWatch):
            watch.touched.clear()
        _schedule(group)
    log.info("early warnings rebuilt: %d groups", len(groups))


class Batch:
    def __init__(self) -> None:
        self.rows = Rows()
        self.alerts: list[dict] = []
        self.changed: set[str] = set()  # groups with new records
        self.writes: dict[str, Any] = {}  # table key -> value (None: delete)


def _apply(batch: Batch, event: EventT) -> int:
    value, partition = event.value, event.message.partition
    if "mark" in value:
        seen = marks.setdefault(partition, {})
        if value["t"] > seen.get(value["mark"], -1 << 62):
            seen[value["mark"]] = value["t"]
    elif _group(event.key).upsert(value["oid"], value["rec"]):
        batch.writes[f"{event.key}|o:{value['oid']}"] = value["rec"]
        batch.changed.add(event.key)
    return partition


def _advance(batch: Batch, partition: int) -> None:
    watermark = _watermark(partition)
    if watermark is None:
        return
    for group in due.setdefault(partition, DueIndex()).pop_due(watermark + 1):
        watch, ident = groups[group], group.split(":", 1)[1]
        if isinstance(watch, ManufacturerWatch):
            for (product, region), transition in watch.advance(watermark):
                if transition.kind == "supply_shortage" and transition.resolved_at is None:
                    transition.details["could_cover"] = watch.coverers(
                        product, region, transition.raised_at, transition.details["distributors"])
                _alert(batch, transition, {"product_id": product, "region_code": region, "manufacturer_id": ident})
        else:
            for _, transition in watch.advance(watermark):
                _alert(batch, transition, {"distributor_id": ident})
            batch.writes[f"{group}|meta"] = watch.dump_meta()
        for order_id in watch.evict():
            batch.writes[f"{group}|o:{order_id}"] = None
        batch.changed.add(group)


def _alert(batch: Batch, transition, subject: dict) -> None:
    row = warning_alert_row(transition.kind, subject, transition.raised_at, transition.resolved_at,
                            transition.details, transition.scope)
    batch.rows.add("alerts", row)
    batch.alerts.append(row)
    if transition.resolved_at is None:
        metrics.alerts_raised.labels(row["kind"]).inc()


def _settle(batch: Batch) -> None:
    """Reschedule the groups that changed and collect their subjects' metas."""
    for group in batch.changed:
        watch = groups[group]
        if isinstance(watch, ManufacturerWatch):
            for (product, region), meta in watch.take_touched().items():
                batch.writes[f"{group}|s:{product}|{region}"] = meta
        _schedule(group)


async def process(events: list[EventT]) -> None:
    global _stale
    if _stale:
        _stale = False
        continuity.keep_only({tp for tp in app.consumer.assignment() if tp.topic == settings.topics.signals})
        _rebuild()
    events = await in_sequence(continuity, events)
    batch = Batch()
    touched = {_apply(batch, event) for event in events}
    for partition in sorted(touched):
        _advance(batch, partition)
    _settle(batch)
    times = [t for t in map(_watermark, marks) if t is not None]
    if times:
        metrics.warning_time.set(min(times) / 1000)
    metrics.warning_groups.set(len(groups))
    await store_rows(sink, batch.rows, events)
    for alert in batch.alerts:
        await alerts_topic.send(key=alert["alert_id"], value=alert)
    for key, value in batch.writes.items():
        if value is None:
            warning_state.pop(key, None)
        else:
            warning_state[key] = value
    mark_stored(event.message for event in events)


@app.agent(signals_topic)
async def early_warnings(stream):
    await sink.open()
    async for events in stream.take_events(settings.batch_size, within=settings.batch_seconds):
        await process(events)
