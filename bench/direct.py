"""Direct replay throughput: `replay FILE --direct` against a raw `json.loads` loop
over the same file (the ceiling of any Python reader of it).

    python -m bench.direct --events 200000 [--stages]

Prints both rates, the replay's CPU per event over all its processes and threads
(and so the most it could do on this machine's CPUs), and `direct/raw = D`;
`--json` prints them as one JSON object (bench/pipeline.py runs this in a process
of its own: the embedded store admits one data dir per process).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench.pipeline import history
from supplymon.settings import Settings


def raw_rate(path: Path) -> float:
    started, n = time.perf_counter(), 0
    with open(path, "rb") as handle:
        for line in handle:
            json.loads(line)
            n += 1
    return n / (time.perf_counter() - started)


def direct_rate(path: Path, events: int, data_dir: Path, partitions: int) -> tuple[float, dict[str, float]]:
    """Events/s, and the CPU per event (us) of the replay's processes and threads: the
    main thread (reading, routing, decoding, the flow), the store's threads (Arrow
    columns, chdb's inserts and merges), the early warnings' child."""
    from supplymon.direct import replay_direct
    from supplymon.sources import history_lines

    settings = replace(Settings.from_env({}), data_dir=data_dir, partitions=partitions, allow_future=True)
    cpu, main, started = os.times(), time.thread_time(), time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        replay_direct(settings, history_lines(path))
    elapsed, main, spent = time.perf_counter() - started, time.thread_time() - main, os.times()
    process = spent.user - cpu.user + spent.system - cpu.system
    # (the child has ended and been waited for: its time is in children_*)
    child = spent.children_user - cpu.children_user + spent.children_system - cpu.children_system
    per_event = {"main thread": main, "the store's threads": process - main, "early warnings' process": child}
    return events / elapsed, {name: seconds * 1e6 / events for name, seconds in per_event.items()}


def stage_times(lines: list[bytes], partitions: int) -> dict[str, float]:
    """CPU (process time) per event of each stage of the direct replay's batch step,
    without the store: routing the lines and decoding them (once, for the route and
    the flow), the flow (lifecycle, due index, facts, windows), packing the signals,
    the early warnings."""
    from supplymon.core.signals import pack
    from supplymon.direct import DirectReplay, Progress
    from supplymon.gcpolicy import batch_pace

    settings = replace(Settings.from_env({}), partitions=partitions, allow_future=True)
    replay = DirectReplay(settings, None, Progress(io.StringIO()))  # the early warnings in this process
    spent = {"route and decode": 0.0, "flow": 0.0, "signals": 0.0, "early warnings": 0.0}
    with batch_pace():
        batches = replay.file_batches(lines)
        while True:
            started = time.process_time()
            batch = next(batches, None)
            spent["route and decode"] += time.process_time() - started
            if batch is None:
                break
            started = time.process_time()
            out = replay.flow_step(batch)
            flowed = time.process_time()
            signals = pack(out.signals, out.marks, replay.group_partition, partitions)
            packed = time.process_time()
            replay.warnings.send(signals)  # in this process: evaluated here
            replay.warnings.receive()
            done = time.process_time()
            spent["flow"] += flowed - started
            spent["signals"] += packed - flowed
            spent["early warnings"] += done - packed
    return {stage: seconds * 1e6 / len(lines) for stage, seconds in spent.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--stages", action="store_true",
                        help="also the CPU per event of each stage of the batch step (a second pass, no store)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="supplymon-bench-direct-"))
    try:
        lines = history(args.events)
        path = work / "history.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        raw = raw_rate(path)
        direct, cpu = direct_rate(path, len(lines), work / "data", args.partitions)
        cpu_us = sum(cpu.values())
        stages = stage_times(lines, args.partitions) if args.stages else {}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps({"events": len(lines), "raw": raw, "direct": direct, "cpu_us": cpu_us, "cpu_split_us": cpu,
                          "stages_us": stages}))
        return 0
    print(f"events in the file                 {len(lines):>14,}")
    print(f"raw: json.loads over the file      {raw:>12,.0f}/s")
    print(f"replay --direct (file -> stored)   {direct:>12,.0f}/s")
    # The most the replay could do were its processes and threads always in parallel:
    # a bound from its CPU alone, against which the target (direct/raw 0.5) is judged.
    bound = (os.cpu_count() or 1) * 1e6 / cpu_us
    print(f"  CPU, all its processes and threads{cpu_us:>9.1f} us/event: on {os.cpu_count()} CPUs at most "
          f"{bound:,.0f}/s (direct/raw <= {bound / raw:.2f})")
    for name, us in cpu.items():
        print(f"    {name:<31}{us:>10.1f} us/event")
    for stage, us in stages.items():
        print(f"  {stage + ' (CPU, no store)':<33}{us:>10.1f} us/event")
    if stages:
        print(f"  {'batch step in all':<33}{sum(stages.values()):>10.1f} us/event")
    print(f"direct/raw = {direct / raw:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
