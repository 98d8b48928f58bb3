"""The supervisors' page on the worker's web server: the panels of
dashboards/panels.py, drawn in the browser with the vendored ECharts (no CDN).

Read-only and safe to expose like /metrics: every route is a GET that runs only the
panels' fixed SQL through the sink's query path, with a range and variables chosen
from validated values (dashboards/page.py); no SQL comes from the browser.

  /                        the page (Chinese first, English beneath)
  /panels                  the layout: dashboards, panels, column labels, ranges
  /panels/<name>           a panel's rows: ?range=1d|7d|30d|90d and the dashboard's variables
  /variables/<uid>/<name>  a variable's values (regions, distributors)
  /static/<file>           the page's script, style and ECharts
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from pathlib import Path

from faust.web import View

from agents.lifecycle import sink
from dashboards import page
from streams.app import app

log = logging.getLogger(__name__)
STATIC = Path(page.__file__).resolve().parent / "static"
STATIC_TYPES = {".js": "application/javascript", ".css": "text/css", ".html": "text/html", ".txt": "text/plain"}
STATIC_FILES = {p.name: p for p in STATIC.iterdir() if p.suffix in STATIC_TYPES}
LATEST_TTL = 5.0  # seconds the range's end (the latest event stored) is reused
NO_STORE = {"Cache-Control": "no-store"}


class _Latest:
    """The latest event time stored, asked at most every LATEST_TTL seconds."""

    def __init__(self) -> None:
        self.value: datetime | None = None
        self.asked = 0.0

    async def get(self) -> datetime:
        if self.value is None or time.monotonic() - self.asked > LATEST_TTL:
            result = await sink.query(page.LATEST_EVENT_SQL, "JSONEachRow")
            self.value, self.asked = page.latest_event(result, datetime.now(timezone.utc)), time.monotonic()
        return self.value


latest = _Latest()


def _error(view: View, exc: Exception, status: int = 400):
    return view.json({"error": str(exc)}, status=status, headers=NO_STORE)


@app.page("/")
class PageView(View):
    async def get(self, request):
        return self.bytes(STATIC_FILES["index.html"].read_bytes(), content_type="text/html",
                          headers={"Cache-Control": "no-cache"})


@app.page("/panels")
class PanelIndexView(View):
    async def get(self, request):
        return self.json(page.index())


@app.page("/panels/{name}")
class PanelView(View):
    async def get(self, request, name: str):
        try:
            wanted = page.parse_request(name, dict(request.query))
        except page.BadRequest as exc:
            return _error(self, exc, exc.status)
        try:
            end = await latest.get()
            result = await sink.query(wanted.sql(end), "JSONCompact")
        except Exception as exc:  # the store is unreachable or the query failed: say so
            log.warning("panel %s failed: %s", name, exc)
            return _error(self, RuntimeError(f"query failed: {exc}"), 503)
        context = wanted.context(end)
        return self.json({**page.rows_for_page(result), "from": int(context.time_from.timestamp() * 1000),
                          "to": int(context.time_to.timestamp() * 1000),
                          "interval_seconds": context.interval_seconds}, headers=NO_STORE)


@app.page("/variables/{uid}/{name}")
class VariableView(View):
    async def get(self, request, uid: str, name: str):
        try:
            sql = page.variable_sql(uid, name)
            result = page.rows_for_page(await sink.query(sql, "JSONCompact"))
        except page.BadRequest as exc:
            return _error(self, exc, exc.status)
        except Exception as exc:
            return _error(self, RuntimeError(f"query failed: {exc}"), 503)
        return self.json({"values": [row[0] for row in result["rows"]]}, headers=NO_STORE)


@app.page("/static/{file}")
class StaticView(View):
    async def get(self, request, file: str):
        path = STATIC_FILES.get(file)  # only the files shipped in dashboards/static
        if path is None:
            return self.text("not found\n", status=404)
        return self.bytes(path.read_bytes(), content_type=STATIC_TYPES[path.suffix],
                          headers={"Cache-Control": "max-age=3600"})
