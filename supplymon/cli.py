"""The `supplymon` command line (contract section 5)."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path

from supplymon.settings import ConfigError, Settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="supplymon", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def data_dir(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", type=Path, help="embedded store location (default ./data, or SUPPLYMON_DATA_DIR)")

    p = sub.add_parser("demo", help="run the monitor on simulated live traffic (embedded broker and store)")
    data_dir(p)
    p.add_argument("--days", type=float, default=3.0, help="simulated days of traffic (default 3)")
    p.add_argument("--speed", type=float, default=3600.0,
                   help="simulated seconds per real second (default 3600: an hour a second)")
    p.add_argument("--orders-per-day", type=int, default=400)
    p.add_argument("--seed", type=int, default=7)

    p = sub.add_parser("replay", help="publish a JSON Lines history (.gz too)")
    p.add_argument("file", type=Path)
    p.add_argument("--embedded", action="store_true",
                   help="start the embedded stack, wait until every event is stored, stop")
    p.add_argument("--speed", type=float, default=None,
                   help="publish at this many event-time seconds per second (default: as fast as possible)")
    p.add_argument("--partitions", type=int, help="partitions of new topics (default 4)")
    data_dir(p)

    p = sub.add_parser("sql", help="ad-hoc SQL on the store (through the running worker if one holds it)")
    p.add_argument("query")
    p.add_argument("--format", default="PrettyCompact", help="a ClickHouse output format (default PrettyCompact)")
    data_dir(p)

    p = sub.add_parser("worker", help="the Faust worker against the configured Kafka and ClickHouse")
    data_dir(p)

    p = sub.add_parser("simulate", help="write a replayable simulated history")
    p.add_argument("--days", type=int, default=7)
    p.add_argument("--orders-per-day", type=int, default=500)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", type=Path, required=True, help="output file (.jsonl or .jsonl.gz)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=os.environ.get("SUPPLYMON_LOG_LEVEL", "warning").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from supplymon.embedded import BrokerError
    from supplymon.runner import RunError
    from supplymon.store import StoreError

    # SIGTERM unwinds like Ctrl-C, so the broker and worker this process started are stopped.
    signal.signal(signal.SIGTERM, _terminate)
    try:
        settings = Settings.from_env()
        if getattr(args, "data_dir", None):
            settings = replace(settings, data_dir=args.data_dir)
        if getattr(args, "partitions", None):
            settings = replace(settings, partitions=args.partitions)
        return COMMANDS[args.command](settings, args)
    except (ConfigError, RunError, StoreError, BrokerError) as exc:
        print(f"supplymon {args.command}: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    except KeyboardInterrupt:
        print(f"supplymon {args.command}: interrupted", file=sys.stderr)
        return 130


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt


def _replay(settings: Settings, args) -> int:
    from supplymon.replay import replay

    embedded = args.embedded
    if embedded:
        settings = replace(settings, web_port=0)  # a free port for the worker it starts
    return replay(settings, args.file, embedded, args.speed)


def _sql(settings: Settings, args) -> int:
    from supplymon.runner import http_query, running_worker
    from supplymon.store import Store

    worker = running_worker(settings)
    if worker:
        result = http_query(worker["web"], args.query, args.format)
    else:
        if settings.clickhouse_url is None and not settings.chdb_path.exists():
            print(f"supplymon sql: no data in {settings.data_dir} (run a replay or the demo first)", file=sys.stderr)
            return 1
        store = Store(settings)
        try:
            store.migrate()
            result = store.query(args.query, args.format)
        except Exception as exc:
            print(f"supplymon sql: {exc}", file=sys.stderr)
            return 1
        finally:
            store.close()
    sys.stdout.buffer.write(result)
    sys.stdout.flush()
    return 0


def _worker(settings: Settings, args) -> int:
    from supplymon.worker import run

    return run(settings)


def _simulate(settings: Settings, args) -> int:
    from supplymon.simulate import generate, write_history

    count = write_history(args.out, generate(days=args.days, orders_per_day=args.orders_per_day, seed=args.seed))
    print(f"wrote {count:,} events to {args.out}")
    return 0


def _demo(settings: Settings, args) -> int:
    from supplymon.demo import run_demo

    return run_demo(replace(settings, web_port=settings.web_port or 0), args)


COMMANDS = {"demo": _demo, "replay": _replay, "sql": _sql, "worker": _worker, "simulate": _simulate}
