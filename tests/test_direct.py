"""`replay FILE --direct`: the worker's dataflow fed straight from the file, no broker.

Compared with `replay FILE --embedded` (broker, Faust worker, signals topic, early
warnings agent) on a simulated history with several stories: the same facts,
alerts (order alerts and early warnings), windows and dead letters. And in
process, without a store: the flow gives the same rows whatever the batch size.
"""
from __future__ import annotations

import gzip

import orjson
import pytest

from supplymon.core.alerts import CONDUCT_KINDS
from supplymon.runner import RunError
from supplymon.settings import Settings
from supplymon.sources import history_lines
from tests.conftest import sql_rows, supplymon
from tests.test_end_to_end import (ALERTS_SQL, DAILY_SQL, FACT_SQL, MALFORMED, assert_daily_match, assert_facts_match,
                                   assert_warnings_match, build_history)
from tests.warnings_reference import WARNINGS_SQL

COMPARED = {
    "facts": FACT_SQL,
    "alerts": ALERTS_SQL,
    "daily": DAILY_SQL,
    "hourly": "SELECT * FROM supplymon.distributor_hourly ORDER BY hour, distributor_id",
    "product_region": "SELECT * FROM supplymon.product_region_daily ORDER BY day, product_id, region_code",
    # Response hours in the order the parts received them, which batching may change.
    "window_parts": "SELECT * EXCEPT (version, response_hours), arraySort(response_hours) AS hours"
                    " FROM supplymon.window_parts FINAL ORDER BY family, subject, window_start, partition",
    # Keyed events sit in their order's partition; the offsets differ (the broker holds ticks too),
    # and a tick is read in every partition (the row kept is any of them).
    "events": "SELECT event_id, kind, order_id, if(kind = 'tick', '', topic) AS topic,"
              " if(kind = 'tick', 0, partition) AS partition FROM supplymon.events_raw FINAL ORDER BY event_id",
    # A line without an order_id goes to any partition through Kafka.
    "dead_letters": "SELECT reason, event_id, original, topic FROM supplymon.dead_letters FINAL"
                    " ORDER BY reason, event_id, original",
}


@pytest.fixture
def rules_env(tmp_path) -> dict:
    path = tmp_path / "rules.toml"
    path.write_text("[state]\norphan_timeout_hours = 24\n")
    return {"SUPPLYMON_RULES": str(path)}


def _results(data_dir) -> dict[str, list[dict]]:
    return {name: sql_rows(data_dir, sql) for name, sql in COMPARED.items()}


def test_direct_replay_stores_what_the_embedded_replay_stores(tmp_path, rules_env):
    plain, history = tmp_path / "history.jsonl", tmp_path / "history.jsonl.gz"
    events = build_history(plain, days=4, orders_per_day=500)
    history.write_bytes(gzip.compress(plain.read_bytes()))
    embedded, direct = tmp_path / "embedded", tmp_path / "direct"

    result = supplymon("replay", str(history), "--embedded", "--data-dir", str(embedded), env=rules_env)
    assert result.returncode == 0, result.stderr[-3000:]
    result = supplymon("replay", str(history), "--direct", "--data-dir", str(direct), env=rules_env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "processed and stored" in result.stderr and "(100%)" in result.stdout
    assert "dead letters" in result.stdout  # the summary

    want, got = _results(embedded), _results(direct)
    kinds = {row["kind"] for row in got["alerts"]}
    # Order alerts and early warnings of several stories, or the comparison proves little.
    assert {"response_overdue", "delivery_overdue", "supply_shortage"} <= kinds
    assert kinds & (set(CONDUCT_KINDS) - {"supply_shortage"})
    assert {row["reason"] for row in got["dead_letters"]} >= {reason for _, reason in MALFORMED} | {"orphan"}
    for name in COMPARED:
        assert got[name] and got[name] == want[name], name
    # And both are right, not only equal.
    assert_facts_match(got["facts"], events)
    assert_daily_match(sql_rows(direct, DAILY_SQL), events)
    assert_warnings_match(sql_rows(direct, WARNINGS_SQL), events)

    # A second direct replay into the same store (its state rebuilt from the stored events) changes nothing.
    result = supplymon("replay", str(history), "--direct", "--data-dir", str(direct), env=rules_env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rebuilt state from" in result.stdout
    assert _results(direct) == got


@pytest.mark.parametrize("others", [["--embedded"], ["--speed", "10"], ["--skip-stored"], ["--namespace", "x"]])
def test_direct_replay_refuses_what_it_does_not_do(tmp_path, others):
    history = tmp_path / "history.jsonl"
    history.write_text('{"event_id": "e1", "kind": "tick", "ts": "2026-03-01T00:00:00+08:00"}\n')
    result = supplymon("replay", str(history), "--direct", *others, "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 2
    assert "--direct 不能与" in result.stderr and others[0] in result.stderr
    assert not (tmp_path / "data").exists()


def test_direct_replay_of_a_damaged_file_stores_what_came_before_and_says_so(tmp_path, data_dir):
    lines = b"".join(orjson.dumps({"event_id": f"t{n}", "kind": "tick",
                                   "ts": f"2026-03-01T{n:02d}:00:00+08:00"}) + b"\n" for n in range(10))
    damaged = tmp_path / "history.jsonl.gz"
    damaged.write_bytes(gzip.compress(lines)[:-12])  # the gzip trailer cut off
    result = supplymon("replay", str(damaged), "--direct", "--data-dir", str(data_dir))
    assert result.returncode == 1
    assert "文件已损坏" in result.stderr and "damaged" in result.stderr
    readable = 0
    with pytest.raises(RunError):
        for _ in history_lines(damaged):
            readable += 1
    (row,) = sql_rows(data_dir, "SELECT count() AS n FROM supplymon.events_raw FINAL")
    assert row["n"] == readable > 0  # every line before the damage


def _flow_rows(lines: list[bytes], batch: int) -> dict[str, dict]:
    """The rows a direct replay would store, by table and natural key (last write wins,
    as ReplacingMergeTree keeps the highest version), with no store."""
    from supplymon.direct import DirectReplay, LineBatch, Router

    settings = Settings.from_env({})
    replay = DirectReplay(settings, sink=None, progress=None, batch=batch)  # only step(): no store
    router, stored = Router(settings), {}
    keys = {"events_raw": ("event_id",), "order_facts": ("order_id",), "alerts": ("alert_id",),
            "window_parts": ("family", "subject", "window_start", "partition"),
            "dead_letters": ("topic", "partition", "offset", "reason")}
    now = 1 << 62  # nothing is from the future
    for start in range(0, len(lines), batch):
        records, decoded = router.batch(lines[start:start + batch], now)
        rows = replay.step(LineBatch(batch, records, now, decoded))
        for table in rows.by_table:
            for row in rows.dicts(table):
                row = dict(row)
                row.pop("version", None)
                if "response_hours" in row and isinstance(row["response_hours"], list):
                    row["response_hours"] = sorted(row["response_hours"])
                stored.setdefault(table, {})[tuple(row[k] for k in keys[table])] = row
    return stored


def test_the_flow_stores_the_same_rows_whatever_the_batch_size(tmp_path):
    path = tmp_path / "history.jsonl"
    build_history(path, days=4, orders_per_day=120, scenario=("shortage", "bad-distributor"))
    lines = path.read_bytes().splitlines()
    big = _flow_rows(lines, 20_000)
    assert {row["kind"] for row in big["alerts"].values()} >= {"supply_shortage", "delivery_overdue"}
    for batch in (7, 500):
        assert _flow_rows(lines, batch) == big, batch
