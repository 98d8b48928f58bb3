"""Shared helpers for the end-to-end tests: run the real CLI, read its store."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
