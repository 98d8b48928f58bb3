"""The cluster DDL derived from the single-node schema, checked by ClickHouse's own
parser (chdb, `EXPLAIN AST`), and the single-node form run, in another database
than the default (the one setting every query follows)."""
from __future__ import annotations

import re

import pytest

from supplymon.cluster_ddl import ClusterDDLError, cluster_statements
from supplymon.settings import ConfigError, Settings
from supplymon.store import Store, ddl_statements, qualify, schema_statements
from tests.test_store import fact_rows
from tests.test_lifecycle import order

CLUSTER = "supplymon_cluster"


@pytest.fixture
def store(tmp_path):
    store = Store(Settings(data_dir=tmp_path / "data", clickhouse_database="supplymon_what36"))
    yield store
    store.close()


def ast(store: Store, statement: str) -> str:
    return store.client.raw_query("EXPLAIN AST " + statement, fmt="TSV").decode()


def test_every_cluster_statement_parses_and_every_table_is_replicated_and_distributed(store):
    single = ddl_statements("supplymon")
    statements = schema_statements(Settings(clickhouse_cluster=CLUSTER), "supplymon")
    for statement in statements:
        assert "ON CLUSTER supplymon_cluster" in statement
        assert ast(store, statement).startswith("CreateQuery")  # raises on a syntax error
    tables = re.findall(r"CREATE TABLE IF NOT EXISTS supplymon\.(\w+) \(", "\n".join(single))
    assert {"events_raw", "order_facts", "alerts", "dead_letters", "window_parts"} <= set(tables)
    for table in tables:
        (local,) = [s for s in statements if f"supplymon.{table}_local ON CLUSTER" in s and "(" in s.split("\n")[0]]
        assert re.search(r"ENGINE = Replicated\w*MergeTree\('/clickhouse/tables/\{shard\}/\{database\}/\{table\}', "
                         r"'\{replica\}'", local), local
        (distributed,) = [s for s in statements if s.startswith(f"CREATE TABLE IF NOT EXISTS supplymon.{table} ON")]
        assert f"AS supplymon.{table}_local" in distributed and f"'{table}_local'" in distributed
    # The version column stays the ReplacingMergeTree's version on the replicated table.
    (facts,) = [s for s in statements if "order_facts_local ON CLUSTER" in s]
    assert "'{replica}', version)" in facts
    # An order's rows on one shard: facts by order_id, alerts and raw events by order_id when
    # they have one; the views read the Distributed tables.
    keys = {m[0]: m[1] for m in re.findall(r"Distributed\('supplymon_cluster', 'supplymon', '(\w+)_local', (.*)\)$",
                                            "\n".join(statements), re.M)}
    assert keys["order_facts"] == "cityHash64(order_id)"
    assert keys["alerts"] == "if(empty(order_id), cityHash64(alert_id), cityHash64(order_id))"
    assert keys["events_raw"] == "if(empty(order_id), cityHash64(event_id), cityHash64(order_id))"
    assert keys["window_parts"] == "cityHash64(family, subject, window_start, partition)"
    views = [s for s in statements if s.startswith("CREATE VIEW")]
    assert len(views) == 3 and all("FROM supplymon.window_parts FINAL" in v for v in views)


def test_statements_added_later_are_converted_or_refused(store):
    added = [
        "CREATE TABLE IF NOT EXISTS db.notifications (\n    alert_id String,\n    recipient String,\n"
        "    version UInt64\n) ENGINE = ReplacingMergeTree(version)\nORDER BY (alert_id, recipient)",
        "CREATE TABLE IF NOT EXISTS db.scratch (\n    x UInt8\n) ENGINE = Memory",
        "ALTER TABLE db.notifications ADD COLUMN IF NOT EXISTS channel String",
        "CREATE MATERIALIZED VIEW IF NOT EXISTS db.per_recipient TO db.notifications AS\n"
        "SELECT alert_id, recipient, version FROM db.notifications WHERE recipient != ''",
    ]
    out = cluster_statements(added, "db", CLUSTER)
    for statement in out:
        assert ast(store, statement)
    assert "Distributed('supplymon_cluster', 'db', 'notifications_local', cityHash64(alert_id, recipient))" in out[1]
    assert out[2] == "CREATE TABLE IF NOT EXISTS db.scratch ON CLUSTER supplymon_cluster (\n    x UInt8\n) ENGINE = Memory"
    assert out[3].startswith("ALTER TABLE db.notifications_local ON CLUSTER")
    assert out[4].startswith("ALTER TABLE db.notifications ON CLUSTER")
    assert "TO db.notifications_local" in out[5] and "FROM db.notifications_local" in out[5]
    with pytest.raises(ClusterDDLError, match="no cluster form"):
        cluster_statements(["INSERT INTO db.x VALUES (1)"], "db", CLUSTER)


def test_single_node_form_runs_in_the_configured_database_only(store):
    store.migrate()
    store.insert("order_facts", fact_rows([order()]))
    # Queries name `supplymon.`: the store reads its own database instead.
    assert store.rows("SELECT order_id FROM supplymon.order_facts FINAL") == [{"order_id": "O1"}]
    assert store.rows("SELECT count() AS n FROM supplymon_what36.order_facts") == [{"n": 1}]
    databases = {r["name"] for r in store.rows("SELECT name FROM system.databases")}
    assert "supplymon_what36" in databases and "supplymon" not in databases
    tables = {r["name"] for r in store.rows("SELECT name FROM system.tables WHERE database = 'supplymon_what36'")}
    assert {"events_raw", "order_facts", "alerts", "window_parts", "distributor_daily"} <= tables


def test_qualify_rewrites_only_the_default_qualifier():
    sql = ("SELECT a.kind FROM supplymon.alerts a JOIN supplymon_live.alerts b USING alert_id "
           "WHERE a.message != 'x.supplymon.y'")
    assert qualify(sql, "supplymon") == sql
    assert qualify(sql, "supplymon_ns") == sql.replace("FROM supplymon.alerts", "FROM supplymon_ns.alerts")


def test_namespace_settings():
    base = Settings.from_env({"SUPPLYMON_TOPIC_REPLICATION": "3",
                              "SUPPLYMON_TOPIC_CONFIGS": "min.insync.replicas=2, retention.ms=2592000000",
                              "SUPPLYMON_CLICKHOUSE_CLUSTER": "prod"})
    assert base.topic_replication == 3 and dict(base.topic_configs)["min.insync.replicas"] == "2"
    ns = base.namespaced("what36")
    assert ns.topics.orders == "what36.supply.orders" and ns.topics.signals == "what36.supply.signals"
    assert (ns.app_id, ns.clickhouse_database, ns.clickhouse_cluster) == ("supplymon-what36", "supplymon_what36", "prod")
    # A worker process started with these knows its namespace and gets its names.
    assert ns.env()["SUPPLYMON_NAMESPACE"] == "what36"
    assert Settings.from_env(ns.env()) == ns
    assert Settings.from_env({"SUPPLYMON_NAMESPACE": "what36"}).topics.alerts == "what36.supply.alerts"
    for bad in ("What36", "", "a-b", "x" * 41):
        with pytest.raises(ConfigError, match="namespace"):
            base.namespaced(bad)
    with pytest.raises(ConfigError, match="TOPIC_CONFIGS"):
        Settings.from_env({"SUPPLYMON_TOPIC_CONFIGS": "retention.ms"})
    with pytest.raises(ConfigError, match="CLICKHOUSE_DATABASE"):
        Settings.from_env({"SUPPLYMON_CLICKHOUSE_DATABASE": "x; DROP"})


# The README's comparison of two namespaces' alerts (Side-by-side replays), verbatim.
COMPARE_KINDS = """SELECT kind,
       countIf(ns = 'live') AS live,
       countIf(ns = 'what36') AS what36,
       what36 - live AS difference
FROM (
    SELECT 'live' AS ns, kind FROM supplymon.alerts FINAL
    WHERE raised_at >= '2026-03-01 00:00:00' AND raised_at < '2026-04-01 00:00:00'
    UNION ALL
    SELECT 'what36' AS ns, kind FROM supplymon_what36.alerts FINAL
    WHERE raised_at >= '2026-03-01 00:00:00' AND raised_at < '2026-04-01 00:00:00'
)
GROUP BY kind
ORDER BY kind"""
ONLY_WHAT_IF = """SELECT order_id, distributor_id, raised_at
FROM supplymon_what36.alerts FINAL
WHERE kind = 'response_overdue'
  AND order_id NOT IN (SELECT order_id FROM supplymon.alerts FINAL WHERE kind = 'response_overdue')
ORDER BY raised_at"""


def test_the_readme_query_comparing_two_namespaces(store):
    from tests.conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    assert COMPARE_KINDS in readme and ONLY_WHAT_IF in readme
    store.migrate()  # supplymon_what36
    for statement in ddl_statements("supplymon"):  # and the live database, in the same server
        store.client.command(statement)

    def alert(database: str, kind: str, order_id: str, raised: str) -> None:
        store.client.command(
            f"INSERT INTO {database}.alerts (alert_id, kind, severity, subject_type, order_id, distributor_id, "
            f"raised_at, version) VALUES ('{kind}:{order_id}', '{kind}', 'warning', 'order', '{order_id}', 'D1', "
            f"'{raised}', 1)")

    alert("supplymon", "response_overdue", "O1", "2026-03-03 08:00:00")
    alert("supplymon", "delivery_overdue", "O1", "2026-03-02 08:00:00")
    alert("supplymon_what36", "response_overdue", "O1", "2026-03-02 20:00:00")
    alert("supplymon_what36", "response_overdue", "O2", "2026-03-04 20:00:00")
    alert("supplymon_what36", "delivery_overdue", "O1", "2026-03-02 08:00:00")
    assert store.client.query(COMPARE_KINDS).result_rows == [
        ("delivery_overdue", 1, 1, 0), ("response_overdue", 1, 2, 1)]
    assert [row[:2] for row in store.client.query(ONLY_WHAT_IF).result_rows] == [("O2", "D1")]
