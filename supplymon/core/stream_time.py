"""Stream time: the watermark over every input topic-partition a worker reads.

Each topic-partition's time is the latest event time read from it (business events
and ticks). The watermark is the minimum over the partitions assigned to this
worker, so one fast partition cannot fire deadlines for another; a partition not
read from yet holds time back (the platform's ticks reach every partition, and
after a rebalance the lifecycle agent reads each partition's last processed
message again).
"""
from __future__ import annotations

from typing import Hashable, Iterable


class StreamTime:
    def __init__(self) -> None:
        self.latest: dict[Hashable, int] = {}

    def observe(self, partition: Hashable, ts_ms: int) -> None:
        if ts_ms > self.latest.get(partition, -1 << 62):
            self.latest[partition] = ts_ms

    def watermark(self, partitions: Iterable[Hashable]) -> int | None:
        """Minimum latest time over `partitions`; None until each has been read."""
        result = None
        for partition in partitions:
            ts = self.latest.get(partition)
            if ts is None:
                return None
            if result is None or ts < result:
                result = ts
        return result

    def forget(self, keep: Iterable[Hashable]) -> None:
        """Drop partitions no longer assigned (after a rebalance)."""
        keep = set(keep)
        for partition in list(self.latest):
            if partition not in keep:
                del self.latest[partition]
