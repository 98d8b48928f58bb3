"""Run SQL queries on a data dir's store, in a child process (chdb admits one data
dir per process): `python -m tests.panel_queries DATA_DIR < queries.json` prints, per
query, {"rows": [...]} or {"error": "..."}. Through the worker's /sql when one holds
the data dir."""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import orjson

from supplymon.runner import http_query, running_worker
from supplymon.settings import Settings
from supplymon.store import Store


def main() -> int:
    settings = replace(Settings.from_env({}), data_dir=Path(sys.argv[1]))
    queries = orjson.loads(sys.stdin.buffer.read())
    worker = running_worker(settings)
    store = None if worker else Store(settings)

    def run(sql: str) -> bytes:
        return http_query(worker["web"], sql, "JSONEachRow") if worker else store.query(sql, "JSONEachRow")

    out = []
    for sql in queries:
        try:
            out.append({"rows": [orjson.loads(line) for line in run(sql).splitlines() if line]})
        except Exception as exc:  # reported per query
            out.append({"error": str(exc)})
    if store:
        store.close()
    sys.stdout.buffer.write(orjson.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
