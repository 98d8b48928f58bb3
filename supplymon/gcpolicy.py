"""The garbage collector's pace for batch work over large in-memory state.

CPython starts a young collection every 700 container allocations and, every so
often, a pass over all older objects. A batch of 20,000 events allocates millions
of short-lived containers (decoded events, fact rows, records) next to millions of
long-lived ones (order states, early-warning records, window parts): at the
default pace the collector took ~25 % of the direct replay's CPU, almost all of it
in passes that free nothing (the state has no reference cycles). Collecting every
50,000 allocations instead keeps cyclic garbage bounded (at most a batch's worth)
and makes the collector's share negligible.
"""
from __future__ import annotations

import contextlib
import gc
from typing import Iterator

BATCH_THRESHOLDS = (50_000, 20, 10)


@contextlib.contextmanager
def batch_pace(thresholds: tuple[int, int, int] = BATCH_THRESHOLDS) -> Iterator[None]:
    """Collect at `thresholds` (gc.set_threshold's) inside the block, as before after it."""
    before = gc.get_threshold()
    gc.set_threshold(*thresholds)
    try:
        yield
    finally:
        gc.set_threshold(*before)
