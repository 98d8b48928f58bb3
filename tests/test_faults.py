"""Faults on the real parts: the store unavailable for a while, the embedded broker
restarted mid-stream. The worker waits, says so (log, metric, /health), and
resumes; the stored facts and alerts equal the reference (tests/reference.py)."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest

from supplymon.embedded import EmbeddedBroker, free_port
from supplymon.runner import http_query
from supplymon.settings import EMBEDDED_GROUP_TIMEOUT
from tests.conftest import supplymon
from tests.test_end_to_end import (DAILY_SQL, FACT_SQL, MALFORMED, Worker, _end_offsets, _progress, _wait,
                                   assert_daily_match, assert_facts_match, assert_warnings_match, build_history)
from tests.warnings_reference import WARNINGS_SQL

INPUTS = ["supply.orders", "supply.responses", "supply.shipments", "supply.arrivals"]


def _chattr(flag: str, dirs: list[Path]) -> str:
    """chattr `flag` on the directories that still exist; the errors other than a
    directory gone meanwhile (a merge's temporary part), or "" if none."""
    made = subprocess.run(["chattr", flag, *(str(d) for d in dirs if d.exists())], capture_output=True, text=True)
    errors = [line for line in made.stderr.splitlines() if "No such file or directory" not in line]
    return "\n".join(errors) if made.returncode else ""


@contextmanager
def unwritable(path: Path):
    """Nothing can be created, renamed or removed in the directories under `path`
    until the block ends: the immutable attribute as root (root ignores modes),
    read-only modes otherwise. Symbolic links are left alone."""
    dirs = [path, *(p for p in path.rglob("*") if p.is_dir() and not p.is_symlink())]
    if os.geteuid() == 0:
        error = _chattr("+i", dirs)
        if error:
            _chattr("-i", dirs)
            pytest.skip(f"cannot make {path} immutable here (chattr: {error[:300]})")
        try:
            yield
        finally:
            assert not _chattr("-i", dirs)
    else:
        for d in dirs:
            d.chmod(0o555)
        try:
            yield
        finally:
            for d in dirs:
                d.chmod(0o755)


def _health(url: str) -> tuple[int, dict]:
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen(url + "/health", timeout=5) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


def _metric(url: str, name: str) -> float | None:
    import urllib.request
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                if line.split(" ")[0] == name or line.startswith(name):
                    return float(line.rsplit(" ", 1)[1])
    return None


def _stored_everything(url: str, end: dict, worker: Worker) -> tuple[list, list, list]:
    _wait(lambda: all(_progress(url)["offsets"].get(tp, 0) >= off for tp, off in end.items()),
          300, "all offsets", worker)
    signals = _progress(url)["signals_sent"]
    _wait(lambda: all(_progress(url)["signals"].get(tp, 0) >= off for tp, off in signals.items()),
          300, "all signals", worker)
    return tuple([orjson.loads(line) for line in http_query(url, sql, "JSONEachRow").splitlines()]
                 for sql in (FACT_SQL, DAILY_SQL, WARNINGS_SQL))


@contextmanager
def _worker_a_fifth_through(tmp_path: Path, data_dir: Path):
    """A history published to a fresh broker, and a worker a fifth of the way through it."""
    history = tmp_path / "history.jsonl"
    events = build_history(history, days=3, orders_per_day=1000, scenario=("shortage",))
    with EmbeddedBroker() as broker:
        web = free_port()
        env = _broker_env(broker, data_dir, web)
        published = supplymon("replay", str(history), env=env)
        assert published.returncode == 0, published.stderr
        end = _end_offsets(broker.bootstrap, INPUTS)
        run = SimpleNamespace(events=events, broker=broker, url=f"http://127.0.0.1:{web}", end=end,
                              total=sum(end.values()), log=tmp_path / "worker.log")
        run.worker = Worker(env, run.log)
        try:
            _wait(lambda: sum(_progress(run.url)["offsets"].values()) > run.total * 0.2, 180, "20% progress",
                  run.worker)
            yield run
        finally:
            run.worker.stop()


def test_store_unwritable_for_a_while_loses_and_doubles_nothing(tmp_path, data_dir):
    with _worker_a_fifth_through(tmp_path, data_dir) as run:
        url, worker = run.url, run.worker
        with unwritable(data_dir / "clickhouse"):
            status, report = _wait(lambda: (lambda h: h if h[1]["store"]["up"] is False else None)(_health(url)),
                                   60, "/health to report the store down", worker)
            assert status == 503 and report["store"]["last_error"], report
            assert report["status"] == "degraded"
            assert _metric(url, 'supplymon_up{system="store"}') == 0.0
            stalled = sum(_progress(url)["offsets"].values())
            time.sleep(5)  # a while: the worker keeps waiting, storing nothing, acknowledging nothing
            assert sum(_progress(url)["offsets"].values()) == stalled
            assert stalled < run.total, "the worker finished before the store went away"
            worker.check()
        rows, daily, warnings = _stored_everything(url, run.end, worker)
        status, report = _wait(lambda: (lambda h: h if h[0] == 200 else None)(_health(url)), 30,
                               "/health to report the store back", worker)
        assert report["store"]["up"] is True and report["store"]["outages"] == 1
        assert _metric(url, 'supplymon_outages_total{system="store"}') == 1.0
    text = run.log.read_text()
    assert "store is unavailable" in text and "存储不可用" in text
    assert "store is back after" in text
    assert_as_reference(data_dir, run.events, rows, daily, warnings)


def assert_as_reference(data_dir: Path, events: list[dict], rows, daily, warnings) -> None:
    """Facts, daily windows and early warnings as in the reference; nothing doubled: one
    row per event in events_raw, one per bad line in dead_letters."""
    assert_facts_match(rows, events)
    assert_daily_match(daily, events)
    assert_warnings_match(warnings, events)
    event_ids = len({e["event_id"] for e in events})
    assert _rows_of(data_dir, "SELECT count() AS n, uniqExact(event_id) AS u FROM supplymon.events_raw FINAL") == [
        {"n": event_ids, "u": event_ids}]
    assert _rows_of(data_dir, "SELECT reason, count() AS n FROM supplymon.dead_letters FINAL GROUP BY reason "
                              "ORDER BY reason") == [{"reason": r, "n": 1} for r in sorted(r for _, r in MALFORMED)]


def _rows_of(data_dir: Path, sql: str) -> list[dict]:
    result = supplymon("sql", "--data-dir", str(data_dir), sql, "--format", "JSONEachRow")
    assert result.returncode == 0, result.stderr
    return [orjson.loads(line) for line in result.stdout.splitlines()]


def _start_embedded_worker(env: dict, log: Path) -> tuple[Worker, str]:
    """`supplymon worker` on its own embedded broker; returns it and the broker's address."""
    before = log.read_text() if log.exists() else ""
    worker = Worker(env, log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = re.findall(r"embedded broker at (kafka://\S+)", log.read_text()[len(before):])
        if found:
            return worker, found[0]
        worker.check()
        time.sleep(0.1)
    raise AssertionError(log.read_text()[-3000:])


def test_embedded_broker_lost_mid_stream_worker_restarts_and_resend_loses_and_doubles_nothing(tmp_path, data_dir):
    """The embedded broker dies mid-stream (its log, in memory, with it). The worker says
    so and exits with code 75; started again (as its supervisor does) it starts a fresh
    broker and rebuilds its state from ClickHouse; the publisher resends what was not
    stored (`replay --skip-stored`). Facts, alerts, raw events and dead letters end as
    in the reference, nothing lost or doubled."""
    history = tmp_path / "history.jsonl"
    events = build_history(history, days=3, orders_per_day=1000, scenario=("shortage",))
    web = free_port()
    url = f"http://127.0.0.1:{web}"
    env = {**os.environ, "SUPPLYMON_DATA_DIR": str(data_dir), "SUPPLYMON_WEB_PORT": str(web),
           "SUPPLYMON_BATCH_SIZE": "500", "SUPPLYMON_LIVE_TICK_SECONDS": "0"}
    env.pop("SUPPLYMON_KAFKA", None)
    log = tmp_path / "worker.log"
    worker, kafka = _start_embedded_worker(env, log)
    try:
        published = supplymon("replay", str(history), env={**env, "SUPPLYMON_KAFKA": kafka})
        assert published.returncode == 0, published.stderr
        end = _end_offsets(kafka.removeprefix("kafka://"), INPUTS)
        total = sum(end.values())
        _wait(lambda: sum(_progress(url)["offsets"].values()) > total * 0.2, 180, "20% progress", worker)
        broker_pid = json.loads((data_dir / "worker.json").read_text())["broker_pid"]
        os.kill(broker_pid, signal.SIGKILL)
        assert worker.process.wait(60) == 75, log.read_text()[-3000:]
        text = log.read_text()
        assert "内置 Kafka 代理意外退出" in text and "the embedded broker exited" in text
        stored_before = _rows_of(data_dir, "SELECT count() AS n FROM supplymon.events_raw FINAL "
                                           "WHERE kind != 'tick'")[0]["n"]
        assert 0 < stored_before < len({e["event_id"] for e in events}), "nothing to resend: the test proves little"

        worker, kafka = _start_embedded_worker(env, log)  # as its supervisor does
        _wait(lambda: _progress(url)["assigned"], 120, "the restarted worker to be assigned", worker)
        resent = supplymon("replay", str(history), "--skip-stored", "--data-dir", str(data_dir),
                           env={**env, "SUPPLYMON_KAFKA": kafka})
        assert resent.returncode == 0, resent.stderr
        skipped = int(re.search(r"skipped ([\d,]+) lines already stored", resent.stderr).group(1).replace(",", ""))
        assert skipped >= stored_before  # ticks are always resent
        end = _end_offsets(kafka.removeprefix("kafka://"), INPUTS)
        rows, daily, warnings = _stored_everything(url, end, worker)
    finally:
        worker.stop()
    assert_as_reference(data_dir, events, rows, daily, warnings)


def _broker_env(broker: EmbeddedBroker, data_dir: Path, web: int) -> dict:
    return {**os.environ, "SUPPLYMON_KAFKA": broker.url, "SUPPLYMON_DATA_DIR": str(data_dir),
            "SUPPLYMON_WEB_PORT": str(web), "SUPPLYMON_BATCH_SIZE": "500", "SUPPLYMON_LIVE_TICK_SECONDS": "0",
            "SUPPLYMON_GROUP_TIMEOUT_SECONDS": str(EMBEDDED_GROUP_TIMEOUT)}


def test_broker_frozen_for_a_while_worker_waits_reports_and_resumes(tmp_path, data_dir):
    """A broker that stops answering (SIGSTOP) and comes back with its log (SIGCONT),
    as a real Kafka restarting does: the worker reports it and goes on."""
    with _worker_a_fifth_through(tmp_path, data_dir) as run:
        url, worker = run.url, run.worker
        run.broker.process.send_signal(signal.SIGSTOP)
        try:
            status, report = _wait(lambda: (lambda h: h if h[1]["broker"]["up"] is False else None)(_health(url)),
                                   60, "/health to report the broker down", worker)
            assert status == 503 and report["status"] == "degraded"
            assert _metric(url, 'supplymon_up{system="broker"}') == 0.0
            time.sleep(3)
            worker.check()
        finally:
            run.broker.process.send_signal(signal.SIGCONT)
        rows, daily, warnings = _stored_everything(url, run.end, worker)
        _wait(lambda: _health(url)[0] == 200, 60, "/health to report the broker back", worker)
    text = run.log.read_text()
    assert "broker is unavailable" in text and "broker is back after" in text
    assert_as_reference(data_dir, run.events, rows, daily, warnings)


def test_worker_stops_when_the_broker_answering_is_another_one(tmp_path, data_dir):
    """The broker restarted on the same address with nothing (a memory broker): same
    address, new cluster id. The worker must not go on as if nothing happened."""
    port = free_port()
    broker = EmbeddedBroker(port=port).start()
    web = free_port()
    url = f"http://127.0.0.1:{web}"
    log = tmp_path / "worker.log"
    worker = Worker(_broker_env(broker, data_dir, web), log)
    try:
        _wait(lambda: _health(url)[0] == 200, 120, "the worker to be healthy", worker)
        broker.stop()
        broker = EmbeddedBroker(port=port).start()
        assert worker.process.wait(60) == 75, log.read_text()[-3000:]
    finally:
        worker.stop()
        broker.stop()
    assert "the broker was replaced (its cluster id changed)" in log.read_text()
    assert not (data_dir / "worker.json").exists()
