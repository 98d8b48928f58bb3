"""A side-by-side replay next to a running live worker: `supplymon replay
--from-clickhouse --namespace what36 --rules FILE` reads the live store's events,
runs a worker of its own (topics `what36.supply.*`, consumer group
`supplymon-what36`, database `supplymon_what36`) with a 36 h response deadline,
and leaves the live tables, topics and consumer group as they were.

On one broker (a real cluster would be the same); the live worker's store is chdb
in its data dir, held by it, so the replay reads it through the worker's /sql and
the namespace's store is chdb in DATA_DIR/namespaces/what36 (with a ClickHouse
server both would be databases of one server)."""
from __future__ import annotations

import os
from datetime import datetime, timedelta

import orjson
import pytest
from kafka import KafkaAdminClient

from supplymon.embedded import EmbeddedBroker, free_port
from supplymon.runner import http_query
from supplymon.settings import EMBEDDED_GROUP_TIMEOUT, SHANGHAI
from supplymon.simulate import generate, write_history
from tests.conftest import supplymon
from tests.test_end_to_end import Worker, _end_offsets, _progress, wait_all_stored

LIVE_INPUTS = ["supply.orders", "supply.responses", "supply.shipments", "supply.arrivals"]
SNAPSHOT_SQL = {
    table: f"SELECT count() AS n, sum(cityHash64(*)) AS h FROM supplymon.{table} FINAL"
    for table in ("events_raw", "order_facts", "alerts", "window_parts", "dead_letters")}
OVERDUE_SQL = ("SELECT order_id, toUnixTimestamp64Milli(raised_at) AS raised FROM supplymon.alerts FINAL"
               " WHERE kind = 'response_overdue'")
FACTS_SQL = ("SELECT order_id, toUnixTimestamp64Milli(ordered_at) AS ordered, response_hours"
             " FROM supplymon.order_facts FINAL")
H = 3_600_000


def _rows(url: str, sql: str) -> list[dict]:
    return [orjson.loads(line) for line in http_query(url, sql, "JSONEachRow").splitlines()]


@pytest.mark.timeout(600)
def test_namespaced_replay_next_to_a_live_worker_leaves_it_untouched(tmp_path, data_dir):
    history = tmp_path / "history.jsonl"
    events = _late_answers(list(generate(days=4, orders_per_day=150, seed=2)))
    write_history(history, events)
    rules = tmp_path / "what36.toml"
    rules.write_text("[response]\noverdue_hours = 36\n")
    with EmbeddedBroker() as broker:
        web = free_port()
        url = f"http://127.0.0.1:{web}"
        env = {**os.environ, "SUPPLYMON_KAFKA": broker.url, "SUPPLYMON_DATA_DIR": str(data_dir),
               "SUPPLYMON_WEB_PORT": str(web), "SUPPLYMON_LIVE_TICK_SECONDS": "0",
               "SUPPLYMON_GROUP_TIMEOUT_SECONDS": str(EMBEDDED_GROUP_TIMEOUT)}
        published = supplymon("replay", str(history), env=env)
        assert published.returncode == 0, published.stderr
        live = Worker(env, tmp_path / "live.log")
        try:
            wait_all_stored(url, broker.bootstrap, LIVE_INPUTS, live, "the live worker")
            admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
            try:
                live_topics = {t for t in admin.list_topics() if not t.startswith("__")}
                before = (_snapshot(url), _end_offsets(broker.bootstrap, sorted(live_topics)),
                          _progress(url)["offsets"])
                live_facts = _rows(url, FACTS_SQL)
                live_overdue = {r["order_id"] for r in _rows(url, OVERDUE_SQL)}
                last = max(datetime.fromisoformat(e["ts"]) for e in events if e["kind"] != "tick")
                until = (last + timedelta(hours=1)).astimezone(SHANGHAI)

                replayed = supplymon("replay", "--from-clickhouse", "--until", until.isoformat(), "--namespace",
                                     "what36", "--rules", str(rules), "--data-dir", str(data_dir), env=env)
                assert replayed.returncode == 0, replayed.stderr[-3000:] + replayed.stdout
                assert "ClickHouse database supplymon_what36" in replayed.stdout

                live.check()
                topics = {t for t in admin.list_topics() if not t.startswith("__")}
                after = (_snapshot(url), _end_offsets(broker.bootstrap, sorted(live_topics)),
                         _progress(url)["offsets"])
            finally:
                admin.close()
            databases = {r["name"] for r in _rows(url, "SELECT name FROM system.databases")}
        finally:
            live.stop()
    # Live: the same rows, topics, offsets; the namespace's topics are all its own.
    assert after == before
    assert "supplymon_what36" not in databases
    new_topics = topics - live_topics
    assert {"what36.supply.orders", "what36.supply.alerts"} <= new_topics
    assert all(t.startswith(("what36.", "supplymon-what36-")) for t in new_topics), new_topics

    # The namespace: the same orders, and the 36 h answer to "what if".
    ns = ["--namespace", "what36"]
    ns_facts = _ns_rows(data_dir, FACTS_SQL, ns)
    assert {r["order_id"] for r in ns_facts} == {r["order_id"] for r in live_facts}
    until_ms = int(until.timestamp() * 1000)
    expected = {r["order_id"]: r["ordered"] + 36 * H for r in live_facts
                if (r["response_hours"] is None or r["response_hours"] > 36) and r["ordered"] + 36 * H < until_ms}
    got = {r["order_id"]: r["raised"] for r in _ns_rows(data_dir, OVERDUE_SQL, ns)}
    assert got == expected
    assert live_overdue < set(got), "the history has no answer between 36 h and 48 h: the test would prove little"


def _late_answers(events: list[dict], count: int = 2) -> list[dict]:
    """The history with a few rejections sent 40 h after their orders: late under a
    36 h deadline, in time under 48 h."""
    placed = {e["order_id"]: datetime.fromisoformat(e["ts"]) for e in events if e["kind"] == "order"}
    early = max(placed.values()) - timedelta(days=2)  # so that the answer stays within the history
    moved = 0
    for event in events:
        if (event["kind"] == "response" and event["decision"] == "rejected" and moved < count
                and placed[event["order_id"]] < early):
            event["ts"] = (placed[event["order_id"]] + timedelta(hours=40)).isoformat(timespec="milliseconds")
            moved += 1
    assert moved == count
    return sorted(events, key=lambda e: datetime.fromisoformat(e["ts"]))


def _ns_rows(data_dir, sql: str, ns: list[str]) -> list[dict]:
    result = supplymon("sql", "--data-dir", str(data_dir), *ns, sql, "--format", "JSONEachRow")
    assert result.returncode == 0, result.stderr
    return [orjson.loads(line) for line in result.stdout.splitlines() if line]


def _snapshot(url: str) -> dict:
    return {table: _rows(url, sql) for table, sql in SNAPSHOT_SQL.items()}
