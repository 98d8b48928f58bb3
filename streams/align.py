"""The input topics read in step: records that run ahead in time of a sibling
partition still behind in its log are held back for a later batch.

The four input topics are co-partitioned (an order's events share a partition
number), and a fetch returns whatever each partition had ready: while a backlog is
read (a restart, a replay through Kafka), one topic can be read hours of event time
ahead of another, and a response read before its order takes the dataflow's
per-event path (supplymon/core/columnar_flow.py; about half the events of a
backlog did, `supplymon_per_event_path_events_total`). The results do not depend
on it (the dataflow is equal for any arrival order), only the speed does.

Per partition number, the bound is the time of the last record read of each
sibling whose log holds more (its lag, from the consumer's highwater); a
partition's records later than the bound wait. As Kafka Streams'
`max.task.idle.ms`, waiting is bounded: a partition number's held records are
released once the oldest has waited `max_wait` seconds or they number more than
`max_held`; and nothing waits for a sibling within `caught_up` records of the end
of its log (live traffic, which a fetch round separates from it: nothing is held).

Held records are always a suffix of their partition's records, so acknowledging
the records processed (per partition, up to the last one) never passes over
one; a rebalance drops them (`clear`), and they are read again from the commit.
Plain code: no Kafka, no Faust (records need `partition`, `timestamp`; partitions
are hashable with a `partition` attribute).
"""
from __future__ import annotations

from typing import Any, Hashable, Iterable, Mapping


class Aligner:
    def __init__(self, max_held: int = 20_000, max_wait: float = 30.0, caught_up: int = 500) -> None:
        self.max_held = max_held
        self.max_wait = max_wait
        self.caught_up = caught_up
        self.held: dict[Hashable, list] = {}  # partition -> its records held, in offset order
        self.held_since: dict[int, float] = {}  # partition number -> when its records began to wait
        self.last_ts: dict[Hashable, int] = {}  # partition -> time of the last record read

    def __len__(self) -> int:
        return sum(map(len, self.held.values()))

    def clear(self) -> None:
        """Forget everything (a rebalance: the held records are read again from the commit)."""
        self.held.clear()
        self.held_since.clear()
        self.last_ts.clear()

    def take(self, positions: Iterable[tuple[Hashable, Any]], lag: Mapping[Hashable, int],
             now: float) -> list[tuple[Hashable, Any]]:
        """The (partition, record) pairs to process now, of those held and these new
        ones (each partition's in offset order); the rest are held. `lag`: per
        partition, the records its log holds beyond those read; `now`: seconds, any
        monotonic clock."""
        by_partition = self.held
        self.held = {}
        for tp, record in positions:
            records = by_partition.get(tp)
            if records is None:
                by_partition[tp] = [record]
            else:
                records.append(record)
        for tp, records in by_partition.items():
            ts = records[-1].timestamp
            if ts is not None and ts >= 0:
                self.last_ts[tp] = ts
        bounds = self._bounds(by_partition, lag)
        out: list[tuple[Hashable, Any]] = []
        held_count: dict[int, int] = {}
        for tp, records in by_partition.items():
            bound = bounds.get(tp.partition)
            cut = len(records) if bound is None else _first_after(records, bound)
            out.extend((tp, record) for record in records[:cut])
            if cut < len(records):
                self.held[tp] = records[cut:]
                held_count[tp.partition] = held_count.get(tp.partition, 0) + len(records) - cut
        for number in list(self.held_since):
            if number not in held_count:
                del self.held_since[number]
        for number, count in held_count.items():
            since = self.held_since.setdefault(number, now)
            if count > self.max_held or now - since >= self.max_wait:
                out.extend(self._release(number))
        return out

    def _bounds(self, by_partition: Mapping[Hashable, list], lag: Mapping[Hashable, int]) -> dict[int, int]:
        """Per partition number, the least time of the last record read of its
        partitions still behind in their logs, not caught up (none: no bound)."""
        bounds: dict[int, int] = {}
        for tp, behind in lag.items():
            ts = self.last_ts.get(tp)
            if behind > self.caught_up and ts is not None:
                number = tp.partition
                if ts < bounds.get(number, ts + 1):
                    bounds[number] = ts
        return bounds

    def _release(self, number: int) -> list[tuple[Hashable, Any]]:
        del self.held_since[number]
        released = []
        for tp in [tp for tp in self.held if tp.partition == number]:
            released.extend((tp, record) for record in self.held.pop(tp))
        return released


def _first_after(records: list, bound: int) -> int:
    """The index of the first record later than `bound` (a record without a usable
    time is never held on its own)."""
    for i, record in enumerate(records):
        ts = record.timestamp
        if ts is not None and ts > bound:
            return i
    return len(records)
