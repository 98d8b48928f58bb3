"""Replay sources: Parquet histories in both layouts give the events of the JSON
Lines history; the stored events of a time span, with a closing tick."""
from __future__ import annotations

from datetime import datetime

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from supplymon.runner import RunError
from supplymon.settings import SHANGHAI, Settings
from supplymon.simulate import generate
from supplymon.sources import history_lines, parse_moment, store_lines
from supplymon.store import Store


@pytest.fixture(scope="module")
def events() -> list[dict]:
    return list(generate(days=2, orders_per_day=40, seed=3))


def test_parquet_with_one_column_per_field_gives_the_same_events(tmp_path, events):
    rows = [{**e, "ts": datetime.fromisoformat(e["ts"]),
             "received_at": datetime.fromisoformat(e["received_at"]) if "received_at" in e else None}
            for e in events]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    path = tmp_path / "history.parquet"
    pq.write_table(pa.Table.from_pylist([{c: row.get(c) for c in columns} for row in rows]), path)  # absent: null
    got = [orjson.loads(line) for line in history_lines(path)]
    assert len(got) == len(events)
    for want, row in zip(events, got):
        assert row.keys() == want.keys()
        for key, value in want.items():
            if key in ("ts", "received_at"):
                assert datetime.fromisoformat(row[key]) == datetime.fromisoformat(value)
            else:
                assert row[key] == value


def test_parquet_export_of_events_raw_gives_its_payloads(tmp_path, events):
    path = tmp_path / "events_raw.parquet"
    payloads = [orjson.dumps(e).decode() for e in events]
    pq.write_table(pa.table({"event_id": [e["event_id"] for e in events], "payload": payloads}), path)
    assert [line.decode() for line in history_lines(path)] == payloads


def test_unusable_files_fail_clearly(tmp_path):
    with pytest.raises(RunError, match="does not exist"):
        history_lines(tmp_path / "missing.parquet")
    path = tmp_path / "odd.parquet"
    pq.write_table(pa.table({"x": [1]}), path)
    with pytest.raises(RunError, match="needs a `payload` column"):
        list(history_lines(path))


def test_stored_events_of_a_span_with_their_orders_and_a_closing_tick(tmp_path, events):
    settings = Settings(data_dir=tmp_path / "data")
    store = Store(settings)
    try:
        store.migrate()
        store.insert("events_raw", [
            {"event_id": e["event_id"], "kind": e["kind"], "ts": datetime.fromisoformat(e["ts"]),
             "order_id": e.get("order_id", ""), "payload": orjson.dumps(e).decode(), "topic": "t",
             "partition": 0, "offset": n} for n, e in enumerate(events)])
    finally:
        store.close()
    orders = sorted((e for e in events if e["kind"] == "order"), key=lambda e: e["ts"])
    since = datetime.fromisoformat(orders[len(orders) // 4]["ts"])  # in the first day
    until = parse_moment(orders[-1]["ts"][:10])  # that day, 00:00 Asia/Shanghai
    got = [orjson.loads(line) for line in store_lines(settings, since, until)]
    chosen = {e["order_id"] for e in orders if since <= datetime.fromisoformat(e["ts"]) < until}
    # events_raw keeps one row per event_id: an event the platform sent twice is one stored event.
    unique = {e["event_id"]: e for e in events}.values()
    want = [e for e in unique if datetime.fromisoformat(e["ts"]) < until and (
        e.get("order_id") in chosen or (e["kind"] == "tick" and datetime.fromisoformat(e["ts"]) >= since))]
    assert chosen and got[:-1] == sorted(want, key=lambda e: (datetime.fromisoformat(e["ts"]), e["event_id"]))
    assert got[-1]["kind"] == "tick" and datetime.fromisoformat(got[-1]["ts"]) == until
    assert until.tzinfo == SHANGHAI
