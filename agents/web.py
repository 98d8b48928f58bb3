"""The worker's web endpoints: Prometheus metrics, progress, and SQL on its store.

`/sql` exists because the embedded store admits one process: while a worker holds
a data dir, `supplymon sql` sends its query here. Who may call what:
streams/web_security.py (GET pages read only; `/sql` is POST with the token);
`/health` and `/ready`: agents/health.py.
"""
from __future__ import annotations

import time

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agents.lifecycle import flow, sink, stream_time, unsettled
from agents.progress import sent_offsets, stored_offsets
from agents.warnings import warnings
from streams.app import app, settings
from streams.web_security import GuardedPostView, refusal
from supplymon import metrics
from supplymon.assess import STORED_TABLES
from supplymon.sql_guard import QueryRefused

STARTED = time.time()


@app.page("/metrics")
async def metrics_view(web, request):
    return web.bytes(generate_latest(metrics.REGISTRY), content_type=CONTENT_TYPE_LATEST.split(";")[0])


@app.page("/progress")
async def progress_view(web, request):
    assigned = sorted(f"{tp.topic}:{tp.partition}" for tp in app.consumer.assignment())
    return web.json({
        "offsets": stored_offsets(settings.topics.inputs),
        "signals": stored_offsets([settings.topics.signals]),
        "signals_sent": sent_offsets(),
        "assigned": assigned,
        "stream_time": {f"{tp.topic}:{tp.partition}": ts for tp, ts in stream_time.latest.items()},
        "uptime_seconds": round(time.time() - STARTED, 1),
    })


@app.page("/state")
async def state_view(web, request):
    """The order states this worker holds, as the flow holds them (agents/lifecycle.py
    `flow`; the Faust table's store is emptied into it after each assignment):
    `orders` held (placed, and not placed yet: `not_placed`), `bytes` the order
    table's numpy columns as allocated (capacity, which doubles as it grows; not
    the Python objects they point to, nor the id index: the worker's RSS is the
    whole), per partition (after a rebalance: only the partitions it holds), and
    `unsettled`: states of batches handed to the store and not finished yet;
    `early_warnings`: the groups and the order records the early warnings hold
    (agents/warnings.py; rebuilt after an assignment at its first signals)."""
    table = flow.table
    rows = np.fromiter(table.rows.values(), dtype=np.int64, count=len(table.rows))
    parts, counts = np.unique(table.part[rows], return_counts=True)
    partitions = dict(zip(parts.tolist(), counts.tolist()))
    for state in flow.pending.values():
        partitions[state["p"]] = partitions.get(state["p"], 0) + 1
    return web.json({"orders": len(flow), "not_placed": len(flow.pending), "bytes": table.nbytes(),
                     "unsettled": len(unsettled), "partitions": partitions,
                     "early_warnings": {"groups": len(warnings.groups), "records": warnings.records()}})


@app.page("/sql")
class SqlView(GuardedPostView):
    """POST `query` and optional `format` (a ClickHouse format name), form-encoded, with
    the token. Read-only queries on the store only (supplymon/sql_guard.py)."""

    async def post(self, request):
        params = await request.post()
        query = params.get("query")
        if not query:
            return refusal(400, "缺少参数 query", "missing 'query'")
        try:
            result = await sink.analyst_query(query, params.get("format") or "TabSeparatedWithNames")
        except QueryRefused as exc:
            return self.text(f"{exc}\n", status=403)
        except Exception as exc:  # the ClickHouse error, for the analyst to fix the query
            return self.text(f"查询失败 / query failed: {exc}\n", status=400)
        return self.bytes(result, content_type="text/plain")


@app.page("/assessment/rows")
class AssessmentRowsView(GuardedPostView):
    """POST the rows `supplymon assess` stores while this worker holds the store:
    `?table=` one of the assessment tables, the body JSONEachRow; with the token."""

    async def post(self, request):
        table = request.query.get("table")
        if table not in STORED_TABLES:
            return self.text(f"table must be one of {', '.join(STORED_TABLES)}\n", status=400)
        try:
            await sink.insert_json(table, await request.read())
        except Exception as exc:  # the ClickHouse error, for the command to report
            return self.text(f"{exc}\n", status=400)
        return self.text("ok\n")
