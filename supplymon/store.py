"""ClickHouse access: embedded chdb under the data dir, or a ClickHouse server.

One client API (clickhouse-connect) for both. chdb admits one process per data
dir and its calls block: the worker owns the store and calls it from one thread;
`supplymon sql` goes through the worker's web server while a worker runs.
"""
from __future__ import annotations

import logging
import operator
import re
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence
from urllib.parse import urlparse

import orjson

from supplymon.arrow_schema import columns_to_arrow, to_arrow
from supplymon.core.rows import Columns
from supplymon.cluster_ddl import cluster_statements
from supplymon.settings import DEFAULT_DATABASE, ConfigError, Settings
from supplymon.sql_guard import AnalystSql

if TYPE_CHECKING:
    import pyarrow

log = logging.getLogger(__name__)
DDL_FILE = Path(__file__).resolve().parent.parent / "schemas" / "clickhouse.sql"
DATABASE = DEFAULT_DATABASE
# Queries name tables `supplymon.<table>`; a store on another database (a namespace,
# SUPPLYMON_CLICKHOUSE_DATABASE) rewrites that qualifier, in one place, so that every
# query (and those added later) follows the setting. Other databases' names
# (`supplymon_what36.alerts`) are left as written.
_DEFAULT_QUALIFIER = re.compile(rf"(?<![\w.`\"]){DEFAULT_DATABASE}\.(?=[A-Za-z_`])")


def qualify(sql: str, database: str) -> str:
    """`sql` with the default database's qualifier `supplymon.` turned into `database.`."""
    return sql if database == DEFAULT_DATABASE else _DEFAULT_QUALIFIER.sub(database + ".", sql)


def sql_string(value: str) -> str:
    """`value` as a ClickHouse string literal (backslashes and quotes escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# Columns written by the worker, per table (the rest take their defaults).
COLUMNS: dict[str, tuple[str, ...]] = {
    "events_raw": ("event_id", "kind", "ts", "order_id", "payload", "topic", "partition", "offset"),
    "order_facts": (
        "order_id", "ordered_at", "institution_id", "region_code", "area", "grassroots",
        "distributor_id", "manufacturer_id", "product_id", "product_kind", "vbp", "quantity",
        "unit_price", "responded_at", "decision", "confirmed_quantity", "reject_reason",
        "first_shipped_at", "first_received_at", "first_confirmed_at", "delivered_quantity",
        "shipments", "arrivals", "deadline_at", "response_deadline_at", "on_time",
        "response_hours", "version",
    ),
    "alerts": (
        "alert_id", "kind", "severity", "subject_type", "order_id", "distributor_id",
        "institution_id", "product_id", "region_code", "raised_at", "resolved_at", "message",
        "details", "version",
    ),
    "dead_letters": ("topic", "partition", "offset", "reason", "detail", "event_id", "original", "noticed_at"),
    "window_parts": (
        "family", "subject", "window_start", "partition", "distributor_id", "product_id", "region_code",
        "orders", "responded", "responded_within_24h", "rejected", "delivered_on_time", "delivered_late",
        "undelivered", "ordered_quantity", "delivered_quantity", "response_hours", "closed", "version",
    ),
    "notifications": ("alert_id", "state", "recipient", "channel", "status", "attempts", "last_error", "message",
                      "sent_at", "updated_at", "version"),
    "alert_acks": ("alert_id", "recipient", "acked_at", "comment"),
}
JSON_COLUMNS = {"details"}


class StoreError(RuntimeError):
    """The store cannot be opened or used."""


class DataDirBusy(StoreError):
    """Another process holds the embedded store of this data dir."""


# The window views (one template in the DDL file): view -> (window column, subject columns).
WINDOW_VIEWS = {
    "distributor_daily": ("toDate(window_start, 'Asia/Shanghai') AS day", "distributor_id"),
    "distributor_hourly": ("window_start AS hour", "distributor_id"),
    "product_region_daily": ("toDate(window_start, 'Asia/Shanghai') AS day", "product_id, region_code"),
}


def ddl_statements(database: str = DATABASE) -> list[str]:
    text = DDL_FILE.read_text(encoding="utf-8")
    body = "\n".join(line for line in text.splitlines() if not line.startswith("--"))
    out = []
    for statement in (s.strip().replace("{db}", database) for s in body.split("\n;") if s.strip()):
        if "{view}" in statement:
            out.extend(statement.replace("{view}", view).replace("{window}", window).replace("{subject}", subject)
                       for view, (window, subject) in WINDOW_VIEWS.items())
        else:
            out.append(statement)
    return out


def schema_statements(settings: Settings, database: str | None = None) -> list[str]:
    """The DDL for these settings: single-node, or for the ClickHouse cluster they name."""
    database = database or settings.clickhouse_database
    statements = ddl_statements(database)
    if settings.clickhouse_cluster:
        return cluster_statements(statements, database, settings.clickhouse_cluster)
    return statements


def _open_client(settings: Settings):
    import clickhouse_connect

    if settings.clickhouse_url:
        url = urlparse(settings.clickhouse_url)
        if url.scheme not in ("http", "https", "clickhouse"):
            raise ConfigError(
                f"SUPPLYMON_CLICKHOUSE must be an http(s):// URL of a ClickHouse server, got {settings.clickhouse_url!r}")
        return clickhouse_connect.get_client(
            host=url.hostname, port=url.port or (8443 if url.scheme == "https" else 8123),
            username=url.username or "default", password=url.password or "",
            secure=url.scheme == "https",
            # On a cluster, an insert into a Distributed table returns once every shard
            # has its rows (not when queued on the node we talk to): the sink's
            # "stored" then means stored, and a shard that is down fails the insert,
            # which the sink retries.
            settings={"insert_distributed_sync": 1} if settings.clickhouse_cluster else None)
    path = settings.chdb_path
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot use data dir {settings.data_dir}: {exc}") from None
    try:
        client = clickhouse_connect.get_client(interface="chdb", path=str(path))
    except Exception as exc:  # chdb raises plain RuntimeErrors
        if "Cannot lock file" in str(exc) or "Another server instance" in str(exc):
            raise DataDirBusy(
                f"the embedded store in {settings.data_dir} is held by another supplymon process "
                "(a worker, demo or replay); stop it or use `supplymon sql` which goes through it") from None
        raise StoreError(f"cannot open the embedded store in {path}: {exc}") from None
    for leftover in settings.insert_tmp_dir.glob("tmp*.*"):  # the store's lock is held: no one uses them
        if leftover.suffix in (".native", ".raw"):
            leftover.unlink(missing_ok=True)
    return client


class Store:
    def __init__(self, settings: Settings, database: str | None = None):
        self.settings = settings
        self.database = database or settings.clickhouse_database
        self.client = _open_client(settings)
        # clickhouse-connect imports pandas and numpy (if installed) on the first
        # insert, which takes a second or more: do it now, while starting.
        from clickhouse_connect.driver import options
        options.np, options.pd  # noqa: B018
        self._column_types: dict[str, Sequence] = {}  # table -> its columns' types (asked once)
        self._analyst: AnalystSql | None = None
        self._purge = True  # release_memory() still worth trying

    def migrate(self) -> None:
        for statement in schema_statements(self.settings, self.database):
            self.client.command(statement)

    def insert(self, table: str, rows: "Sequence[dict] | Columns") -> None:
        """Insert rows (dicts with at least the table's COLUMNS, or a batch of such
        columns: supplymon/core/rows.py) as one Arrow table typed by the DDL
        (supplymon/arrow_schema.py); a value a column cannot hold raises ValueError
        naming the column, before anything is sent."""
        if not len(rows):
            return
        if isinstance(rows, Columns):
            self.insert_arrow(table, columns_to_arrow(table, rows.data))
        else:
            self.insert_arrow(table, to_arrow(table, rows))

    def insert_arrow(self, table: str, data: "pyarrow.Table") -> None:
        """Insert an Arrow table as one block (`INSERT ... FORMAT Arrow`): over HTTP to
        a ClickHouse server, or through a temporary file into embedded chdb (both by
        clickhouse-connect's insert_arrow, the one code path for the two)."""
        self.client.insert_arrow(f"{self.database}.{table}", data)

    def insert_native(self, table: str, rows: Sequence[dict]) -> None:
        """The previous store path: rows converted by clickhouse-connect, column by column,
        into its Native format. Kept as the reference the Arrow path is tested and
        measured against (tests/test_store_arrow.py, bench/store.py)."""
        if not rows:
            return
        columns = COLUMNS[table]
        row_values = operator.itemgetter(*columns) if len(columns) > 1 else lambda row: (row[columns[0]],)
        data = [list(column) for column in zip(*map(row_values, rows))]
        for n, name in enumerate(columns):
            if name in JSON_COLUMNS:
                data[n] = [orjson.dumps(value).decode() for value in data[n]]
        name = f"{self.database}.{table}"
        types = self._column_types.get(table)
        if types is None:
            types = self._column_types[table] = self.client.create_insert_context(name, columns).column_types
        self.client.insert(name, data, column_names=columns, column_types=types, column_oriented=True)

    def insert_json(self, table: str, data: bytes) -> None:
        """Insert rows given as JSONEachRow (columns left out take their defaults)."""
        self.client.raw_insert(f"{self.database}.{table}", None, data, fmt="JSONEachRow")

    def release_memory(self) -> bool:
        """Embedded chdb: the memory its allocator (jemalloc) keeps from finished
        inserts given back to the kernel (`SYSTEM JEMALLOC PURGE`, ~10 ms); a no-op on
        a ClickHouse server, which manages its own. Returns whether it was done."""
        if self.settings.clickhouse_url is not None or not self._purge:
            return False
        try:
            self.client.command("SYSTEM JEMALLOC PURGE")
        except Exception as exc:  # a chdb built without jemalloc: nothing to give back
            log.info("the embedded store cannot purge its allocator, not tried again: %s", exc)
            self._purge = False
            return False
        return True

    def query(self, sql: str, fmt: str = "TabSeparatedWithNames") -> bytes:
        return self.client.raw_query(qualify(sql, self.database), fmt=fmt)

    def analyst_query(self, sql: str, fmt: str = "TabSeparatedWithNames") -> bytes:
        """An analyst's query: read-only, nothing outside the store (supplymon/sql_guard.py);
        raises QueryRefused with the reason."""
        if self._analyst is None:
            self._analyst = AnalystSql(_open_client(self.settings), embedded=self.settings.clickhouse_url is None,
                                       timeout_seconds=self.settings.sql_timeout_seconds)
        return self._analyst.query(qualify(sql, self.database), fmt)

    def rows(self, sql: str) -> list[dict]:
        """Run a query and return its rows as dicts (JSONEachRow)."""
        return [orjson.loads(line) for line in self.query(sql, "JSONEachRow").splitlines() if line]

    def iter_raw(self, batch: int = 50_000) -> Iterable[list[tuple[str, str]]]:
        """Stored events in event-time order, as (kind, payload) batches (for rebuilding)."""
        offset = 0
        while True:
            result = self.client.query(
                f"SELECT kind, payload FROM {self.database}.events_raw FINAL "
                f"ORDER BY ts, event_id LIMIT {batch} OFFSET {offset}")
            rows = result.result_rows
            if not rows:
                return
            yield rows
            offset += len(rows)

    def close(self) -> None:
        if self._analyst is not None:
            self._analyst.close()
            self._analyst = None
        try:
            self.client.close()
        except Exception:  # closing a broken connection is not worth failing for
            log.debug("store close failed", exc_info=True)
