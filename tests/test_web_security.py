"""The worker's web server, tried as a hostile page or client would: a real worker on
the embedded broker and store, with its generated token."""
from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import orjson
import pytest

from supplymon.embedded import free_port
from tests.conftest import ROOT, supplymon
from tests.test_live import stop


def _env(data_dir, port: int, **extra) -> dict:
    env = {**os.environ, "SUPPLYMON_DATA_DIR": str(data_dir), "SUPPLYMON_WEB_PORT": str(port),
           "SUPPLYMON_LIVE_TICK_SECONDS": "0", **extra}
    env.pop("SUPPLYMON_KAFKA", None)
    if "SUPPLYMON_WEB_TOKEN" not in extra:
        env.pop("SUPPLYMON_WEB_TOKEN", None)  # the worker writes its own to the data dir
    return env


def request(url: str, data: bytes | None = None, headers: dict | None = None, method: str | None = None):
    """(status, body) of one HTTP request."""
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("web") / "data"
    port = free_port()
    log = data_dir.parent / "worker.log"
    with open(log, "ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "supplymon", "worker"], cwd=ROOT,
                                   env=_env(data_dir, port), stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while not _serving(url):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield url, data_dir, log
    finally:
        stop(process)


def _serving(url: str) -> bool:
    try:
        urllib.request.urlopen(url + "/live", timeout=2).close()
        return True
    except OSError:
        return False


def _token(data_dir) -> str:
    return (data_dir / "web-token").read_text().strip()


def test_token_file_is_private(worker):
    _, data_dir, _ = worker
    mode = stat.S_IMODE((data_dir / "web-token").stat().st_mode)
    assert mode == 0o600
    assert len(_token(data_dir)) >= 32


def test_sql_is_post_only_with_the_token(worker):
    url, data_dir, _ = worker
    query = urllib.parse.urlencode({"query": "SELECT count() FROM supplymon.order_facts", "format": "TSV"})
    status, body = request(f"{url}/sql?{query}")  # what a link or an <img> on a web page can send
    assert status == 405 and "只接受 POST" in body and "POST only" in body
    status, body = request(url + "/sql", data=query.encode())
    assert status == 401 and "需要令牌" in body and "token is required" in body
    status, body = request(url + "/sql", data=query.encode(), headers={"X-Supplymon-Token": "wrong"})
    assert status == 401
    status, body = request(url + "/sql", data=query.encode(), headers={"X-Supplymon-Token": _token(data_dir)})
    assert (status, body) == (200, "0\n")
    status, body = request(url + "/sql", data=query.encode(), headers={"Authorization": f"Bearer {_token(data_dir)}"})
    assert (status, body) == (200, "0\n")


def test_sql_refuses_writes_and_outside_reads_with_reasons(worker):
    url, data_dir, _ = worker
    secret = data_dir.parent / "secret.txt"
    secret.write_text("do-not-show")
    for sql, reason in (("DROP TABLE supplymon.alerts", "只允许只读查询"),
                        (f"SELECT file('{secret}')", "存储以外"),
                        ("SELECT * FROM url('http://127.0.0.1:1/', 'LineAsString')", "存储以外"),
                        ("SELECT 1 SETTINGS readonly = 0", "只读模式")):
        data = urllib.parse.urlencode({"query": sql, "format": "TSV"}).encode()
        status, body = request(url + "/sql", data=data, headers={"X-Supplymon-Token": _token(data_dir)})
        assert status == 403, (sql, body)
        assert reason in body and "query refused" in body and "do-not-show" not in body
    status, body = request(url + "/sql", data=b"format=TSV&query=SELECT+%28", headers={"X-Supplymon-Token": _token(data_dir)})
    assert status == 403 and "无法解析" in body and "Syntax error" in body
    status, body = request(url + "/sql", data=b"format=TSV&query=SELECT+nosuchcolumn",
                           headers={"X-Supplymon-Token": _token(data_dir)})
    assert status == 400 and "query failed" in body and "UNKNOWN_IDENTIFIER" in body


def test_cross_site_and_rebinding_requests_are_refused(worker):
    url, data_dir, _ = worker
    data = b"query=SELECT+1&format=TSV"
    status, body = request(url + "/sql", data=data, headers={"Origin": "http://evil.example"})
    assert status == 403 and "其他网站" in body and "cross-site" in body
    # A name that resolves to 127.0.0.1 (DNS rebinding) cannot read the pages.
    status, body = request(url + "/progress", headers={"Host": "evil.example:80"})
    assert status == 403 and "loopback" in body
    assert request(url + "/progress", headers={"Host": f"localhost:{url.rsplit(':', 1)[1]}"})[0] == 200


def test_faust_builtin_pages_are_not_served(worker):
    url, _, _ = worker
    for path in ("/router/", "/router/topics", "/table/", "/table/order-state/", "/table/order-state/x/",
                 "/assignment/", "/graph/", "/performance/"):
        assert request(url + path)[0] == 404, path
    for path in ("/metrics", "/progress", "/state", "/live"):
        assert request(url + path)[0] == 200, path
    # `/` is supplymon's own page (agents/dashboard.py), not Faust's statistics or index.
    status, body = request(url + "/")
    assert status == 200 and "<html" in body.lower() and '{"status":"OK"}' not in body


def test_health_reports_store_and_broker(worker):
    url, _, _ = worker
    deadline = time.monotonic() + 30
    while True:  # the first probes run a couple of seconds after start
        status, body = request(url + "/health")
        report = orjson.loads(body)
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert status == 200, report
    assert report["status"] == "ok" and report["store"]["up"] is True and report["broker"]["up"] is True
    assert report["assigned"] is True
    assert request(url + "/ready") == (200, '{"status":"ok"}') or orjson.loads(request(url + "/ready")[1]) == {"status": "ok"}
    metrics = request(url + "/metrics")[1]
    assert 'supplymon_up{system="store"} 1.0' in metrics and 'supplymon_up{system="broker"} 1.0' in metrics


def test_cli_sql_goes_through_the_worker_with_its_token(worker):
    url, data_dir, _ = worker
    env = {"SUPPLYMON_WEB_TOKEN": ""}
    result = supplymon("sql", "--data-dir", str(data_dir), "SELECT 40 + 2 AS answer", "--format", "TSV", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "42\n"
    result = supplymon("sql", "--data-dir", str(data_dir), "DROP TABLE supplymon.alerts", env=env)
    assert result.returncode == 1 and "只允许只读查询" in result.stderr and "read-only" in result.stderr


def test_cli_sql_on_the_store_directly_is_read_only_too(tmp_path):
    data_dir = tmp_path / "data"
    result = supplymon("sql", "--data-dir", str(data_dir), "SELECT 1")
    assert result.returncode == 1  # no data yet
    (data_dir / "clickhouse").mkdir(parents=True)
    ok = supplymon("sql", "--data-dir", str(data_dir), "SELECT count() FROM supplymon.alerts", "--format", "TSV")
    assert ok.returncode == 0 and ok.stdout == "0\n", ok.stderr
    refused = supplymon("sql", "--data-dir", str(data_dir), "INSERT INTO supplymon.alerts (alert_id) VALUES ('x')")
    assert refused.returncode == 1 and "查询被拒绝" in refused.stderr
    again = supplymon("sql", "--data-dir", str(data_dir), "SELECT count() FROM supplymon.alerts", "--format", "TSV")
    assert again.stdout == "0\n", again.stderr


def test_non_loopback_address_needs_a_configured_token(tmp_path):
    port = free_port()
    env = _env(tmp_path / "data", port, SUPPLYMON_WEB_HOST="0.0.0.0")
    result = subprocess.run([sys.executable, "-m", "supplymon", "worker"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert "需要凭据" in result.stderr and "needs credentials" in result.stderr
    assert not re.search(r"embedded broker at", result.stdout)


def _mocked(method: str, headers: dict, remote: str = "127.0.0.1"):
    from aiohttp.test_utils import make_mocked_request

    request = make_mocked_request(method, "/sql", headers=headers)
    return type("Request", (), {"headers": request.headers, "host": request.host, "scheme": "http",
                                "remote": remote})()


@pytest.mark.parametrize("host, token, sent, origin, remote, same_origin_ok, allowed", [
    ("127.0.0.1", None, None, "http://127.0.0.1:6066", "127.0.0.1", True, True),    # the worker's own page
    ("127.0.0.1", None, None, "http://127.0.0.1:6066", "127.0.0.1", False, False),  # ... not for /sql
    ("127.0.0.1", None, None, "http://evil.example", "127.0.0.1", True, False),
    ("127.0.0.1", None, None, None, "127.0.0.1", True, False),                      # no Origin: not a page
    ("0.0.0.0", "a-long-enough-token", None, "http://10.0.0.5:6066", "10.0.0.9", True, False),  # only tokens
    ("0.0.0.0", "a-long-enough-token", "a-long-enough-token", None, "10.0.0.9", False, True),
    ("0.0.0.0", "a-long-enough-token", "a-long-enough-tokeN", None, "10.0.0.9", False, False),
])
def test_who_may_post(host, token, sent, origin, remote, same_origin_ok, allowed):
    from dataclasses import replace

    from streams.web_security import WebAccess
    from supplymon.settings import Settings

    access = WebAccess(replace(Settings.from_env({}), web_host=host, web_token=token))
    headers = {"Host": "127.0.0.1:6066" if host == "127.0.0.1" else "10.0.0.5:6066"}
    if origin:
        headers["Origin"] = origin
    if sent:
        headers["X-Supplymon-Token"] = sent
    assert access.may_post(_mocked("POST", headers, remote), same_origin_ok) is allowed


def test_host_names_checked_only_on_loopback():
    from dataclasses import replace

    from streams.web_security import WebAccess
    from supplymon.settings import Settings

    loopback = WebAccess(Settings.from_env({}))
    for host, ok in (("127.0.0.1:6066", True), ("localhost:6066", True), ("[::1]:6066", True),
                     ("evil.example:6066", False), ("127.0.0.1.evil.example", False)):
        assert loopback.host_allowed(_mocked("GET", {"Host": host})) is ok, host
    anywhere = WebAccess(replace(Settings.from_env({}), web_host="0.0.0.0", web_token="a-long-enough-token"))
    assert anywhere.host_allowed(_mocked("GET", {"Host": "monitor.example:6066"}))
