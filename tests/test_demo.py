"""The demo as a newcomer sees it: run in a pseudo-terminal, every story played on
healthy traffic, the live view redrawn in place, each story's warning in it and in
the summary (timed against the story's start), every alert in the alert log."""
from __future__ import annotations

import fcntl
import json
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from datetime import datetime, timedelta

from supplymon.demo_view import tells
from supplymon.settings import SHANGHAI
from supplymon.simulate import DEFAULT_START, generate, min_days
from tests.conftest import ROOT, sql_rows, supplymon

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
DAYS, ORDERS_PER_DAY = max(11, min_days("all")), 200  # long enough for every story
SPEED = 40_000 * DAYS / 11  # about 25 s of traffic however many days that takes


def run_in_terminal(args: list[str], columns: int = 120, lines: int = 50, timeout: float = 300) -> tuple[int, str]:
    """Run the CLI with a pseudo-terminal as its stdin, stdout and stderr; return its
    exit code and everything it wrote."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "SUPPLYMON_KAFKA", "COLUMNS", "LINES")}
    env["TERM"] = "xterm-256color"
    process = subprocess.Popen([sys.executable, "-m", "supplymon", *args], cwd=ROOT, env=env,
                               stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    output = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1)
            if ready:
                try:
                    chunk = os.read(master, 1 << 16)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
            elif process.poll() is not None:
                break
        else:
            process.terminate()  # SIGTERM stops its broker and worker too
        return process.wait(60), output.decode("utf-8", errors="replace")
    finally:
        os.close(master)


def test_the_demo_on_a_terminal_shows_the_live_view_every_story_and_the_summary(data_dir):
    code, raw = run_in_terminal(["demo", "--days", str(DAYS), "--speed", str(SPEED), "--orders-per-day",
                                 str(ORDERS_PER_DAY), "--data-dir", str(data_dir)])
    text = ANSI.sub("", raw)
    assert code == 0, text[-3000:]
    stories = generate(days=DAYS, orders_per_day=ORDERS_PER_DAY, scenario="all").stories
    assert {s.scenario for s in stories} >= {"shortage", "surge", "bad-distributor"}  # all, by default

    # The live view: redrawn in place (cursor moved up over the last frame), not a flood of lines.
    assert raw.count("\x1b[") > 100 and "\x1b[2K" in raw
    live, summary = text[:text.index("== 小结 summary ==")], text[text.index("== 小结 summary =="):]
    assert "RAISED" not in live  # no line per alert on a terminal
    last = live[live.rindex("supplymon 演示 demo"):]  # the last frame
    assert f"第 {DAYS:.1f}/{DAYS} 天 day" in last and "完成 done" in last
    assert re.search(r"事件/秒 events/s +[\d,]+ \(平均 mean\) +已发送 sent [\d,]+ +已处理 stored 100%", last)
    assert re.search(r"配送超时 delivery_overdue +\d+ / \d+", last)
    for story in stories:
        assert re.search(rf"{story.scenario} +\S+ {story.kind} +.*✓ [\d.]+ 小时后预警 raised after", last), story
        assert f"← 故事 story {story.scenario}" in live  # as it was raised (the last frame shows the latest)
    # (a long path wraps inside its panel: compare without the borders and spaces)
    flat = re.sub(r"[\s│]", "", last)
    assert re.sub(r"\s", "", f'supplymon sql --data-dir {data_dir} "SELECT kind, count()') in flat
    assert f"{data_dir}/logs/demo-alerts.log" in flat and "/metrics" in flat

    # The summary times each story's warning against the story's start, as stored. The
    # run's simulated days are printed first; the stories sit at the same offsets in them
    # as in the same history generated from the default start.
    run_start = datetime.strptime(re.search(r"simulated days \((\S+ \S+) - ", text).group(1),
                                  "%Y-%m-%d %H:%M").replace(tzinfo=SHANGHAI)
    stored_warnings = sql_rows(
        data_dir, "SELECT kind, subject_type, product_id, region_code, distributor_id, details,"
                  " toUnixTimestamp64Milli(raised_at) AS at FROM supplymon.alerts FINAL"
                  " WHERE subject_type NOT IN ('order', 'institution')")
    for story in stories:
        began = run_start + (story.starts_at - DEFAULT_START)
        first = min(int(w["at"]) for w in stored_warnings if tells(story, {**w, "details": json.loads(w["details"])}))
        hours = (first - began.timestamp() * 1000) / 3_600_000
        assert hours >= 0  # (how soon is the simulator's and the rules' business: tests/test_simulate.py)
        line = next(line for line in summary.splitlines() if line.startswith(f"  {story.scenario}: "))
        assert f"已预警 raised: " in line and f"故事开始后 {hours:.1f} 小时 h after the story began" in line
    for sql in re.findall(r"  (supplymon sql --data-dir \S+ \"[^\"]+\")", summary):
        assert "supplymon.alerts" in sql or "supplymon.distributor_daily" in sql

    # Nothing of the demo's traffic is refused: no event is stamped ahead of the wall clock.
    assert sql_rows(data_dir, "SELECT count() AS n FROM supplymon.dead_letters")[0]["n"] == 0

    # Every alert stored went to the alert log, Chinese first.
    log = (data_dir / "logs" / "demo-alerts.log").read_text(encoding="utf-8")
    stored = sql_rows(data_dir, "SELECT kind, message FROM supplymon.alerts FINAL")
    assert stored and all(f" {a['kind']}: {a['message']}" in log for a in stored)
    assert all(re.search(r"[\u4e00-\u9fff]", a["message"].split(" / ")[0]) for a in stored)


def test_the_demo_refuses_a_data_dir_whose_other_events_overlap_its_days(tmp_path, data_dir):
    """Other data is never removed: a demo whose simulated days it reaches into stops."""
    now = datetime.now(SHANGHAI).replace(microsecond=0)
    order = {"event_id": "e1", "kind": "order", "ts": (now - timedelta(hours=2)).isoformat(), "order_id": "O1",
             "institution_id": "I1", "region_code": "150702", "area": "urban", "grassroots": False,
             "distributor_id": "D1", "manufacturer_id": "M1", "product_id": "P1", "product_kind": "drug",
             "vbp": True, "quantity": 5, "unit_price": 1.0}
    history = tmp_path / "h.jsonl"
    history.write_text(json.dumps(order) + "\n")
    assert supplymon("replay", str(history), "--embedded", "--data-dir", str(data_dir)).returncode == 0
    result = supplymon("demo", "--scenario", "healthy", "--days", "1", "--data-dir", str(data_dir), timeout=120)
    assert result.returncode == 1
    assert "存有演示以外的数据" in result.stderr and "holds other data than a demo's" in result.stderr
    (kept,) = sql_rows(data_dir, "SELECT count() AS n FROM supplymon.events_raw WHERE event_id = 'e1'")
    assert kept["n"] == 1


def test_the_demo_ends_at_the_last_full_hour_or_at_the_hour_until_names():
    import pytest

    from supplymon.demo import demo_end
    from supplymon.runner import RunError

    now = datetime(2026, 11, 30, 16, 42, 5, tzinfo=SHANGHAI)
    assert demo_end(None, now) == datetime(2026, 11, 30, 16, tzinfo=SHANGHAI)
    # An hour given in another zone ends the same instant, told in Shanghai's hours.
    assert demo_end("2026-11-30T01:30:00+00:00", now) == datetime(2026, 11, 30, 9, tzinfo=SHANGHAI)
    assert demo_end("2026-11-29", now) == datetime(2026, 11, 29, 0, tzinfo=SHANGHAI)
    with pytest.raises(RunError, match="past the wall clock"):
        demo_end("2026-11-30T17:00:00", now)
    with pytest.raises(RunError, match="not a time"):
        demo_end("yesterday", now)
