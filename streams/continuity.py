"""Offset continuity: every message of a partition is processed, in order, once.

Faust can lose messages in flight: a fetch that lands while a rebalance or a
recovery has suspended the flow is discarded, but the consumer's position has
moved past it, and the next message delivered is further on (seen here whenever
a restarted worker had a backlog). The agent checks each partition's offsets; on
a gap it seeks back to the first missing offset and skips (without acknowledging)
what arrives past it, seeking again until the missing message comes. After
`MAX_SEEKS` batches that did not bring it, the gap is *suspected* and the log
itself is asked (a reader of its own, agents/sequence.py): only offsets it shows
absent (compaction, transaction markers, retention) are passed over. Counting
batches alone is not proof: messages fetched before the seek stay queued in
Faust's stream buffer (thousands of them), and twenty batches of them once made
a worker pass over a hundred real orders in under a second.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Hashable, Iterable

MAX_SEEKS = 20


class Verdict(Enum):
    PROCESS = "process"
    SKIP = "skip"  # already processed: acknowledge and drop
    SEEK = "seek"  # past a gap: do not acknowledge; seek back to `expected(tp)`


@dataclass
class BatchPlan:
    """What to do with one batch: which messages (by index) to process, which to
    leave unacknowledged, where to seek back, and what to report."""
    process: list[int] = field(default_factory=list)
    withheld: list[int] = field(default_factory=list)
    seek_to: dict[Hashable, int] = field(default_factory=dict)
    new_gaps: dict[Hashable, int] = field(default_factory=dict)  # tp -> first missing offset, gap first seen now
    suspected_gaps: dict[Hashable, int] = field(default_factory=dict)  # tp -> first missing offset: ask the log


class OffsetContinuity:
    def __init__(self) -> None:
        self.next_offset: dict[Hashable, int] = {}
        self._seeks: dict[Hashable, tuple[int, int, int]] = {}  # tp -> (expected, first offset seen, attempts)

    def expected(self, tp: Hashable) -> int | None:
        return self.next_offset.get(tp)

    def check(self, tp: Hashable, offset: int) -> Verdict:
        expected = self.next_offset.get(tp)
        if expected is None or offset == expected:
            return self._take(tp, offset)
        if offset < expected:
            return Verdict.SKIP
        seen = self._seeks.get(tp)
        if seen is None or seen[0] != expected:
            self._seeks[tp] = (expected, offset, 0)
        return Verdict.SEEK

    def seeking_since(self, tp: Hashable) -> int:
        """How many seeks this gap has had already (0: a new gap)."""
        return self._seeks[tp][2]

    def sought(self, tp: Hashable) -> None:
        """A seek back was issued for `tp` (call once per batch that needed one)."""
        expected, first, attempts = self._seeks[tp]
        self._seeks[tp] = (expected, first, attempts + 1)

    def accept_gap(self, tp: Hashable, resumed: int) -> None:
        """The log has no offsets from `expected(tp)` to `resumed` - 1: continue from `resumed`."""
        self._seeks.pop(tp, None)
        self.next_offset[tp] = resumed

    def keep_seeking(self, tp: Hashable) -> None:
        """The log has the missing offset after all: count the seeks afresh."""
        expected, first, _ = self._seeks[tp]
        self._seeks[tp] = (expected, first, 0)

    def plan(self, messages: Iterable[tuple[Hashable, int]], assigned: Iterable[Hashable]) -> BatchPlan:
        """Sort a batch of (partition, offset) in delivery order. A gap seen early in
        a batch can be filled later in the same batch (a rebalance delivers stale
        prefetched messages, then the partition again from its commit): only what
        is still missing at the end of the batch is sought again."""
        assigned = set(assigned)
        plan = BatchPlan()
        withheld_past_gap: dict[Hashable, int] = {}  # tp -> highest offset withheld past a gap
        for index, (tp, offset) in enumerate(messages):
            if tp not in assigned:  # fetched before a rebalance took the partition away
                plan.withheld.append(index)
                continue
            verdict = self.check(tp, offset)
            if verdict is Verdict.PROCESS:
                plan.process.append(index)
                continue
            plan.withheld.append(index)  # SKIP: acknowledged with its first reading
            if verdict is Verdict.SEEK:
                withheld_past_gap[tp] = max(offset, withheld_past_gap.get(tp, offset))
        for tp, highest in withheld_past_gap.items():
            expected = self.next_offset[tp]
            if expected > highest:
                continue  # the gap and all withheld past it were processed later in the batch
            if tp in self._seeks:  # the gap is still open (not filled and left again)
                if self.seeking_since(tp) == 0:
                    plan.new_gaps[tp] = expected
                self.sought(tp)
                if self.seeking_since(tp) >= MAX_SEEKS:
                    plan.suspected_gaps[tp] = expected
            plan.seek_to[tp] = expected
        return plan

    def _take(self, tp: Hashable, offset: int) -> Verdict:
        self.next_offset[tp] = offset + 1
        self._seeks.pop(tp, None)
        return Verdict.PROCESS

    def start(self, tp: Hashable, offset: int) -> None:
        """A partition newly assigned is read from `offset` (the group's commit): a
        first message further on is a gap, not where its sequence begins."""
        self.next_offset[tp] = offset
        self._seeks.pop(tp, None)

    def forget(self) -> None:
        """After a rebalance, for a consumer that `start`s each partition at the
        group's commit: a partition kept may have been another worker's in between."""
        self.next_offset.clear()
        self._seeks.clear()

    def keep_only(self, assigned: Iterable[Hashable]) -> None:
        """After a rebalance: forget partitions no longer ours (one assigned anew
        starts where the group's commit says). Partitions we keep go on being
        checked: Faust resumes them from the commit (redeliveries are skipped), and
        a message prefetched before the rebalance that jumps ahead is a gap."""
        assigned = set(assigned)
        for tp in list(self.next_offset):
            if tp not in assigned:
                del self.next_offset[tp]
                self._seeks.pop(tp, None)
