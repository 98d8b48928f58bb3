"""Notifications received by real servers on 127.0.0.1: an SMTP server (aiosmtpd)
that receives the Chinese delayed-response list, and Debian's Prometheus
Alertmanager, started here, receiving and resolving alerts."""
from __future__ import annotations

import asyncio
import email
import email.policy
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller

from supplymon.embedded import free_port
from supplymon.notify.digest import daily_digests
from supplymon.notify.directory import parse_directory
from supplymon.notify.dispatcher import Dispatcher, StoreDeliveryLog
from supplymon.notify.render import Renderer
from tests.notify_servers import store_run  # noqa: F401  (a fixture)
from tests.test_notify import H, T0, alert

ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"


class Mailbox:
    def __init__(self):
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


def test_the_delayed_response_list_arrives_by_email_in_chinese(store_run):
    run, store = store_run
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        directory = parse_directory({
            "smtp": {"host": "127.0.0.1", "port": port, "sender": "集采监测 <supplymon@example.gov.cn>"},
            "distributor": [{"id": "D1", "name": "赣州某医药配送有限公司",
                             "channels": [{"type": "email", "to": ["logistics@d1.example.com"]}]}],
        }, env={})
        nine = T0 + 25 * H  # 2026-01-02 09:00
        overdue = [alert("response_overdue", n) for n in (1, 2)]
        escalated = dict(alert("response_escalation", 1), raised_at=overdue[0]["raised_at"] + 24 * H)
        acks = {overdue[1]["alert_id"]: [{"recipient": "D1", "acked_at": "2026-01-02 08:30", "comment": "已联系厂家补货"}]}
        (digest,) = daily_digests(directory, nine, overdue + [escalated], [], acks, 48)
        renderer = Renderer()
        message = renderer.render(digest.template, "daily:2026-01-02:D1", "D1", [], **dict(
            digest.context, overdue=[dict(o, ack_url="http://127.0.0.1/ack") for o in digest.context["overdue"]]))

        async def send():
            dispatcher = Dispatcher(directory, StoreDeliveryLog(run), renderer)
            assert await dispatcher.submit_message(digest.key, digest.recipient, digest.channel, message)
            await dispatcher.drain(timeout=30)
            # sent once: the same digest again (a restart, a replay) is not sent
            assert not await dispatcher.submit_message(digest.key, digest.recipient, digest.channel, message)
            await dispatcher.close()

        asyncio.run(send())
    finally:
        controller.stop()
    ((rcpt, raw),) = mailbox.messages
    assert rcpt == ["logistics@d1.example.com"]
    mail = email.message_from_bytes(raw, policy=email.policy.default)
    assert mail["Subject"] == "延迟响应清单 2026-01-02（2 笔）/ Delayed-response list 2026-01-02 (2 orders)"
    assert mail["From"].addresses[0].display_name == "集采监测"
    plain = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    assert "赣州某医药配送有限公司：截至 2026-01-02 09:00" in plain
    assert "订单 / order **O1**" in plain and "**已上报 / escalated**" in plain  # escalated a day after
    assert "超时 / overdue **25.0 h**" in plain  # past its deadline (raised_at) 2026-01-01 08:01, as of 09:00 a day later
    assert "已确认 / acknowledged 2026-01-02 08:30：已联系厂家补货" in plain  # O2's acknowledgement
    assert "<li>订单 / order <strong>O1</strong>" in html and '<a href="http://127.0.0.1/ack">' in html
    rows = store.rows("SELECT alert_id, recipient, channel, status FROM supplymon.notifications FINAL")
    assert rows == [{"alert_id": "daily:2026-01-02", "recipient": "D1", "channel": "email", "status": "sent"}]


# -- Alertmanager ----------------------------------------------------------------------------

class AlertmanagerProcess:
    def __init__(self, workdir, webhook_url: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "alertmanager.yml"
        config.write_text(
            "route:\n  receiver: hook\n  group_by: [alert_id]\n  group_wait: 100ms\n  group_interval: 1s\n"
            "  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook_configs:\n"
            f"      - url: {webhook_url}\n        send_resolved: true\n")
        (workdir / "am-data").mkdir()
        self.log = open(workdir / "alertmanager.log", "wb")
        self.process = subprocess.Popen(
            [ALERTMANAGER, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{self.port}",
             f"--storage.path={workdir / 'am-data'}", "--cluster.listen-address="],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "alertmanager exited"
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError("alertmanager not ready")

    def alerts(self) -> list[dict]:
        with urllib.request.urlopen(self.url + "/api/v2/alerts", timeout=5) as resp:
            return json.loads(resp.read())

    def stop(self):
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


@pytest.mark.skipif(not os.path.exists(ALERTMANAGER), reason="prometheus-alertmanager not installed (make system-tools)")
def test_alertmanager_receives_and_resolves_alerts(store_run, tmp_path):
    run, store = store_run

    async def main():
        posts: list[dict] = []

        async def hook(request):
            posts.append(await request.json())
            return web.Response()

        app = web.Application()
        app.router.add_post("/am", hook)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        hook_url = f"http://127.0.0.1:{runner.addresses[0][1]}/am"
        am = AlertmanagerProcess(tmp_path, hook_url)
        try:
            await asyncio.get_running_loop().run_in_executor(None, am.wait_ready)
            directory = parse_directory({"observer": [{"id": "ops", "channels": [
                {"type": "alertmanager", "url": am.url}]}]}, env={})
            dispatcher = Dispatcher(directory, StoreDeliveryLog(run), Renderer(),
                                    generator_url="http://127.0.0.1:6066")
            raised = alert("supply_shortage", 1)
            await dispatcher.submit([raised])
            await dispatcher.drain(timeout=30)
            (active,) = [a for a in am.alerts() if a["labels"]["alert_id"] == raised["alert_id"]]
            assert active["status"]["state"] == "active"
            assert active["labels"]["alertname"] == "supply_shortage"
            assert active["labels"]["severity"] == "critical" and active["labels"]["region_code"] == "360702"
            assert active["annotations"]["summary"] == "订单 O1 未响应。"
            await dispatcher.submit([dict(raised, resolved_at=int(time.time() * 1000) - 1000)])
            await dispatcher.drain(timeout=30)
            await dispatcher.close()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not any(p["status"] == "resolved" for p in posts):
                await asyncio.sleep(0.2)
            remaining = [a for a in am.alerts() if a["labels"]["alert_id"] == raised["alert_id"]]
        finally:
            am.stop()
            await runner.cleanup()
        return posts, remaining

    posts, remaining = asyncio.run(main())
    assert remaining == []  # resolved: no longer among Alertmanager's alerts
    statuses = [(p["status"], [a["labels"]["alert_id"] for a in p["alerts"]]) for p in posts]
    assert ("firing", ["supply_shortage-0001"]) in statuses and ("resolved", ["supply_shortage-0001"]) in statuses
    rows = store.rows("SELECT state, status FROM supplymon.notifications FINAL ORDER BY state")
    assert rows == [{"state": "raised", "status": "sent"}, {"state": "resolved", "status": "sent"}]
