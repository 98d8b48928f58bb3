"""Defence in depth behind validation: a row the store refuses is isolated and
dead-lettered, the rest stored; an outage is retried (real chdb)."""
from __future__ import annotations

import asyncio
import logging

import orjson
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, DataError, OperationalError

from agents.sink import ClickHouseSink, Rows
from supplymon import metrics
from supplymon.refusals import dead_letter_row, refused_alerts, refused_by_store
from supplymon.settings import Settings
from tests.test_lifecycle import T0, H, order, response
from tests.test_store import fact_rows


@pytest.fixture
def settings(tmp_path):
    return Settings(data_dir=tmp_path / "data")


def test_data_errors_are_told_from_outages():
    assert refused_by_store(DataError("Unable to create native array for column `quantity`"))
    assert refused_by_store(DatabaseError("Code: 53. DB::Exception: Type mismatch in column"))
    assert refused_by_store(OverflowError("int too big"))
    assert not refused_by_store(DatabaseError("Code: 60. DB::Exception: Table supplymon.order_facts does not exist"))
    assert not refused_by_store(OperationalError("Code: 53 while the connection was reset"))
    assert not refused_by_store(ConnectionRefusedError(111, "Connection refused"))
    assert not refused_by_store(TimeoutError("timed out"))
    assert not refused_by_store(RuntimeError("Cannot lock file status. Another server instance"))


def test_the_same_refused_derived_row_gets_the_same_dead_letter_key():
    (fact,) = fact_rows([order()])
    a, b = (dead_letter_row("order_facts", dict(fact), "e", now) for now in (1, 2))
    assert (a["topic"], a["partition"], a["offset"]) == (b["topic"], b["partition"], b["offset"])
    assert a["topic"] == "clickhouse.order_facts" and a["reason"] == "bad_field"
    other = dead_letter_row("order_facts", {**fact, "order_id": "O2"}, "e", 1)
    assert other["offset"] != a["offset"]


def test_a_row_the_store_refuses_is_dead_lettered_and_the_rest_stored(settings, caplog):
    """A fact whose quantity (10^18) passed no validator, put straight into the sink
    among good ones, in every table the batch writes: the good rows are stored, the
    bad one is in dead_letters with the store's error, and write() returns."""
    facts = []
    for n in range(9):
        (fact,) = fact_rows([order(), response(T0 + H)])
        facts.append({**fact, "order_id": f"O{n}"})
    facts[5]["quantity"] = 10**18
    raw = {"event_id": "e1", "kind": "order", "ts": T0, "order_id": "O1", "payload": '{"x": 1}',
           "topic": "supply.orders", "partition": 70_000, "offset": 12}  # a partition UInt16 cannot hold
    good_raw = {**raw, "event_id": "e2", "partition": 1}
    sink = ClickHouseSink(settings, first_backoff=0.01)
    refused_before = metrics.sink_refused.labels("order_facts")._value.get()

    async def scenario():
        await sink.open()
        rows = Rows()
        for fact in facts:
            rows.add("order_facts", fact)
        rows.add("events_raw", raw)
        rows.add("events_raw", good_raw)
        dead = await sink.write(rows)
        stored = await sink.query("SELECT order_id FROM supplymon.order_facts FINAL ORDER BY order_id", "TSV")
        raws = await sink.query("SELECT event_id FROM supplymon.events_raw FINAL", "TSV")
        letters = await sink.query("SELECT topic, partition, reason, detail, original FROM supplymon.dead_letters"
                                   " FINAL ORDER BY topic", "JSONEachRow")
        return dead, stored, raws, letters

    with caplog.at_level(logging.WARNING, logger="agents.sink"):
        try:
            dead, stored, raws, letters = asyncio.run(asyncio.wait_for(scenario(), 60))
        finally:
            asyncio.run(sink.close())
    assert stored.decode().split() == [f"O{n}" for n in range(9) if n != 5]
    assert raws.decode().split() == ["e2"]
    assert [d["reason"] for d in dead] == ["bad_field", "bad_field"]
    letters = [orjson.loads(line) for line in letters.splitlines()]
    # The raw event's source position does not fit the dead_letters columns either:
    # it is named by its table, and keeps its payload as the original.
    assert [(d["topic"], d["reason"]) for d in letters] == [("clickhouse.events_raw", "bad_field"),
                                                            ("clickhouse.order_facts", "bad_field")]
    raw_letter, fact_letter = letters
    assert "quantity" in fact_letter["detail"] and '"order_id":"O5"' in fact_letter["original"]
    assert "partition" in raw_letter["detail"] and raw_letter["original"] == '{"x": 1}'
    assert metrics.sink_refused.labels("order_facts")._value.get() == refused_before + 1
    assert any("refused" in r.message for r in caplog.records)


def test_an_alert_whose_row_the_store_refuses_is_named_so_it_is_not_sent(settings):
    """The lifecycle and early-warning agents send an alert only once its row is
    stored: `refused_alerts` names, from the sink's dead letters, the alerts whose
    rows the store refused (here a version UInt64 cannot hold), and only those."""
    def alert(n: int, version: int) -> dict:
        return {"alert_id": f"response_overdue-{n}", "kind": "response_overdue", "severity": "warning",
                "subject_type": "order", "order_id": f"O{n}", "distributor_id": "D1", "institution_id": "H1",
                "product_id": "P1", "region_code": "330100", "raised_at": T0, "resolved_at": None,
                "message": "m", "details": "{}", "version": version}

    sink = ClickHouseSink(settings, first_backoff=0.01)

    async def scenario():
        await sink.open()
        rows = Rows()
        for n, version in enumerate((9, -1, 17)):
            rows.add("alerts", alert(n, version))
        dead = await sink.write(rows)
        stored = await sink.query("SELECT alert_id FROM supplymon.alerts FINAL ORDER BY alert_id", "TSV")
        return dead, stored

    try:
        dead, stored = asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        asyncio.run(sink.close())
    assert stored.decode().split() == ["response_overdue-0", "response_overdue-2"]
    assert refused_alerts(dead) == {("response_overdue-1", -1)}
    assert refused_alerts([dead_letter_row("order_facts", {"order_id": "O1"}, "e", 1)]) == set()
