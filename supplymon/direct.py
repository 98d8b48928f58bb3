"""`supplymon replay FILE --direct`: a history replayed without the broker.

The file is a bounded source: its lines are routed as the publisher would put
them on Kafka (each event to its kind's topic, in the partition of its order_id
by murmur2, a tick to every partition of every input topic, a line over the size
limit as its truncated copy; supplymon/publish.py), numbered per partition as
offsets, and fed in batches of tens of thousands to the same dataflow the worker
runs (supplymon/core/flow.py) and then to the same early-warning evaluation
(supplymon/core/early_warnings.py), driven by the batch's signals and marks, in a
process of their own that evaluates a batch while the flow computes the next
(supplymon/warnings_process.py). So
stream time, deadlines, windows and early warnings move as they do through
Kafka. The rows go to the same store through the same sink (agents/sink.py),
written behind while the next batch is computed.

What it does not do: no dead-letter, alert or signal topic is written (the rows
are in the store; nothing is on Kafka), no notifications, no pacing (`--speed`).
At the end of the file stream time stays where the file left it, as a worker's
would: deadlines after the last event do not fire.

Into a store that holds events already, the stored events (not the ticks) are fed
first, as `replay --embedded` republishes them to rebuild its state; a second run
of the same file changes nothing.
"""
from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from itertools import islice
from typing import Iterable, Iterator, NamedTuple

from agents.sink import ClickHouseSink, WriteBehind
from schemas.fast_events import KIND_OF, ArrivalLine, Decoded, OrderLine, ResponseLine, ShipmentLine, decode_columns
from supplymon.core.columnar_flow import OrderFlow
from supplymon.core.flow import BatchOutput, Partition, Record
from supplymon.core.rows import Rows
from supplymon.core.intake import REBUILT_HEADER, TOO_LARGE_HEADER, truncated
from supplymon.core.signals import pack
from supplymon.gcpolicy import arrow_on_the_heap, batch_pace, release_free_heap
from supplymon.publish import key_partition, key_partitions, refused_as_future_at, route
from supplymon.replay import summary
from supplymon.runner import RunError, prepare_data_dir
from supplymon.settings import Settings
from supplymon.store import Store
from supplymon.warnings_process import GroupPartitions, LocalWarnings, WarningsProcess

# Events a batch: large enough that what each batch costs whatever its size (the
# store's ~10 ms an insert, numpy's per call, the windows' changed parts written
# again) is small per event, small enough that the write behind and the early
# warnings overlap the next batch. 40,000 against 20,000: 8-10 % faster, ~+110 MiB
# at the peak of a 400,000-event replay; 80,000 no faster.
BATCH = 40_000
REBUILT = ((REBUILT_HEADER, b"1"),)


class LineBatch(NamedTuple):
    """A batch for the flow: how many lines it holds, their records, the wall clock
    (only to refuse stamps from the future), and the records' values decoded while
    routing them (None: the flow decodes them)."""

    lines: int
    records: list[Record]
    now_ms: int
    decoded: Decoded | None = None


# Events the fast path took whose route is their kind's topic and their order's
# partition: their time is the one `route` reads (`event_time_ms` is the
# validator's parse), their order_id a string.
_ROUTED_BY_FIELDS = (OrderLine, ResponseLine, ShipmentLine, ArrivalLine)


def _held_by_flow(order_id: str) -> None:
    """The direct replay's lookup: the flow holds every order it has seen."""
    return None


class Router:
    """Lines to input records, as the publisher and the broker would make them."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.topics = settings.topics
        self.partitions = settings.partitions
        self.next_offset: dict[tuple[str, int], int] = {}

    def _record(self, topic: str, partition: int, key: bytes | None, value: bytes, ts: int | None,
                now_ms: int, headers=()) -> Record:
        offset = self.next_offset.get((topic, partition), 0)
        self.next_offset[(topic, partition)] = offset + 1
        # The broker stamps a record the publisher sends without a usable time (or with
        # one from the future: supplymon/publish.py) with the wall clock.
        timestamp = ts if ts is not None and ts <= now_ms else now_ms
        return Record(topic, partition, offset, timestamp, key, value, headers)

    def batch(self, lines: Iterable[bytes], now_ms: int) -> tuple[list[Record], Decoded]:
        """The records of these lines, and their values decoded (one item per record,
        as `decode_columns` gives them): each line is decoded once, here, for its
        route and for the flow's intake. An event the fast path took is routed from
        its fields (its kind, order_id and time: what `route` reads of it); any other
        line by `route`, and its item is the same line's decoding."""
        raws = [raw for raw in (line.strip() for line in lines) if raw]
        limit = self.settings.max_event_bytes
        decoded = decode_columns([raw for raw in raws if len(raw) <= limit])
        # the fast path's events' keys, and their partitions at once (murmur2 on numpy)
        fast = [i for i, item in enumerate(decoded.items) if type(item) in _ROUTED_BY_FIELDS]
        keys: list[bytes | None] = [None] * len(decoded.items)
        for i in fast:
            keys[i] = decoded.items[i].order_id.encode()
        partitions: list[int | None] = [None] * len(decoded.items)
        for i, partition in zip(fast, key_partitions([keys[i] for i in fast], self.partitions).tolist()):
            partitions[i] = partition
        records: list[Record] = []
        items, ts_ms, received_ms = [], [], []
        topic_of = {cls: self.topics.for_kind(KIND_OF[cls]) for cls in _ROUTED_BY_FIELDS}
        next_offset = self.next_offset
        at = 0
        for raw in raws:
            if len(raw) > limit:  # never decoded: the intake refuses it by its header
                made, item, ts, received = list(self.records(raw, now_ms)), None, 0, 0
            else:
                item, ts, received = decoded.items[at], decoded.ts_ms[at], decoded.received_ms[at]
                partition = partitions[at]
                if partition is not None:  # the usual line: one record, made here (`_record` inlined)
                    topic = topic_of[type(item)]
                    offset = next_offset.get((topic, partition), 0)
                    next_offset[(topic, partition)] = offset + 1
                    records.append(Record(topic, partition, offset, ts if ts <= now_ms else now_ms, keys[at], raw))
                    items.append(item)
                    ts_ms.append(ts)
                    received_ms.append(received)
                    at += 1
                    continue
                made = list(self.records(raw, now_ms))
                at += 1
            records += made
            items += [item] * len(made)
            ts_ms += [ts] * len(made)
            received_ms += [received] * len(made)
        return records, Decoded(items, ts_ms, received_ms)

    def records(self, line: bytes, now_ms: int) -> Iterator[Record]:
        raw = line.strip()
        if not raw:
            return
        if len(raw) > self.settings.max_event_bytes:
            # Never decoded: its truncated copy, to be dead-lettered as too large.
            yield self._record(self.topics.orders, 0, None, truncated(raw), None, now_ms,
                               ((TOO_LARGE_HEADER, str(len(raw)).encode()),))
            return
        where = route(raw, self.topics, lambda ts: refused_as_future_at(self.settings, ts, now_ms))
        if where.topic is None:  # a tick: every partition of every input topic
            for topic in self.topics.inputs:
                for partition in range(self.partitions):
                    yield self._record(topic, partition, None, raw, where.ts, now_ms)
            return
        # A line without an order_id is never admitted (the producer would pick any partition).
        partition = key_partition(where.key, self.partitions) if where.key is not None else 0
        yield self._record(where.topic, partition, where.key, raw, where.ts, now_ms)


def stored_records(store: Store, page: int = 50_000) -> list[Record]:
    """The events a store holds (not the ticks), in event-time order, each from where
    it was read the first time: fed first to rebuild the state, as the embedded stack
    republishes them (supplymon/runner.py). Their first place keeps a dead letter
    they give again (an orphan) under its first key."""
    out, sql = [], (f"SELECT topic, partition, offset, toUnixTimestamp64Milli(ts) AS ms, payload "
                    f"FROM {store.database}.events_raw FINAL WHERE kind != 'tick' ORDER BY ms, event_id")
    while rows := store.rows(f"{sql} LIMIT {page} OFFSET {len(out)}"):
        out += [Record(r["topic"], r["partition"], r["offset"], r["ms"], None, r["payload"].encode(), REBUILT)
                for r in rows]
    return out


class Progress:
    """A line to stderr at most once a second, Chinese first; a last one at the end."""

    def __init__(self, out=None):
        self.out = out or sys.stderr
        self.started = time.monotonic()
        self.last = 0.0
        self.lines = self.stored = 0
        self.rebuilt = 0

    def __call__(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < 1.0:
            return
        self.last = now
        rate = self.stored / max(now - self.started, 1e-6)
        print(f"已处理并存储 / processed and stored: {self.stored:,} of {self.lines:,} lines read, "
              f"{rate:,.0f}/s", file=self.out, flush=True)


class DirectReplay:
    """The flow and the early warnings over every input partition, fed from lines."""

    def __init__(self, settings: Settings, sink: ClickHouseSink, progress: Progress, batch: int = BATCH,
                 warnings_apart: bool = False):
        self.settings = settings
        self.batch = batch
        self.progress = progress
        self.router = Router(settings)
        # The flow holds the order states itself (as columns): nothing outlives the
        # replay, so no snapshots are made and no second copy is kept.
        self.flow = OrderFlow.from_settings(settings, trust_rebuilt=True, snapshots=False)
        self.inputs = [Partition(topic, p) for topic in settings.topics.inputs for p in range(settings.partitions)]
        self.flow.restore(self.inputs, ())
        self.group_partition = GroupPartitions(settings.partitions)
        # the early warnings over every signals partition, fed every input partition's
        # marks; `warnings_apart`: in a process of their own (close() stops it)
        sources = [f"{tp.topic}:{tp.partition}" for tp in self.inputs]
        self.warnings = (WarningsProcess if warnings_apart else LocalWarnings)(
            settings.rules, settings.partitions, sources)
        self.sink = sink
        self.write_behind: WriteBehind | None = None  # made by run(): step() needs no store

    async def _finished(self, lines: list[int], insert_started: float, insert_ended: float) -> None:
        """The batches of one insert are stored (each given as its count of lines)."""
        self.progress.stored += sum(lines)
        self.progress()

    def file_batches(self, lines: Iterable[bytes]) -> Iterator[LineBatch]:
        """A batch of lines at a time; a damaged file's lines before the damage are a
        last batch, then its error is raised."""
        lines, damage = iter(lines), None
        while damage is None:
            chunk: list[bytes] = []
            try:
                chunk.extend(islice(lines, self.batch))  # keeps what was read before an error
            except RunError as exc:
                damage = exc
            if chunk:
                now_ms = int(time.time() * 1000)  # only to refuse stamps from the future (intake)
                records, decoded = self.router.batch(chunk, now_ms)
                yield LineBatch(len(chunk), records, now_ms, decoded)
            elif damage is None:
                return
        raise damage

    def rebuild_batches(self, records: list[Record]) -> Iterator[LineBatch]:
        now_ms = int(time.time() * 1000)
        for start in range(0, len(records), self.batch):
            batch = records[start:start + self.batch]
            yield LineBatch(len(batch), batch, now_ms)

    async def feed(self, batches: Iterable[LineBatch]) -> None:
        """`step` for each batch, the early warnings of one batch evaluated (in their
        own process: supplymon/warnings_process.py) while the flow computes the next.
        A batch is stored once its alerts are in; a damaged file's batches before the
        damage are stored."""
        held: tuple[LineBatch, Rows] | None = None  # flowed, its early warnings out
        batches = iter(batches)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                break
            except RunError:  # a damaged file: what came before is stored
                if held is not None:
                    await self._store(*held)
                raise
            self.progress.lines += batch.lines
            rows, signals = self.flowed(batch)
            if held is not None:
                await self._store(*held)
            self.warnings.send(signals)
            held = (batch, rows)
        if held is not None:
            await self._store(*held)

    async def _store(self, batch: LineBatch, rows: Rows) -> None:
        """A batch's rows with its alerts, to the write behind."""
        await self.write_behind.submit(batch.lines, self.warned(rows), len(batch.records))
        await asyncio.sleep(0)  # let the write behind start storing this batch

    def flow_step(self, batch: LineBatch) -> BatchOutput:
        """One batch through the flow (which holds every order state of the replay)."""
        return self.flow.process(batch.records, self.inputs, _held_by_flow, batch.now_ms, batch.decoded)

    def flowed(self, batch: LineBatch) -> tuple[Rows, list]:
        """A batch's rows from the flow, and its signals and marks for the early warnings."""
        out = self.flow_step(batch)
        release_free_heap(len(batch.records))
        return out.rows, pack(out.signals, out.marks, self.group_partition, self.settings.partitions)

    def warned(self, rows: Rows) -> Rows:
        """A batch's rows with the alerts of its early warnings (sent last)."""
        for alert in self.warnings.receive():
            rows.add("alerts", alert)
        return rows

    def step(self, batch: LineBatch) -> Rows:
        """One batch through the flow, then its signals and marks through the early warnings."""
        rows, signals = self.flowed(batch)
        self.warnings.send(signals)
        return self.warned(rows)

    async def run(self, lines: Iterable[bytes], stored: list[Record]) -> None:
        self.write_behind = WriteBehind(self.sink, self._finished, max_pending=self.batch * 2)
        try:
            if stored:
                await self.feed(self.rebuild_batches(stored))
                self.progress.rebuilt = self.progress.lines
            await self.feed(self.file_batches(lines))
        except RunError:
            await self.write_behind.drain()  # what was read before a damaged part is stored
            raise
        except BaseException:
            await self.write_behind.close()
            raise
        await self.write_behind.drain()


def replay_direct(settings: Settings, lines: Iterable[bytes], batch: int = BATCH) -> int:
    prepare_data_dir(settings)  # refuses a data dir a running worker holds
    if settings.clickhouse_url is None:
        settings.insert_tmp_dir.mkdir(parents=True, exist_ok=True)
        tempfile.tempdir = str(settings.insert_tmp_dir)
    progress = Progress()
    arrow_on_the_heap()
    with batch_pace():
        stored = asyncio.run(_replay(settings, lines, batch, progress))
    progress(force=True)
    if progress.rebuilt:
        print(f"rebuilt state from {progress.rebuilt:,} events stored in {settings.data_dir}", flush=True)
    print(f"已直接回放 / replayed directly: {progress.stored - progress.rebuilt:,} lines (100%)", flush=True)
    print(stored, flush=True)
    return 0


class _StoreQueries:
    """The store, answering as a worker's `/sql` does (for replay's summary)."""

    def __init__(self, store: Store):
        self.store = store

    def query(self, sql: str) -> bytes:
        return self.store.query(sql, "JSONEachRow")


async def _replay(settings: Settings, lines: Iterable[bytes], batch: int, progress: Progress) -> str:
    """Replays; what the store holds then (replay's summary)."""
    sink = ClickHouseSink(settings)
    try:
        await sink.open()
        # Read whole before the replay writes, on the store's thread (one user at a time).
        stored = await sink.on_store(stored_records)
        replay = DirectReplay(settings, sink, progress, batch, warnings_apart=True)
        try:
            await replay.run(lines, stored)
        finally:
            replay.warnings.close()
        return await sink.on_store(lambda store: summary(_StoreQueries(store)))
    finally:
        await sink.close()

