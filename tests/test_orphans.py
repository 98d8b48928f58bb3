"""A `replay --embedded` killed outright (SIGKILL: no chance to stop anything) takes
its broker and worker with it instead of leaving them running, holding their ports
and the data dir (the parent-death signal set for both)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from supplymon.simulate import generate, write_history
from tests.conftest import ROOT


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found |= {int(c) for c in (task / "children").read_text().split()}
        except OSError:
            pass
    return found


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie may wait for a reaper that never comes)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
@pytest.mark.timeout(300)
def test_a_killed_replay_takes_its_broker_and_worker_with_it(tmp_path):
    history = tmp_path / "history.jsonl"
    write_history(history, list(generate(days=2, orders_per_day=400, seed=4)))
    data_dir = tmp_path / "data"
    replay = subprocess.Popen([sys.executable, "-m", "supplymon", "replay", str(history), "--embedded",
                               "--data-dir", str(data_dir)], cwd=ROOT, env={**os.environ},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children: set[int] = set()
    try:
        _wait(lambda: (data_dir / "worker.json").exists(), 180, "the worker to start")
        children = _children(replay.pid)
        assert len(children) == 2, children  # the broker and the worker
        os.kill(replay.pid, signal.SIGKILL)
        replay.wait()
        _wait(lambda: not any(_running(pid) for pid in children), 120, "the broker and the worker to end")
    finally:
        if replay.poll() is None:
            replay.kill()
            replay.wait()
        for pid in children:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
