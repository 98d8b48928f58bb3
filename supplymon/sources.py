"""Where a replay's events come from: a JSON Lines file (.gz too), a Parquet file,
or the store's own `events_raw` (`--from-clickhouse --since --until`).

Every source yields event lines (JSON bytes) in the order to publish them; the
publisher and the worker validate them, as they do live events.
"""
from __future__ import annotations

import gzip
from datetime import date, datetime
from pathlib import Path
from typing import IO, Iterator

import orjson

from supplymon.runner import RunError, http_query, running_worker
from supplymon.web_access import client_token
from supplymon.settings import SHANGHAI, Settings

PARQUET_MAGIC = b"PAR1"
PAGE = 50_000


def open_history(path: Path) -> IO[bytes]:
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise RunError(f"cannot read {path}: {exc.strerror}") from None
    if handle.read(2) == b"\x1f\x8b":  # gzip magic, whatever the file is called
        handle.close()
        return gzip.open(path, "rb")
    handle.seek(0)
    return handle


def is_parquet(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == PARQUET_MAGIC
    except OSError:
        return False


def history_lines(path: Path) -> Iterator[bytes]:
    """The events of a history file: Parquet (by its magic bytes) or JSON Lines.
    A missing file is reported now, not when the lines are first read."""
    if not path.exists():
        raise RunError(f"{path} does not exist")
    return parquet_lines(path) if is_parquet(path) else json_lines(path)


def json_lines(path: Path) -> Iterator[bytes]:
    with open_history(path) as handle:
        try:
            for line in handle:
                if line.strip():
                    yield line
        except (OSError, EOFError) as exc:
            raise RunError(f"{path} is damaged: {exc}") from None


def parquet_lines(path: Path) -> Iterator[bytes]:
    """A Parquet history, in file order: either an export of `events_raw` (a `payload`
    column holding each event's JSON) or one column per event field (`kind`, `ts`, ...;
    nulls left out, timestamps written as RFC 3339, naive ones taken as Asia/Shanghai)."""
    import pyarrow.parquet as pq

    try:
        reader = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises its own ArrowInvalid & co
        raise RunError(f"{path} is not a readable Parquet file: {exc}") from None
    names = reader.schema_arrow.names
    if "payload" in names:
        for batch in reader.iter_batches(columns=["payload"]):
            for payload in batch.column(0).to_pylist():
                if payload:
                    yield payload.encode() if isinstance(payload, str) else payload
        return
    if "kind" not in names:
        raise RunError(f"{path}: a Parquet history needs a `payload` column or one column per event field "
                       f"(`kind`, `ts`, ...); it has {', '.join(names)}")
    for batch in reader.iter_batches():
        for row in batch.to_pylist():
            yield orjson.dumps({key: _json_value(value) for key, value in row.items() if value is not None})


def _json_value(value):
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=SHANGHAI)
        return value.isoformat(timespec="milliseconds")
    if isinstance(value, date):
        return value.isoformat()
    return value


def store_lines(settings: Settings, since: datetime | None, until: datetime | None) -> Iterator[bytes]:
    """Stored events (`events_raw` of the settings' database), in event-time order:
    the orders placed in [since, until) and every event of theirs before `until`, with
    the platform ticks of that span; then a tick at `until`, so that every deadline
    before it fires as it had live. Through the worker holding the embedded store, if
    one does."""
    span = ([f"ts >= {_ms(since)}"] if since else []) + ([f"ts < {_ms(until)}"] if until else [])
    placed = " AND ".join(["kind = 'order'", *span])
    ticks = " AND ".join(["kind = 'tick'", *span])
    where = " AND ".join([f"ts < {_ms(until)}"] * bool(until) + [
        f"(({ticks}) OR order_id IN (SELECT order_id FROM supplymon.events_raw WHERE {placed}))"])
    query = (f"SELECT payload FROM supplymon.events_raw FINAL WHERE {where} "
             "ORDER BY ts, event_id LIMIT {limit} OFFSET {offset}")
    run, close = _store_runner(settings)
    try:
        offset = 0
        while True:
            rows = run(query.format(limit=PAGE, offset=offset))
            for row in rows:
                yield row["payload"].encode()
            if len(rows) < PAGE:
                break
            offset += len(rows)
    finally:
        close()
    if until is not None:
        tick = {"event_id": f"replay-until-{int(until.timestamp() * 1000)}", "kind": "tick",
                "ts": until.astimezone(SHANGHAI).isoformat(timespec="milliseconds")}
        yield orjson.dumps(tick)


def _ms(moment: datetime) -> str:
    """A moment as a ClickHouse DateTime64(3) expression."""
    return f"fromUnixTimestamp64Milli({int(moment.timestamp() * 1000)}, 'Asia/Shanghai')"


def _store_runner(settings: Settings):
    """(run a query on the settings' store and return its rows, close)."""
    worker = running_worker(settings)
    if worker:
        def run(sql: str) -> list[dict]:
            return [orjson.loads(line) for line in http_query(worker["web"], sql, "JSONEachRow",
                                                              token=client_token(settings)).splitlines() if line]
        return run, lambda: None
    if settings.clickhouse_url is None and not settings.chdb_path.exists():
        raise RunError(f"no stored events in {settings.data_dir} (and no SUPPLYMON_CLICKHOUSE server configured)")
    from supplymon.store import Store

    store = Store(settings)
    store.migrate()
    return store.rows, store.close


def parse_moment(text: str) -> datetime:
    """`--since`/`--until`: an RFC 3339 time, or a date (00:00 Asia/Shanghai)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise RunError(f"{text!r} is not a time (use 2026-03-01 or 2026-03-01T08:00:00+08:00)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=SHANGHAI)
