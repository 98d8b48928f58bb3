"""The state dump of a worker under test (streams/diagnostics.py): asked for with
SIGUSR1 and read from the worker's log."""
from __future__ import annotations

import time
from typing import Iterable

from streams.diagnostics import BEGIN_MARK, DUMP_SIGNAL, END_MARK


def dump(worker, timeout: float = 20.0) -> str:
    """Send the dump signal to `worker` (tests/test_end_to_end.py `Worker`) and return
    the dump it writes to its log ('' if it wrote none within `timeout`, e.g. its loop
    is blocked: then only faulthandler's thread stacks are there, returned as they are)."""
    if worker.process.poll() is not None:
        return ""
    start = worker.log.stat().st_size if worker.log.exists() else 0
    worker.process.send_signal(DUMP_SIGNAL)
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        with open(worker.log, "rb") as log:
            log.seek(start)
            text = log.read().decode(errors="replace")
        begin = text.find(BEGIN_MARK)
        end = text.find(END_MARK, begin if begin >= 0 else 0)
        if begin >= 0 and end >= 0:
            # faulthandler's stacks (written from the signal itself) come just before
            return text[:end + len(END_MARK)]
        time.sleep(0.2)
    return text


def print_dumps(workers: Iterable) -> None:
    """Print the state dump of each live worker (None: skipped): a test that fails
    calls this before stopping them, so a hang (a wait timed out, pytest-timeout's
    alarm) leaves their tasks and batch intake in the failure's captured output."""
    for worker in workers:
        if worker is None:
            continue
        text = dump(worker)
        print(f"\n##### state dump of the worker logging to {worker.log} #####\n"
              f"{text or '(no dump: the worker had exited)'}", flush=True)
