"""The `supplymon` command line (contract section 5)."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path

from supplymon.settings import ConfigError, Rules, Settings
from supplymon.simulate import SCENARIO_CHOICES, ScenarioError, generate, min_days, write_history


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="supplymon", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def data_dir(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", type=Path, help="embedded store location (default ./data, or SUPPLYMON_DATA_DIR)")

    p = sub.add_parser("demo", help="run the monitor on simulated live traffic (embedded broker and store)")
    data_dir(p)
    p.add_argument("--scenario", choices=("healthy",) + SCENARIO_CHOICES, default="all",
                   help="the stories told on top of healthy traffic: all (the default) tells every one (README: "
                        "Scenarios), a name one of them; healthy: calm traffic, no story")
    p.add_argument("--days", type=float, default=None,
                   help="simulated days of traffic, ending at the last full hour or --until (default: " + _demo_defaults("days") + ")")
    p.add_argument("--speed", type=float, default=None,
                   help="simulated seconds per real second (default: " + _demo_defaults("speed") + ")")
    p.add_argument("--plain", action="store_true",
                   help="a line per alert instead of the live view (chosen by itself when the output is not a "
                        "terminal)")
    p.add_argument("--screenshot", type=Path, metavar="FILE.svg", help="save the live view's last frame as SVG")
    p.add_argument("--orders-per-day", type=int, default=400, help="orders placed a simulated day (default 400)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--until", metavar="TIME",
                   help="the simulated days end at this hour (2026-03-01T08:00, Asia/Shanghai unless given), not "
                        "at the last full hour: the same seed and --until tell the same story, to the minute; "
                        "a time past the wall clock is refused")

    p = sub.add_parser("replay", help="publish a history: JSON Lines (.gz too), Parquet, or the stored events")
    p.add_argument("file", type=Path, nargs="?",
                   help="JSON Lines (.gz too) or Parquet (a `payload` column, or one column per event field)")
    p.add_argument("--from-clickhouse", action="store_true",
                   help="replay the stored events (events_raw) instead of a file; needs --namespace")
    p.add_argument("--since", help="with --from-clickhouse: orders placed from this time (2026-03-01 or RFC 3339)")
    p.add_argument("--until", help="with --from-clickhouse: events before this time, then a tick at it")
    p.add_argument("--namespace", metavar="NAME",
                   help="replay side by side with live monitoring: own topics (NAME.supply.*), consumer group "
                        "and ClickHouse database (supplymon_NAME); a worker of the namespace runs until all is stored")
    p.add_argument("--rules", type=Path, metavar="FILE",
                   help="the rules file of this replay's worker (what if the response deadline were 36 h?)")
    p.add_argument("--embedded", action="store_true",
                   help="start the embedded stack, wait until every event is stored, stop")
    p.add_argument("--direct", action="store_true",
                   help="no broker: feed the file straight to the worker's dataflow and store (same facts, alerts "
                        "and windows as --embedded; nothing is written to Kafka, no notifications)")
    p.add_argument("--speed", type=float, default=None,
                   help="publish at this many event-time seconds per second (default: as fast as possible)")
    p.add_argument("--partitions", type=int, help="partitions of new topics (default 4)")
    p.add_argument("--allow-future", action="store_true",
                   help="accept events stamped past the wall clock (a simulated future; with --embedded or --namespace; "
                        "a worker of its own takes SUPPLYMON_ALLOW_FUTURE=1). Without it they are refused "
                        "(future_timestamp)")
    p.add_argument("--max-line-bytes", type=int, default=None,
                   help="a longer line goes to the dead letters, truncated (too_large); default 1000000 "
                        "or SUPPLYMON_MAX_EVENT_BYTES")
    p.add_argument("--skip-stored", action="store_true",
                   help="publish only the lines not already in the store of --data-dir (events by event_id, bad "
                        "lines as dead letters): resending after the embedded broker lost what it held")
    p.add_argument("--notify", action="store_true",
                   help="send notifications for the replayed alerts (SUPPLYMON_RECIPIENTS); never without it")
    data_dir(p)

    p = sub.add_parser("sql", help="ad-hoc SQL on the store (through the running worker if one holds it)")
    p.add_argument("query")
    p.add_argument("--namespace", metavar="NAME", help="a side-by-side replay's store (database supplymon_NAME)")
    p.add_argument("--format", default="PrettyCompact", help="a ClickHouse output format (default PrettyCompact)")
    data_dir(p)

    p = sub.add_parser("assess", help="the periodic distributor assessment, or (assess vbp) the monthly VBP monitoring")
    p.add_argument("report", nargs="?", choices=("distributors", "vbp"), default="distributors",
                   help="distributors (default): scores and verdicts over --from..--to; "
                        "vbp: VBP products' share and agreed-volume progress in --month")
    p.add_argument("--from", dest="date_from", help="first day of the period (YYYY-MM-DD, Asia/Shanghai)")
    p.add_argument("--to", dest="date_to", help="last day of the period, included")
    p.add_argument("--month", help="vbp: the month to monitor (YYYY-MM)")
    p.add_argument("--region", help="only orders of this division code (150400: the whole city)")
    p.add_argument("--registry",
                   help="distributors with delivery rights: a CSV (distributor_id[,distributor_name,region_code]) "
                        "or table:DB.NAME, a table of the store with those columns; default: those seen in the facts")
    p.add_argument("--agreed", type=Path,
                   help="vbp: CSV of agreed volumes (institution_id,product_id,agreed_quantity,period_from,period_to)")
    p.add_argument("--format", default="PrettyCompact", help="a ClickHouse output format (default PrettyCompact)")
    p.add_argument("--html", type=Path, help="also write a self-contained HTML report here")
    p.add_argument("--xlsx", type=Path, help="also write the tables as an Excel workbook here")
    p.add_argument("--namespace", metavar="NAME", help="assess a side-by-side replay's store (database supplymon_NAME)")
    data_dir(p)

    p = sub.add_parser("worker", help="the Faust worker against the configured Kafka and ClickHouse")
    p.add_argument("--namespace", metavar="NAME", help="a worker of a side-by-side namespace (see replay)")
    data_dir(p)

    p = sub.add_parser("simulate", help="write a replayable simulated history")
    p.add_argument("--days", type=int, default=7, help="simulated days (default 7)")
    p.add_argument("--orders-per-day", type=int, default=500, help="orders placed a simulated day (default 500)")
    p.add_argument("--seed", type=int, default=7, help="the same seed writes the same history")
    p.add_argument("--scenario", choices=SCENARIO_CHOICES,
                   help="inject a story into the healthy traffic (needs at least: "
                        + ", ".join(f"{name} {min_days(name)} days" for name in SCENARIO_CHOICES) + ")")
    p.add_argument("--out", type=Path, required=True, help="output file (.jsonl or .jsonl.gz)")

    from dashboards.cli import add_parser as add_dashboards
    add_dashboards(sub)
    return parser


# The demo's --days and --speed when not given: long enough in event time for the story
# to reach its alert (the surge needs 8 normal days first), about a minute or two of wall time.
DEMO_RUNS = {"all": (33.0, 43200.0), "healthy": (3.0, 3600.0), "shortage": (3.0, 3600.0),
             "bad-distributor": (5.0, 7200.0), "surge": (11.0, 14400.0), "third-distributor": (3.0, 3600.0),
             "price-lag": (33.0, 86400.0), "price-split": (3.0, 3600.0), "price-rise": (10.0, 14400.0),
             "remote-refusal": (4.0, 7200.0), "short-supply": (4.0, 7200.0)}


def _demo_defaults(which: str) -> str:
    index = 0 if which == "days" else 1
    return ", ".join(f"{name} {run[index]:g}" for name, run in DEMO_RUNS.items())


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
        _check_recipients(settings, args)
        return COMMANDS[args.command](settings, args)
    except (ConfigError, ScenarioError, RunError, StoreError, BrokerError) as exc:
        print(f"supplymon {args.command}: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, (ConfigError, ScenarioError)) else 1
    except KeyboardInterrupt:
        print(f"supplymon {args.command}: interrupted", file=sys.stderr)
        return 130


def _check_recipients(settings: Settings, args) -> None:
    """The recipients directory is validated before anything starts (the worker checks it again)."""
    if args.command == "replay" and args.notify and not (args.embedded or args.namespace):
        raise ConfigError("--notify 仅用于自带 worker 的回放（--embedded 或 --namespace）；直接回放到 Kafka 时由 worker "
                          "按其通讯录通知 / --notify goes with a replay's own worker (--embedded or --namespace); "
                          "replayed into Kafka, the workers notify as their directory says")
    if args.command == "replay" and args.notify and not settings.recipients_file:
        raise ConfigError("--notify 需要通讯录：请设置 SUPPLYMON_RECIPIENTS / --notify needs a recipients directory: "
                          "set SUPPLYMON_RECIPIENTS")
    if settings.recipients_file and (args.command in ("worker", "demo") or getattr(args, "notify", False)):
        from supplymon.notify.directory import load_directory

        load_directory(settings.recipients_file)


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt


def _replay(settings: Settings, args) -> int:
    from supplymon.replay import replay
    from supplymon.sources import history_lines, parse_moment, store_lines

    if args.direct:
        _check_direct(args)
    if (args.file is None) == (not args.from_clickhouse):
        raise ConfigError("give a FILE or --from-clickhouse (one of them)")
    if args.from_clickhouse:
        if not args.namespace:
            raise ConfigError("--from-clickhouse replays the stored events into a namespace: add --namespace NAME")
        since, until = (parse_moment(t) if t else None for t in (args.since, args.until))
        if since and until and since >= until:
            raise ConfigError(f"--since {args.since} is not before --until {args.until}")
        lines = store_lines(settings, since, until)  # the live store's events
    elif args.since or args.until:
        raise ConfigError("--since and --until select stored events: use them with --from-clickhouse")
    else:
        lines = history_lines(args.file)
    if args.rules:
        if not (args.embedded or args.namespace or args.direct):
            raise ConfigError("--rules sets the rules of a replay's own worker: add --namespace NAME or --embedded")
        settings = replace(settings, rules=Rules.load(args.rules), rules_file=str(args.rules.resolve()))
    if args.namespace:
        settings = settings.namespaced(args.namespace)
    settings = replace(settings, notify=args.notify)  # a replay notifies only when told
    if args.embedded:
        settings = replace(settings, web_port=0)  # a free port for the worker it starts
    if args.allow_future:
        if not (args.embedded or args.namespace or args.direct):
            raise ConfigError("--allow-future is for a replay's own worker (--embedded or --namespace NAME); "
                              "set SUPPLYMON_ALLOW_FUTURE=1 where your worker runs instead")
        settings = replace(settings, allow_future=True)
    if args.max_line_bytes is not None:
        if args.max_line_bytes < 1024:
            raise ConfigError(f"--max-line-bytes must be at least 1024, got {args.max_line_bytes}")
        settings = replace(settings, max_event_bytes=args.max_line_bytes)
    if args.direct:
        from supplymon.direct import replay_direct

        return replay_direct(settings, lines)
    return replay(settings, lines, args.embedded, args.speed, skip_stored=args.skip_stored)


def _check_direct(args) -> None:
    """--direct replays a file into the store of --data-dir, nothing else."""
    others = [name for name, given in (("--embedded", args.embedded), ("--namespace", args.namespace),
                                       ("--from-clickhouse", args.from_clickhouse), ("--speed", args.speed),
                                       ("--notify", args.notify), ("--skip-stored", args.skip_stored)) if given]
    if others:
        raise ConfigError(f"--direct 不能与 {', '.join(others)} 同用：直接回放不经 Kafka，按文件顺序尽快处理，"
                          "不发通知，已存储的事件自动跳过 / --direct does not go with "
                          f"{', '.join(others)}: it replays a file into the store of --data-dir without Kafka, "
                          "as fast as it goes, without notifications, skipping what is stored by itself")


def _sql(settings: Settings, args) -> int:
    from supplymon.runner import store_query

    if args.namespace:
        settings = settings.namespaced(args.namespace)
    sys.stdout.buffer.write(store_query(settings, args.query, args.format))
    sys.stdout.flush()
    return 0


def _assess(settings: Settings, args) -> int:
    from supplymon.assess import command

    return command(settings.namespaced(args.namespace) if args.namespace else settings, args)


def _worker(settings: Settings, args) -> int:
    from supplymon.worker import run

    return run(settings.namespaced(args.namespace) if args.namespace else settings)


def _simulate(settings: Settings, args) -> int:
    history = generate(days=args.days, orders_per_day=args.orders_per_day, seed=args.seed, scenario=args.scenario)
    count = write_history(args.out, history)
    print(f"wrote {count:,} events to {args.out}")
    for story in history.stories:
        print(f"故事 story {story.describe()}")
    return 0


def _demo(settings: Settings, args) -> int:
    from supplymon.demo import run_demo

    days, speed = DEMO_RUNS[args.scenario]
    args.days = days if args.days is None else args.days
    args.speed = speed if args.speed is None else args.speed
    return run_demo(replace(settings, web_port=settings.web_port or 0), args)


def _dashboards(settings: Settings, args) -> int:
    from dashboards.cli import run

    return run(settings, args)


COMMANDS = {"demo": _demo, "replay": _replay, "sql": _sql, "worker": _worker, "simulate": _simulate, "assess": _assess,
            "dashboards": _dashboards}
