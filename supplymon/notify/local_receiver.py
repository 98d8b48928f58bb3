"""The demo's built-in receiver: a loopback HTTP server in the demo process that
takes the generic webhook's posts (checking their signatures) for every simulated
distributor and supervisor, and a summary of what each recipient got.

`LocalReceiver.summary()` gives the lines to print; `received` holds the messages
by recipient for any other view of them.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import threading
from collections import defaultdict
from pathlib import Path

import orjson
from aiohttp import web


class LocalReceiver:
    def __init__(self) -> None:
        self.secret = secrets.token_hex(16)
        self.received: dict[str, list[dict]] = defaultdict(list)
        self.refused = 0
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        timestamp = request.headers.get("X-Supplymon-Timestamp", "")
        expected = "sha256=" + hmac.new(self.secret.encode(), timestamp.encode() + b"." + body,
                                        hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get("X-Supplymon-Signature", "")):
            self.refused += 1
            return web.Response(status=401)
        message = orjson.loads(body)
        self.received[request.match_info["recipient"]].append(message)
        return web.Response(status=204)

    def start(self) -> "LocalReceiver":
        ready = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            app = web.Application()
            app.router.add_post("/to/{recipient}", self._handle)
            self._runner = web.AppRunner(app)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            self._loop.run_until_complete(site.start())
            self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()

        self._thread = threading.Thread(target=serve, name="notify-receiver", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def write_directory(self, path: Path, distributors: dict[str, tuple[str, ...]], regions: list[str]) -> Path:
        """A directory sending everything to this receiver: each distributor (id -> regions served)
        and one supervisor per region."""
        def channel(rid: str) -> str:
            return f'[[{{role}}.channels]]\ntype = "webhook"\nurl = "{self.url}/to/{rid}"\nsecret = "{self.secret}"\n'

        parts = ['[defaults]\ndigest_time = "09:00"\nfirst_backoff_seconds = 0.2\n']
        for did, served in sorted(distributors.items()):
            parts.append(f'[[distributor]]\nid = "{did}"\nregions = {list(served)!r}\n'.replace("'", '"')
                         + channel(did).format(role="distributor"))
        for region in regions:
            parts.append(f'[[supervisor]]\nid = "bureau-{region}"\nname = "医保局 {region}"\nregions = ["{region}"]\n'
                         + channel(f"bureau-{region}").format(role="supervisor"))
        path.write_text("\n".join(parts), encoding="utf-8")
        return path

    def brief(self) -> str:
        """One line: how many messages reached how many recipients so far."""
        messages = sum(len(got) for got in self.received.values())
        return (f"{messages:,} 条通知 / messages, {len(self.received)} 个接收方 / recipients"
                f" (本机接收端 / local receiver {self.url})")

    def summary(self) -> str:
        names = {"alert": "告警 / alerts", "folded": "合并 / folded", "daily_distributor": "延迟响应清单 / delayed-response lists",
                 "daily_supervisor": "每日汇总 / daily summaries"}
        lines = [f"== 各接收方收到的通知 / what each recipient got (本机接收端 / local receiver {self.url}) =="]
        if not self.received:
            lines.append("未收到通知 / none received")
        for rid in sorted(self.received):
            messages = self.received[rid]
            kinds = defaultdict(int)
            for m in messages:
                kinds[m["type"]] += 1
            digest = next((m for m in reversed(messages) if m["type"].startswith("daily")), None)
            lines.append(f"{rid}: {len(messages)} 条 / messages ("
                         + ", ".join(f"{names.get(kind, kind)} {n}" for kind, n in sorted(kinds.items())) + ")"
                         + (f"; 最近汇总 / last digest: {digest['title']}" if digest else ""))
        if self.refused:
            lines.append(f"签名无效被拒 / refused for a bad signature: {self.refused}")
        return "\n".join(lines)
