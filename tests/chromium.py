"""Open a page in Debian's headless Chromium through the DevTools protocol: collect
console errors, uncaught exceptions and failed loads, and take a full-page screenshot."""
from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import aiohttp

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0")
ROOT = Path(__file__).resolve().parent.parent


def artifacts_dir() -> Path:
    """Where tests keep what a person may want to look at (screenshots); not cleaned up."""
    path = Path(os.environ.get("SUPPLYMON_TEST_ARTIFACTS", ROOT / "test-artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _devtools_port(profile: Path, proc: subprocess.Popen, timeout: float = 60) -> int:
    active = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited with {proc.returncode}")
        try:
            return int(active.read_text().splitlines()[0])
        except (OSError, IndexError, ValueError):
            time.sleep(0.1)
    raise TimeoutError("chromium did not open its DevTools port")


async def _inspect(ws_url: str, url: str, screenshot: Path, width: int) -> list[str]:
    problems: list[str] = []
    ids = iter(range(1, 1_000_000))
    pending: dict[int, asyncio.Future] = {}
    loaded = asyncio.Event()
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url, max_msg_size=0) as ws:
        async def reader():
            async for msg in ws:
                data = json.loads(msg.data)
                if "id" in data and data["id"] in pending:
                    pending.pop(data["id"]).set_result(data)
                    continue
                method, params = data.get("method"), data.get("params", {})
                if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                    problems.append("console: " + " ".join(str(a.get("value", a.get("description")))
                                                           for a in params.get("args", [])))
                elif method == "Runtime.exceptionThrown":
                    details = params.get("exceptionDetails", {})
                    problems.append("exception: " + str(details.get("exception", {}).get("description")
                                                        or details.get("text")))
                elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                    entry = params["entry"]
                    problems.append(f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}")
                elif method == "Page.loadEventFired":
                    loaded.set()

        async def call(method: str, **params) -> dict:
            n = next(ids)
            pending[n] = asyncio.get_running_loop().create_future()
            await ws.send_str(json.dumps({"id": n, "method": method, "params": params}))
            reply = await asyncio.wait_for(pending[n], 60)
            if "error" in reply:
                raise RuntimeError(f"{method}: {reply['error']}")
            return reply.get("result", {})

        task = asyncio.create_task(reader())
        try:
            for domain in ("Runtime", "Log", "Page"):
                await call(f"{domain}.enable")
            await call("Emulation.setDeviceMetricsOverride", width=width, height=900, deviceScaleFactor=1,
                       mobile=False)
            await call("Page.navigate", url=url)
            await asyncio.wait_for(loaded.wait(), 60)
            await asyncio.sleep(0.5)  # late console messages
            size = (await call("Page.getLayoutMetrics"))["cssContentSize"]
            shot = await call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                              clip={"x": 0, "y": 0, "width": width, "height": size["height"], "scale": 1})
            screenshot.write_bytes(base64.b64decode(shot["data"]))
        finally:
            task.cancel()
    return problems


def inspect_page(page: Path, screenshot: Path, profile: Path, width: int = 1200) -> list[str]:
    """Load `page` (a local file) in headless Chromium; return the problems it reported."""
    profile.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port = _devtools_port(profile, proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as response:
            targets = json.load(response)
        ws_url = next(t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page")
        return asyncio.run(_inspect(ws_url, page.resolve().as_uri(), screenshot, width))
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
