"""A simulated future is replayed only when asked (end to end), and what was admitted
once is admitted again when the embedded stack rebuilds its state from the store."""
from __future__ import annotations

from datetime import datetime, timedelta

from supplymon.settings import SHANGHAI
from supplymon.simulate import generate, write_history
from tests.conftest import sql_rows, supplymon

COUNTS_SQL = ("SELECT (SELECT count() FROM supplymon.order_facts FINAL) AS orders,"
              " (SELECT count() FROM supplymon.events_raw FINAL) AS events,"
              " (SELECT groupArray(reason) FROM supplymon.dead_letters FINAL) AS reasons")


def test_a_simulated_future_is_replayed_with_allow_future_and_survives_a_rebuild(tmp_path, data_dir):
    start = (datetime.now(SHANGHAI) + timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    future = tmp_path / "future.jsonl"
    write_history(future, generate(days=1, orders_per_day=30, seed=8, start=start))

    result = supplymon("replay", str(future), "--embedded", "--data-dir", str(data_dir), "--allow-future")
    assert result.returncode == 0, result.stderr[-3000:]
    (stored,) = sql_rows(data_dir, COUNTS_SQL)
    assert stored["orders"] >= 25 and stored["reasons"] == []

    # A later run without the option rebuilds its state from the store: the future
    # events stored are republished and admitted again (not refused as future).
    past_tick = tmp_path / "tick.jsonl"
    past_tick.write_text('{"event_id": "tick-past", "kind": "tick", "ts": "2026-03-01T00:00:00+08:00"}\n')
    result = supplymon("replay", str(past_tick), "--embedded", "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rebuilt state from" in result.stdout
    (again,) = sql_rows(data_dir, COUNTS_SQL)
    assert again == {**stored, "events": stored["events"] + 1}


def test_allow_future_is_refused_where_it_cannot_apply(tmp_path):
    history = tmp_path / "h.jsonl"
    history.write_text("")
    result = supplymon("replay", str(history), "--allow-future", env={"SUPPLYMON_KAFKA": "kafka://127.0.0.1:9"})
    assert result.returncode == 2 and "SUPPLYMON_ALLOW_FUTURE=1 where your worker runs" in result.stderr
