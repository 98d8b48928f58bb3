"""The heap's free pages given back when the batches stop (supplymon/gcpolicy.py),
and those embedded chdb's allocator keeps from the last inserts.

The lifecycle agent trims the heap once per TRIM_EVERY events read; what the last
batches of a burst free (their temporaries, the fetch and insert buffers of a
backlog) would otherwise stay in the worker's RSS until the next burst. Every
QUIET_SECONDS, what was freed since the last trim is given back (nothing is done
when no batch came since).
"""
from __future__ import annotations

from agents.lifecycle import sink
from streams.app import app
from supplymon.gcpolicy import release_left_over_heap

QUIET_SECONDS = 10.0


@app.timer(QUIET_SECONDS)
async def release_heap_left_over() -> None:
    await sink.release_left_over_memory()  # the store's inserts (embedded chdb's own allocator)
    release_left_over_heap()
