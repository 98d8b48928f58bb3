"""The direct replay's early warnings, in this process or in a process of their own.

The early warnings take a batch's signals only once the flow has made them, and
give back nothing the flow needs: so while they evaluate batch k, the flow can
compute batch k+1 on the other core. `WarningsProcess` runs them in a child
process (started afresh: the parent has the store's threads running, which a fork
would copy in mid-work) fed through a pipe, one batch at a time in the order sent, so
the alerts are those of one process evaluating every batch in turn, as
`LocalWarnings` (same interface, in this process) gives them.

`send(signals)` hands over a batch's packed signals (supplymon/core/signals.py
`pack`); `receive()` waits for that batch's alert rows. At most one batch is out.
"""
from __future__ import annotations

import os
import subprocess
import sys
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Iterable

from supplymon.core.early_warnings import EarlyWarnings
from supplymon.publish import key_partition
from supplymon.runner import RunError
from supplymon.settings import Rules


class GroupPartitions:
    """The signals partition of a group (streams/app.py's, without the Faust app)."""

    def __init__(self, partitions: int):
        self.partitions = partitions
        self._known: dict[str, int] = {}

    def __call__(self, group: str) -> int:
        partition = self._known.get(group)
        if partition is None:  # murmur2 is pure Python: once per group
            partition = self._known[group] = key_partition(group.encode(), self.partitions)
        return partition


def fresh_warnings(rules: Rules, partitions: int, sources: Iterable[str]) -> EarlyWarnings:
    """Early warnings holding every signals partition, from nothing."""
    warnings = EarlyWarnings(rules, GroupPartitions(partitions))
    warnings.restore((), range(partitions), sources)
    return warnings


class LocalWarnings:
    """The early warnings in this process: `send` evaluates, `receive` gives the alerts."""

    def __init__(self, rules: Rules, partitions: int, sources: Iterable[str]):
        self.early_warnings = fresh_warnings(rules, partitions, sources)
        self._alerts: list[dict] | None = None

    def send(self, signals: list) -> None:
        self._alerts = self.early_warnings.process(signals).alerts

    def receive(self) -> list[dict]:
        alerts, self._alerts = self._alerts, None
        return alerts or []

    def close(self) -> None:
        pass


def _evaluate(reader: Connection, writer: Connection) -> None:
    """The child: its rules, partitions and sources first, then batches of signals in
    and each batch's alert rows (or its error) out, until None or the parent's end of
    the pipe closes."""
    from supplymon.gcpolicy import batch_pace

    try:
        warnings = fresh_warnings(*reader.recv())
        with batch_pace():
            while (signals := reader.recv()) is not None:
                writer.send(("alerts", warnings.process(signals).alerts))
    except (EOFError, KeyboardInterrupt):  # the parent is gone, or stopping
        return
    except BaseException:  # noqa: BLE001 (told to the parent, which stops the replay)
        writer.send(("error", traceback.format_exc()))


class WarningsProcess:
    """The early warnings in a child process: `python -m supplymon.warnings_process`
    with two pipes (not multiprocessing's spawn, which runs the parent's main script
    again in the child unless it has a main guard)."""

    def __init__(self, rules: Rules, partitions: int, sources: Iterable[str]):
        from_parent, to_child = os.pipe()  # (read end, write end)
        from_child, to_parent = os.pipe()
        root = str(Path(__file__).resolve().parent.parent)  # where `supplymon` is imported from
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH")))))
        self._process = subprocess.Popen(
            [sys.executable, "-m", "supplymon.warnings_process", str(from_parent), str(to_parent)],
            pass_fds=(from_parent, to_parent), env=env)
        os.close(from_parent)  # the child's ends live in the child only: its exit ends our reads
        os.close(to_parent)
        self._writer = Connection(to_child, readable=False)
        self._reader = Connection(from_child, writable=False)
        self._out = False
        try:
            self._writer.send((rules, partitions, list(sources)))
        except OSError:
            raise self._gone() from None

    def send(self, signals: list) -> None:
        if self._out:
            raise RuntimeError("a batch is out: receive() its alerts first")
        try:
            self._writer.send(signals)
        except OSError:  # (a broken pipe: the child is gone)
            raise self._gone() from None
        self._out = True

    def receive(self) -> list[dict]:
        try:
            kind, value = self._reader.recv()
        except (EOFError, OSError):
            raise self._gone() from None
        self._out = False
        if kind == "error":
            raise RunError(f"早期预警进程出错 / the early warnings' process failed:\n{value}")
        return value

    def _gone(self) -> RunError:
        try:
            code = self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        return RunError(f"早期预警进程已退出 / the early warnings' process exited "
                        f"(exit code {code}): out of memory, or killed?")

    @property
    def pid(self) -> int:
        return self._process.pid

    def alive(self) -> bool:
        return self._process.poll() is None

    def close(self) -> None:
        """Stop the child (at once if it is still evaluating a batch: its alerts are not wanted)."""
        if self.alive() and not self._out:
            try:
                self._writer.send(None)
                self._process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.alive():
            self._process.kill()
        self._process.wait()
        self._writer.close()
        self._reader.close()


if __name__ == "__main__":
    _evaluate(Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False))
    # Everything it had to say is written (a pipe holds no buffer): exit without
    # freeing the early warnings' objects one by one (millions, for a long history),
    # which the parent's close() would wait for.
    os._exit(0)
