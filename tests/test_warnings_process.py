"""The direct replay's early warnings in a process of their own (supplymon/warnings_process.py):
the alerts the in-process evaluation gives, batch after batch while the flow
computes the next; a failure or death of the child is a clear error, never a hang
or alerts lost in silence."""
from __future__ import annotations

import os
import signal
from dataclasses import replace

import pytest

from supplymon.runner import RunError
from supplymon.settings import Settings
from supplymon.warnings_process import WarningsProcess
from tests.conftest import sql_rows
from tests.test_direct import _flow_rows
from tests.test_end_to_end import build_history

SOURCES = ["orders:0", "responses:0", "shipments:0", "arrivals:0"]


def test_a_replay_with_its_early_warnings_apart_stores_the_alerts_of_one_process(tmp_path):
    from supplymon.direct import replay_direct

    path = tmp_path / "history.jsonl"
    build_history(path, days=4, orders_per_day=120, scenario=("shortage", "bad-distributor"))
    lines = path.read_bytes().splitlines()
    expected = _flow_rows(lines, 500)["alerts"]  # every batch evaluated in this process
    assert {row["kind"] for row in expected.values()} >= {"supply_shortage", "delivery_overdue"}
    settings = replace(Settings.from_env({}), data_dir=tmp_path / "data")
    replay_direct(settings, iter(lines), batch=500)  # 500: many batches, each evaluated while the next flows
    stored = sql_rows(tmp_path / "data", "SELECT alert_id, kind, raised_at FROM supplymon.alerts FINAL")
    assert sorted((r["alert_id"], r["kind"]) for r in stored) == sorted(
        (row["alert_id"], row["kind"]) for row in expected.values())


def test_an_error_in_the_child_stops_the_replay_with_its_traceback():
    warnings = WarningsProcess(Settings.from_env({}).rules, 1, SOURCES)
    try:
        warnings.send([(0, {"recs": {"m:MFR1": {"ORD1": "not a record"}}})])
        with pytest.raises(RunError, match="早期预警进程出错 / the early warnings' process failed") as caught:
            warnings.receive()
        assert "Traceback" in str(caught.value)
    finally:
        warnings.close()
    assert not warnings.alive()


def test_a_child_killed_is_an_error_naming_its_exit_code():
    warnings = WarningsProcess(Settings.from_env({}).rules, 1, SOURCES)
    try:
        os.kill(warnings.pid, signal.SIGKILL)
        with pytest.raises(RunError, match=r"已退出 / the early warnings' process exited \(exit code -9\)"):
            warnings.send([(0, {"marks": {"orders:0": 1}})])
            warnings.receive()
    finally:
        warnings.close()
