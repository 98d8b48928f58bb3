"""The early-warning evaluation of one worker (pure: no Faust, no I/O).

Input, per signals partition and in its order: messages of records of orders by
group ("m:<manufacturer>" or "d:<distributor>") and marks "input partition p has
been read up to t" (see core/signals.py). Stream time of a signals partition is
the least mark over every input partition (none until each has sent one); the
groups of that partition are advanced to it and their transitions become alert
rows. Everything the evaluation keeps is written out as table entries
("<group>|o:<order>" records, "<group>|s:<product>|<region>" and "<group>|meta"
metas, "<group>|c:..." the manufacturer's conduct state) from which `restore()`
rebuilds it.

The entries are for the changelog: the worker's table store does not hold them
(two records per order kept, a price point per product, region and day, a meta
per subject: held once, in the monitors). A rebalance rebuilds the groups of
newly held partitions from what Faust's recovery read back into the store, and
keeps the groups of the partitions held throughout as they are (`keep_held`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from supplymon.core.alerts import warning_alert_row
from supplymon.core.due import DueIndex
from supplymon.core.ids import share
from supplymon.core.signals import ORDERED_AT
from supplymon.core.warnings import DeliveryRateMonitor, ManufacturerWatch
from supplymon.settings import Rules

Group = ManufacturerWatch | DeliveryRateMonitor
CONDUCT_CLOCK = "|c:now"  # the end of a manufacturer's conduct "now" entry


def _placed(item: tuple[str, list]) -> tuple[int, str]:
    """A supply record's place in its subject's rows: (ordered at, order id)."""
    return item[1][ORDERED_AT], item[0]


@dataclass
class Outcome:
    """What a batch of signals did."""

    alerts: list[dict] = field(default_factory=list)  # rows of the alerts table
    writes: dict[str, Any] = field(default_factory=dict)  # table key -> value (None: delete)
    changed: set[str] = field(default_factory=set)  # groups with new records or transitions


class EarlyWarnings:
    def __init__(self, rules: Rules, partition_of: Callable[[str], int]):
        self.rules = rules
        self.partition_of = partition_of  # a group's signals partition
        self.groups: dict[str, Group] = {}
        self.due: dict[int, DueIndex] = {}  # signals partition -> groups by their next change
        self.marks: dict[int, dict[str, int]] = {}  # signals partition -> input partition -> event time
        self.sources: set[str] = set()  # every input "topic:partition"
        self.held: set[int] = set()  # the signals partitions of the last restore

    # -- state -------------------------------------------------------------------
    def restore(self, entries: Iterable[tuple[str, Any]], partitions: Iterable[int], sources: Iterable[str],
                keep_held: bool = False, clocks: Iterable[tuple[str, Any]] = ()) -> None:
        """Rebuild from the table's entries, for the signals `partitions` held now;
        `keep_held`: the groups of partitions held before and now are kept as they
        are (their entries are skipped), the others rebuilt. `clocks`: the
        manufacturers' conduct "now" entries (`CONDUCT_CLOCK`) among them, read first:
        the records then queue for the conduct checks only what is ahead of it."""
        self.sources = set(sources)
        held = set(partitions)
        kept = held & self.held if keep_held else set()
        self.held = held
        partition_of = self.partition_of
        for group in [g for g in self.groups if partition_of(g) not in kept]:
            del self.groups[group]
        for partition in [p for p in self.due if p not in kept]:
            del self.due[partition]
        for partition in list(self.marks):
            if partition not in held:
                del self.marks[partition]
        for key, value in clocks:
            group = key[:-len(CONDUCT_CLOCK)]
            if group.startswith("m:") and "|" not in group and not (kept and partition_of(group) in kept):
                self._group(group).conduct.applied_until = value
        metas, rebuilt = [], set()
        for key, value in entries:
            group, item = key.split("|", 1)
            if kept and partition_of(group) in kept:
                continue
            rebuilt.add(group)
            if item.startswith("o:"):  # an order's id shared by its two records, as `_apply` shares it
                self._group(group).upsert(share(item[2:]), value)
            else:
                metas.append((group, item, value))
        for group, item, value in metas:  # after the records: a meta sets `now` and the episodes
            watch = self._group(group)
            if isinstance(watch, ManufacturerWatch) and item.startswith("c:"):
                watch.conduct.load(item[2:], value)
            elif isinstance(watch, ManufacturerWatch):
                watch.load_meta(*item[2:].split("|", 1), value)
            else:
                watch.load_meta(value)
        for group in rebuilt:
            watch = self.groups[group]
            if isinstance(watch, ManufacturerWatch):
                watch.touched.clear()
            self._schedule(group)

    def _group(self, group: str) -> Group:
        watch = self.groups.get(group)
        if watch is None:
            watch = self.groups[group] = (ManufacturerWatch(self.rules, group[2:]) if group.startswith("m:")
                                          else DeliveryRateMonitor(self.rules))
        return watch

    def _schedule(self, group: str) -> None:
        self.due.setdefault(self.partition_of(group), DueIndex()).schedule(group, self.groups[group].next_change())

    def watermark(self, partition: int) -> int | None:
        """Stream time of a signals partition: the least mark, once every input partition sent one."""
        seen = self.marks.get(partition, {})
        if not self.sources or any(source not in seen for source in self.sources):
            return None
        return min(seen[source] for source in self.sources)  # marks of other topics do not count

    def records(self) -> int:
        """Order records held, over every group (one table entry each)."""
        return sum(map(len, self.groups.values()))

    def stream_time(self) -> int | None:
        times = [t for t in map(self.watermark, self.marks) if t is not None]
        return min(times) if times else None

    # -- a batch -----------------------------------------------------------------
    def process(self, signals: Iterable[tuple[int, dict]]) -> Outcome:
        """Apply a batch of (signals partition, message), then advance every partition
        it touched to its stream time."""
        out = Outcome()
        touched = set()
        for partition, message in signals:
            touched.add(partition)
            self._apply(out, partition, message)
        for group in out.changed:  # new records can bring a group's next change forward
            self._schedule(group)
        for partition in sorted(touched):
            self._advance(out, partition)
        for group in out.changed:
            watch = self.groups[group]
            if isinstance(watch, ManufacturerWatch):
                for (product, region), meta in watch.take_touched().items():
                    out.writes[f"{group}|s:{product}|{region}"] = meta
                for item, value in watch.conduct.take_writes().items():
                    out.writes[f"{group}|c:{item}"] = value
            self._schedule(group)
        return out

    def _apply(self, out: Outcome, partition: int, message: dict) -> None:
        writes = out.writes
        for group, records in message.get("recs", {}).items():  # the records, then the marks
            watch = self._group(group)
            upsert, changed, items = watch.upsert, False, records.items()
            if isinstance(watch, ManufacturerWatch):  # in time order: a subject's rows are appended
                items = sorted(items, key=_placed)
            for order_id, record in items:
                order_id = share(order_id)  # shared by the order's two records (their texts are codes)
                if upsert(order_id, record):
                    writes[f"{group}|o:{order_id}"] = record
                    changed = True
            if changed:
                out.changed.add(group)
        seen = self.marks.setdefault(partition, {})
        for source, t in message.get("marks", {}).items():
            if t > seen.get(source, -1 << 62):
                seen[source] = t

    def _advance(self, out: Outcome, partition: int) -> None:
        watermark = self.watermark(partition)
        if watermark is None:
            return
        for group in self.due.setdefault(partition, DueIndex()).pop_due(watermark + 1):
            watch, ident = self.groups[group], group.split(":", 1)[1]
            if isinstance(watch, ManufacturerWatch):
                for (product, region), transition in watch.advance(watermark):
                    if transition.kind == "supply_shortage" and transition.resolved_at is None:
                        transition.details["could_cover"] = watch.coverers(
                            product, region, transition.raised_at, transition.details["distributors"])
                    out.alerts.append(_row(transition, {"product_id": product, "region_code": region,
                                                        "manufacturer_id": ident}))
                out.alerts += [_row(transition, subject) for subject, transition in watch.conduct.advance(watermark)]
            else:
                for _, transition in watch.advance(watermark):
                    out.alerts.append(_row(transition, {"distributor_id": ident}))
                out.writes[f"{group}|meta"] = watch.dump_meta()
            for order_id in watch.evict():
                out.writes[f"{group}|o:{order_id}"] = None
            out.changed.add(group)


def _row(transition, subject: dict) -> dict:
    return warning_alert_row(transition.kind, subject, transition.raised_at, transition.resolved_at,
                             transition.details, transition.scope)
