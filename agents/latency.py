"""Where a batch's wall time goes between its fetch and its acknowledgement.

An alert reaches the alerts topic only once its batch's rows are stored, so its
latency is a chain of waits: the batch waits for the agent (queued), the dataflow
runs (computed), its rows wait for an insert (gathered), the insert runs
(stored), its alerts are sent, after those of the batches before it in the same
insert (announced), then, once the batches stored before are finished, its
signals and states are delivered and its offsets acknowledged (acked).
`BatchClock` stamps each step; `observe()` puts the stages in
`supplymon_batch_latency_seconds` (bench/pipeline.py prints them for the live
run). Wall clock on purpose: it times waits, not rules.
"""
from __future__ import annotations

import time

from supplymon import metrics

STAGES = ("queued", "computed", "gathered", "stored", "announced", "acked")


class BatchClock:
    __slots__ = ("fetched", "taken", "submitted", "insert_started", "insert_ended", "alerted")

    def __init__(self, fetched: float) -> None:
        self.fetched = fetched
        self.taken = time.perf_counter()
        self.submitted = self.insert_started = self.insert_ended = self.alerted = self.taken

    def observe(self, alerts: int) -> None:
        """The batch is acknowledged now."""
        acked = time.perf_counter()
        stamps = (self.fetched, self.taken, self.submitted, self.insert_started, self.insert_ended,
                  self.alerted, acked)
        for stage, start, end in zip(STAGES, stamps, stamps[1:]):
            metrics.batch_latency.labels(stage).observe(max(0.0, end - start))
        if alerts:
            metrics.batch_latency.labels("alerted").observe(max(0.0, self.alerted - self.fetched))
