"""`supplymon worker` on the embedded default, live: wall-clock ticks fire deadlines
while the platform is quiet, and a restart rebuilds state from ClickHouse."""
from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from datetime import datetime, timedelta

import orjson

from supplymon.embedded import free_port
from supplymon.publish import Publisher
from supplymon.runner import http_query
from supplymon.settings import SHANGHAI, Settings
from tests.conftest import ROOT, supplymon



def start_worker(data_dir, web: int, log) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "SUPPLYMON_DATA_DIR": str(data_dir), "SUPPLYMON_WEB_PORT": str(web),
           "SUPPLYMON_LIVE_TICK_SECONDS": "0.5"}
    env.pop("SUPPLYMON_KAFKA", None)
    out = open(log, "ab")
    process = subprocess.Popen([sys.executable, "-m", "supplymon", "worker"], cwd=ROOT, env=env,
                               stdout=out, stderr=subprocess.STDOUT)
    out.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        match = re.search(r"embedded broker at (kafka://\S+)", log.read_text())
        if match:
            return process, match.group(1)
        assert process.poll() is None, log.read_text()
        time.sleep(0.1)
    raise AssertionError(log.read_text())


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def publish(kafka_url: str, *events: dict) -> None:
    settings = replace(Settings.from_env({}), kafka_url=kafka_url)

    async def go():
        async with Publisher(settings) as publisher:
            for event in events:
                await publisher.publish(orjson.dumps(event))

    asyncio.run(go())


def poll(web: str, sql: str, until, timeout: float = 60):
    deadline = time.monotonic() + timeout
    rows = []
    while time.monotonic() < deadline:
        try:
            rows = [orjson.loads(line) for line in http_query(web, sql, "JSONEachRow").splitlines()]
            if until(rows):
                return rows
        except Exception:  # the worker may not be serving yet
            pass
        time.sleep(0.3)
    raise AssertionError(f"condition not met; last rows {rows}")


def test_quiet_platform_still_fires_deadlines_and_restart_keeps_state(tmp_path, data_dir):
    web = free_port()
    url = f"http://127.0.0.1:{web}"
    log = tmp_path / "worker.log"
    placed = datetime.now(SHANGHAI) - timedelta(hours=50)
    order = {"event_id": "live-o1", "kind": "order", "ts": placed.isoformat(timespec="milliseconds"),
             "order_id": "LIVE1", "institution_id": "I1", "region_code": "150702", "area": "urban",
             "grassroots": False, "distributor_id": "D1", "manufacturer_id": "M1", "product_id": "P1",
             "product_kind": "drug", "vbp": True, "quantity": 5, "unit_price": 1.0}
    worker, kafka = start_worker(data_dir, web, log)
    try:
        publish(kafka, order)  # and then nothing: only the worker's own ticks move time
        alerts = poll(url, "SELECT kind, toUnixTimestamp64Milli(raised_at) AS raised FROM supplymon.alerts FINAL",
                      lambda rows: {r["kind"] for r in rows} >= {"response_overdue", "delivery_overdue"})
        raised = {r["kind"]: r["raised"] for r in alerts}
        ordered_ms = int(placed.timestamp() * 1000)
        assert raised["response_overdue"] == ordered_ms + 48 * 3_600_000  # event time, not when noticed
        assert raised["delivery_overdue"] == ordered_ms + 24 * 3_600_000

        # The store is held by the worker: `supplymon sql` goes through it.
        result = supplymon("sql", "--data-dir", str(data_dir), "SELECT order_id FROM supplymon.order_facts FINAL",
                           "--format", "TSV")
        assert result.returncode == 0 and result.stdout == "LIVE1\n", result.stderr
        with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
            exposition = response.read().decode()
        assert 'supplymon_events_in_total{kind="order"} 1.0' in exposition
        assert 'supplymon_alerts_total{kind="response_overdue"} 1.0' in exposition
        assert 'supplymon_sink_rows_total{table="order_facts"}' in exposition
        assert "supplymon_stream_time_seconds " in exposition
    finally:
        stop(worker)

    # The embedded broker died with the worker; a new one is rebuilt from ClickHouse,
    # so a late answer still finds its order (it is not an orphan).
    log = tmp_path / "worker-restarted.log"
    worker, kafka = start_worker(data_dir, web, log)
    try:
        answered = datetime.now(SHANGHAI)
        publish(kafka, {"event_id": "live-r1", "kind": "response", "ts": answered.isoformat(timespec="milliseconds"),
                        "order_id": "LIVE1", "distributor_id": "D1", "decision": "accepted", "confirmed_quantity": 5})
        poll(url, "SELECT decision FROM supplymon.order_facts FINAL WHERE order_id = 'LIVE1'",
             lambda rows: rows == [{"decision": "accepted"}])
        resolved = poll(url, "SELECT resolved_at FROM supplymon.alerts FINAL WHERE kind = 'response_overdue'",
                        lambda rows: rows and rows[0]["resolved_at"] is not None)
        assert resolved
        dead = poll(url, "SELECT count() AS n FROM supplymon.dead_letters FINAL", lambda rows: True)
        assert dead == [{"n": 0}]
    finally:
        stop(worker)
