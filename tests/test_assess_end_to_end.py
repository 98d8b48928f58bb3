"""The assessment end to end: a constructed history replayed through the embedded
stack (broker, worker, chdb) once for the module, then `supplymon assess` on what was
stored, directly and through a running worker's /sql."""
from __future__ import annotations

import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import pytest

from supplymon.embedded import EmbeddedBroker, free_port
from supplymon.settings import EMBEDDED_GROUP_TIMEOUT, SHANGHAI
from tests.assess_facts import workdir  # noqa: F401 (a fixture)
from tests.conftest import supplymon
from tests.test_end_to_end import Worker

START = datetime(2026, 3, 2, 9, 0, tzinfo=SHANGHAI)
PERIOD = ("--from", "2026-03-01", "--to", "2026-03-31")


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds")


class History:
    def __init__(self):
        self.events: list[dict] = []

    def add(self, kind: str, at: datetime, event_id: str, **fields) -> None:
        self.events.append({"event_id": event_id, "kind": kind, "ts": _iso(at), **fields})

    def order(self, order_id: str, distributor: str, at: datetime, *, grassroots: bool, answer: bool = True,
              arrive_after_hours: float | None = 5) -> None:
        """An urban order (24 h delivery deadline): answered in 1 h and shipped in 2 h
        when `answer`, confirmed received `arrive_after_hours` after it was placed."""
        self.add("order", at, f"o-{order_id}", order_id=order_id, institution_id="H-GR" if grassroots else "H-CITY",
                 region_code="150402", area="urban", grassroots=grassroots, distributor_id=distributor,
                 manufacturer_id="M1", product_id="P1", product_kind="drug", vbp=True, quantity=10,
                 unit_price=3.5)
        if not answer:
            return
        self.add("response", at + timedelta(hours=1), f"r-{order_id}", order_id=order_id, distributor_id=distributor,
                 decision="accepted", confirmed_quantity=10)
        self.add("shipment", at + timedelta(hours=2), f"s-{order_id}", order_id=order_id,
                 shipment_id=f"S-{order_id}", distributor_id=distributor, quantity=10)
        if arrive_after_hours is not None:
            received = at + timedelta(hours=arrive_after_hours)
            self.add("arrival", received + timedelta(hours=1), f"a-{order_id}", order_id=order_id,
                     shipment_id=f"S-{order_id}", institution_id="H-GR" if grassroots else "H-CITY", quantity=10,
                     received_at=_iso(received))

    def write(self, path: Path, until: datetime) -> None:
        tick = START
        while tick <= until:  # the platform clock, so every deadline passes
            self.add("tick", tick, f"tick-{_iso(tick)}")
            tick += timedelta(hours=6)
        self.events.sort(key=lambda e: e["ts"])
        path.write_bytes(b"\n".join(orjson.dumps(e) for e in self.events) + b"\n")


def build(path: Path) -> None:
    h = History()
    for day in range(10):
        at = START + timedelta(days=day)
        # E-PASS: everything on time, every other order to a grassroots clinic.
        h.order(f"P{day}", "E-PASS", at, grassroots=day % 2 == 0)
        # E-RECT: on time in the city; 4 of 10 grassroots orders arrive after 30 h
        # (delivery_overdue each): on time 16/20, grassroots 60 %, 20 alerts per 100
        # orders -> 35 x 0.8 + 20 + 15 + 20 x 0.6 + 0 = 75 -> rectify.
        h.order(f"RC{day}", "E-RECT", at + timedelta(minutes=5), grassroots=False)
        h.order(f"RG{day}", "E-RECT", at + timedelta(minutes=10), grassroots=True,
                arrive_after_hours=30 if day < 4 else 5)
        # E-REVOKE: never answers (half grassroots).
        if day < 6:
            h.order(f"V{day}", "E-REVOKE", at + timedelta(minutes=15), grassroots=day % 2 == 0, answer=False)
    h.write(path, START + timedelta(days=16))


@pytest.fixture(scope="module")
def replayed():
    root = Path(tempfile.mkdtemp(prefix="supplymon-assess-e2e-"))  # for the module: see assess_facts.workdir
    build(root / "history.jsonl")
    result = supplymon("replay", str(root / "history.jsonl"), "--embedded", "--data-dir", str(root / "data"))
    assert result.returncode == 0, result.stderr[-3000:]
    (root / "registry.csv").write_text("distributor_id,distributor_name\nE-PASS,甲\nE-RECT,乙\nE-REVOKE,丙\nE-NONE,丁\n")
    yield root
    shutil.rmtree(root, ignore_errors=True)


EXPECTED = {
    "E-PASS": ("pass", 100, 1.0, 10),
    "E-RECT": ("rectify", 75, 0.6, 20),
    "E-REVOKE": ("revoke", 0, 0.0, 6),
    "E-NONE": ("revoke", None, None, 0),
}


def _verdicts(stdout: str) -> dict[str, tuple]:
    rows = [orjson.loads(line) for line in stdout.splitlines()]
    return {r["distributor_id"]: (r["verdict"], r["score"], r["grassroots_delivery_rate"], r["orders"]) for r in rows}


def test_replayed_history_lands_a_distributor_in_each_verdict(replayed):
    result = supplymon("assess", *PERIOD, "--registry", str(replayed / "registry.csv"), "--format", "JSONEachRow",
                       "--data-dir", str(replayed / "data"))
    assert result.returncode == 0, result.stderr
    assert _verdicts(result.stdout) == EXPECTED
    rows = {r["distributor_id"]: r for r in map(orjson.loads, result.stdout.splitlines())}
    # The alerts the pipeline raised are what the score counted: 4 late grassroots deliveries.
    assert rows["E-RECT"]["alerts_per_100_orders"] == 20
    assert rows["E-REVOKE"]["reasons"] == ["low_score", "grassroots_below_revoke"]


def _get(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status == 200


def test_assess_goes_through_a_running_worker(replayed, workdir):
    """While a worker holds the embedded store, assess reads and writes through its /sql."""
    data = replayed / "data"
    with EmbeddedBroker() as broker:
        web = free_port()
        env = {**os.environ, "SUPPLYMON_KAFKA": broker.url, "SUPPLYMON_DATA_DIR": str(data),
               "SUPPLYMON_WEB_PORT": str(web), "SUPPLYMON_LIVE_TICK_SECONDS": "0",
               "SUPPLYMON_GROUP_TIMEOUT_SECONDS": str(EMBEDDED_GROUP_TIMEOUT)}
        worker = Worker(env, workdir / "worker.log")
        try:
            deadline = time.monotonic() + 120
            while True:
                worker.check()
                try:
                    if (data / "worker.json").exists() and _get(f"http://127.0.0.1:{web}/progress"):
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline, (workdir / "worker.log").read_text()[-3000:]
                time.sleep(0.3)
            result = supplymon("assess", "--from", "2026-03-01", "--to", "2026-03-15", "--registry",
                               str(replayed / "registry.csv"), "--format", "JSONEachRow", "--data-dir", str(data))
            assert result.returncode == 0, result.stderr
            assert _verdicts(result.stdout) == EXPECTED
            stored = supplymon("sql", "--data-dir", str(data), "--format", "JSONEachRow",
                               "SELECT count() AS n FROM supplymon.distributor_assessment FINAL "
                               "WHERE period_to = '2026-03-15'")
            assert stored.returncode == 0 and orjson.loads(stored.stdout) == {"n": 4}
            # The write path takes POSTed rows of the assessment tables only, with the web token.
            token = {"X-Supplymon-Token": os.environ["SUPPLYMON_WEB_TOKEN"]}
            for method, table, headers, status in (("GET", "distributor_assessment", token, 405),
                                                   ("POST", "distributor_assessment", {}, 401),
                                                   ("POST", "order_facts", token, 400)):
                request = urllib.request.Request(f"http://127.0.0.1:{web}/assessment/rows?table={table}",
                                                 data=b"{}" if method == "POST" else None, method=method,
                                                 headers=headers)
                with pytest.raises(urllib.error.HTTPError) as refused:
                    urllib.request.urlopen(request, timeout=10)
                assert refused.value.code == status
        finally:
            worker.stop()
