"""The ClickHouse side on real embedded ClickHouse (chdb): DDL, idempotent rows,
and the sink's retry of a failed write."""
from __future__ import annotations

import asyncio
import logging

import pytest

from agents.sink import ClickHouseSink, Rows
from supplymon import metrics
from supplymon.core.lifecycle import OrderLifecycle, new_state
from supplymon.settings import Rules, Settings
from supplymon.store import Store
from tests.test_lifecycle import T0, H, arrival, order, response


def fact_rows(*events_lists):
    life = OrderLifecycle(Rules())
    rows = []
    for events in events_lists:
        state = new_state("O1")
        for event in events:
            life.apply(state, event)
        rows.append(life.fact(state))
    return rows


@pytest.fixture
def settings(tmp_path):
    return Settings(data_dir=tmp_path / "data")


def test_replacing_tables_keep_the_latest_version(settings):
    store = Store(settings)
    try:
        store.migrate()
        store.migrate()  # idempotent
        early, late = fact_rows([order()], [order(), response(T0 + H), arrival(T0 + 5 * H, T0 + 4 * H)])
        store.insert("order_facts", [late])
        store.insert("order_facts", [early])  # a replayed, older row arrives after
        store.insert("order_facts", [late])
        rows = store.rows("SELECT order_id, decision, on_time, delivered_quantity, response_hours,"
                          " toString(ordered_at) AS ordered FROM supplymon.order_facts FINAL")
        assert rows == [{"order_id": "O1", "decision": "accepted", "on_time": 1, "delivered_quantity": 10,
                         "response_hours": 1, "ordered": "2026-03-01 08:00:00.000"}]
    finally:
        store.close()


def test_sink_retries_a_failed_write_until_stored(settings, caplog):
    sink = ClickHouseSink(settings, first_backoff=0.01)
    (row,) = fact_rows([order(), response(T0 + H)])
    retries_before = metrics.sink_retries.labels("order_facts")._value.get()

    async def scenario():
        await sink.open()
        # Break the store under the sink: the table it writes to disappears.
        await sink.run(lambda: sink._store.client.command("DROP TABLE supplymon.order_facts"))
        rows = Rows()
        rows.add("order_facts", row)
        await sink.write(rows)  # fails once, reopens (re-creating the table), stores
        return await sink.query("SELECT count() FROM supplymon.order_facts FINAL", "TSV")

    with caplog.at_level(logging.WARNING, logger="agents.sink"):
        try:
            count = asyncio.run(scenario())
        finally:
            asyncio.run(sink.close())
    assert count.strip() == b"1"
    assert metrics.sink_retries.labels("order_facts")._value.get() == retries_before + 1
    assert any("writing 1 rows to order_facts failed (attempt 1)" in r.message for r in caplog.records)


def test_a_write_with_no_rows_says_nothing_of_the_stores_health(settings, monkeypatch):
    """A batch without rows (a wake-up) asks nothing of the store: while the store is
    down, it must not report it back (an outage would count twice)."""
    from supplymon import health

    store = health.Availability("store", "ClickHouse 存储")
    monkeypatch.setattr(health, "store", store)
    sink = ClickHouseSink(settings)
    store.failed("down")
    try:
        assert asyncio.run(sink.write(Rows())) == []
    finally:
        asyncio.run(sink.close())
    assert store.up is False and store.outages == 1


def test_insert_files_a_killed_worker_left_are_removed_when_the_store_opens(settings):
    """A worker's inserts pass through temporary files in the data dir (not /tmp);
    those of a killed process go when the store is opened again, nothing else does."""
    settings.insert_tmp_dir.mkdir(parents=True)
    leftover = settings.insert_tmp_dir / "tmpab12cd.native"
    leftover.write_bytes(b"half an insert")
    unrelated = settings.insert_tmp_dir / "notes.txt"
    unrelated.write_text("kept")
    store = Store(settings)
    try:
        assert not leftover.exists() and unrelated.exists()
    finally:
        store.close()


def test_the_sink_gives_the_embedded_stores_free_memory_back(settings, monkeypatch):
    """Once per STORE_RELEASE_EVERY rows stored, and from the quiet-time timer for
    fewer, the sink has embedded chdb give its allocator's free memory back (a real
    `SYSTEM JEMALLOC PURGE`); nothing is purged while no row came since."""
    import agents.sink

    monkeypatch.setattr(agents.sink, "STORE_RELEASE_EVERY", 3)
    sink = ClickHouseSink(settings)
    (row,) = fact_rows([order()])
    purged: list[bool] = []

    async def write(count: int) -> None:
        rows = Rows()
        for n in range(count):
            rows.add("order_facts", dict(row, order_id=f"O{n}"))
        await sink.write(rows)

    async def scenario():
        await sink.open()
        store = sink._store
        real = store.release_memory
        monkeypatch.setattr(store, "release_memory", lambda: purged.append(real()) or purged[-1])
        await write(2)
        assert purged == []
        await write(1)  # the third row since: purged
        assert purged == [True]
        await sink.release_left_over_memory()
        assert purged == [True]  # nothing stored since
        await write(1)
        await sink.release_left_over_memory()
        assert purged == [True, True]

    try:
        asyncio.run(scenario())
    finally:
        asyncio.run(sink.close())


def test_a_clickhouse_server_is_not_purged(settings):
    """On a ClickHouse server the server manages its memory: release_memory sends nothing.
    (No server runs here: the client is a stand-in that fails if it is called.)"""
    class NoCalls:
        def command(self, sql):
            raise AssertionError(f"sent to the server: {sql}")

    store = Store.__new__(Store)
    store.settings, store.client, store._purge = Settings(clickhouse_url="http://127.0.0.1:1"), NoCalls(), True
    assert store.release_memory() is False
