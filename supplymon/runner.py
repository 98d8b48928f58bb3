"""Running the pieces: the embedded stack, a worker process, the rebuild from
ClickHouse, and waiting until what was published is processed and stored."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator

from supplymon.core.intake import REBUILT_HEADER
from supplymon.embedded import EmbeddedBroker, free_port, port_open
from supplymon.publish import Publisher, ensure_topics
from supplymon.settings import Settings
from supplymon.store import Store
from supplymon.web_access import TOKEN_HEADER, client_token

log = logging.getLogger(__name__)


class RunError(RuntimeError):
    """A part of the stack failed; the message says which and where to look."""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_worker(settings: Settings) -> dict | None:
    """The worker holding this data dir ({pid, web}), if one runs."""
    try:
        info = json.loads(settings.worker_file.read_text())
    except (OSError, ValueError):
        return None
    return info if pid_alive(int(info.get("pid", 0))) else None


def prepare_data_dir(settings: Settings) -> Path:
    """Create the data dir (and its logs dir); refuse one held by a running worker."""
    holder = running_worker(settings)
    if holder:
        raise RunError(f"data dir {settings.data_dir} is in use by a running supplymon worker "
                       f"(pid {holder['pid']}, {holder['web']}); stop it first or use another --data-dir")
    try:
        (settings.data_dir / "logs").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"cannot use data dir {settings.data_dir}: {exc}") from None
    if not os.access(settings.data_dir, os.W_OK):
        raise RunError(f"data dir {settings.data_dir} is not writable")
    return settings.data_dir / "logs"


async def publish_lines(settings: Settings, lines, on_progress: Callable[[int], None] | None = None,
                        headers: list[tuple[str, bytes]] | None = None):
    async with Publisher(settings) as publisher:
        for n, line in enumerate(lines, 1):
            await publisher.publish(line, headers)
            if on_progress and n % 10_000 == 0:
                on_progress(n)
    return publisher.stats


def rebuild_from_store(settings: Settings) -> int:
    """Publish the stored events (events_raw, in event-time order) into a fresh broker,
    so that the worker's state is rebuilt: the embedded broker keeps nothing.

    Not the ticks: a stored tick was read in at least one partition, not necessarily
    in all, and republished it goes to every partition: a partition that had not read
    that far would jump ahead of its own events not yet stored (which the publisher
    resends after the rebuild), firing deadlines early. Each partition's time is
    rebuilt from its own events; the ticks come again with the publisher's resend
    (`replay --skip-stored` resends every tick) or the live clock."""
    if settings.clickhouse_url is None and not settings.chdb_path.exists():
        return 0
    store = Store(settings)
    try:
        store.migrate()

        def lines():
            for batch in store.iter_raw():
                for kind, payload in batch:
                    if kind != "tick":
                        yield payload

        # Marked as republished: they were admitted once (a simulated future too).
        stats = asyncio.run(publish_lines(settings, lines(), headers=[(REBUILT_HEADER, b"1")]))
    finally:
        store.close()
    if stats.events or stats.ticks:
        log.info("rebuilt state from %d stored events", stats.events + stats.ticks)
    return stats.events + stats.ticks


def start_embedded_broker(settings: Settings, logs: Path) -> tuple[EmbeddedBroker, Settings, int]:
    """Start the embedded broker, create the topics, and republish what the store
    holds; returns the broker, the settings pointing at it, and the events republished."""
    broker = EmbeddedBroker(log_file=logs / "broker.log").start()
    try:
        settings = settings.with_embedded_broker(broker.url)
        ensure_topics(settings)
        return broker, settings, rebuild_from_store(settings)
    except BaseException:
        broker.stop()
        raise


class WorkerProcess:
    """`supplymon worker` in a child process, watched through its web server."""

    def __init__(self, settings: Settings, log_path: Path):
        self.settings = settings
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self.broker: EmbeddedBroker | None = None  # the embedded broker it reads, when this process owns it

    @property
    def web(self) -> str:
        return f"http://{self.settings.web_host}:{self.settings.web_port}"

    def start(self) -> "WorkerProcess":
        env = {**os.environ, **self.settings.env()}
        with open(self.log_path, "ab") as out:
            # Its own session: Ctrl-C reaches only the parent, which stops it in order.
            self.process = subprocess.Popen([sys.executable, "-m", "supplymon", "worker"], env=env,
                                            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        return self

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _check_alive(self) -> None:
        broker = self.broker.process if self.broker is not None else None
        if broker is not None and broker.poll() is not None:
            raise RunError(f"内置 Kafka 代理意外退出（代码 {broker.returncode}），其中尚未存储的事件已丢失；已存储的都在。"
                           f"再次运行同一命令并加上 --skip-stored 即可继续。\n"
                           f"the embedded broker exited (code {broker.returncode}); what it held and was not stored "
                           "yet is lost, everything stored is kept: run the same command again with --skip-stored "
                           "to go on")
        if self.process is None or self.process.poll() is not None:
            raise RunError(f"the worker exited (code {self.process.returncode if self.process else None}); "
                           f"its log {self.log_path} ends with:\n{self.log_tail()}")

    def get(self, path: str, timeout: float = 5.0) -> bytes:
        with urllib.request.urlopen(self.web + path, timeout=timeout) as response:
            return response.read()

    def progress(self) -> dict:
        return json.loads(self.get("/progress"))

    def query(self, sql: str, fmt: str = "JSONEachRow", timeout: float = 60.0) -> bytes:
        return http_query(self.web, sql, fmt, timeout, token=client_token(self.settings))

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Until the worker has joined its group and been assigned every input partition."""
        wanted = len(self.settings.topics.inputs) * self.settings.partitions
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                assigned = self.progress()["assigned"]
                if sum(tp.rsplit(":", 1)[0] in self.settings.topics.inputs for tp in assigned) >= wanted:
                    return
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.2)
        raise RunError(f"the worker did not become ready within {timeout:.0f}s; see {self.log_path}:\n"
                       + self.log_tail())

    def wait_stored(self, end_offsets: dict[str, int], total: int,
                    report: Callable[[int, int], None] | None = None, stall_timeout: float = 300.0) -> None:
        """Until every published offset has been processed and stored, and then every
        signal those events sent to the early warnings."""
        self._wait_offsets("offsets", end_offsets, total, report, stall_timeout)
        # The lifecycle agent delivers its signals before it counts an event stored,
        # so how far it wrote them is now known (from the worker: the embedded broker's
        # end offsets are not exact).
        signals = self.progress()["signals_sent"]
        self._wait_offsets("signals", signals, sum(signals.values()), None, stall_timeout)

    def _wait_offsets(self, which: str, end_offsets: dict[str, int], total: int,
                      report: Callable[[int, int], None] | None, stall_timeout: float) -> None:
        last_done, last_change = -1, time.monotonic()
        offsets: dict[str, int] = {}
        while True:
            self._check_alive()
            try:
                offsets = self.progress()[which]
            except (OSError, ValueError):
                pass  # not serving (yet): the stall timeout decides
            behind = {tp: end - offsets.get(tp, 0) for tp, end in end_offsets.items()
                      if offsets.get(tp, 0) < end}
            done = sum(min(offsets.get(tp, 0), end) for tp, end in end_offsets.items())
            if report:
                report(done, total)
            if not behind:
                return
            if done != last_done:
                last_done, last_change = done, time.monotonic()
            elif time.monotonic() - last_change > stall_timeout:
                raise RunError(f"no progress for {stall_timeout:.0f}s; still behind on {behind} ({which}); "
                               f"see {self.log_path}:\n{self.log_tail()}")
            time.sleep(0.25)

    def stop(self, timeout: float = 30.0) -> int | None:
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("worker did not stop within %.0fs; killing it", timeout)
                process.kill()
                process.wait()
        return process.returncode


def store_query(settings: Settings, sql: str, fmt: str) -> bytes:
    """An analyst's query (read-only: supplymon/sql_guard.py) on the store: through the
    worker's `/sql` while a worker holds the data dir, else on the store directly."""
    worker = running_worker(settings)
    if worker:
        return http_query(worker["web"], sql, fmt, token=client_token(settings))
    if settings.clickhouse_url is None and not settings.chdb_path.exists():
        raise RunError(f"no data in {settings.data_dir} (run a replay or the demo first)")
    store = Store(settings)
    try:
        store.migrate()
        return store.analyst_query(sql, fmt)
    except RunError:
        raise
    except Exception as exc:  # a refused or failed query: its message says why
        raise RunError(str(exc)) from None
    finally:
        store.close()


def http_query(web: str, sql: str, fmt: str, timeout: float = 60.0, token: str | None = None) -> bytes:
    """POST a query to a worker's `/sql`, with its web token (supplymon/web_access.py;
    default: SUPPLYMON_WEB_TOKEN)."""
    token = token or os.environ.get("SUPPLYMON_WEB_TOKEN")
    data = urllib.parse.urlencode({"query": sql, "format": fmt}).encode()
    request = urllib.request.Request(web + "/sql", data=data, headers={TOKEN_HEADER: token} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read()
    except urllib.error.HTTPError as exc:
        raise RunError(exc.read().decode(errors="replace").strip()) from None


@contextmanager
def embedded_stack(settings: Settings, live: bool) -> Iterator[tuple[Settings, WorkerProcess]]:
    """Broker + rebuild from the store + worker process; everything stopped on exit.

    `live`: the worker ticks from the wall clock (demo); a replay moves time only
    with the file's events and ticks."""
    logs = prepare_data_dir(settings)
    broker, settings, rebuilt = start_embedded_broker(settings, logs)
    worker = None
    try:
        web_port = settings.web_port
        if not web_port or port_open(settings.web_host, web_port):
            web_port = free_port(settings.web_host)
        settings = replace(settings, web_port=web_port,
                           live_tick_seconds=settings.live_tick_seconds if live else 0)
        if rebuilt:
            print(f"rebuilt state from {rebuilt} events stored in {settings.data_dir}", flush=True)
        worker = WorkerProcess(settings, logs / "worker.log")
        worker.broker = broker
        worker.start().wait_ready()
        yield settings, worker
    finally:
        if worker is not None:
            worker.stop()
        broker.stop()
