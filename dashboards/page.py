"""The built-in page's requests, without I/O: which panel, which range, which
variables (validated), the SQL to run (the panel's own, expanded as Grafana's
ClickHouse plugin would), and the rows made ready for the browser.

The browser never sends SQL: it names a panel (`/panels/<name>`) and picks a range
and the dashboard's variables from fixed choices. The range ends at the latest
event stored (stream time), so a replayed history shows as it was when it happened.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import orjson

from dashboards.macros import ALL, QueryContext, expand, interval_for
from dashboards.panels import COLUMNS, DASHBOARDS, Dashboard, Panel, clickhouse_panels

RANGES = {"1d": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30), "90d": timedelta(days=90)}
DEFAULT_RANGE = "7d"
# Codes of regions, distributors and the like: letters, digits, '_', '-', '.', ':'.
VARIABLE_VALUE = re.compile(r"[\w.:-]{1,64}")
LATEST_EVENT_SQL = "SELECT toUnixTimestamp64Milli(max(ts)) AS latest FROM supplymon.events_raw"
NUMERIC_TYPE = re.compile(r"U?Int\d+|Float\d+|Decimal")
TIME_TYPE = re.compile(r"DateTime(64)?(\((?:\d+, *)?'(?P<tz>[^']+)'\))?")
SHANGHAI = ZoneInfo("Asia/Shanghai")


class BadRequest(ValueError):
    """A request the page cannot answer (unknown panel, bad range or value): HTTP 400/404."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class PanelRequest:
    dashboard: Dashboard
    panel: Panel
    range_name: str
    variables: dict[str, list[str]]

    def context(self, latest: datetime) -> QueryContext:
        time_from = latest - RANGES[self.range_name]
        return QueryContext(time_from, latest, interval_for(time_from, latest), self.variables)

    def sql(self, latest: datetime) -> str:
        return expand(self.panel.query, self.context(latest))


def parse_request(name: str, params: dict[str, str]) -> PanelRequest:
    panels = clickhouse_panels()
    if name not in panels:
        raise BadRequest(f"no panel {name!r}", status=404)
    dashboard, panel = panels[name]
    range_name = params.get("range") or DEFAULT_RANGE
    if range_name not in RANGES:
        raise BadRequest(f"range must be one of {', '.join(RANGES)}")
    variables = {}
    for variable in dashboard.variables:
        value = params.get(variable.name) or "All"
        if value == "All":
            variables[variable.name] = [ALL]
        elif VARIABLE_VALUE.fullmatch(value):
            variables[variable.name] = [value]
        else:
            raise BadRequest(f"{variable.name}: not a valid value")
    return PanelRequest(dashboard, panel, range_name, variables)


def latest_event(result: bytes, now: datetime) -> datetime:
    """The range's end: the latest event stored, or `now` on an empty store."""
    rows = [orjson.loads(line) for line in result.splitlines() if line]
    millis = int(rows[0]["latest"]) if rows else 0
    return datetime.fromtimestamp(millis / 1000, tz=timezone.utc) if millis > 0 else now


def _base_type(type_name: str) -> str:
    """`Nullable(LowCardinality(String))` -> `String`."""
    while type_name.startswith(("Nullable(", "LowCardinality(")):
        type_name = type_name[type_name.index("(") + 1:-1]
    return type_name


def _kind(type_name: str) -> str:
    base = _base_type(type_name)
    return "number" if NUMERIC_TYPE.match(base) else "time" if base.startswith("Date") else "text"


def _converter(type_name: str):
    type_name = _base_type(type_name)
    if NUMERIC_TYPE.match(type_name):
        return lambda v: None if v is None else float(v)
    match = TIME_TYPE.match(type_name)
    if match:
        zone = ZoneInfo(match.group("tz") or "UTC")

        def to_millis(v):
            if v is None:
                return None
            moment = datetime.fromisoformat(v)
            return int(moment.replace(tzinfo=moment.tzinfo or zone).timestamp() * 1000)
        return to_millis
    if type_name.startswith("Date"):  # a calendar day: its start in Asia/Shanghai
        return lambda v: None if v is None else int(
            datetime.fromisoformat(v).replace(tzinfo=SHANGHAI).timestamp() * 1000)
    return lambda v: v


def rows_for_page(result: bytes) -> dict:
    """ClickHouse's JSONCompact output as {columns, types, rows}: numbers as numbers
    (ClickHouse quotes 64-bit integers), times as Unix milliseconds."""
    data = orjson.loads(result)
    meta = data["meta"]
    convert = [_converter(column["type"]) for column in meta]
    rows = [[fn(value) for fn, value in zip(convert, row)] for row in data["data"]]
    return {"columns": [c["name"] for c in meta], "types": [_kind(c["type"]) for c in meta], "rows": rows}


def index() -> dict:
    """What the page lays out: the ClickHouse dashboards and their panels, the column
    labels, the ranges (Prometheus panels need Prometheus: they are in Grafana only)."""
    return {
        "dashboards": [{
            "uid": d.uid, "title_zh": d.title_zh, "title_en": d.title_en,
            "variables": [{"name": v.name, "label_zh": v.label_zh, "label_en": v.label_en} for v in d.variables],
            "panels": [{**{k: v for k, v in asdict(p).items() if k not in ("query", "legend")},
                        "highlighted": p.highlighted} for p in d.panels],
        } for d in DASHBOARDS if d.source == "clickhouse"],
        "columns": COLUMNS,
        "ranges": list(RANGES),
        "default_range": DEFAULT_RANGE,
    }


def variable_sql(dashboard_uid: str, name: str) -> str:
    for d in DASHBOARDS:
        for v in d.variables:
            if d.uid == dashboard_uid and v.name == name:
                return v.query
    raise BadRequest(f"no variable {name!r} in {dashboard_uid!r}", status=404)
