"""The command line's errors are clear and its exit codes honest."""
from __future__ import annotations

import json
import os

from supplymon.simulate import generate
from tests.conftest import supplymon


def test_replay_of_a_missing_file_fails_clearly(tmp_path, data_dir):
    result = supplymon("replay", str(tmp_path / "nope.jsonl"), "--embedded", "--data-dir", str(data_dir))
    assert result.returncode == 1
    assert "does not exist" in result.stderr


def test_replay_refuses_a_data_dir_held_by_a_running_worker(tmp_path, data_dir):
    data_dir.mkdir(parents=True)
    # This test process stands in for the worker: its pid is alive.
    (data_dir / "worker.json").write_text(json.dumps({"pid": os.getpid(), "web": "http://127.0.0.1:1"}))
    history = tmp_path / "h.jsonl"
    history.write_text('{"event_id": "t", "kind": "tick", "ts": "2026-03-01T00:00:00Z"}\n')
    result = supplymon("replay", str(history), "--embedded", "--data-dir", str(data_dir))
    assert result.returncode == 1
    assert "in use by a running supplymon worker" in result.stderr


def test_bad_rules_file_stops_before_anything_starts(tmp_path, data_dir):
    rules = tmp_path / "rules.toml"
    rules.write_text("[delivery]\nurban_hours = 0\n")
    result = supplymon("replay", str(rules), "--embedded", "--data-dir", str(data_dir),
                       env={"SUPPLYMON_RULES": str(rules)})
    assert result.returncode == 2
    assert "delivery_urban_hours must be a positive" in result.stderr
    assert not data_dir.exists()


def test_sql_on_an_empty_data_dir_says_so(data_dir):
    result = supplymon("sql", "--data-dir", str(data_dir), "SELECT 1")
    assert result.returncode == 1 and "no data" in result.stderr


def test_replay_without_kafka_or_embedded_explains(tmp_path):
    history = tmp_path / "h.jsonl"
    history.write_text("{}\n")
    result = supplymon("replay", str(history))
    assert result.returncode == 1 and "SUPPLYMON_KAFKA" in result.stderr


def test_demo_runs_a_short_simulation_and_summarises(data_dir):
    """Not on a terminal, the demo writes plain lines (no live view), Chinese first."""
    from datetime import datetime, timedelta

    # Ending at a fixed hour: the second run tells the same story to the minute even
    # when the wall clock passes a full hour between the runs.
    until = (datetime.now().astimezone() - timedelta(hours=3)).isoformat(timespec="seconds")
    args = ("demo", "--scenario", "shortage", "--days", "2", "--speed", "50000", "--orders-per-day", "200",
            "--until", until, "--data-dir", str(data_dir))
    result = supplymon(*args, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "\x1b[" not in out  # no terminal control codes in a pipe
    (story,) = generate(days=2, orders_per_day=200, scenario="shortage").stories
    assert "故事 story shortage: " in out and story.summary_zh in out
    assert f"watch for supply_shortage on 产品 {story.product_id}（{story.region_code}）" in out
    assert "指标 metrics: http://127.0.0.1:" in out
    assert "监测页面 supervisors' page: http://127.0.0.1:" in out  # the worker serves it at /
    assert "RAISED delivery_overdue: 订单 demo-" in out  # alerts print as they are raised
    assert f"RAISED supply_shortage: " in out and f"起产品 {story.product_id}（生产企业 " in out
    assert "    <- 故事 story shortage: 故事开始后 " in out
    assert f"shortage: 供应短缺 supply_shortage 已预警 raised: {story.product_id} @ {story.region_code} 故事开始后 " in out
    summary = out[out.index("== 小结 summary =="):]
    orders = int(summary.split("订单 orders: ")[1].split(";")[0].replace(",", ""))
    assert orders >= 300
    assert "按时配送率最低的配送企业 weakest distributors by on-time delivery: DST" in summary
    assert f'  supplymon sql --data-dir {data_dir} "SELECT kind, count() AS alerts' in summary
    assert summary.rstrip().endswith(f"告警日志 alert log: {data_dir}/logs/demo-alerts.log")
    # Again on the same data dir: the previous demo is replaced, not added to.
    again = supplymon(*args, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "removed the previous demo's data" in again.stdout
    assert again.stdout[again.stdout.index("== 小结 summary =="):] == summary


def test_sigterm_to_replay_stops_the_broker_and_worker_it_started(tmp_path, data_dir):
    import signal
    import subprocess
    import sys
    import time

    from supplymon.embedded import port_open
    from supplymon.runner import pid_alive
    from supplymon.simulate import generate, write_history
    from tests.conftest import ROOT

    history = tmp_path / "h.jsonl"
    write_history(history, generate(days=3, orders_per_day=300, seed=2))
    replay = subprocess.Popen([sys.executable, "-m", "supplymon", "replay", str(history), "--embedded",
                               "--data-dir", str(data_dir), "--speed", "3000"], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker_file = data_dir / "worker.json"
    deadline = time.monotonic() + 60
    while not worker_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    info = json.loads(worker_file.read_text())
    host, port = info["kafka"].removeprefix("kafka://").split(":")
    replay.send_signal(signal.SIGTERM)
    assert replay.wait(60) == 130
    assert not pid_alive(info["pid"])
    assert not port_open(host, int(port))
