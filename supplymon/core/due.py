"""An index of keys by the next instant they are due (deadlines in event time)."""
from __future__ import annotations

import heapq
from typing import Hashable


class DueIndex:
    """Each key has at most one due time; `pop_due(t)` returns keys due strictly before t.

    Rescheduling pushes a new heap entry and leaves the old one to be skipped when
    popped (its time no longer matches), so every operation is O(log n).
    """

    def __init__(self) -> None:
        self._heap: list[tuple[int, Hashable]] = []
        self._due: dict[Hashable, int] = {}

    def __len__(self) -> int:
        return len(self._due)

    def schedule(self, key: Hashable, due: int | None) -> None:
        if due is None:
            self._due.pop(key, None)
            # Entries left behind are skipped when popped, but only once their time comes:
            # keys unscheduled in bulk (orders waiting for their order event, placed at
            # last) would keep them for days of event time.
            if len(self._heap) > 4 * len(self._due) + 1024:
                self._compact()
            return
        if self._due.get(key) == due:
            return
        self._due[key] = due
        heapq.heappush(self._heap, (due, key))
        if len(self._heap) > 4 * len(self._due) + 1024:
            self._compact()

    def next_due(self) -> int | None:
        """The earliest due time, or None."""
        heap, due = self._heap, self._due
        while heap and due.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, before: int) -> list[Hashable]:
        out = []
        heap = self._heap
        while heap and heap[0][0] < before:
            due, key = heapq.heappop(heap)
            if self._due.get(key) == due:
                del self._due[key]
                out.append(key)
        return out

    def clear(self) -> None:
        self._heap.clear()
        self._due.clear()

    def _compact(self) -> None:
        self._heap = [(due, key) for key, due in self._due.items()]
        heapq.heapify(self._heap)
