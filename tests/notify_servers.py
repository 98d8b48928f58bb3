"""Real receivers on 127.0.0.1 for the notification tests: an aiohttp server that
plays the vendors' robots (checking their published signature algorithms), a
generic webhook and failing receivers; the delivery log's store (chdb)."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest
from aiohttp import web

from supplymon.settings import Settings
from supplymon.store import Store


@pytest.fixture
def store_run(tmp_path):
    store = Store(Settings(data_dir=tmp_path / "data"))
    store.migrate()
    executor = ThreadPoolExecutor(max_workers=1)

    async def run(fn):
        return await asyncio.get_running_loop().run_in_executor(executor, fn, store)

    yield run, store
    executor.shutdown()
    store.close()


def dingtalk_expected(secret: str, timestamp: str) -> str:
    """DingTalk's published check: base64(HMAC-SHA256(secret, timestamp + "\\n" + secret))."""
    mac = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def feishu_expected(secret: str, timestamp: str) -> str:
    """Feishu's published check: base64(HMAC-SHA256(key=timestamp + "\\n" + secret, msg=""))."""
    return base64.b64encode(hmac.new(f"{timestamp}\n{secret}".encode(), b"", hashlib.sha256).digest()).decode()


class Robots:
    """WeCom, DingTalk, Feishu and a webhook on one loopback server. `throttle[path] = n`:
    answer the vendor's throttling code n times; `fail[path] = n`: answer 500 n times."""

    def __init__(self, dingtalk_secret="ding-secret", feishu_secret="feishu-secret", webhook_secret="hook-secret"):
        self.secrets = {"dingtalk": dingtalk_secret, "feishu": feishu_secret, "webhook": webhook_secret}
        self.received: list[tuple[str, dict, dict]] = []  # (vendor, body, headers) accepted
        self.refused: list[tuple[str, str]] = []
        self.throttle: dict[str, int] = {}
        self.fail: dict[str, int] = {}
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> "Robots":
        app = web.Application()
        app.router.add_post("/cgi-bin/webhook/send", self.wecom)
        app.router.add_post("/robot/send", self.dingtalk)
        app.router.add_post("/open-apis/bot/v2/hook/{token}", self.feishu)
        app.router.add_post("/hook", self.webhook)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        await self.runner.cleanup()

    def _take(self, counter: dict, name: str) -> bool:
        if counter.get(name, 0) > 0:
            counter[name] -= 1
            return True
        return False

    def of(self, vendor: str) -> list[dict]:
        return [body for v, body, _ in self.received if v == vendor]

    async def wecom(self, request):
        body = await request.json()
        if request.query.get("key") != "wecom-key":
            return web.json_response({"errcode": 93000, "errmsg": "invalid webhook url"})
        if self._take(self.throttle, "wecom"):
            return web.json_response({"errcode": 45009, "errmsg": "api freq out of limit"})
        if len(body["markdown"]["content"].encode()) > 4096:
            return web.json_response({"errcode": 40058, "errmsg": "content exceed max length"})
        self.received.append(("wecom", body, dict(request.headers)))
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def dingtalk(self, request):
        # The raw query, decoded once, as DingTalk does.
        query = dict(urllib.parse.parse_qsl(request.rel_url.raw_query_string))
        body = await request.json()
        timestamp, sign = query.get("timestamp", ""), query.get("sign", "")
        if sign != dingtalk_expected(self.secrets["dingtalk"], timestamp) or \
                abs(time.time() * 1000 - int(timestamp or 0)) > 3_600_000:
            self.refused.append(("dingtalk", sign))
            return web.json_response({"errcode": 310000, "errmsg": "sign not match"})
        if self._take(self.throttle, "dingtalk"):
            return web.json_response({"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"})
        self.received.append(("dingtalk", body, dict(request.headers)))
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def feishu(self, request):
        body = await request.json()
        if body.get("sign") != feishu_expected(self.secrets["feishu"], body.get("timestamp", "")):
            self.refused.append(("feishu", body.get("sign")))
            return web.json_response({"code": 19021, "msg": "sign match fail or timestamp is not within one hour"})
        if self._take(self.throttle, "feishu"):
            return web.json_response({"code": 11232, "msg": "frequency limited"})
        self.received.append(("feishu", body, dict(request.headers)))
        return web.json_response({"code": 0, "msg": "success"})

    async def webhook(self, request):
        raw = await request.read()
        timestamp = request.headers.get("X-Supplymon-Timestamp", "")
        expected = "sha256=" + hmac.new(self.secrets["webhook"].encode(), timestamp.encode() + b"." + raw,
                                        hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get("X-Supplymon-Signature", "")):
            self.refused.append(("webhook", "signature"))
            return web.Response(status=401, text="bad signature")
        if self._take(self.fail, "webhook"):
            return web.Response(status=503, text="try later")
        import orjson
        self.received.append(("webhook", orjson.loads(raw), dict(request.headers)))
        return web.Response(status=204)
