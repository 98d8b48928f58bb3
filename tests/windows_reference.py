"""The windowed tables computed one order at a time: supplymon.core.windows as it was
before it took whole batches (its `Windows.update` per changed order, its `Part`
and `Change`). The batch code (`Windows.update_batch`) is tested against this on
random histories (tests/test_windows_batch.py) and measured against it
(bench/windows.py). Kept as written then; only the names differ, and it takes the
rule horizons and its parts' rows are `part_row`'s of supplymon.core.windows.
"""
from __future__ import annotations

import bisect
import heapq
from dataclasses import dataclass, field
from typing import Iterable

from supplymon.core.windows import COUNTS, DAY_MS, FAMILIES, Family, horizons
from supplymon.settings import Rules


def contribution(fact: dict) -> list:
    """What one order adds to its windows: COUNTS in order, then its response hours (or None)."""
    on_time = fact["on_time"]
    responded = fact["responded_at"] is not None
    arrived = fact["arrivals"] > 0
    return [
        1,
        int(responded),
        int(responded and fact["responded_at"] - fact["ordered_at"] <= DAY_MS),
        int(fact["decision"] == "rejected"),
        int(on_time == 1),
        int(on_time == 0 and arrived),
        int(on_time == 0 and not arrived),
        fact["quantity"],
        fact["delivered_quantity"],
        fact["response_hours"],
    ]


@dataclass
class Part:
    counts: list[int] = field(default_factory=lambda: [0] * len(COUNTS))
    response_hours: list[float] = field(default_factory=list)  # kept sorted
    version: int = 0  # sum of the contributing orders' versions: grows, and ends the same on any path
    closed: bool = False

    def apply(self, change: "Change") -> None:
        """An order's contribution changes (see Change)."""
        counts = self.counts
        for i, d in change.deltas:
            counts[i] += d
        self.version += change.version_delta
        if change.hours_changed:
            hours = self.response_hours
            if change.old_hours is not None:
                del hours[bisect.bisect_left(hours, change.old_hours)]
            if change.new_hours is not None:
                bisect.insort(hours, change.new_hours)


class Change:
    """What differs between an order's old contribution and its new one, computed
    once and applied to each of its windows: only what differs is applied (an
    arrival changes two counts, not the response hours)."""

    __slots__ = ("deltas", "version_delta", "old_hours", "new_hours", "hours_changed")

    def __init__(self, old: list | None, old_version: int, new: list, version: int):
        n = len(COUNTS)
        if old is None:
            self.deltas = [(i, new[i]) for i in range(n) if new[i]]
            self.old_hours = None
        else:
            self.deltas = [(i, new[i] - old[i]) for i in range(n) if new[i] != old[i]]
            self.old_hours = old[n]
            version -= old_version
        self.version_delta = version
        self.new_hours = new[n]
        self.hours_changed = self.new_hours != self.old_hours


PartKey = tuple[str, tuple[str, ...], int, int]  # family, subject, window start, partition


class ReferenceWindows:
    """The window parts of the partitions one worker owns, one order at a time."""

    def __init__(self, rules: Rules, families: Iterable[Family] = FAMILIES):
        self.families = tuple(families)
        self.settle_ms, self.expire_ms = horizons(rules)
        self.parts: dict[PartKey, Part] = {}
        self.dirty: set[PartKey] = set()
        self._leaving: dict[PartKey, Part] = {}  # expired with changes not written yet
        self._advanced_to: int | None = None
        self._sizes = {f.name: f.size_ms for f in self.families}
        # When each part closes and expires (pushed once, when the part is made), so
        # that advancing the watermark looks only at the parts it closes or expires.
        self._closing: list[tuple[int, PartKey]] = []
        self._expiring: list[tuple[int, PartKey]] = []

    def _part(self, key: PartKey) -> Part:
        part = self.parts.get(key)
        if part is None:
            part = self.parts[key] = Part()
            heapq.heappush(self._closing, (key[2] + self._sizes[key[0]] + self.settle_ms, key))
            heapq.heappush(self._expiring, (key[2] + self.expire_ms, key))
        return part

    def _keys(self, fact: dict, partition: int) -> list[PartKey]:
        ordered_at = fact["ordered_at"]
        return [(f.name, f.subject(fact), f.start(ordered_at), partition) for f in self.families]

    def update(self, fact: dict, partition: int, old: list | None, old_version: int) -> list:
        """Replace an order's old contribution by its current one; returns the new one."""
        new = contribution(fact)
        if new == old and fact["version"] == old_version:
            return new
        change = Change(old, old_version, new, fact["version"])
        # Expired as far as the windows were advanced, not to the batch's watermark:
        # that may have jumped past the window in the very batch that placed the order,
        # whose part must still be made and written (closed, then dropped, by advance).
        # The same parts whatever the batch boundaries.
        known = self._advanced_to
        for key in self._keys(fact, partition):
            if known is not None and self._expired(key, known):
                continue  # a correction after the window left memory: facts have it, tables not
            self._part(key).apply(change)
            self.dirty.add(key)
        return new

    def restore(self, fact: dict, partition: int, contrib: list, version: int) -> None:
        """Count an order already counted before a restart (no change, nothing to write)."""
        change = Change(None, 0, contrib, version)
        for key in self._keys(fact, partition):
            self._part(key).apply(change)

    def _expired(self, key: PartKey, watermark: int) -> bool:
        return watermark > key[2] + self.expire_ms

    def advance(self, watermark: int) -> None:
        """As Windows.advance, from heaps of the parts' closing and expiry times."""
        if watermark == self._advanced_to:
            return
        self._advanced_to = watermark
        expiring, closing = self._expiring, self._closing
        while closing and watermark > closing[0][0]:
            _, key = heapq.heappop(closing)
            part = self.parts.get(key)
            if part is not None and not part.closed:
                part.closed = True
                self.dirty.add(key)
        while expiring and watermark > expiring[0][0]:
            _, key = heapq.heappop(expiring)
            part = self.parts.pop(key, None)
            if part is not None and key in self.dirty:
                self._leaving[key] = part

    def take_dirty(self) -> list[tuple[PartKey, Part]]:
        out = [(key, self.parts.get(key) or self._leaving[key]) for key in self.dirty
               if key in self.parts or key in self._leaving]
        self.dirty.clear()
        self._leaving.clear()
        return out

    def clear(self) -> None:
        self.parts.clear()
        self.dirty.clear()
        self._leaving.clear()
        self._advanced_to = None
        self._closing.clear()
        self._expiring.clear()
