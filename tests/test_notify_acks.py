"""Acknowledgements through a live worker (embedded broker, chdb): the signed link
is the credential, checked server-side; a good one is recorded in `alert_acks`."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request

from supplymon.embedded import free_port
from supplymon.notify import tokens
from supplymon.runner import http_query
from tests.test_live import start_worker, stop

SECRET = b"ack-test-secret"


def post(url: str, fields: dict, headers: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=urllib.parse.urlencode(fields).encode(), method="POST",
                                     headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return exc.code, json.loads(body)
        except ValueError:  # the web server's own refusals are plain text
            return exc.code, {"text": body.decode()}


def test_a_signed_link_acknowledges_and_nothing_else_does(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "ack-secret").write_bytes(SECRET)  # the worker's key (else it makes one)
    port = free_port()
    process, _ = start_worker(data_dir, port, tmp_path / "worker.log")
    web = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(web + "/progress", timeout=1).read()
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
                time.sleep(0.2)
        alert_id = "response_overdue-0123456789abcdef0123"
        expires = int(time.time()) + 3600
        link = tokens.ack_link(web, SECRET, alert_id, "D1", expires)
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(link).query))
        # GET shows the form and changes nothing
        with urllib.request.urlopen(link, timeout=10) as resp:
            page = resp.read().decode()
        assert "<form method=\"post\">" in page and query["sig"] in page
        assert post(link, {"comment": "已电话联系，明日送达"}) == (200, {
            "acknowledged": alert_id, "recipient": "D1", "comment": "已电话联系，明日送达"})
        # the link names its recipient and alert: it cannot answer for another
        assert post(f"{web}/alerts/{alert_id}/ack", dict(query, r="D2", comment="x"))[0] == 403
        assert post(f"{web}/alerts/other-alert/ack", dict(query, comment="x"))[0] == 403
        stale = tokens.ack_link(web, SECRET, alert_id, "D1", int(time.time()) - 1)
        assert post(stale, {"comment": "x"}) == (403, {"error": "链接已过期 / link expired"})
        # a page on another site cannot make a recipient's browser post it, even with a good link
        assert post(link, {"comment": "x"}, {"Origin": "http://evil.example"})[0] == 403
        forged = tokens.ack_link(web, b"guess", alert_id, "D1", expires)
        assert post(forged, {"comment": "x"}) == (403, {"error": "签名无效 / invalid signature"})
        rows = http_query(web, "SELECT alert_id, recipient, comment FROM supplymon.alert_acks FINAL", "JSONEachRow")
    finally:
        stop(process)
    assert [json.loads(line) for line in rows.splitlines()] == [
        {"alert_id": alert_id, "recipient": "D1", "comment": "已电话联系，明日送达"}]
