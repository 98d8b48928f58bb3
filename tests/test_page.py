"""The page the worker serves at `/`: a worker on the replayed stories answers the
named panels (read-only, validated), and headless Chromium draws them with data and
no console error. The screenshot is kept: under $SUPPLYMON_ARTIFACTS if set, else in
the test's tmp dir."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest

from dashboards.panels import clickhouse_panels
from supplymon.embedded import free_port
from tests.browser import Chromium
from tests.conftest import ROOT
from tests.test_live import stop

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def page_worker(story_replay, tmp_path_factory):
    """`supplymon worker` on the replayed stories (no live ticks: the store stays as
    replayed); yields its web address; stopped by its pid."""
    data_dir = story_replay.data_dir
    port = free_port()
    log = tmp_path_factory.mktemp("page-worker") / "worker.log"
    env = {**os.environ, "SUPPLYMON_DATA_DIR": str(data_dir), "SUPPLYMON_WEB_PORT": str(port),
           "SUPPLYMON_LIVE_TICK_SECONDS": "0"}
    env.pop("SUPPLYMON_KAFKA", None)
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "supplymon", "worker"], cwd=ROOT, env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    web = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log.read_text()
            try:
                get(web + "/panels")
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.3)
        yield web, story_replay
    finally:
        stop(process)


def get(url: str, method: str = "GET") -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_every_panel_is_served_as_rows(page_worker):
    web, replay = page_worker
    status, body = get(web + "/")
    assert status == 200 and "集采供应监测".encode() in body and b"/static/echarts.min.js" in body
    layout = orjson.loads(get(web + "/panels")[1])
    assert [p["name"] for d in layout["dashboards"] for p in d["panels"]] == list(clickhouse_panels())
    for name in clickhouse_panels():
        status, body = get(f"{web}/panels/{name}?range=90d")
        assert status == 200, body
        data = orjson.loads(body)
        assert data["rows"], name
        assert len(data["columns"]) == len(data["types"]) == len(data["rows"][0])
    # The range ends at the latest event stored: the history's end, not today.
    data = orjson.loads(get(f"{web}/panels/orders?range=1d")[1])
    assert data["to"] - data["from"] == 86_400_000 and data["to"] == replay.last_event_ms
    shortage = next(s for s in replay.stories if s.kind == "supply_shortage")
    regions = orjson.loads(get(web + "/variables/supplymon-shortage/region")[1])["values"]
    assert shortage.region_code in regions
    rows = orjson.loads(get(f"{web}/panels/out_of_stock?range=90d&region={shortage.region_code}")[1])["rows"]
    assert rows[0][0] == f"{shortage.product_id} / {shortage.region_code}" and rows[0][1] >= 3


def test_the_page_takes_no_sql_and_changes_nothing(page_worker):
    web, _ = page_worker
    assert get(f"{web}/panels/nope")[0] == 404
    assert get(f"{web}/panels/orders?range=10y")[0] == 400
    status, body = get(f"{web}/panels/orders?region=" + urllib.request.quote("1') OR 1=1 --"))
    assert status == 400 and b"not a valid value" in body
    assert get(f"{web}/panels/orders?query=SELECT%201")[0] == 200  # an unknown parameter is ignored
    assert get(f"{web}/panels/orders", method="POST")[0] == 405
    assert get(f"{web}/static/..%2F..%2Fsupplymon%2Fsettings.py")[0] == 404
    assert get(f"{web}/static/panels.py")[0] == 404
    assert get(f"{web}/variables/supplymon-overview/nope")[0] == 404


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed (make system-tools)")
def test_chromium_draws_every_panel_with_data(page_worker, tmp_path):
    web, _ = page_worker
    all_ready = ("document.body.dataset.refreshes >= '1' && "
                 "[...document.querySelectorAll('.panel')].every(p => p.dataset.state !== 'loading') && "
                 "[...document.querySelectorAll('.panel')].map(p => [p.dataset.panel, p.dataset.kind, p.dataset.state,"
                 " Number(p.dataset.rows), p.querySelectorAll('canvas').length, p.innerText])")
    with Chromium(width=1440, height=900) as browser:
        run = browser.open(f"{web}/?range=90d", all_ready, timeout=90)  # the whole history
    artifacts = Path(os.environ.get("SUPPLYMON_ARTIFACTS") or tmp_path)
    artifacts.mkdir(parents=True, exist_ok=True)
    (artifacts / "page.png").write_bytes(run.screenshot)
    assert run.errors == []
    panels = {name: (kind, state, rows, canvases, text) for name, kind, state, rows, canvases, text in run.value}
    assert set(panels) == set(clickhouse_panels())
    for name, (kind, state, rows, canvases, text) in panels.items():
        assert state == "ready" and rows > 0, (name, state, text)
        if kind in ("timeseries", "bar"):
            assert canvases >= 1, name  # drawn by ECharts
        if kind == "stat":
            assert any(ch.isdigit() for ch in text), (name, text)
    assert run.screenshot.startswith(b"\x89PNG") and len(run.screenshot) > 50_000
    docs = os.environ.get("SUPPLYMON_SCREENSHOT_TO")  # e.g. docs/page.png, to refresh the README's picture
    if docs:
        shutil.copy(artifacts / "page.png", docs)


def test_metrics_report_the_pipeline_lag(page_worker):
    """The pipeline dashboard's series: consumer lag per assigned input partition (0
    once the worker has read and stored what the broker holds: on start it republishes
    the stored events to rebuild its state), stream time lag behind the wall clock (the
    history is months old)."""
    web, replay = page_worker
    deadline = time.monotonic() + 120
    while True:
        text = get(web + "/metrics")[1].decode()
        lags = re.findall(r'^supplymon_consumer_lag_messages\{partition="(\d+)",topic="([\w.]+)"\} (\S+)$', text, re.M)
        if len(lags) == 16 and all(float(v) == 0 for _, _, v in lags) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert {(topic, int(partition)) for partition, topic, _ in lags} == {
        (topic, p) for topic in ("supply.orders", "supply.responses", "supply.shipments", "supply.arrivals")
        for p in range(4)}
    assert all(float(value) == 0 for _, _, value in lags), lags
    lag = float(re.search(r"^supplymon_stream_time_lag_seconds (\S+)$", text, re.M).group(1))
    stream_time = float(re.search(r"^supplymon_stream_time_seconds (\S+)$", text, re.M).group(1))
    assert stream_time >= replay.last_event_ms / 1000 - 86400  # about the history's end
    assert abs(lag - (time.time() - stream_time)) < 60
