"""The Arrow store path (supplymon/arrow_schema.py, Store.insert) on real embedded
ClickHouse (chdb): schemas read from the DDL, the same stored rows as the previous
Native path, refused values named and dead-lettered, and the write-behind gathering
batches into large inserts.

The ClickHouse server path (SUPPLYMON_CLICKHOUSE=http://...) runs the same code
down to clickhouse-connect's `insert_arrow`, which sends the Arrow IPC body built by
`arrow_buffer` over HTTP instead of through a temporary file. No ClickHouse server
runs here and none is faked: what is tested of that path is its body (read back
by pyarrow, and taken by ClickHouse itself as `FORMAT Arrow`), not the transport.
"""
from __future__ import annotations

import asyncio
import random
import time

import orjson
import pyarrow as pa
import pytest
from clickhouse_connect.driver.query import arrow_buffer

from agents.sink import ClickHouseSink, Rows, WriteBehind
from schemas.limits import MAX_TS_MS, MIN_TS_MS, UINT16_MAX, UINT32_MAX
from supplymon.arrow_schema import UnknownColumnType, _arrow_type, arrow_tables, table_columns, to_arrow
from supplymon.core.alerts import order_alert_row
from supplymon.settings import Settings
from supplymon.store import COLUMNS, Store, ddl_statements
from tests.test_lifecycle import T0, H, arrival, order, response
from tests.test_store import fact_rows

SHANGHAI_MS = pa.timestamp("ms", tz="Asia/Shanghai")
# The largest UInt64 the Native path writes (clickhouse-connect refuses 2^63 and up
# there); the Arrow path takes up to 2^64 - 1 (checked below).
BIG = 2**63 - 1


@pytest.fixture
def settings(tmp_path):
    return Settings(data_dir=tmp_path / "data")


# -- schemas from the DDL ------------------------------------------------------------------

def test_the_ddl_is_read_as_clickhouse_reads_it(settings):
    """Every table's columns and types, parsed from schemas/clickhouse.sql, are those
    ClickHouse created from the same file."""
    parsed = table_columns(ddl_statements())
    store = Store(settings)
    try:
        store.migrate()
        created = {}
        for row in store.rows("SELECT table, name, type FROM system.columns WHERE database = 'supplymon' "
                              "AND table IN (SELECT name FROM system.tables WHERE database = 'supplymon' "
                              "AND engine NOT LIKE '%View') ORDER BY table, position"):
            created.setdefault(row["table"], {})[row["name"]] = row["type"]
    finally:
        store.close()
    assert parsed == created


def test_each_written_table_has_an_arrow_schema_typed_as_its_columns():
    tables = arrow_tables()
    assert set(tables) == set(COLUMNS)
    for table, columns in COLUMNS.items():
        assert tables[table].schema.names == list(columns)
    facts = tables["order_facts"].schema
    assert facts.field("region_code").type == pa.dictionary(pa.int32(), pa.string())
    assert not facts.field("region_code").nullable
    assert facts.field("decision").type == pa.dictionary(pa.int32(), pa.string())  # LowCardinality(Nullable(String))
    assert facts.field("decision").nullable
    assert facts.field("ordered_at").type == SHANGHAI_MS and not facts.field("ordered_at").nullable
    assert facts.field("responded_at").type == SHANGHAI_MS and facts.field("responded_at").nullable
    assert facts.field("quantity").type == pa.uint32() and facts.field("version").type == pa.uint64()
    assert tables["window_parts"].schema.field("response_hours").type == pa.list_(pa.field("item", pa.float64(), False))
    assert arrow_tables() is tables  # built once


def test_types_the_ddl_may_use_later_map_too():
    assert _arrow_type("Map(LowCardinality(String), UInt32)") == (
        pa.map_(pa.dictionary(pa.int32(), pa.string()), pa.field("value", pa.uint32(), nullable=False)), False)
    assert _arrow_type("Enum8('open' = 1, 'resolved' = 2)") == (pa.string(), False)
    assert _arrow_type("Decimal(18, 2)") == (pa.decimal128(18, 2), False)
    assert _arrow_type("Nullable(DateTime64(6))") == (pa.timestamp("us"), True)
    assert _arrow_type("Array(Nullable(String))") == (pa.list_(pa.string()), False)
    with pytest.raises(UnknownColumnType, match="IPv4"):
        _arrow_type("IPv4")


def test_a_comment_with_a_quote_or_parenthesis_in_the_ddl_is_not_a_column():
    ddl = ["CREATE TABLE IF NOT EXISTS db.t (\n    a String,\n    -- it's (not a column\n"
           "    b LowCardinality(String) CODEC(ZSTD(3)),\n    c DateTime64(3, 'Asia/Shanghai') DEFAULT now64(3)\n)"
           " ENGINE = ReplacingMergeTree ORDER BY a"]
    assert table_columns(ddl) == {"t": {"a": "String", "b": "LowCardinality(String)",
                                        "c": "DateTime64(3, 'Asia/Shanghai')"}}


# -- the same rows as the previous path -----------------------------------------------------

def _varied_rows(rnd: random.Random) -> dict[str, list[dict]]:
    """Rows for every written table, with the edge values each column type admits:
    nulls, flags as bools, bounds of schemas/limits.py, Chinese, quotes, empty arrays."""
    facts = fact_rows([order()], [order(), response(T0 + H)], [order(), response(T0 + H), arrival(T0 + 5 * H, T0 + 4 * H)],
                      [order(area="rural", quantity=UINT32_MAX), response(T0 + H, decision="rejected", confirmed=0)])
    texts = ["", "平安医院'\\\"", "O-\u00e9\u4e2d\t\n", "x" * 300]
    times = [MIN_TS_MS, MAX_TS_MS, T0, T0 + 1, 0, -1]
    facts = [{**fact, "order_id": f"{fact['order_id']}-{n}-{rnd.choice(texts)}",
              "ordered_at": rnd.choice(times), "unit_price": rnd.choice([0.1 + 0.2, 1e13, 0, 2]),
              "version": rnd.choice([0, BIG, n])}
             for n, fact in enumerate(facts * 5)]
    alerts = []
    for fact in facts[:8]:
        alert = {"kind": "response_overdue", "severity": "warning", "raised_at": rnd.choice(times),
                 "resolved_at": rnd.choice([None, T0 + 2 * H])}
        alerts.append(order_alert_row(alert, fact, fact["version"]))
    alerts[0]["details"] = {"嵌套": [1, 2.5, None, {"a": "'"}], "empty": {}}
    raws = [{"event_id": f"e{n}", "kind": rnd.choice(["order", "tick"]), "ts": rnd.choice(times),
             "order_id": rnd.choice(texts), "payload": orjson.dumps({"n": n, "t": rnd.choice(texts)}).decode(),
             "topic": "supply.orders", "partition": rnd.choice([0, UINT16_MAX]), "offset": rnd.choice([0, BIG])}
            for n in range(20)]
    dead = [{"topic": "supply.orders", "partition": n, "offset": n, "reason": "bad_json", "detail": rnd.choice(texts),
             "event_id": rnd.choice([None, "e1"]), "original": rnd.choice(texts), "noticed_at": rnd.choice(times)}
            for n in range(10)]
    parts = [{"family": "distributor_daily", "subject": f"D{n}", "window_start": T0, "partition": n % 4,
              "distributor_id": f"D{n}", "product_id": "", "region_code": "", "orders": n, "responded": n,
              "responded_within_24h": n, "rejected": 0, "delivered_on_time": n, "delivered_late": 0,
              "undelivered": 0, "ordered_quantity": BIG, "delivered_quantity": n,
              "response_hours": rnd.choice([[], [0.5, 1 / 3], [1e300]]), "closed": rnd.choice([0, 1, True]),
              "version": n} for n in range(10)]
    notes = [{"alert_id": f"a{n}", "state": "raised", "recipient": "D1", "channel": "webhook", "status": "sent",
              "attempts": n, "last_error": rnd.choice(texts), "message": "alert", "sent_at": rnd.choice([None, T0]),
              "updated_at": T0, "version": n} for n in range(5)]
    acks = [{"alert_id": f"a{n}", "recipient": "D1", "acked_at": T0 + n, "comment": rnd.choice(texts)} for n in range(5)]
    return {"events_raw": raws, "order_facts": facts, "alerts": alerts, "dead_letters": dead,
            "window_parts": parts, "notifications": notes, "alert_acks": acks}


def test_the_arrow_path_stores_the_same_rows_as_the_native_path_in_every_table(settings):
    rows = _varied_rows(random.Random(15))
    assert set(rows) == set(COLUMNS)
    old, new = Store(settings, database="old_path"), Store(settings, database="new_path")
    try:
        old.migrate()
        new.migrate()
        for table, table_rows in rows.items():
            old.insert_native(table, table_rows)
            new.insert(table, table_rows)
        for table in COLUMNS:
            query = (f"SELECT * EXCEPT (stored_at) FROM {{db}}.{table} ORDER BY ALL" if table == "events_raw"
                     else f"SELECT * FROM {{db}}.{table} ORDER BY ALL")
            stored_old = old.query(query.format(db="old_path"), "JSONEachRow")
            stored_new = new.query(query.format(db="new_path"), "JSONEachRow")
            assert stored_new.count(b"\n") == len(rows[table]), table
            assert stored_new == stored_old, table
    finally:
        old.close()
        new.close()


# -- values a column cannot hold --------------------------------------------------------------

@pytest.mark.parametrize("change, column", [
    ({"quantity": UINT32_MAX + 1}, "quantity"),
    ({"version": 2**64}, "version"),
    ({"quantity": -1}, "quantity"),
    ({"quantity": "10"}, "quantity"),
    ({"institution_id": None}, "institution_id"),  # not Nullable: never stored as ''
    ({"deadline_at": None}, "deadline_at"),
    ({"region_code": 150702}, "region_code"),
])
def test_a_value_its_column_cannot_hold_is_refused_naming_the_column(change, column):
    (fact,) = fact_rows([order()])
    with pytest.raises(ValueError, match=rf"column {column} \("):
        to_arrow("order_facts", [fact, {**fact, **change}])


def test_the_arrow_path_stores_the_whole_uint64_range(settings):
    (fact,) = fact_rows([order()])
    store = Store(settings)
    try:
        store.migrate()
        store.insert("order_facts", [{**fact, "version": 2**64 - 1}])
        assert store.rows("SELECT toString(version) AS v FROM supplymon.order_facts") == [{"v": str(2**64 - 1)}]
    finally:
        store.close()


def test_flags_and_nulls_become_what_the_columns_hold():
    (fact,) = fact_rows([order(area="rural")])
    table = to_arrow("order_facts", [fact, {**fact, "on_time": None, "grassroots": False}])
    assert table.column("grassroots").to_pylist() == [1, 0]
    assert table.column("on_time").to_pylist() == [None, None]
    assert table.column("responded_at").null_count == 2


def test_the_sink_dead_letters_a_row_refused_on_the_arrow_path_and_stores_the_rest(settings):
    """A null where the column is not Nullable (ClickHouse's Arrow input would store
    '' silently) among good rows: refused by halving, dead-lettered, the rest stored."""
    facts = [{**fact_rows([order()])[0], "order_id": f"O{n}"} for n in range(7)]
    facts[3]["institution_id"] = None
    sink = ClickHouseSink(settings, first_backoff=0.01)

    async def scenario():
        await sink.open()
        rows = Rows()
        for fact in facts:
            rows.add("order_facts", fact)
        dead = await sink.write(rows)
        stored = await sink.query("SELECT order_id FROM supplymon.order_facts FINAL ORDER BY order_id", "TSV")
        letters = await sink.query("SELECT detail FROM supplymon.dead_letters FINAL", "TSV")
        return dead, stored, letters

    try:
        dead, stored, letters = asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        asyncio.run(sink.close())
    assert stored.decode().split() == ["O0", "O1", "O2", "O4", "O5", "O6"]
    assert len(dead) == 1 and '"order_id":"O3"' in dead[0]["original"]
    assert b"column institution_id (String) is not Nullable" in letters


# -- the server path, without a server ----------------------------------------------------------

def test_the_arrow_body_a_server_would_receive_holds_the_ddl_types_and_the_rows(settings):
    """clickhouse-connect's insert_arrow sends `arrow_buffer(table)` to a server as
    `INSERT INTO db.table (columns) FORMAT Arrow`. That body read back by pyarrow has
    the DDL's schema and the rows' values, and ClickHouse (chdb) stores it as such.
    (No server runs here: the HTTP transport is not exercised.)"""
    facts = fact_rows([order()], [order(), response(T0 + H)])
    facts[1]["order_id"] = "O2"
    table = to_arrow("order_facts", facts)
    names, body = arrow_buffer(table)
    assert list(names) == list(COLUMNS["order_facts"])
    again = pa.ipc.open_file(body).read_all()
    assert again.schema == arrow_tables()["order_facts"].schema
    assert again.column("ordered_at").cast(pa.int64()).to_pylist() == [f["ordered_at"] for f in facts]
    assert again.column("decision").to_pylist() == [None, "accepted"]
    store = Store(settings)
    try:
        store.migrate()
        store.client.raw_insert("supplymon.order_facts", names, body.to_pybytes(), fmt="Arrow")
        stored = store.rows("SELECT order_id, decision, toUnixTimestamp64Milli(ordered_at) AS at "
                            "FROM supplymon.order_facts ORDER BY order_id")
    finally:
        store.close()
    assert stored == [{"order_id": "O1", "decision": None, "at": T0}, {"order_id": "O2", "decision": "accepted", "at": T0}]


# -- large inserts: the write-behind gathers batches ------------------------------------------------

class CountedSink(ClickHouseSink):
    """The real sink on chdb, counting the rows of each write (one insert per table)."""

    def __init__(self, settings):
        super().__init__(settings, first_backoff=0.01)
        self.writes: list[int] = []

    async def write(self, rows):
        self.writes.append(rows.count("order_facts"))
        return await super().write(rows)


def _batch(first: int, n: int) -> Rows:
    (fact,) = fact_rows([order()])
    rows = Rows()
    for i in range(first, first + n):
        rows.add("order_facts", {**fact, "order_id": f"O{i:05d}"})
    return rows


def _run_write_behind(settings, batches: int, per_batch: int, max_pending: int, end: str, events: int = 0):
    """Submit `batches` batches of `per_batch` rows (`events` events each, default one a
    row), yielding between them as the agent does; end with a drain or wait for the time
    bound. The inserts' sizes, the batches finished, the rows stored, and the rows each
    batch still held when finished."""
    sink = CountedSink(settings)
    finished: list[int] = []
    submitted = [_batch(n * per_batch, per_batch) for n in range(batches)]
    held: list[int] = []

    async def finish(batches, insert_started, insert_ended):
        assert insert_started <= insert_ended
        finished.extend(batches)
        held.extend(len(submitted[n]) for n in batches)

    async def scenario():
        await sink.open()
        behind = WriteBehind(sink, finish, max_pending=max_pending)
        for n in range(batches):
            await behind.submit(n, submitted[n], events or per_batch)
            await asyncio.sleep(0)  # the agent reads its next batch: the writer runs meanwhile
        if end == "drain":
            await behind.drain()
        else:  # the time bound alone
            while len(finished) < batches:
                await asyncio.sleep(0.01)
        await behind.close()
        return await sink.query("SELECT count() FROM supplymon.order_facts FINAL", "TSV")

    try:
        stored = asyncio.run(asyncio.wait_for(scenario(), 120))
    finally:
        asyncio.run(sink.close())
    return sink.writes, finished, int(stored), held


def test_write_behind_gathers_batches_up_to_the_insert_size(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", store_insert_rows=300, store_insert_seconds=3600)
    writes, finished, stored, held = _run_write_behind(settings, batches=10, per_batch=100, max_pending=100,
                                                       end="drain")
    assert finished == list(range(10)) and stored == 1000
    assert held == [0] * 10  # stored: the queue holds a batch's output until it is finished, not its rows
    # The first batch waits for more; once 300 rows wait they go as one insert (the
    # queue holds 2 x 300 events though max_pending says 100), so does every insert but the last.
    assert all(w >= 300 for w in writes[:-1]) and len(writes) <= 4 and sum(writes) == 1000, writes


def test_write_behind_writes_what_waits_once_the_time_bound_passes(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", store_insert_rows=1_000_000, store_insert_seconds=0.05)
    writes, finished, stored, _ = _run_write_behind(settings, batches=3, per_batch=10, max_pending=100, end="time")
    assert finished == [0, 1, 2] and stored == 30 and sum(writes) == 30


def test_write_behind_writes_at_once_when_the_agent_waits_for_room(tmp_path):
    """Below the insert size (5 rows) with the time bound an hour away: a queue full of
    events (4 a batch, room for 10) that make few rows (1 a batch), and the drain at
    the end (as on a rebalance), write now rather than in an hour."""
    settings = Settings(data_dir=tmp_path / "data", store_insert_rows=5, store_insert_seconds=3600)
    writes, finished, stored, _ = _run_write_behind(settings, batches=6, per_batch=1, events=4, max_pending=8,
                                                    end="drain")
    assert finished == list(range(6)) and stored == 6
    assert sum(writes) == 6 and len(writes) >= 2 and max(writes) < 5


def test_write_behind_writes_an_urgent_batch_at_once_and_gathers_what_follows(tmp_path):
    """An urgent batch (alerts read once the consumer caught up) is stored and
    finished without waiting for the size or the time bound (an hour here); the
    batches after it, not urgent, gather again; each insert's batches are finished
    in one call, in order."""
    settings = Settings(data_dir=tmp_path / "data", store_insert_rows=1_000_000, store_insert_seconds=3600)
    sink = CountedSink(settings)
    calls: list[list[int]] = []

    async def finish(batches, insert_started, insert_ended):
        calls.append(list(batches))

    async def until(condition, timeout=60.0):
        deadline = asyncio.get_running_loop().time() + timeout
        while not condition():
            assert asyncio.get_running_loop().time() < deadline, calls
            await asyncio.sleep(0.01)

    async def scenario():
        await sink.open()
        behind = WriteBehind(sink, finish, max_pending=10_000)
        await behind.submit(0, _batch(0, 5), 5, urgent=True)
        await until(lambda: calls == [[0]])
        for n in (1, 2):
            await behind.submit(n, _batch(n * 5, 5), 5)
        await asyncio.sleep(0.3)
        gathered = list(calls)  # the two plain batches still wait for the bound
        await behind.submit(3, _batch(15, 5), 5, urgent=True)  # takes them along
        await until(lambda: len(calls) == 2)
        await behind.close()
        return gathered, await sink.query("SELECT count() FROM supplymon.order_facts FINAL", "TSV")

    try:
        gathered, stored = asyncio.run(asyncio.wait_for(scenario(), 120))
    finally:
        asyncio.run(sink.close())
    assert gathered == [[0]]
    assert calls == [[0], [1, 2, 3]] and sink.writes == [5, 15] and int(stored) == 20


def test_write_behind_finishes_an_insert_while_the_next_one_is_written_and_in_order(tmp_path):
    """The batches of an insert are finished (their deliveries awaited) while the
    next insert runs; the finishes themselves never overlap and keep the order; what
    goes out once rows are stored (`on_stored`: the alerts) does not wait for them."""
    settings = Settings(data_dir=tmp_path / "data", store_insert_rows=1_000_000, store_insert_seconds=3600)
    sink = CountedSink(settings)
    log: list[tuple] = []

    async def finish(batches, insert_started, insert_ended):
        log.append(("finish", batches[0], insert_started))
        await asyncio.sleep(0.5)  # a slow broker
        log.append(("finished", batches[-1]))

    async def stored(batches, insert_started, insert_ended):
        log.append(("stored", batches[0]))

    async def scenario():
        await sink.open()
        behind = WriteBehind(sink, finish, max_pending=10_000, on_stored=stored)
        await behind.submit(0, _batch(0, 5), 5, urgent=True)
        while len(log) < 2:
            await asyncio.sleep(0.01)
        await behind.submit(1, _batch(5, 5), 5, urgent=True)  # written while 0 is being finished
        await behind.submit(2, _batch(10, 5), 5, urgent=True)  # comes while 1 is written: the next insert
        await behind.drain()
        await behind.close()

    try:
        asyncio.run(asyncio.wait_for(scenario(), 120))
    finally:
        asyncio.run(sink.close())
    steps = [entry[:2] for entry in log]
    assert steps == [("stored", 0), ("finish", 0), ("stored", 1), ("stored", 2), ("finished", 0),
                     ("finish", 1), ("finished", 1), ("finish", 2), ("finished", 2)], log
    # the second insert began before the first finish ended (its stamp is the insert's start)
    assert sink.writes == [5, 5, 5] and log[5][2] < log[1][2] + 0.5


def test_a_submitted_insert_runs_while_the_caller_computes_without_yielding(tmp_path):
    """An agent (or the direct replay) computes its next batch without yielding to the
    event loop: once submit() returns, every table of the batch is stored meanwhile,
    in one hand-off to the store's thread (each table its own hand-off, or a writer
    that had not yet seen the batch, would wait for the caller's next await)."""
    settings = Settings(data_dir=tmp_path / "data", store_insert_rows=1, store_insert_seconds=3600)
    sink = ClickHouseSink(settings)
    inserted: list[tuple[str, float]] = []  # (table, when its insert ended) on the store's thread
    insert = sink._insert

    def timed_insert(table, rows):
        insert(table, rows)
        inserted.append((table, time.perf_counter()))

    sink._insert = timed_insert
    rows = _batch(0, 5)
    rows.add("events_raw", {"event_id": "e1", "kind": "order", "ts": T0, "order_id": "O00000", "payload": "{}",
                            "topic": "supply.orders", "partition": 0, "offset": 0})

    async def finish(batches, insert_started, insert_ended):
        pass

    async def scenario() -> float:
        await sink.open()
        behind = WriteBehind(sink, finish, max_pending=10_000)
        await behind.submit(0, rows, 5)
        time.sleep(3.0)  # the next batch, computed without an await
        computed = time.perf_counter()
        await behind.drain()
        return computed

    try:
        computed = asyncio.run(asyncio.wait_for(scenario(), 120))
    finally:
        asyncio.run(sink.close())
    assert sorted(table for table, _ in inserted) == ["events_raw", "order_facts"]
    assert all(ended < computed for _, ended in inserted), (inserted, computed)


def _drain_failure(tmp_path, finish_batch_1) -> tuple[BaseException, list[int]]:
    """Three batches, each its own insert, batch 1's finish being `finish_batch_1()`;
    the error the next drain() raises (within 20 s: not a drain that waits for ever)
    and the batches finished."""
    settings = Settings(data_dir=tmp_path / "data", store_insert_rows=1_000_000, store_insert_seconds=3600)
    sink = CountedSink(settings)
    finished: list[int] = []

    async def finish(batches, insert_started, insert_ended):
        if 1 in batches:
            await finish_batch_1()
        finished.extend(batches)

    async def scenario():
        await sink.open()
        behind = WriteBehind(sink, finish, max_pending=10_000)
        for n in range(3):
            await behind.submit(n, _batch(n * 5, 5), 5, urgent=True)
            await asyncio.sleep(0.05)  # each its own insert
        with pytest.raises(RuntimeError) as raised:
            await asyncio.wait_for(behind.drain(), 20)
        await behind.close()
        return raised.value

    try:
        error = asyncio.run(asyncio.wait_for(scenario(), 120))
    finally:
        asyncio.run(sink.close())
    return error, finished


def test_write_behind_a_failed_finish_stops_what_follows_and_is_raised(tmp_path):
    """A finish that fails (a bug) leaves the batches after it unfinished (never
    acknowledged) and is raised by the next drain()."""
    async def a_bug():
        await asyncio.sleep(0.2)  # while the next insert is written
        raise ValueError("a bug")

    error, finished = _drain_failure(tmp_path, a_bug)
    assert isinstance(error.__cause__, ValueError) and finished == [0]


def test_write_behind_a_delivery_cancelled_under_a_finish_fails_loudly(tmp_path):
    """A finish whose awaited delivery is cancelled by someone else (a producer
    stopped under it), not the writer being closed: raised by drain() as a failure,
    the batches after it never finished, instead of a drain() that waits for ever."""
    async def delivery_cancelled():
        delivery = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.1, delivery.cancel)
        await delivery

    error, finished = _drain_failure(tmp_path, delivery_cancelled)
    assert isinstance(error.__cause__, asyncio.CancelledError) and finished == [0]
