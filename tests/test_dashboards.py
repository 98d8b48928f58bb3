"""Dashboards as code: the committed Grafana JSON is what dashboards/panels.py
generates; the ClickHouse plugin's macros expand as the plugin expands them; and every
ClickHouse panel's query, expanded, runs on chdb over a replayed history with the
simulator's stories (all of them) and returns rows."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from grafana_foundation_sdk.models.dashboard import Dashboard as GrafanaDashboard

from dashboards import build, page
from dashboards.grafana import CLICKHOUSE_TYPE, CLICKHOUSE_UID, PROMETHEUS_UID
from dashboards.macros import ALL, MacroError, apply_conditional_all, QueryContext, expand, interval_for, macro_arguments
from dashboards.panels import COLUMNS, DASHBOARDS, clickhouse_panels
from tests.conftest import ROOT

T0 = datetime(2026, 3, 1, 0, 0, 0, 250000, tzinfo=timezone.utc)  # 1772323200.25
T1 = datetime(2026, 3, 8, 12, 30, 0, tzinfo=timezone.utc)  # 1772973000


def ctx(**variables) -> QueryContext:
    return QueryContext(T0, T1, 3600, {k: v for k, v in variables.items()})


# -- generated files -------------------------------------------------------------------

def test_committed_dashboards_are_not_stale():
    assert build.stale() == [], "run: python -m dashboards.build"


def test_build_check_reports_a_stale_file(tmp_path):
    build.write(tmp_path)
    assert build.main(["--check", "--out", str(tmp_path)]) == 0
    (tmp_path / "supplymon-overview.json").write_text("{}")
    (tmp_path / "old.json").write_text("{}")
    assert build.stale(tmp_path) == ["old.json", "supplymon-overview.json"]
    assert build.main(["--check", "--out", str(tmp_path)]) == 1


def committed() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in build.OUT.glob("*.json")}


def test_dashboards_are_grafana_models_with_the_plugin_targets():
    files = committed()
    assert set(files) == {d.uid for d in DASHBOARDS}
    for uid, data in files.items():
        model = GrafanaDashboard.from_json(data)  # Grafana's schema, read back
        assert model.uid == uid and model.timezone == "Asia/Shanghai"
        ids = [p["id"] for p in data["panels"]]
        assert len(ids) == len(set(ids))
        for panel in data["panels"]:
            assert re.search(r"[\u4e00-\u9fff]", panel["title"]), panel["title"]  # Chinese first
            for target in panel["targets"]:
                if target["datasource"]["type"] == CLICKHOUSE_TYPE:
                    assert target["datasource"]["uid"] == CLICKHOUSE_UID
                    assert target["editorType"] == "sql" and target["rawSql"].startswith("SELECT")
                    series = panel["type"] == "timeseries"
                    assert (target["format"], target["queryType"]) == ((0, "timeseries") if series else (1, "table"))
                else:
                    assert target["datasource"] == {"type": "prometheus", "uid": PROMETHEUS_UID}
                    assert target["expr"] and target["refId"]


def test_thresholds_carry_the_policy_lines():
    overview = committed()["supplymon-overview"]
    on_time = next(p for p in overview["panels"] if p["title"].startswith("按时配送率"))
    steps = on_time["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [(s["value"], s["color"]) for s in steps] == [(None, "red"), (0.7, "orange"), (0.9, "green")]
    # In a table the rate columns alone get the unit and colours.
    by_region = next(p for p in overview["panels"] if p["title"].startswith("各地区"))
    names = [o["matcher"]["options"] for o in by_region["fieldConfig"]["overrides"]]
    assert "按时配送率 on-time delivery rate" in names and not any(n.startswith("订单数") for n in names)


def test_every_panel_names_its_columns_in_both_languages():
    for d in DASHBOARDS:
        for p in d.panels:
            if d.source == "clickhouse":
                aliases = re.findall(r"\bAS (\w+)", p.query)
                assert set(aliases) <= set(COLUMNS), (p.name, set(aliases) - set(COLUMNS))


# -- the plugin's macros --------------------------------------------------------------

def test_time_macros_expand_as_the_plugin_does():
    sql = ("SELECT $__timeInterval(t) AS time, $__interval_s AS step FROM x WHERE $__timeFilter(t)"
           " AND $__timeFilter_ms(t) AND $__dateFilter(d) AND a > $__fromTime AND a < $__toTime"
           " AND b > $__fromTime_ms AND b < $__toTime_ms")
    assert expand(sql, ctx()) == (
        "SELECT toStartOfInterval(toDateTime(t), INTERVAL 3600 second) AS time, 3600 AS step FROM x"
        " WHERE t >= toDateTime(1772323200) AND t <= toDateTime(1772973000)"
        " AND t >= fromUnixTimestamp64Milli(1772323200250) AND t <= fromUnixTimestamp64Milli(1772973000000)"
        " AND d >= toDate('2026-03-01') AND d <= toDate('2026-03-08')"
        " AND a > toDateTime(1772323200) AND a < toDateTime(1772973000)"
        " AND b > fromUnixTimestamp64Milli(1772323200250) AND b < fromUnixTimestamp64Milli(1772973000000)")


def test_interval_is_at_least_one_second_in_whole_seconds():
    assert expand("$__interval_s", QueryContext(T0, T1, 0.2)) == "1"
    assert expand("$__timeInterval( t )", QueryContext(T0, T1, 90.7)) == \
        "toStartOfInterval(toDateTime(t), INTERVAL 90 second)"


def test_macro_errors():
    with pytest.raises(MacroError, match="expected 1 argument, received 2"):
        expand("$__timeFilter(a, b)", ctx())
    with pytest.raises(MacroError, match="unknown macro"):
        expand("$__nope(a)", ctx())


def test_conditional_all():
    sql = "WHERE $__conditionalAll(r IN (${region:singlequote}), $region) AND $__conditionalAll(d = '$dist', ${dist})"
    assert expand(sql, ctx(region=[ALL], dist=[ALL])) == "WHERE 1=1 AND 1=1"
    assert expand(sql, ctx(region=[""], dist=["D1"])) == "WHERE 1=1 AND d = 'D1'"
    assert expand(sql, ctx(region=["150702"], dist=["D1"])) == "WHERE r IN ('150702') AND d = 'D1'"
    # A variable the dashboard does not have: the condition stays, as in the plugin.
    assert expand("$__conditionalAll(x = 1, $other)", ctx()) == "x = 1"
    # Malformed (one argument): the plugin leaves it, and ClickHouse would fail on it.
    assert apply_conditional_all("$__conditionalAll(x = 1)", {}) == "$__conditionalAll(x = 1)"
    with pytest.raises(MacroError, match="unknown macro"):
        expand("$__conditionalAll(x = 1)", ctx())


def test_variables_format_as_grafana_does():
    c = QueryContext(T0, T1, 60, {"r": ["a", "b'c"]}, {})
    assert expand("${r:singlequote}", c) == "'a','b\\'c'"
    assert expand("$r", c) == "'a','b\\'c'"  # the plugin's format for several values
    assert expand("${r:raw}", c) == "a,b'c"
    assert expand("$r", QueryContext(T0, T1, 60, {"r": ["a"]})) == "a"  # one value as it is
    assert expand("$unknown", c) == "$unknown"
    # "All" stands for every option outside $__conditionalAll.
    assert expand("${r:singlequote}", QueryContext(T0, T1, 60, {"r": [ALL]}, {"r": ["x", "y"]})) == "'x','y'"
    with pytest.raises(MacroError, match="'All' outside"):
        expand("$r", QueryContext(T0, T1, 60, {"r": [ALL]}))


def test_panel_macros_take_bare_column_names():
    """So every version of the plugin's argument parsing reads them alike."""
    for d in DASHBOARDS:
        for p in d.panels:
            if d.source == "clickhouse":
                for argument in macro_arguments(p.query):
                    assert re.fullmatch(r"\w+", argument), (p.name, argument)


def test_interval_follows_the_range():
    assert interval_for(T0, T0 + timedelta(days=1)) == 300
    assert interval_for(T0, T0 + timedelta(days=7)) == 3600
    assert interval_for(T0, T0 + timedelta(days=90)) == 12 * 3600


# -- the page's requests ------------------------------------------------------------

def test_page_requests_are_validated():
    request = page.parse_request("delayed_responses", {"range": "30d", "region": "150702", "extra": "ignored"})
    assert request.variables == {"region": ["150702"]}
    sql = request.sql(T1)
    assert "region_code IN ('150702')" in sql and "$__" not in sql
    assert "toDateTime(1770381000)" in sql  # 30 days before the end
    assert "1=1" in page.parse_request("orders", {}).sql(T1)  # region All by default
    for name, params, status in [("nope", {}, 404), ("orders", {"range": "2y"}, 400),
                                 ("orders", {"region": "x') OR 1=1 --"}, 400),
                                 ("distributor_alerts", {"distributor": "a" * 65}, 400)]:
        with pytest.raises(page.BadRequest) as error:
            page.parse_request(name, params)
        assert error.value.status == status


def test_rows_for_the_page_are_typed():
    result = orjson.dumps({
        "meta": [{"name": "time", "type": "DateTime('Asia/Shanghai')"}, {"name": "orders", "type": "UInt64"},
                 {"name": "rate", "type": "Nullable(Float64)"}, {"name": "day", "type": "Date"},
                 {"name": "kind", "type": "LowCardinality(String)"}],
        "data": [["2026-03-01 08:00:00", "12", None, "2026-03-01", "x"]]})
    rows = page.rows_for_page(result)
    assert rows["types"] == ["time", "number", "number", "time", "text"]
    midnight_shanghai = int(datetime(2026, 3, 1, tzinfo=timezone.utc).timestamp() * 1000)
    assert rows["rows"] == [[midnight_shanghai, 12.0, None, midnight_shanghai - 8 * 3600 * 1000, "x"]]


# -- every panel's SQL on chdb over the stories ---------------------------------------

def run_queries(data_dir, queries: list[str]) -> list[dict]:
    result = subprocess.run([sys.executable, "-m", "tests.panel_queries", str(data_dir)], cwd=ROOT,
                            input=orjson.dumps(queries), capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr.decode()
    return orjson.loads(result.stdout)


def test_every_clickhouse_panel_runs_and_returns_rows(story_replay):
    data_dir, stories, _ = story_replay
    bounds = run_queries(data_dir, [
        "SELECT toUnixTimestamp64Milli(min(ts)) AS first, toUnixTimestamp64Milli(max(ts)) AS last"
        " FROM supplymon.events_raw"])[0]["rows"][0]
    first = datetime.fromtimestamp(int(bounds["first"]) / 1000, tz=timezone.utc)
    last = datetime.fromtimestamp(int(bounds["last"]) / 1000, tz=timezone.utc)
    shortage = next(s for s in stories if s.kind == "supply_shortage")
    bad = next(s for s in stories if s.kind == "low_delivery_rate")
    # The Grafana JSON as committed: its rawSql and its variables' queries.
    targets = [(data["uid"], panel["title"], target["rawSql"])
               for data in committed().values() for panel in data["panels"] for target in panel["targets"]
               if target["datasource"]["type"] == CLICKHOUSE_TYPE]
    variables = [(data["uid"], v["name"], v["query"]) for data in committed().values()
                 for v in data.get("templating", {}).get("list", [])]
    assert len(targets) == len(clickhouse_panels())
    selections = [
        {"region": [ALL], "distributor": [ALL]},  # "All": $__conditionalAll drops the filter
        {"region": [shortage.region_code], "distributor": [bad.distributor_id]},  # the stories' subjects
    ]
    context = [QueryContext(first, last, interval_for(first, last), s) for s in selections]
    queries = [expand(sql, c) for c in context for _, _, sql in targets] + [sql for _, _, sql in variables]
    assert not any("$" in q for q in queries)
    results = run_queries(data_dir, queries)
    labels = [f"{uid} {title} {s}" for s in selections for uid, title, _ in targets] + \
             [f"variable {uid} {name}" for uid, name, _ in variables]
    for label, sql, result in zip(labels, queries, results):
        assert "error" not in result, f"{label}: {result.get('error')}\n{sql}"
        assert result["rows"], f"{label}: no rows\n{sql}"
    # The stories show where a supervisor looks for them.
    by_label = dict(zip(labels, results))
    warnings = by_label[f"supplymon-shortage 预警（短缺、激增、配送） Early warnings {selections[0]}"]["rows"]
    assert {s.kind for s in stories} <= {r["kind"] for r in warnings}  # every story's alert kind
    turned_away = by_label[f"supplymon-shortage 缺货被拒机构 Institutions turned away for out of stock {selections[1]}"]
    assert turned_away["rows"][0]["subject"] == f"{shortage.product_id} / {shortage.region_code}"
    assert turned_away["rows"][0]["institutions_out_of_stock"] >= 3
    worst = by_label[f"supplymon-overview 配送企业排名（按时率最低） Weakest distributors {selections[0]}"]["rows"]
    assert worst[0]["distributor_id"] == bad.distributor_id and worst[0]["on_time_rate"] < 0.7
