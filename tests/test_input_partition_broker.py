"""A producer partitioning by another consistent partitioner than Kafka's murmur2
(CRC32, librdkafka's default), on the embedded broker: a second worker joins
mid-stream, the group rebalances, each worker restores the order states of the
input partitions it is given (kept on their input partition, not their key's
murmur2 one), and the facts and early warnings, merged from both workers, equal
the independent computation, as with a murmur2 producer
(tests/test_two_workers.py); no event is counted as off its order's partition."""
from __future__ import annotations

import subprocess
import sys
import urllib.request
import zlib

import orjson
import pytest

from supplymon.embedded import EmbeddedBroker, free_port
from supplymon.publish import key_partition
from tests.conftest import ROOT
from tests.test_end_to_end import Worker, _end_offsets, _progress, _wait, assert_facts_match, assert_warnings_match
from tests.test_end_to_end import build_history
from tests.test_two_workers import (FACTS_BY_VERSION, INPUTS, WARNINGS_BY_VERSION, _furthest, _latest, _rows,
                                    _split)


def _replay(path, env: dict, log_path, *options: str) -> subprocess.Popen:
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "tests.crc32_replay", str(path), *options], cwd=ROOT,
                                env=env, stdout=log, stderr=subprocess.STDOUT)


def _misplaced(url: str) -> float:
    text = urllib.request.urlopen(url + "/metrics", timeout=30).read().decode()
    (line,) = [line for line in text.splitlines() if line.startswith("supplymon_misplaced_input_events_total ")]
    return float(line.split()[1])


@pytest.mark.timeout(600)
def test_a_crc32_producer_and_a_rebalance_give_the_facts_of_a_murmur2_one(tmp_path):
    history = tmp_path / "history.jsonl"
    events = build_history(history, days=3, orders_per_day=600, scenario=("shortage",))
    order_ids = {e["order_id"].encode() for e in events if "order_id" in e}
    moved = sum(zlib.crc32(k) % 4 != key_partition(k, 4) for k in order_ids)
    assert moved > len(order_ids) // 2  # most orders are elsewhere than murmur2 would put them
    with EmbeddedBroker() as broker:
        base, halves = _split(history, broker)
        first = _replay(halves[0], base, tmp_path / "publisher.log")
        assert first.wait(timeout=300) == 0, (tmp_path / "publisher.log").read_text()
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

        publisher, misplaced = None, []
        try:
            worker_a = start("a")
            _wait(lambda: sum(_progress(urls[0])["offsets"].values()) > first_half * 0.5, 180, "progress", worker_a)
            worker_b = start("b")
            # the second half paced: it arrives while the second worker joins and both work
            publisher = _replay(halves[1], base, tmp_path / "publisher.log", "--speed", "3600")
            _wait(lambda: any(tp.split(":")[0] in INPUTS for tp in _progress(urls[1])["assigned"]), 120,
                  "the second worker assigned input partitions", worker_b)
            assert publisher.wait(timeout=300) == 0, (tmp_path / "publisher.log").read_text()
            end = _end_offsets(broker.bootstrap, INPUTS)
            for worker in workers:
                worker.check()
            _wait(lambda: all(progress("offsets").get(tp, 0) >= off for tp, off in end.items()),
                  300, "all offsets stored by one worker or the other", worker_b)
            signals = progress("signals_sent")
            _wait(lambda: all(progress("signals").get(tp, 0) >= off for tp, off in signals.items()),
                  300, "all signals", worker_b)
            assert sum(_progress(urls[1])["offsets"].values()) > 0
            # each worker holds the orders of its own input partitions only
            for url in urls:
                held = {int(tp.rsplit(":", 1)[1]) for tp in _progress(url)["assigned"]
                        if tp.rsplit(":", 1)[0] in INPUTS}
                state = orjson.loads(urllib.request.urlopen(url + "/state", timeout=30).read())
                assert {int(p) for p in state["partitions"]} <= held, (url, state["partitions"], held)
                misplaced.append(_misplaced(url))
            facts = _latest([r for url in urls for r in _rows(url, FACTS_BY_VERSION)], "order_id")
            warnings = _latest([r for url in urls for r in _rows(url, WARNINGS_BY_VERSION)], "alert_id")
        finally:
            if publisher is not None and publisher.poll() is None:
                publisher.kill()
                publisher.wait()
            for worker in workers:
                worker.stop()
    assert_facts_match(sorted(facts, key=lambda r: r["order_id"]), events)
    assert_warnings_match([{k: v for k, v in w.items() if k != "alert_id"} for w in warnings], events)
    assert misplaced == [0, 0]
