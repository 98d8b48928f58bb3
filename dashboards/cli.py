"""`supplymon dashboards build|push` (wired into supplymon/cli.py)."""
from __future__ import annotations

import argparse
import sys


def add_parser(sub) -> None:
    p = sub.add_parser("dashboards", help="the Grafana dashboards: build them from dashboards/panels.py, or push them")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    b = actions.add_parser("build", help="write dashboards/grafana/*.json from dashboards/panels.py")
    b.add_argument("--check", action="store_true", help="exit 1 if the committed files are stale, write nothing")
    push = actions.add_parser("push", help="provision the folder, datasources and dashboards into a Grafana "
                                           "(token: GRAFANA_TOKEN)")
    push.add_argument("--url", required=True, help="Grafana's address, e.g. https://grafana.example:3000")
    push.add_argument("--clickhouse", metavar="URL",
                      help="create or update the ClickHouse datasource: http(s)://user:password@host:8123 "
                           "(default: SUPPLYMON_CLICKHOUSE if set)")
    push.add_argument("--prometheus", metavar="URL", help="create or update the Prometheus datasource")


def run(settings, args) -> int:
    if args.action == "build":
        from dashboards.build import main

        return main(["--check"] if args.check else [])
    from dashboards.push import PushError, push, target_from

    try:
        count = push(target_from(args.url, args.clickhouse or settings.clickhouse_url, args.prometheus))
    except PushError as exc:
        print(f"supplymon dashboards push: {exc}", file=sys.stderr)
        return 1
    print(f"pushed {count} dashboards to {args.url}")
    return 0
