"""Analysts' SQL is read-only and cannot reach outside the store: the checks on
ClickHouse's canonical text, and the real embedded store behind them."""
from __future__ import annotations

from dataclasses import replace

import pytest

from supplymon.settings import Settings
from supplymon.sql_guard import QueryRefused, check_statement
from supplymon.store import Store

SECRET = "the-secret-in-a-local-file"


@pytest.mark.parametrize("canonical", [
    "INSERT INTO supplymon.alerts VALUES (1)",
    "DROP TABLE supplymon.alerts",
    "SYSTEM FLUSH LOGS",
    "SET readonly = 0",
    "SELECT file('/etc/passwd')",
    "SELECT `file`('/etc/passwd')",
    "SELECT *\nFROM url('http://example.com/x', 'LineAsString')",
    "SELECT *\nFROM remote('10.0.0.1', system.one)",
    "SELECT *\nFROM s3('http://example.com/b/x', 'LineAsString')",
    "SELECT *\nFROM python('sink')",
    "SELECT *\nFROM numbers(1)\nWHERE 1 IN (\n    SELECT *\n    FROM mysql('h', 'd', 't', 'u', 'p')\n)",
    "SELECT 1\nINTO OUTFILE 'x.txt'",
])
def test_writes_and_outside_reads_are_refused(canonical):
    with pytest.raises(QueryRefused) as refused:
        check_statement(canonical)
    assert str(refused.value).startswith("查询被拒绝")
    assert "query refused" in str(refused.value)


@pytest.mark.parametrize("canonical", [
    "SELECT count()\nFROM supplymon.order_facts\nFINAL",
    "SELECT *\nFROM numbers(3)",
    "SELECT format('{} {}', 'file(', 'url(')",  # names inside strings are text
    "SELECT 'INTO OUTFILE x'",
    "WITH x AS\n    (\n        SELECT 1\n    )\nSELECT *\nFROM x",
    "SHOW TABLES FROM supplymon",
    "DESCRIBE TABLE supplymon.alerts",
    "EXPLAIN\nSELECT 1",
])
def test_reads_pass(canonical):
    check_statement(canonical)


@pytest.fixture
def store(tmp_path):
    settings = replace(Settings.from_env({}), data_dir=tmp_path / "data", sql_timeout_seconds=1)
    store = Store(settings)
    store.migrate()
    yield store
    store.close()


def test_store_refuses_what_readonly_alone_lets_through(store, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    outfile = tmp_path / "out.txt"
    for sql in (f"SELECT file('{secret}')",  # ClickHouse's readonly returns the file
                f"SELECT 1 INTO OUTFILE '{outfile}'",  # ... and writes this one
                "SELECT * FROM python('store')",
                "select /* hidden */ `file` ('" + str(secret) + "') -- comment",
                f"SELECT $$ ' $$, file('{secret}')"):
        with pytest.raises(QueryRefused):
            store.analyst_query(sql, "TSV")
    assert not outfile.exists()


def test_store_refuses_writes_settings_and_several_statements(store):
    for sql in ("INSERT INTO supplymon.alerts (alert_id) VALUES ('x')", "DROP TABLE supplymon.alerts",
                "OPTIMIZE TABLE supplymon.order_facts FINAL", "SELECT 1 SETTINGS readonly = 0",
                "SELECT 1 SETTINGS max_execution_time = 1000", "SELECT 1; DROP TABLE supplymon.alerts",
                "CREATE TABLE supplymon.x (a UInt8) ENGINE = Memory", "", "   "):
        with pytest.raises(QueryRefused):
            store.analyst_query(sql, "TSV")
    assert b"alerts" in store.query("SHOW TABLES FROM supplymon", "TSV")
    # The analysts' connection is read-only; the worker's own is not.
    store.insert("dead_letters", [{"topic": "t", "partition": 0, "offset": 1, "reason": "r", "detail": "",
                                   "event_id": None, "original": "x", "noticed_at": 0}])
    assert store.analyst_query("SELECT count() FROM supplymon.dead_letters", "TSV") == b"1\n"


def test_store_runs_analysts_reads_and_stops_long_ones(store):
    assert store.analyst_query("SELECT number * 2 AS n FROM numbers(3)", "TSV") == b"0\n2\n4\n"
    assert store.analyst_query("SELECT count() FROM supplymon.order_facts FINAL", "TSV") == b"0\n"
    assert store.analyst_query("select format('{}-{}', 'a', 'b')", "TSV") == b"a-b\n"
    with pytest.raises(Exception, match="TIMEOUT_EXCEEDED|Timeout exceeded"):  # sql_timeout_seconds=1
        store.analyst_query("SELECT count() FROM system.numbers", "TSV")
