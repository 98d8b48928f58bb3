"""The ClickHouse sink: writes batches' rows, retrying until they are stored.

`write()` stores rows, retrying a failed write with exponential backoff (logged,
and counted in `supplymon_sink_retries_total`); rows are idempotent
(ReplacingMergeTree on natural keys), so a retried or replayed write changes
nothing. A write the store refuses because of the rows themselves (a value a
column cannot hold: supplymon/refusals.py) is not retried: the batch is halved
until the refused rows are found, the rest is stored, and each refused row goes
to `dead_letters` with the store's error; `write()` returns those dead letters
(for the dead-letter topic). Only an outage holds the pipeline. All store calls
run on one thread: chdb calls block, and the embedded store is used by one
thread at a time.

`WriteBehind` lets the agent go on with the next batch while a batch's rows are
stored: batches are queued, the rows of all queued batches are written together
(one insert per table), and only then do their alerts go out and are those
batches *finished*, together and in order (the agent's callbacks send their
alerts, write their states, acknowledge their offsets). So nothing is committed
on Kafka, and no alert sent, before it is in ClickHouse.
"""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable

from supplymon import health, metrics
from supplymon.gcpolicy import STORE_RELEASE_EVERY
from supplymon.core.rows import TABLES, Columns, Rows  # noqa: F401  (Rows: the sink's input, imported from here too)
from supplymon.refusals import dead_letter_row, describe, refused_by_store
from supplymon.retry import retry_until_done
from supplymon.settings import Settings
from supplymon.store import Store

log = logging.getLogger(__name__)


class ClickHouseSink:
    def __init__(self, settings: Settings, open_store: Callable[[Settings], Store] = Store,
                 first_backoff: float = 0.2, max_backoff: float = 10.0):
        self.settings = settings
        self._open_store = open_store
        self._store: Store | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self._stored_since_release = 0  # rows inserted since the store last gave its free memory back
        self._writing = ""  # the table being written (on the store thread): an outage's log names it

    # -- on the store thread -----------------------------------------------------------
    def _store_now(self) -> Store:
        if self._store is None:
            store = self._open_store(self.settings)
            store.migrate()
            self._store = store
        return self._store

    def _insert(self, table: str, rows: Columns) -> None:
        started = time.perf_counter()
        self._store_now().insert(table, rows)
        metrics.sink_seconds.observe(time.perf_counter() - started)
        self._stored_since_release += len(rows)
        if self._stored_since_release >= STORE_RELEASE_EVERY:
            self._release_memory()

    def _release_memory(self) -> None:
        if self._stored_since_release and self._store is not None:
            self._stored_since_release = 0
            self._store.release_memory()

    def _insert_isolating(self, table: str, rows: Columns) -> list[tuple[dict, str]]:
        """Insert `rows`; the rows the store refuses, found by halving, are returned
        (as dicts) with its error instead (an outage is raised, for the caller to retry)."""
        try:
            self._insert(table, rows)
            return []
        except Exception as exc:
            if not refused_by_store(exc):
                raise
            if len(rows) == 1:
                return [(rows.row(0), describe(exc))]
        middle = len(rows) // 2
        return self._insert_isolating(table, rows[:middle]) + self._insert_isolating(table, rows[middle:])

    def _close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    # -- from the event loop -------------------------------------------------------------
    async def run(self, fn: Callable, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def on_store(self, fn: Callable):
        """`fn(store)` on the store's thread (the embedded store admits one user)."""
        return await self.run(lambda: fn(self._store_now()))

    async def open(self) -> None:
        await self.run(self._store_now)

    async def release_left_over_memory(self) -> None:
        """What the store's allocator keeps from the inserts since its last purge
        (fewer than STORE_RELEASE_EVERY rows) given back: for a timer, so that a
        worker gone quiet does not keep it."""
        if self._stored_since_release:
            await self.run(self._release_memory)

    async def query(self, sql: str, fmt: str) -> bytes:
        return await self.on_store(lambda store: store.query(sql, fmt))

    async def analyst_query(self, sql: str, fmt: str) -> bytes:
        """An analyst's query (read-only, refused with QueryRefused otherwise)."""
        return await self.on_store(lambda store: store.analyst_query(sql, fmt))

    async def insert_json(self, table: str, data: bytes) -> None:
        """Rows a command stores through this worker (`supplymon assess`), as JSONEachRow."""
        await self.on_store(lambda store: store.insert_json(table, data))

    def _write_tables(self, tables: dict[str, Columns], stored: dict[str, tuple[int, list]]) -> None:
        """On the store thread: each table of `tables` in turn, moved to `stored` once
        stored, as (its row count, the rows the store refused): a retry goes on with
        those left, and a table's columns are let go once stored. One hand-off for all
        the tables: between two hand-offs the event loop must come round, which in a
        busy agent or replay it does only between batches, and the store would wait
        for it."""
        for table in list(tables):
            rows = tables[table]
            self._writing = table
            stored[table] = (len(rows), self._insert_isolating(table, rows))
            del tables[table]

    async def write(self, rows: Rows) -> list[dict]:
        """Store every row; returns only once all are stored (an outage is retried
        forever), with the dead letters of the rows the store refused."""
        # The columns are made here, on the event loop's thread: made on the store's
        # thread they came from its own malloc arena, and a worker catching up on a
        # million orders held ~130 MiB more (bench/RESULTS.md).
        tables = {table: rows.table(table) for table in TABLES if rows.count(table)}
        if not tables:  # (nothing asked of the store: nothing to say of its health)
            return []
        refused = await self._write_all(tables)
        dead: list[dict] = []
        now = int(time.time() * 1000)
        for table, errors in refused.items():
            dead += [dead_letter_row(table, row, error, now) for row, error in errors]
        if dead:
            letters = await self._write_all({"dead_letters": Columns.from_rows(dead)})
            for row, error in letters["dead_letters"]:
                # Nowhere left to put it: said loudly rather than dropped silently.
                log.error("the store refused a dead letter too (%s); it is only in this log: %.2000r", error, row)
            for row in dead:
                metrics.dead_letters.labels(row["reason"]).inc()
        return dead

    async def _write_all(self, tables: dict[str, Columns]) -> dict[str, list[tuple[dict, str]]]:
        """`tables` stored (emptied as each is); for each, the rows the store refused
        (with its error)."""
        stored: dict[str, tuple[int, list[tuple[dict, str]]]] = {}

        async def reopen(attempt: int, delay: float, exc: Exception) -> None:
            table = self._writing
            metrics.sink_retries.labels(table).inc()
            health.store.failed(exc)  # logs the outage's start once, sets supplymon_up{system="store"}
            log.warning("writing %d rows to %s failed (attempt %d), retrying in %.1fs: %s",
                        len(tables[table]), table, attempt, delay, exc)
            await self.run(self._close)  # a broken connection is reopened on the next attempt

        # An outage is retried until it is over: rows are never dropped.
        await retry_until_done(lambda: self.run(self._write_tables, tables, stored), on_retry=reopen,
                               first_delay=self.first_backoff, max_delay=self.max_backoff)
        health.store.ok()  # it answered (a refused row is about the row, not an outage)
        for table, (count, errors) in stored.items():
            for row, error in errors:
                metrics.sink_refused.labels(table).inc()
                log.warning("the store refused a %s row, sent to the dead letters: %s", table, error)
            metrics.sink_rows.labels(table).inc(count - len(errors))
        return {table: errors for table, (_, errors) in stored.items()}

    async def close(self) -> None:
        await self.run(self._close)
        self._executor.shutdown(wait=True)


def _stopped() -> bool:
    """Whether the running task was asked to stop (cancelled), as opposed to having
    met a CancelledError of something it awaited."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class WriteBehind:
    """Batches whose rows are being stored while the agent computes the next ones.

    `submit(batch, rows, size, urgent)` queues a batch (waiting first while more
    than `max_pending` events are queued); a background task writes the rows of the
    queued batches together, one insert per table (`sink.write()`), calls
    `on_stored(batches, insert_started, insert_ended)` at once (what may go out as
    soon as the rows are stored: the alerts), then `finish(batches, insert_started,
    insert_ended)` once for all of them, in submission order, after the previous
    insert's finish and while the next inserts run (one round of deliveries for the
    group, not one per batch: each costs a broker round trip or two). `drain()`
    returns once everything submitted is finished. A failure of `finish` (a bug:
    writes are retried forever) is raised by the next `submit()` or `drain()`.

    Each insert has a fixed cost (~10 ms on chdb) whatever its size, so the writer
    gathers batches until a table has `settings.store_insert_rows` rows or the
    oldest waiting batch has waited `settings.store_insert_seconds`, the bound on
    what this adds to acknowledgements and alerts. It writes at once when the agent
    waits for room in the queue or for a `drain()`, and when an *urgent* batch
    waits (the agent's call: alerts in a batch read once the consumer had caught
    up, when gathering would only delay them: see agents/lifecycle.py); while an
    insert runs, what comes meanwhile waits for the next one, so under load inserts
    still grow. The queue holds at least twice `store_insert_rows` events: one
    insert being written while the next fills. A batch's rows are emptied
    (`Rows.clear`) once stored: until it is finished, the queue holds only what its
    finish needs (the worker's peak RSS in `bench.pipeline` 734-736 -> 718-725 MiB).
    """

    def __init__(self, sink: ClickHouseSink, finish: Callable[[list, float, float], Awaitable[None]], max_pending: int,
                 on_refused: Callable[[list[dict]], Awaitable[None]] | None = None,
                 on_stored: Callable[[list, float, float], Awaitable[None]] | None = None):
        self.sink = sink
        self.finish = finish
        self.on_refused = on_refused
        self.on_stored = on_stored
        self.insert_rows = sink.settings.store_insert_rows
        self.insert_seconds = sink.settings.store_insert_seconds
        self.max_pending = max(max_pending, 2 * self.insert_rows)
        self._queue: list[tuple[Any, Rows, int]] = []  # (batch, rows, events), not finished yet
        self._pending = 0  # events in the queue
        self._gathered = 0  # batches at the head of the queue already given to the writer
        self._gathered_events = 0  # their events: room once they are finished
        self._table_rows: dict[str, int] = dict.fromkeys(TABLES, 0)  # rows not given to the writer yet
        self._oldest: float | None = None  # when the oldest batch not given to the writer was queued
        self._draining = 0  # drain() calls waiting: write without gathering more
        self._urgent = False  # an urgent batch waits among those not given to the writer
        self._wanted = 0  # events a submit() waits to queue: write at once if only a write makes room
        self._changed = asyncio.Event()  # the queue grew or shrank
        self._wake = asyncio.Event()  # for the writer: a batch came, or someone waits
        # an insert, and what goes out once it is stored, is running (what comes meanwhile waits for the next)
        self._busy = False
        self._noticed = asyncio.Event()  # the writer has seen the queue as it is: writing it, or waiting for more
        self._task: asyncio.Task | None = None
        self._failure: BaseException | None = None

    async def submit(self, batch: Any, rows: Rows, size: int, urgent: bool = False) -> None:
        while self._queue and self._pending + size > self.max_pending:
            self._wanted = size
            try:
                await self._wait_change()
            finally:
                self._wanted = 0
        self._queue.append((batch, rows, size))
        self._pending += size
        for table in rows.by_table:
            self._table_rows[table] = self._table_rows.get(table, 0) + rows.count(table)
        if self._oldest is None:
            self._oldest = asyncio.get_running_loop().time()
        self._urgent = self._urgent or urgent
        self._changed.set()
        self._wake.set()
        self._noticed.clear()
        if self._task is None or self._task.done():
            self._check()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="clickhouse-write-behind")
        if not self._busy:
            # Until the writer has seen this batch (a few turns of the event loop), its
            # insert is not running: returning now, the caller would compute its next
            # batch without yielding, and the insert would start only at its next await.
            await self._noticed.wait()
            self._check()

    async def drain(self) -> None:
        self._draining += 1
        try:
            while self._queue:
                await self._wait_change()
        finally:
            self._draining -= 1

    async def _wait_change(self) -> None:
        self._check()
        self._changed.clear()
        self._wake.set()
        await self._changed.wait()
        self._check()

    def _check(self) -> None:
        if self._failure is not None:
            raise RuntimeError("finishing a stored batch failed") from self._failure

    def _enough(self) -> bool:
        """Whether the waiting batches make an insert now."""
        # Room for a waiting submit() comes when the batches given to the writer are
        # finished; if that is not enough, only writing the others makes more.
        waiting = self._pending - self._gathered_events
        return (self._draining > 0 or self._urgent or waiting + self._wanted > self.max_pending
                or max(self._table_rows.values()) >= self.insert_rows
                or asyncio.get_running_loop().time() - self._oldest >= self.insert_seconds)

    async def _gather(self) -> list[tuple[Any, Rows, int]]:
        """The batches of the next insert: those queued once they make one."""
        loop = asyncio.get_running_loop()
        while not self._enough():
            self._noticed.set()
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self._oldest + self.insert_seconds - loop.time())
            except TimeoutError:
                pass
        group = self._queue[self._gathered:]
        self._gathered = len(self._queue)
        self._gathered_events += sum(size for _, _, size in group)
        self._table_rows = dict.fromkeys(self._table_rows, 0)
        self._oldest = None
        self._urgent = False
        return group

    async def _run(self) -> None:
        finishing: asyncio.Task | None = None  # the last insert's finish (each awaits the one before)
        try:
            while True:
                if len(self._queue) == self._gathered:  # nothing new: end once all is finished
                    if finishing is None:
                        break
                    await self._finished_or_woken(finishing)  # a batch may come meanwhile
                    if finishing.done():
                        finishing.result()  # (its failure, raised)
                        finishing = None
                    continue
                if finishing is not None and finishing.done():
                    finishing.result()  # (a failure, raised)
                group = await self._gather()
                rows = Rows()
                for _, batch_rows, _ in group:
                    rows.extend(batch_rows)
                started = time.perf_counter()
                # Busy until back at the top of this loop, where it sees what came meanwhile.
                self._busy = True
                self._noticed.set()  # (the write reaches the store's thread before a waiting submit() resumes)
                try:
                    refused = await self.sink.write(rows)
                    stored = time.perf_counter()
                    for _, batch_rows, _ in group:  # stored: finishing needs the batches alone
                        batch_rows.clear()
                    batches = [batch for batch, _, _ in group]
                    if refused and self.on_refused is not None:
                        await self.on_refused(refused)
                    if self.on_stored is not None:
                        await self.on_stored(batches, started, stored)
                finally:
                    self._busy = False
                # Finished after the previous insert's batches, in order, while the next
                # insert runs: an insert does not wait for the deliveries of the one before.
                finishing = asyncio.get_running_loop().create_task(self._finish(group, started, stored, finishing))
        except asyncio.CancelledError as exc:
            if finishing is not None:
                finishing.cancel()
            if _stopped():
                raise
            self._failed(exc)  # something it awaited was cancelled under it: see _finish
        except BaseException as exc:
            self._failed(exc)

    def _failed(self, exc: BaseException) -> None:
        if self._failure is None:
            log.error("finishing a stored batch failed", exc_info=exc)
            self._failure = exc
        self._changed.set()
        self._noticed.set()

    async def _finished_or_woken(self, finishing: asyncio.Task) -> None:
        self._wake.clear()
        woken = asyncio.get_running_loop().create_task(self._wake.wait())
        try:
            await asyncio.wait({finishing, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()

    async def _finish(self, group: list[tuple[Any, Rows, int]], started: float, stored: float,
                      after: asyncio.Task | None) -> None:
        try:
            if after is not None:
                await after  # (its failure is raised here too: nothing after it is finished)
            await self.finish([batch for batch, _, _ in group], started, stored)
        except asyncio.CancelledError as exc:
            if _stopped():
                raise
            # Not stopped (close()): a delivery `finish` awaited was cancelled under it.
            # Ended quietly, its batches would never be finished nor acknowledged and a
            # drain() (a rebalance's) would wait for them for ever: failed loudly instead,
            # as any other failure (the agent stops; the worker reads them again).
            self._failed(exc)
            raise RuntimeError("a delivery awaited by a stored batch's finish was cancelled") from exc
        except BaseException as exc:  # told to submit() and drain() at once, not at the next insert
            self._failed(exc)
            raise
        del self._queue[:len(group)]
        self._gathered -= len(group)
        events = sum(size for _, _, size in group)
        self._pending -= events
        self._gathered_events -= events
        self._changed.set()

    async def close(self) -> None:
        """Stop writing (what is not finished is not acknowledged: read again later)."""
        task, self._task = self._task, None
        self._noticed.set()
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
