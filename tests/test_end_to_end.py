"""End to end on the real parts: the embedded Tansu broker, Faust workers, chdb.

A generated history of a few thousand orders, with duplicates, malformed lines,
events ahead of their orders and an orphan, is replayed; `order_facts` must equal
an independent computation (tests/reference.py), and a worker killed mid-stream
and restarted must end with the same facts.
"""
from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import pytest

from supplymon.core.alerts import CONDUCT_KINDS
from supplymon.embedded import EmbeddedBroker, free_port
from supplymon.runner import http_query
from supplymon.settings import EMBEDDED_GROUP_TIMEOUT
from supplymon.simulate import generate, write_history
from tests.conftest import ROOT, sql_rows, supplymon
from tests.reference import expected_distributor_daily, expected_facts, parse_ms
from tests.warnings_reference import WARNINGS_SQL, expected_warnings, stored_warnings

FACT_SQL = (
    "SELECT order_id, decision, confirmed_quantity, delivered_quantity, on_time, response_hours,"
    " toUnixTimestamp64Milli(ordered_at) AS ordered_at, toUnixTimestamp64Milli(deadline_at) AS deadline_at,"
    " toUnixTimestamp64Milli(responded_at) AS responded_at,"
    " toUnixTimestamp64Milli(first_received_at) AS first_received_at"
    " FROM supplymon.order_facts FINAL ORDER BY order_id")
# The version column orders rows of one alert; its value may differ between runs.
ALERTS_SQL = "SELECT * EXCEPT (version) FROM supplymon.alerts FINAL ORDER BY alert_id"
DAILY_SQL = "SELECT * EXCEPT (closed) FROM supplymon.distributor_daily ORDER BY day, distributor_id"
COMPARED = ("decision", "confirmed_quantity", "delivered_quantity", "on_time", "ordered_at", "deadline_at",
            "responded_at", "first_received_at")
MALFORMED = [
    (b"this is not json", "not_json"),
    (b'{"event_id": "bad-1", "kind": "order", "ts": "2026-03-01T09:00:00+08:00"}', "missing_field"),
    (b'{"event_id": "bad-2", "kind": "shipment", "ts": "2026-03-01T09:00:00+08:00", "order_id": "X",'
     b' "shipment_id": "S", "distributor_id": "D", "quantity": -4}', "bad_field"),
    (b'{"event_id": "bad-3", "kind": "refund", "ts": "2026-03-01T09:00:00+08:00", "order_id": "X"}',
     "unknown_kind"),
]
ORPHAN = {"event_id": "orphan-1", "kind": "response", "ts": "2026-03-01T01:00:00.000+08:00",
          "order_id": "NEVER-PLACED", "distributor_id": "DST01", "decision": "accepted", "confirmed_quantity": 1}


def build_history(path: Path, days: int = 4, orders_per_day: int = 800,
                  scenario: tuple[str, ...] = ("shortage", "bad-distributor", "third-distributor", "price-split",
                                               "remote-refusal", "short-supply")) -> list[dict]:
    """A simulated history with stories that raise early warnings, made harder: answers
    ahead of their orders, bad lines, an orphan."""
    events = list(generate(days=days, orders_per_day=orders_per_day, seed=11, scenario=scenario))
    # Put the first response of 40 orders in front of its order in the file.
    index_of = {}
    for i, event in enumerate(events):
        index_of.setdefault((event["kind"], event.get("order_id")), i)
    moved = 0
    for (kind, order_id), i in list(index_of.items()):
        if kind == "order" and ("response", order_id) in index_of and moved < 40:
            j = index_of[("response", order_id)]
            events.insert(i, events.pop(j))
            index_of = {k: (v + 1 if i <= v < j else v) for k, v in index_of.items()}
            moved += 1
    lines = [orjson.dumps(ORPHAN)] + [orjson.dumps(e) for e in events]
    for n, (line, _) in enumerate(MALFORMED):
        lines.insert(100 + 500 * n, line)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return [ORPHAN] + events


def assert_facts_match(rows: list[dict], events: list[dict]) -> None:
    expected = expected_facts(events)
    got = {row["order_id"]: row for row in rows}
    assert set(got) == set(expected)
    mismatches = []
    for order_id, want in expected.items():
        row = got[order_id]
        for name in COMPARED:
            if row[name] != want[name]:
                mismatches.append((order_id, name, row[name], want[name]))
        if (row["response_hours"] is None) != (want["response_hours"] is None) or (
                row["response_hours"] is not None and abs(row["response_hours"] - want["response_hours"]) > 1e-6):
            mismatches.append((order_id, "response_hours", row["response_hours"], want["response_hours"]))
    assert not mismatches, mismatches[:10]
    # The history must exercise every outcome, or this comparison proves little.
    assert {r["on_time"] for r in rows} >= {0, 1}
    assert {r["decision"] for r in rows} >= {"accepted", "partial", "rejected", None}


def assert_daily_match(rows: list[dict], events: list[dict]) -> None:
    expected = expected_distributor_daily(expected_facts(events))
    got = {(r.pop("day"), r.pop("distributor_id")): r for r in rows}
    assert set(got) == set(expected)
    for key, want in expected.items():
        row = got[key]
        for name in ("response_p50_hours", "response_p90_hours"):
            assert (row[name] is None) == (want[name] is None), (key, name)
            if want[name] is not None:
                assert abs(row.pop(name) - want.pop(name)) < 1e-9, (key, name)
            else:
                row.pop(name), want.pop(name)
        assert row == want, key


def assert_warnings_match(rows: list[dict], events: list[dict]) -> None:
    want = expected_warnings(events)
    assert want, "the history raises no early warning: the comparison would prove little"
    assert stored_warnings(rows) == want


@pytest.fixture
def rules_file(tmp_path) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text("[state]\norphan_timeout_hours = 24\n")
    return path


def test_replay_embedded_gives_the_contract_facts(tmp_path, data_dir, rules_file):
    plain, history = tmp_path / "history.jsonl", tmp_path / "history.jsonl.gz"
    events = build_history(plain)
    history.write_bytes(gzip.compress(plain.read_bytes()))
    env = {"SUPPLYMON_RULES": str(rules_file)}

    result = supplymon("replay", str(history), "--embedded", "--data-dir", str(data_dir), env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "processed and stored" in result.stderr and "100%" in result.stderr

    assert_facts_match(sql_rows(data_dir, FACT_SQL), events)
    assert_daily_match(sql_rows(data_dir, DAILY_SQL), events)
    assert_warnings_match(sql_rows(data_dir, WARNINGS_SQL), events)

    # Bad input went to the dead letters with its reason and original bytes.
    dead = sql_rows(data_dir, "SELECT reason, original, event_id FROM supplymon.dead_letters FINAL")
    assert sorted(d["reason"] for d in dead) == sorted([r for _, r in MALFORMED] + ["orphan"])
    assert {d["original"].encode() for d in dead} >= {line for line, _ in MALFORMED}
    assert any(d["reason"] == "orphan" and d["event_id"] == "orphan-1" for d in dead)

    # Duplicates changed nothing: each event stored once.
    unique = {e["event_id"] for e in events}
    (stored,) = sql_rows(data_dir, "SELECT count() AS n, uniqExact(event_id) AS u FROM supplymon.events_raw FINAL")
    assert stored["n"] == stored["u"] == len(unique)
    duplicates = len(events) - len(unique)
    assert duplicates > 0

    # A second replay of the same file into the same store changes no result.
    before = sql_rows(data_dir, FACT_SQL)
    alerts_before = sql_rows(data_dir, ALERTS_SQL)
    result = supplymon("replay", str(history), "--embedded", "--data-dir", str(data_dir), env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sql_rows(data_dir, FACT_SQL) == before
    assert sql_rows(data_dir, ALERTS_SQL) == alerts_before


def test_deadline_alerts_match_the_facts(tmp_path, data_dir):
    path = tmp_path / "history.jsonl"
    write_history(path, generate(days=3, orders_per_day=300, seed=5))
    events = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    result = supplymon("replay", str(path), "--embedded", "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    end = max(parse_ms(e["ts"]) for e in events)
    facts = expected_facts(events)
    want = set()
    for order_id, f in facts.items():
        for kind, hours in (("response_overdue", 48), ("response_escalation", 72)):
            deadline = f["ordered_at"] + hours * 3_600_000
            if end > deadline and not (f["responded_at"] is not None and f["responded_at"] <= deadline):
                want.add((kind, order_id, deadline))
    got = {(a["kind"], a["order_id"], a["raised"]) for a in sql_rows(
        data_dir, "SELECT kind, order_id, toUnixTimestamp64Milli(raised_at) AS raised FROM supplymon.alerts FINAL"
                  " WHERE kind IN ('response_overdue', 'response_escalation')")}
    assert want and got == want


def _progress(web: str) -> dict:
    with urllib.request.urlopen(web + "/progress", timeout=5) as response:
        return json.loads(response.read())


def wait_all_stored(url: str, bootstrap: str, inputs, worker: "Worker", who: str = "the worker") -> None:
    """Until the worker has stored every input record the broker holds, and its early
    warnings every signal it sent."""
    end = _end_offsets(bootstrap, inputs)
    _wait(lambda: all(_progress(url)["offsets"].get(tp, 0) >= off for tp, off in end.items()),
          300, f"{who} to store everything", worker)
    signals = _progress(url)["signals_sent"]
    _wait(lambda: all(_progress(url)["signals"].get(tp, 0) >= off for tp, off in signals.items()),
          300, f"{who}'s early warnings", worker)


def _live_entries(bootstrap: str, topic: str) -> set[str]:
    """The keys a changelog holds a value for (its latest message per key not a delete)."""
    from kafka import KafkaConsumer, TopicPartition
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        consumer.assign([TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)])
        consumer.seek_to_beginning()
        latest: dict[str, bool] = {}
        while records := consumer.poll(timeout_ms=1000):
            for messages in records.values():
                for message in messages:
                    latest[message.key.decode()] = message.value is not None
        return {key for key, live in latest.items() if live}
    finally:
        consumer.close()


def _end_offsets(bootstrap: str, topics) -> dict[str, int]:
    """The next offset of each partition, found by reading to the end: the embedded
    broker's ListOffsets answer is the base offset of the last record batch + 1."""
    from kafka import KafkaConsumer, TopicPartition
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t)]
        consumer.assign(tps)
        consumer.seek_to_beginning()
        ends = {f"{tp.topic}:{tp.partition}": 0 for tp in tps}
        while records := consumer.poll(timeout_ms=1000):
            for tp, messages in records.items():
                ends[f"{tp.topic}:{tp.partition}"] = messages[-1].offset + 1
        return ends
    finally:
        consumer.close()


class Worker:
    """`supplymon worker` in a child process."""

    def __init__(self, env: dict, log: Path):
        self.env, self.log = env, log
        self.process = self._spawn()

    def _spawn(self) -> subprocess.Popen:
        with open(self.log, "ab") as out:
            return subprocess.Popen([sys.executable, "-m", "supplymon", "worker"], cwd=ROOT, env=self.env,
                                    stdout=out, stderr=subprocess.STDOUT)

    def check(self) -> None:
        assert self.process.poll() is None, f"worker died:\n{self.log.read_text()[-3000:]}"

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _wait(predicate, timeout: float, what: str, worker: Worker):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        worker.check()
        try:
            value = predicate()
            if value:
                return value
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}:\n{worker.log.read_text()[-3000:]}")


def test_worker_killed_mid_stream_restarts_to_the_same_facts(tmp_path, data_dir):
    """The broker survives (as a real cluster would); the worker is SIGKILLed and restarted."""
    history = tmp_path / "history.jsonl"
    events = build_history(history, days=3, orders_per_day=1000, scenario=("shortage", "third-distributor", "price-split"))
    with EmbeddedBroker() as broker:
        web = free_port()
        env = {**os.environ, "SUPPLYMON_KAFKA": broker.url, "SUPPLYMON_DATA_DIR": str(data_dir),
               "SUPPLYMON_WEB_PORT": str(web), "SUPPLYMON_BATCH_SIZE": "500",
               "SUPPLYMON_LIVE_TICK_SECONDS": "0",
               # the embedded broker: the restarted worker waits out the killed one's session
               "SUPPLYMON_GROUP_TIMEOUT_SECONDS": str(EMBEDDED_GROUP_TIMEOUT)}
        published = supplymon("replay", str(history), env=env)
        assert published.returncode == 0, published.stderr
        end = _end_offsets(broker.bootstrap, ["supply.orders", "supply.responses", "supply.shipments",
                                              "supply.arrivals"])
        total = sum(end.values())
        log = tmp_path / "worker.log"
        url = f"http://127.0.0.1:{web}"

        worker = Worker(env, log)
        try:
            _wait(lambda: sum(_progress(url)["offsets"].values()) > total * 0.3, 180, "30% progress", worker)
            done_at_kill = sum(_progress(url)["offsets"].values())
            worker.kill()
            assert done_at_kill < total, "the worker finished before it could be killed"

            worker = Worker(env, log)
            _wait(lambda: all(_progress(url)["offsets"].get(tp, 0) >= off for tp, off in end.items()),
                  300, "all offsets", worker)
            signals = _progress(url)["signals_sent"]
            _wait(lambda: all(_progress(url)["signals"].get(tp, 0) >= off for tp, off in signals.items()),
                  300, "all signals", worker)
            rows, daily, warnings = ([orjson.loads(line) for line in http_query(url, sql, "JSONEachRow").splitlines()]
                                     for sql in (FACT_SQL, DAILY_SQL, WARNINGS_SQL))
            state = orjson.loads(urllib.request.urlopen(url + "/state", timeout=30).read())
        finally:
            worker.stop()
    # The restarted worker holds every order of the history (none is past its
    # retention yet): those it read back from the changelog and those it placed since;
    # the orphan answer waits for its order.
    placed = {e["order_id"] for e in events if e["kind"] == "order"}
    assert state["orders"] == len(placed) + 1 and state["not_placed"] == 1, state
    assert sum(state["partitions"].values()) == state["orders"] and set(state["partitions"]) == {"0", "1", "2", "3"}
    assert state["bytes"] > 0 and state["unsettled"] == 0
    assert_facts_match(rows, events)
    assert_daily_match(daily, events)
    assert_warnings_match(warnings, events)


def test_a_restarted_worker_reads_its_states_back_and_goes_on_to_the_same_results(tmp_path, data_dir):
    """Half a history stored, the worker SIGKILLed, the other half published, a new
    worker on the same data dir: it reads the order states and the early warnings'
    records back from the changelogs (streams/bulk_restore.py) and ends with the
    facts and early warnings of the whole history, holding every record its
    changelog holds."""
    history = tmp_path / "history.jsonl"
    events = build_history(history, days=3, orders_per_day=800, scenario=("shortage", "third-distributor"))
    lines = history.read_bytes().splitlines(keepends=True)
    halves = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    halves[0].write_bytes(b"".join(lines[:len(lines) // 2]))
    halves[1].write_bytes(b"".join(lines[len(lines) // 2:]))
    inputs = ["supply.orders", "supply.responses", "supply.shipments", "supply.arrivals"]
    with EmbeddedBroker() as broker:
        web = free_port()
        env = {**os.environ, "SUPPLYMON_KAFKA": broker.url, "SUPPLYMON_DATA_DIR": str(data_dir),
               "SUPPLYMON_WEB_PORT": str(web), "SUPPLYMON_BATCH_SIZE": "500", "SUPPLYMON_LIVE_TICK_SECONDS": "0",
               "SUPPLYMON_GROUP_TIMEOUT_SECONDS": str(EMBEDDED_GROUP_TIMEOUT)}
        url = f"http://127.0.0.1:{web}"
        log = tmp_path / "worker.log"

        assert supplymon("replay", str(halves[0]), env=env).returncode == 0
        worker = Worker(env, log)
        try:
            wait_all_stored(url, broker.bootstrap, inputs, worker)
            before = _live_entries(broker.bootstrap, "supplymon-warning-state-changelog")
            worker.kill()
            assert any("|o:" in key for key in before)  # records the new worker must read back
            assert supplymon("replay", str(halves[1]), env=env).returncode == 0
            worker = Worker(env, log)
            wait_all_stored(url, broker.bootstrap, inputs, worker)
            rows, daily, warnings = ([orjson.loads(line) for line in http_query(url, sql, "JSONEachRow").splitlines()]
                                     for sql in (FACT_SQL, DAILY_SQL, WARNINGS_SQL))
            state = orjson.loads(urllib.request.urlopen(url + "/state", timeout=30).read())
            entries = _live_entries(broker.bootstrap, "supplymon-warning-state-changelog")
        finally:
            worker.stop()
    placed = {e["order_id"] for e in events if e["kind"] == "order"}
    assert state["orders"] == len(placed) + 1 and state["not_placed"] == 1 and state["unsettled"] == 0, state  # + the orphan
    records = [key for key in entries if "|o:" in key]
    assert state["early_warnings"]["records"] == len(records), state
    assert_facts_match(rows, events)
    assert_daily_match(daily, events)
    assert_warnings_match(warnings, events)


def test_results_do_not_depend_on_partitions_batching_or_speed(tmp_path):
    """The same history with 1 partition, small batches, paced at 4 days in ~12 s, and
    with 4 partitions, large batches, as fast as it goes, gives the same facts, alerts
    and windowed tables."""
    history = tmp_path / "history.jsonl"
    write_history(history, generate(days=4, orders_per_day=300, seed=21, scenario=(
        "shortage", "bad-distributor", "third-distributor", "price-split", "remote-refusal", "short-supply")))
    results = []
    for partitions, batch, speed in (("1", "50", ["--speed", "30000"]), ("4", "2000", [])):
        data = tmp_path / f"data-{partitions}"
        result = supplymon("replay", str(history), "--embedded", "--data-dir", str(data), "--partitions", partitions,
                           *speed, env={"SUPPLYMON_BATCH_SIZE": batch})
        assert result.returncode == 0, result.stderr[-3000:]
        results.append([sql_rows(data, sql) for sql in (
            FACT_SQL, ALERTS_SQL, DAILY_SQL,
            "SELECT * FROM supplymon.distributor_hourly ORDER BY hour, distributor_id",
            "SELECT * FROM supplymon.product_region_daily ORDER BY day, product_id, region_code")])
    one, four = results
    assert set(CONDUCT_KINDS) - {"price_linkage_overdue", "price_rise"} <= {r["kind"] for r in one[1]}
    for name, a, b in zip(("facts", "alerts", "daily", "hourly", "product_region"), one, four):
        assert a and a == b, name
