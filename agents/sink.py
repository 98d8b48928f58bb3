"""The ClickHouse sink: writes a batch's rows, retrying until they are stored.

The lifecycle agent awaits `write()` before its batch is acknowledged, so nothing
is committed on Kafka before it is in ClickHouse. A failed write is retried with
exponential backoff (logged, and counted in `supplymon_sink_retries_total`); rows
are idempotent (ReplacingMergeTree on natural keys), so a retried or replayed
write changes nothing. All store calls run on one thread: chdb calls block, and
the embedded store is used by one thread at a time.
"""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from supplymon import metrics
from supplymon.settings import Settings
from supplymon.store import Store

log = logging.getLogger(__name__)

# Written in this order: facts and alerts after the raw events they derive from.
TABLES = ("events_raw", "dead_letters", "order_facts", "alerts", "window_parts")


@dataclass
class Rows:
    """Rows for one batch, by table."""

    by_table: dict[str, list[dict]] = field(default_factory=lambda: {t: [] for t in TABLES})

    def add(self, table: str, row: dict) -> None:
        self.by_table[table].append(row)

    def __len__(self) -> int:
        return sum(len(rows) for rows in self.by_table.values())


class ClickHouseSink:
    def __init__(self, settings: Settings, open_store: Callable[[Settings], Store] = Store,
                 first_backoff: float = 0.2, max_backoff: float = 10.0):
        self.settings = settings
        self._open_store = open_store
        self._store: Store | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff

    # -- on the store thread -----------------------------------------------------------
    def _store_now(self) -> Store:
        if self._store is None:
            store = self._open_store(self.settings)
            store.migrate()
            self._store = store
        return self._store

    def _insert(self, table: str, rows: list[dict]) -> None:
        started = time.perf_counter()
        self._store_now().insert(table, rows)
        metrics.sink_seconds.observe(time.perf_counter() - started)

    def _close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    # -- from the event loop -------------------------------------------------------------
    async def run(self, fn: Callable, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def open(self) -> None:
        await self.run(self._store_now)

    async def query(self, sql: str, fmt: str) -> bytes:
        return await self.run(lambda: self._store_now().query(sql, fmt))

    async def write(self, rows: Rows) -> None:
        """Store every row; returns only once all are stored (retries forever)."""
        for table in TABLES:
            batch = rows.by_table[table]
            if not batch:
                continue
            delay = self.first_backoff
            attempt = 1
            while True:
                try:
                    await self.run(self._insert, table, batch)
                    break
                except Exception as exc:  # any store failure: retry, never drop
                    metrics.sink_retries.labels(table).inc()
                    log.warning("writing %d rows to %s failed (attempt %d), retrying in %.1fs: %s",
                                len(batch), table, attempt, delay, exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.max_backoff)
                    attempt += 1
                    # A broken connection is reopened on the next attempt.
                    await self.run(self._close)
            metrics.sink_rows.labels(table).inc(len(batch))

    async def close(self) -> None:
        await self.run(self._close)
        self._executor.shutdown(wait=True)
