"""Headless Debian Chromium driven over the DevTools protocol (aiohttp websockets):
open a page, wait for a condition, collect console errors, uncaught exceptions and
failed loads, take a full-page screenshot. Started in a session of its own and
stopped by its process group; its profile (and its temp dir) in a temp dir."""
from __future__ import annotations

import asyncio
import base64
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

CHROMIUM = "/usr/bin/chromium"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--remote-debugging-address=127.0.0.1",
         "--remote-debugging-port=0")


ROOT = Path(__file__).resolve().parent.parent


def artifacts_dir() -> Path:
    """Where tests keep what a person may want to look at (screenshots); not cleaned up."""
    path = Path(os.environ.get("SUPPLYMON_TEST_ARTIFACTS", ROOT / "test-artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def inspect_page(page: Path, screenshot: Path, width: int = 1200) -> list[str]:
    """Load `page` (a local file) once it is loaded, keep its full-page screenshot, and
    return the problems it reported (console errors, uncaught exceptions, failed loads)."""
    with Chromium(width=width) as browser:
        run = browser.open(page.resolve().as_uri(), until="document.readyState === 'complete'")
    screenshot.write_bytes(run.screenshot)
    return run.errors


@dataclass
class PageRun:
    errors: list[str] = field(default_factory=list)  # console errors, exceptions, failed loads
    value: object = None  # what the wait expression returned last
    screenshot: bytes = b""


class Chromium:
    def __init__(self, width: int = 1440, height: int = 900):
        self.width, self.height = width, height
        self.profile = Path(tempfile.mkdtemp(prefix="supplymon-chromium-"))
        # A session of its own: its helper processes (network service, crash handler)
        # are stopped with it, by its process group, before its profile is removed.
        # Its temp dir in the profile: Chromium leaves a dir for its singleton socket there.
        self.process = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={self.profile}", f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            env={**os.environ, "TMPDIR": str(self.profile)})
        self.port = self._wait_port()

    def _wait_port(self, timeout: float = 30) -> int:
        active = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if active.exists() and active.read_text().strip():
                return int(active.read_text().split()[0])
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.process.returncode}")
            time.sleep(0.1)
        raise RuntimeError("chromium did not open its DevTools port")

    def close(self) -> None:
        """Chromium and its helpers stopped (a helper left running wrote into the
        profile after it was removed, leaving it behind), then its profile removed."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self._group_gone_after(sig, 10.0):
                break
        self.process.wait()
        shutil.rmtree(self.profile, ignore_errors=True)

    def _group_gone_after(self, sig: int, wait: float) -> bool:
        """`sig` to chromium's process group; whether none of it is left within `wait` s."""
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            self.process.poll()  # reaps chromium itself; its helpers are reaped by init
            try:
                os.killpg(self.process.pid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.05)
        return False

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self, url: str, until: str, timeout: float = 60) -> PageRun:
        """Load `url`, wait until the JavaScript expression `until` is truthy, screenshot."""
        return asyncio.run(self._open(url, until, timeout))

    async def _open(self, url: str, until: str, timeout: float) -> PageRun:
        run = PageRun()
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{self.port}/json/list") as response:
                targets = await response.json()
            page = next(t for t in targets if t["type"] == "page")
            async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                cdp = _Session(ws, run)
                await cdp.call("Runtime.enable")
                await cdp.call("Log.enable")
                await cdp.call("Page.enable")
                await cdp.call("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height,
                               deviceScaleFactor=1, mobile=False)
                await cdp.call("Page.navigate", url=url)
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    result = await cdp.call("Runtime.evaluate", expression=until, returnByValue=True)
                    run.value = result.get("result", {}).get("value")
                    if run.value:
                        break
                    await asyncio.sleep(0.25)
                else:
                    raise TimeoutError(f"{until!r} still false after {timeout} s; errors: {run.errors}")
                await asyncio.sleep(0.5)  # let the charts finish drawing
                metrics = await cdp.call("Page.getLayoutMetrics")
                size = metrics["cssContentSize"]
                shot = await cdp.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                                      clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"],
                                            "scale": 1})
                run.screenshot = base64.b64decode(shot["data"])
                await cdp.drain()
        return run


class _Session:
    """One DevTools websocket: numbered calls, events collected as they arrive."""

    def __init__(self, ws, run: PageRun):
        self.ws, self.run = ws, run
        self.ids = itertools.count(1)

    async def call(self, method: str, **params) -> dict:
        call_id = next(self.ids)
        await self.ws.send_json({"id": call_id, "method": method, "params": params})
        while True:
            message = await self.ws.receive_json(timeout=60)
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self._event(message)

    async def drain(self) -> None:
        """Events already sent (a last console error, say)."""
        while True:
            try:
                self._event(await self.ws.receive_json(timeout=0.3))
            except (asyncio.TimeoutError, TypeError):
                return

    def _event(self, message: dict) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.run.errors.append("console: " + " ".join(str(a.get("value", a.get("description")))
                                                         for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.run.errors.append("exception: " + str(details.get("exception", {}).get("description")
                                                       or details.get("text")))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            self.run.errors.append(f"log: {entry.get('text')} {entry.get('url', '')}")
