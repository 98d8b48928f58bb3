"""`supplymon worker`: the Faust worker in this process.

With SUPPLYMON_KAFKA set it joins that cluster. Without it, it starts the
embedded broker itself, rebuilds its state from the events stored in ClickHouse,
and prints the broker's address for publishers.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import tempfile
import threading

from streams import diagnostics
from supplymon import health
from supplymon.gcpolicy import arrow_on_the_heap, batch_pace
from supplymon.log_throttle import throttle_client_logs
from supplymon.publish import ensure_topics
from supplymon.runner import PARENT_PID_ENV, prepare_data_dir, start_embedded_broker
from supplymon.settings import Settings
from supplymon.web_access import check_listen_address, write_token_file

log = logging.getLogger(__name__)


def die_with_parent() -> None:
    """A worker started by `replay --embedded` or the demo ends with them even when they
    are killed outright (SIGKILL, a test's timeout): otherwise it would run on, holding
    its data dir and ports, with nobody to stop it. Linux only (prctl)."""
    parent = os.environ.pop(PARENT_PID_ENV, None)
    if not parent or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != int(parent):  # the parent was already gone before the prctl
        os.kill(os.getpid(), signal.SIGTERM)


def run(settings: Settings) -> int:
    diagnostics.install_early()  # SIGUSR1: thread stacks while starting; the whole state dump once Faust runs
    die_with_parent()
    check_listen_address(settings)  # before anything starts: no credentials, no open address
    logs = prepare_data_dir(settings)
    if not settings.web_token:
        write_token_file(settings)  # a fresh secret for this run's web actions (`/sql`)
    broker = None
    if settings.embedded_kafka:
        broker, settings, _ = start_embedded_broker(settings, logs)
        print(f"embedded broker at {broker.url} (publish events there; stops with this worker)", flush=True)
    else:
        ensure_topics(settings)
    try:
        # The rebuild ran its own event loop; Faust wants a fresh current one.
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        os.environ.update(settings.env())  # streams.app builds the Faust app from these
        if settings.clickhouse_url is None:
            settings.insert_tmp_dir.mkdir(parents=True, exist_ok=True)
            tempfile.tempdir = str(settings.insert_tmp_dir)
        from faust.worker import Worker

        class _QuietWorker(Worker):
            def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
                # Faust's terminal spinner sets the root logger to DEBUG, to spin on every
                # record: every library's debug record (one per message sent) was then built,
                # a tenth of the worker's time. No spinner; the level stays as configured.
                self.spinner = None
                throttle_client_logs(logger)  # a broker outage's client errors once per 30 s each

            def _install_signal_handlers_unix(self) -> None:
                super()._install_signal_handlers_unix()
                # SIGUSR1: the state dump (threads, tasks, batch intake) instead of mode's
                # (every frame's local variables: every open order's state)
                diagnostics.install(self.app, self.loop)

        import agents.clock  # noqa: F401  (live ticks, when on)
        import agents.lifecycle  # noqa: F401  (registers the agent)
        import agents.warnings  # noqa: F401  (registers the early-warning agent)
        import agents.heap  # noqa: F401  (the heap's free pages given back when batches stop)
        import agents.health  # noqa: F401  (/health, /ready, /live and the dependency probes)
        import agents.dashboard  # noqa: F401  (the supervisors' page at /)
        import agents.lag  # noqa: F401  (consumer lag for Prometheus)
        import agents.web  # noqa: F401  (registers the web views)
        import agents.notifier  # noqa: F401  (notifications, when a recipients directory is set)
        import agents.acks  # noqa: F401  (POST /alerts/{id}/ack)
        from streams.app import app

        agents.health.learn_cluster_id(loop)  # before anything is read: see supplymon/health.py

        settings.worker_file.write_text(json.dumps({
            "pid": os.getpid(), "web": f"http://{settings.web_host}:{settings.web_port}",
            "kafka": settings.kafka_url, "broker_pid": broker.process.pid if broker is not None else None}))
        worker = _QuietWorker(app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False,
                              override_logging=True)
        if broker is not None:
            _watch_embedded_broker(broker, settings)
        arrow_on_the_heap()  # see supplymon/gcpolicy.py
        try:
            with batch_pace():  # the worker holds every open order's state: see supplymon/gcpolicy.py
                worker.execute_from_commandline()
        except SystemExit as exc:
            return int(exc.code or 0)
        return 0
    finally:
        try:
            settings.worker_file.unlink()
        except FileNotFoundError:
            pass
        if broker is not None:
            broker.stop()


def _watch_embedded_broker(broker, settings: Settings) -> None:
    """The embedded broker keeps its log in memory: if it exits under the worker, the
    log is gone. End the worker (code 75); started again, it starts a fresh broker and
    rebuilds its state from ClickHouse."""
    process = broker.process

    def watch() -> None:
        code = process.wait()
        if broker.process is process:  # not stopped by this worker
            health.lose_broker(f"内置 Kafka 代理意外退出（代码 {code}）", f"the embedded broker exited (code {code})",
                               settings.worker_file)

    threading.Thread(target=watch, name="embedded-broker-watch", daemon=True).start()
