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
import ctypes
import ctypes.util
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


# glibc's malloc keeps the memory a batch frees (its temporaries: decoded events,
# rows, numpy scratch arrays, the order table's columns before they were grown) for
# reuse, in holes its heap cannot give back at the top; with a million orders held
# that stays as RSS (~+600 B per open order measured, bench/order_memory.py).
# `malloc_trim(0)` gives the free pages of every hole back to the kernel: a few
# milliseconds, done once per TRIM_EVERY events read (a worker's batches are often
# small). A no-op where the C library is not glibc.
TRIM_EVERY = 20_000
def _malloc_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


_TRIM = _malloc_trim()
_since_trim = 0


def release_free_heap(events: int) -> None:
    """After a batch of `events`: the heap's free pages given back to the kernel, at
    most once per TRIM_EVERY events."""
    global _since_trim
    _since_trim += events
    if _since_trim >= TRIM_EVERY:
        release_heap()


# Embedded chdb allocates with its own jemalloc, which keeps what an insert freed
# (the Arrow data read, the blocks sorted and compressed) for reuse: measured,
# 150 inserts of 20,000 rows left ~170 MiB more RSS than chdb's own accounting
# (MemoryTracking ~4 MiB), most of it given back by `SYSTEM JEMALLOC PURGE` (~10 ms).
# The sink purges once per STORE_RELEASE_EVERY rows stored (supplymon/store.py
# `release_memory`, agents/sink.py).
STORE_RELEASE_EVERY = 100_000


def arrow_on_the_heap() -> None:
    """pyarrow's buffers (the inserts' tables) taken from the C library's malloc
    instead of pyarrow's own mimalloc: mimalloc keeps the pages a freed table held
    (lazily given back, counted in RSS meanwhile), a third cache of free memory next
    to glibc's and chdb's; on glibc's heap they are given back by `malloc_trim` with
    the rest. Measured on a worker holding a million orders: RSS ~70 MiB lower."""
    import pyarrow

    pyarrow.set_memory_pool(pyarrow.system_memory_pool())


def release_heap() -> None:
    """The heap's free pages given back now: after a restore, which reads every state
    of the partitions taken over into the tables' stores, rebuilds the flow's from
    them and empties the stores (no batch came: the timer would not trim)."""
    global _since_trim
    if _TRIM is not None:
        _since_trim = 0
        _TRIM(0)


def release_left_over_heap() -> None:
    """What the batches since the last trim freed (fewer than TRIM_EVERY events'
    worth, e.g. the end of a backlog and the buffers that carried it) given back;
    for a timer, so that a worker gone quiet does not keep it."""
    if _since_trim:
        release_heap()
