"""The windowed tables alone: what the direct replay asks of them, per event.

    python -m bench.windows --events 100000

Runs the direct replay's flow once over the bench history and records what it
hands the windows per batch (each changed order's fact, partition, old
contribution and version, then the watermark); then times, on those same calls:

- `per order`: the windows one order at a time (tests/windows_reference.py, the
  code the batch path is tested against), rows by `part_row`;
- `batch, from the facts`: the batch's changed orders' fact dicts and kept
  contributions (as lists) turned into columns, `update_facts` (that is
  `update_batch`), `advance`, the dirty parts as rows (`take_dirty_rows`);
- `batch, columns in`: `update_batch` on columns made beforehand (what a caller
  that holds order state as columns pays), then the same;
- `batch, columns in and out`: the same, the dirty parts taken as columns
  (`take_dirty_columns`), not as one dict per row.

CPU (process time) in us per event of the history (not per changed order).
"""
from __future__ import annotations

import argparse
import gc
import io
import sys
import time
from dataclasses import replace

import numpy as np

from bench.pipeline import history
from supplymon.core.windows import FACT_COLUMNS, Windows, contribution_array, contribution_lists, fact_columns, part_row
from supplymon.gcpolicy import batch_pace
from supplymon.settings import Settings
from tests.windows_reference import ReferenceWindows

Call = tuple[list[dict], list[int], list, list[int], "int | None"]  # facts, partitions, olds, old versions, watermark


class _Recorder(Windows):
    """Windows that also keep what each batch asked of them (as fact dicts, partitions,
    contributions as order states keep them and their versions)."""

    def __init__(self, rules) -> None:
        super().__init__(rules)
        self.calls: list[Call] = []
        self.pending: Call = ([], [], [], [], None)

    def update_batch(self, facts, partition, old, had_none, old_version):
        pending = self.pending
        columns = {name: list(facts[name]) for name in FACT_COLUMNS}
        pending[0].extend(dict(zip(columns, values)) for values in zip(*columns.values()))
        pending[1].extend(np.asarray(partition).tolist())
        kept = contribution_lists(np.asarray(old, dtype=np.float64).reshape(-1, 10))
        pending[2].extend(None if none else c for c, none in zip(kept, np.asarray(had_none).tolist()))
        pending[3].extend(np.where(had_none, 0, old_version).tolist())
        return super().update_batch(facts, partition, old, had_none, old_version)

    def advance(self, watermark):
        self.calls.append(self.pending[:4] + (watermark,))
        self.pending = ([], [], [], [], None)
        super().advance(watermark)


def record(lines: list[bytes], partitions: int) -> list[Call]:
    """The window calls of the direct replay's flow over `lines`, batch by batch."""
    from supplymon.direct import DirectReplay, Progress

    settings = replace(Settings.from_env({}), partitions=partitions, allow_future=True)
    replay = DirectReplay(settings, None, Progress(io.StringIO()))
    recorder = replay.flow.windows = _Recorder(settings.rules)
    with batch_pace():
        for batch in replay.file_batches(lines):
            replay.flow_step(batch)
    return recorder.calls


def per_order(calls: list[Call], rules) -> tuple[float, int]:
    windows, rows = ReferenceWindows(rules), 0
    started = time.process_time()
    for facts, partitions, olds, versions, watermark in calls:
        for fact, partition, old, version in zip(facts, partitions, olds, versions):
            windows.update(fact, partition, old, version)
        if watermark is not None:
            windows.advance(watermark)
        rows += len([part_row(key, part) for key, part in windows.take_dirty()])
    return time.process_time() - started, rows


def _batch_args(partitions: list[int], olds: list, versions: list[int]):
    old, had_none = contribution_array(olds)
    return np.asarray(partitions, dtype=np.int64), old, had_none, np.asarray(versions, dtype=np.int64)


def batch(calls: list[Call], rules, columns_in: bool, columns_out: bool = False) -> tuple[float, int]:
    windows, rows = Windows(rules), 0
    prepared = [(fact_columns(facts), *_batch_args(partitions, olds, versions), watermark)
                for facts, partitions, olds, versions, watermark in calls] if columns_in else None
    started = time.process_time()
    if prepared is not None:
        for columns, partition, old, had_none, old_version, watermark in prepared:
            windows.update_batch(columns, partition, old, had_none, old_version)
            if watermark is not None:
                windows.advance(watermark)
            rows += len(windows.take_dirty_columns()["family"] if columns_out else windows.take_dirty_rows())
    else:
        for facts, partitions, olds, versions, watermark in calls:  # as the flow does it today
            windows.update_facts(facts, partitions, olds, versions)
            if watermark is not None:
                windows.advance(watermark)
            rows += len(windows.take_dirty_rows())
    return time.process_time() - started, rows


def _paced(run):
    """At the garbage collector's pace of the direct replay (supplymon/gcpolicy.py)."""
    gc.collect()
    with batch_pace():
        return run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs of each")
    args = parser.parse_args(argv)
    lines = history(args.events)
    calls = record(lines, args.partitions)
    rules = Settings.from_env({}).rules
    changed = sum(len(call[0]) for call in calls)
    print(f"events {len(lines):,}, batches {len(calls)}, changed orders handed to the windows {changed:,}")
    for name, run in (("per order (reference)", lambda: per_order(calls, rules)),
                      ("batch, from the facts", lambda: batch(calls, rules, columns_in=False)),
                      ("batch, columns in", lambda: batch(calls, rules, columns_in=True)),
                      ("batch, columns in and out", lambda: batch(calls, rules, columns_in=True, columns_out=True))):
        best, rows = min(_paced(run) for _ in range(args.repeat))
        print(f"  {name:<32}{best * 1e6 / len(lines):>8.2f} us/event   ({rows:,} part rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
