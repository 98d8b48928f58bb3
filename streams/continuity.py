"""Offset continuity: every message of a partition is processed, in order, once.

Faust can lose messages in flight: when a rebalance suspends the flow while
fetched messages wait for a full stream buffer, they are abandoned but their
offsets count as read, and the next one delivered is further on (seen here with a
worker restarted while its group still held the dead member). The agent checks
each partition's offsets and treats a gap as fatal for the process: the lost
messages were never acknowledged, so a restart reads them again.
"""
from __future__ import annotations

from enum import Enum
from typing import Hashable, Iterable


class Verdict(Enum):
    PROCESS = "process"
    SKIP = "skip"  # delivered again after a seek: already processed
    GAP = "gap"  # messages before this one never arrived


class OffsetContinuity:
    def __init__(self) -> None:
        self.next_offset: dict[Hashable, int] = {}

    def expected(self, tp: Hashable) -> int | None:
        return self.next_offset.get(tp)

    def check(self, tp: Hashable, offset: int) -> Verdict:
        expected = self.next_offset.get(tp)
        if expected is not None and offset < expected:
            return Verdict.SKIP
        if expected is not None and offset > expected:
            return Verdict.GAP
        self.next_offset[tp] = offset + 1
        return Verdict.PROCESS

    def keep_only(self, assigned: Iterable[Hashable]) -> None:
        """After a rebalance: forget partitions no longer ours (one assigned anew
        starts where the group's commit says). Partitions we keep go on being
        checked: Faust resumes them from the commit (redeliveries are skipped), and
        a message prefetched before the rebalance that jumps ahead is a gap."""
        assigned = set(assigned)
        for tp in list(self.next_offset):
            if tp not in assigned:
                del self.next_offset[tp]
