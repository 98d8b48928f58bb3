"""Shared helpers for the end-to-end tests: run the real CLI, read its store."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parent.parent


def supplymon(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the `supplymon` CLI in a child process (as a user would)."""
    full_env = {**os.environ, **(env or {})}
    if "SUPPLYMON_KAFKA" not in (env or {}):
        full_env.pop("SUPPLYMON_KAFKA", None)  # the embedded default unless a test asks
    return subprocess.run([sys.executable, "-m", "supplymon", *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def sql_rows(data_dir: Path, query: str, env: dict | None = None) -> list[dict]:
    result = supplymon("sql", "--data-dir", str(data_dir), query, "--format", "JSONEachRow", env=env)
    assert result.returncode == 0, result.stderr
    return [orjson.loads(line) for line in result.stdout.splitlines() if line]


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return tmp_path / "data"


@pytest.fixture(scope="session")
def story_replay(tmp_path_factory):
    """The simulator's three stories (`--scenario all`, 11 days) replayed once into an
    embedded store: (data dir, the history's stories). Shared by the tests that read a
    realistic store (dashboards, the page)."""
    from supplymon.simulate import generate, write_history

    root = tmp_path_factory.mktemp("story-replay")
    history = generate(days=11, orders_per_day=500, seed=7, scenario="all")
    path = root / "history.jsonl.gz"
    write_history(path, history)
    data_dir = root / "data"
    result = supplymon("replay", str(path), "--embedded", "--data-dir", str(data_dir))
    if result.returncode != 0:  # the worker's log goes with the tmp dir: say what it said
        logs = "\n".join(f"--- {log.name}:\n{log.read_text(errors='replace')[-4000:]}"
                          for log in sorted((data_dir / "logs").glob("*.log")))
        raise AssertionError(f"{result.stderr}\n{logs}")
    return data_dir, history.stories
