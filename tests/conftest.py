"""Shared helpers for the end-to-end tests: run the real CLI, read its store."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import orjson
import pytest

ROOT = Path(__file__).resolve().parent.parent
# The workers the tests start and the tests' own `/sql` calls share this web token
# (tests of the generated token file remove it from their workers' environment).
os.environ.setdefault("SUPPLYMON_WEB_TOKEN", "supplymon-tests-web-token")


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


class StoryReplay(NamedTuple):
    data_dir: Path
    stories: list  # supplymon.simulate.Story
    last_event_ms: int  # the history's latest event time


@pytest.fixture(scope="session")
def story_replay(tmp_path_factory) -> StoryReplay:
    """Every story of the simulator (`--scenario all`, its minimum of days, 200 orders a
    day: ~28,000 events) replayed once into an embedded store. Shared by the tests that
    read a realistic store (the dashboards' queries, the page)."""
    from supplymon.simulate import generate, min_days, write_history
    from tests.reference import parse_ms

    import random

    from supplymon.notify.local_receiver import LocalReceiver
    from supplymon.simulate import REGIONS, World

    root = tmp_path_factory.mktemp("story-replay")
    history = generate(days=min_days("all"), orders_per_day=200, seed=7, scenario="all")
    events = list(history)
    path = root / "history.jsonl.gz"
    write_history(path, events)
    data_dir = root / "data"
    # Notified as the demo is (a webhook per distributor and bureau on a loopback
    # receiver), so that the delivery log holds what the panels over it show.
    receiver = LocalReceiver().start()
    try:
        world = World.build(random.Random(7))  # the world `generate` builds for this seed
        recipients = receiver.write_directory(root / "recipients.toml",
                                              {d.id: d.regions for d in world.distributors}, list(REGIONS))
        result = supplymon("replay", str(path), "--embedded", "--data-dir", str(data_dir), "--notify",
                           env={"SUPPLYMON_RECIPIENTS": str(recipients)})
    finally:
        receiver.stop()
    if result.returncode != 0:  # the worker's log goes with the tmp dir: say what it said
        logs = "\n".join(f"--- {log.name}:\n{log.read_text(errors='replace')[-4000:]}"
                          for log in sorted((data_dir / "logs").glob("*.log")))
        raise AssertionError(f"{result.stderr}\n{logs}")
    # The period's assessment, as a bureau runs it after the period (the assessment panel).
    days = sorted({e["ts"][:10] for e in events})
    assessed = supplymon("assess", "--from", days[0], "--to", days[-1], "--data-dir", str(data_dir))
    assert assessed.returncode == 0, assessed.stderr
    return StoryReplay(data_dir, history.stories, max(parse_ms(e["ts"]) for e in events))
