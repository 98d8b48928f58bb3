"""The direct replay's early warnings, in this process or in a process of their own.

The early warnings take a batch's signals only once the flow has made them, and
give back nothing the flow needs: so while they evaluate batch k, the flow can
compute batch k+1 on the other core. `WarningsProcess` runs them in a child
process (spawned: the parent has the store's threads running, which a fork would
copy in mid-work) fed through a pipe, one batch at a time in the order sent, so
the alerts are those of one process evaluating every batch in turn, as
`LocalWarnings` (same interface, in this process) gives them.

`send(signals)` hands over a batch's packed signals (supplymon/core/signals.py
`pack`); `receive()` waits for that batch's alert rows. At most one batch is out.
"""
from __future__ import annotations

import multiprocessing
import traceback
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


def _evaluate(connection, rules: Rules, partitions: int, sources: list[str]) -> None:
    """The child: batches of signals in, each batch's alert rows (or its error) out,
    until None or the parent's end of the pipe closes."""
    from supplymon.gcpolicy import batch_pace

    try:
        warnings = fresh_warnings(rules, partitions, sources)
        with batch_pace():
            while (signals := connection.recv()) is not None:
                connection.send(("alerts", warnings.process(signals).alerts))
    except (EOFError, KeyboardInterrupt):  # the parent is gone, or stopping
        return
    except BaseException:  # noqa: BLE001 (told to the parent, which stops the replay)
        connection.send(("error", traceback.format_exc()))


class WarningsProcess:
    """The early warnings in a child process."""

    def __init__(self, rules: Rules, partitions: int, sources: Iterable[str]):
        context = multiprocessing.get_context("spawn")
        self._connection, child = context.Pipe()
        self._process = context.Process(target=_evaluate, args=(child, rules, partitions, list(sources)),
                                        name="supplymon-early-warnings", daemon=True)
        self._process.start()
        child.close()  # the child's end lives in the child only: its exit ends our reads
        self._out = False

    def send(self, signals: list) -> None:
        if self._out:
            raise RuntimeError("a batch is out: receive() its alerts first")
        try:
            self._connection.send(signals)
        except (BrokenPipeError, ConnectionResetError, EOFError):
            raise self._gone() from None
        self._out = True

    def receive(self) -> list[dict]:
        try:
            kind, value = self._connection.recv()
        except (EOFError, ConnectionResetError):
            raise self._gone() from None
        self._out = False
        if kind == "error":
            raise RunError(f"早期预警进程出错 / the early warnings' process failed:\n{value}")
        return value

    def _gone(self) -> RunError:
        self._process.join(timeout=5)
        return RunError(f"早期预警进程已退出 / the early warnings' process exited "
                        f"(exit code {self._process.exitcode}): out of memory, or killed?")

    def close(self) -> None:
        """Stop the child (at once if it is still evaluating a batch: its alerts are not wanted)."""
        if self._process.is_alive() and not self._out:
            try:
                self._connection.send(None)
            except OSError:
                pass
            self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._connection.close()
