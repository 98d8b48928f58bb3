"""Two workers sharing the partitions (the way supplymon scales): a second worker
joins while the second half of a history is published, the group rebalances, and
the facts and early warnings, merged from both workers' ClickHouse rows, equal
the independent computation, whatever consistent partitioner the producer uses
(Kafka's murmur2, or CRC32 as librdkafka's default: order states are kept on their
input partition, tests/crc32_replay.py).

Each embedded worker has its own chdb (one process per data dir), so the test
merges their rows as one ClickHouse server would: per key, the highest version."""
from __future__ import annotations

import os
import subprocess
import sys
import urllib.request

import orjson
import pytest

from supplymon.embedded import EmbeddedBroker, free_port
from supplymon.runner import http_query
from supplymon.settings import EMBEDDED_GROUP_TIMEOUT
from tests.conftest import ROOT, sql_rows, supplymon
from tests.state_dump import print_dumps
from tests.test_end_to_end import (FACT_SQL, Worker, _end_offsets, _progress, _wait, assert_facts_match,
                                   assert_warnings_match, build_history)
from tests.warnings_reference import WARNINGS_SQL

INPUTS = ["supply.orders", "supply.responses", "supply.shipments", "supply.arrivals"]
FACTS_BY_VERSION = FACT_SQL.replace("SELECT order_id,", "SELECT order_id, version,")
WARNINGS_BY_VERSION = WARNINGS_SQL.replace("SELECT kind,", "SELECT alert_id, version, kind,")


def _rows(url: str, sql: str) -> list[dict]:
    return [orjson.loads(line) for line in http_query(url, sql, "JSONEachRow").splitlines()]


def _latest(rows: list[dict], key: str) -> list[dict]:
    """Per key, the row of the highest version (what ReplacingMergeTree keeps)."""
    best: dict = {}
    for row in rows:
        current = best.get(row[key])
        if current is None or int(row["version"]) > int(current["version"]):
            best[row[key]] = row
    return [{k: v for k, v in row.items() if k != "version"} for row in best.values()]


def _furthest(reports: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for report in reports:
        for tp, offset in report.items():
            out[tp] = max(out.get(tp, 0), offset)
    return out


def _split(history, broker) -> tuple[dict, tuple]:
    """The workers' environment on `broker`, and the history's two halves (files beside it)."""
    base = {**os.environ, "SUPPLYMON_KAFKA": broker.url, "SUPPLYMON_BATCH_SIZE": "200",
            "SUPPLYMON_LIVE_TICK_SECONDS": "0", "SUPPLYMON_GROUP_TIMEOUT_SECONDS": str(EMBEDDED_GROUP_TIMEOUT)}
    lines = history.read_bytes().splitlines(keepends=True)
    halves = history.with_name("first.jsonl"), history.with_name("second.jsonl")
    halves[0].write_bytes(b"".join(lines[:len(lines) // 2]))
    halves[1].write_bytes(b"".join(lines[len(lines) // 2:]))
    return base, halves


def _misplaced(url: str) -> float:
    """The worker's count of events read off their order's input partition."""
    text = urllib.request.urlopen(url + "/metrics", timeout=30).read().decode()
    (line,) = [line for line in text.splitlines() if line.startswith("supplymon_misplaced_input_events_total ")]
    return float(line.split()[1])


class PacedPublisher:
    """`supplymon replay FILE --speed S` in the background: the half keeps arriving
    while a worker joins or is killed, however fast or loaded the machine is
    (published at once, it was sometimes all stored before the second worker had
    any of it). `producer`: the module run as `supplymon` (tests.crc32_replay: the
    same replay partitioning by CRC32)."""

    def __init__(self, path, env: dict, log_path, speed: float | None, producer: str = "supplymon") -> None:
        self.log_path = log_path
        self.log = open(log_path, "a+")
        pace = ("--speed", str(speed)) if speed else ()
        self.process = subprocess.Popen([sys.executable, "-m", producer, "replay", str(path), *pace],
                                        cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def finish(self, timeout: float = 300) -> None:
        assert self.process.wait(timeout=timeout) == 0, self.log_path.read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log.close()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("producer", ["supplymon", "tests.crc32_replay"])
def test_a_second_worker_joining_mid_stream_changes_no_result(tmp_path, producer):
    history = tmp_path / "history.jsonl"
    events = build_history(history, days=3, orders_per_day=800, scenario=("shortage",))
    with EmbeddedBroker() as broker:
        base, halves = _split(history, broker)

        published = PacedPublisher(halves[0], base, tmp_path / "publisher.log", speed=None, producer=producer)
        try:
            published.finish()
        finally:
            published.stop()
        first_half = sum(_end_offsets(broker.bootstrap, INPUTS).values())
        workers, urls = [], []

        def start(name: str) -> Worker:
            port = free_port()
            env = {**base, "SUPPLYMON_DATA_DIR": str(tmp_path / f"data-{name}"), "SUPPLYMON_WEB_PORT": str(port)}
            urls.append(f"http://127.0.0.1:{port}")
            workers.append(Worker(env, tmp_path / f"worker-{name}.log"))
            return workers[-1]

        def progress(which: str) -> dict[str, int]:
            return _furthest([_progress(url)[which] for url in urls])

        try:
            first = start("a")
            _wait(lambda: sum(_progress(urls[0])["offsets"].values()) > first_half * 0.5, 180, "progress", first)
            second = start("b")
            # The second half paced (about 36 s): it arrives while the second worker
            # joins, the group rebalances and both work.
            publisher = PacedPublisher(halves[1], base, tmp_path / "publisher.log", speed=3600, producer=producer)
            try:
                _wait(lambda: any(tp.split(":")[0] in INPUTS for tp in _progress(urls[1])["assigned"]), 120,
                      "the second worker assigned input partitions", second)
                publisher.finish()
            finally:
                publisher.stop()
            end = _end_offsets(broker.bootstrap, INPUTS)
            for worker in workers:
                worker.check()
            _wait(lambda: all(progress("offsets").get(tp, 0) >= off for tp, off in end.items()),
                  300, "all offsets stored by one worker or the other", second)
            signals = progress("signals_sent")
            _wait(lambda: all(progress("signals").get(tp, 0) >= off for tp, off in signals.items()),
                  300, "all signals", second)
            # Both worked: the second worker stored events of its own partitions, and each
            # holds the order states of its own partitions only.
            assert sum(_progress(urls[1])["offsets"].values()) > 0
            for url in urls:
                held = {int(tp.rsplit(":", 1)[1]) for tp in _progress(url)["assigned"]
                        if tp.rsplit(":", 1)[0] in INPUTS}
                state = orjson.loads(urllib.request.urlopen(url + "/state", timeout=30).read())
                assert {int(p) for p in state["partitions"]} <= held, (url, state["partitions"], held)
                assert _misplaced(url) == 0  # every event on its order's input partition
            facts = _latest([r for url in urls for r in _rows(url, FACTS_BY_VERSION)], "order_id")
            warnings = _latest([r for url in urls for r in _rows(url, WARNINGS_BY_VERSION)], "alert_id")
        except BaseException:  # a failure, a wait timed out, pytest-timeout: the workers' state first
            print_dumps(workers)
            raise
        finally:
            for worker in workers:
                worker.stop()
    assert_facts_match(sorted(facts, key=lambda r: r["order_id"]), events)
    assert_warnings_match([{k: v for k, v in w.items() if k != "alert_id"} for w in warnings], events)


@pytest.mark.timeout(600)
def test_a_worker_killed_its_partitions_taken_over_changes_no_result(tmp_path):
    """Two workers share the partitions; one is SIGKILLed mid-stream (no goodbye to the
    group): after its session times out the survivor takes its partitions over, reads
    on from their last commit and ends with the facts and early warnings of one worker."""
    history = tmp_path / "history.jsonl"
    events = build_history(history, days=3, orders_per_day=600, scenario=("shortage",))
    with EmbeddedBroker() as broker:
        base, halves = _split(history, broker)
        data = {name: tmp_path / f"data-{name}" for name in "ab"}
        urls = {}

        def start(name: str) -> Worker:
            port = free_port()
            urls[name] = f"http://127.0.0.1:{port}"
            env = {**base, "SUPPLYMON_DATA_DIR": str(data[name]), "SUPPLYMON_WEB_PORT": str(port)}
            return Worker(env, tmp_path / f"worker-{name}.log")

        def inputs_held(name: str) -> set[str]:
            return {tp for tp in _progress(urls[name])["assigned"] if tp.rsplit(":", 1)[0] in INPUTS}

        assert supplymon("replay", str(halves[0]), env=base).returncode == 0
        survivor = start("a")
        victim = None
        try:
            _wait(lambda: sum(_progress(urls["a"])["offsets"].values()) > 0, 180, "progress", survivor)
            victim = start("b")
            # The second half paced (about 70 s): the second worker is killed mid-stream.
            publisher = PacedPublisher(halves[1], base, tmp_path / "publisher.log", speed=1800)
            try:
                _wait(lambda: _rows(urls["b"], "SELECT count() AS n FROM supplymon.order_facts")[0]["n"] > 0, 180,
                      "the second worker storing facts of its partitions", victim)
                taken = inputs_held("b")
                reached = _progress(urls["b"])["offsets"]
                held_before = inputs_held("a")
                victim.kill()
                publisher.finish()
            finally:
                publisher.stop()
            end = _end_offsets(broker.bootstrap, INPUTS)
            unfinished = {tp for tp, off in reached.items() if off < end.get(tp, 0)}
            assert taken and unfinished, "the second worker finished before it could be killed"
            assert len(held_before) < len(end)
            _wait(lambda: inputs_held("a") == set(end), 120, "the survivor holding every input partition", survivor)
            _wait(lambda: all(_progress(urls["a"])["offsets"].get(tp, 0) >= off for tp, off in end.items()),
                  300, "every offset stored by the survivor", survivor)
            signals = _progress(urls["a"])["signals_sent"]
            _wait(lambda: all(_progress(urls["a"])["signals"].get(tp, 0) >= off for tp, off in signals.items()),
                  300, "all signals", survivor)
            survivor_rows = [_rows(urls["a"], sql) for sql in (FACTS_BY_VERSION, WARNINGS_BY_VERSION)]
        except BaseException:
            print_dumps([survivor, victim])
            raise
        finally:
            survivor.stop()
            if victim is not None:
                victim.stop()
    # The killed worker's store (its lock died with it) holds what it stored before.
    victim_rows = [sql_rows(data["b"], sql) for sql in (FACTS_BY_VERSION, WARNINGS_BY_VERSION)]
    assert victim_rows[0], "the killed worker stored nothing: the takeover was not exercised"
    facts = _latest(survivor_rows[0] + victim_rows[0], "order_id")
    warnings = _latest(survivor_rows[1] + victim_rows[1], "alert_id")
    assert_facts_match(sorted(facts, key=lambda r: r["order_id"]), events)
    assert_warnings_match([{k: v for k, v in w.items() if k != "alert_id"} for w in warnings], events)
