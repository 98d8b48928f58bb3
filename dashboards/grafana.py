"""Grafana dashboards from `dashboards/panels.py`, with grafana-foundation-sdk.

The ClickHouse panels query the official plugin (`grafana-clickhouse-datasource`,
raw SQL editor); the SDK has no builder for it, so `ClickHouseQuery` builds its
target. Datasources are referred to by uid (`infra/grafana/provisioning/` creates
them with these uids; `supplymon dashboards push` too).
"""
from __future__ import annotations

import json
from itertools import zip_longest
from typing import Any

from grafana_foundation_sdk.builders import barchart, common, dashboard, prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.runtime import UnknownDataquery
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as models

from dashboards.panels import COLUMNS, DASHBOARDS, Dashboard, Panel

CLICKHOUSE_TYPE = "grafana-clickhouse-datasource"
CLICKHOUSE_UID = "supplymon-clickhouse"
PROMETHEUS_UID = "supplymon-prometheus"
CLICKHOUSE = models.DataSourceRef(type_val=CLICKHOUSE_TYPE, uid=CLICKHOUSE_UID)
PROMETHEUS = models.DataSourceRef(type_val="prometheus", uid=PROMETHEUS_UID)
TIMEZONE = "Asia/Shanghai"


class ClickHouseQuery(cogbuilder.Builder[UnknownDataquery]):
    """A raw-SQL target of the ClickHouse plugin (format 0: time series, 1: table)."""

    def __init__(self, sql: str, time_series: bool) -> None:
        self.sql, self.time_series = sql, time_series

    def build(self) -> UnknownDataquery:
        return UnknownDataquery({
            "datasource": {"type": CLICKHOUSE_TYPE, "uid": CLICKHOUSE_UID},
            "editorType": "sql",
            "queryType": "timeseries" if self.time_series else "table",
            "format": 0 if self.time_series else 1,
            "rawSql": self.sql,
            "refId": "A",
        })


def _thresholds(panel: Panel) -> dashboard.ThresholdsConfig:
    steps = [models.Threshold(value=None, color=panel.base_color)]
    steps += [models.Threshold(value=t.value, color=t.color) for t in panel.thresholds]
    return dashboard.ThresholdsConfig().mode(models.ThresholdsMode.ABSOLUTE).steps(steps)


def _targets(d: Dashboard, panel: Panel) -> list[cogbuilder.Builder]:
    if d.source == "prometheus":
        return [prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(chr(ord("A") + i)).datasource(PROMETHEUS)
                for i, (expr, legend) in enumerate(zip_longest(panel.expressions, panel.legend, fillvalue=""))]
    return [ClickHouseQuery(panel.query, time_series=panel.kind == "timeseries")]


def _label(column: str) -> str:
    zh, en = COLUMNS[column]
    return f"{zh} {en}"


def _rename_columns(panel: Panel) -> models.DataTransformerConfig:
    """Tables, bars and legends show the columns' Chinese and English names."""
    return models.DataTransformerConfig(
        id_val="organize", options={"renameByName": {name: _label(name) for name in panel.columns}})


def _highlight(builder, panel: Panel):
    """In tables and bars, the unit and threshold colours go to the rates only."""
    for column in panel.highlighted:
        properties = [models.DynamicConfigValue(id_val="unit", value=panel.unit),
                      models.DynamicConfigValue(id_val="thresholds", value=_thresholds(panel).build())]
        if panel.kind == "table":
            properties.append(models.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"}))
        builder = builder.with_override(models.MatcherConfig(id_val="byName", options=_label(column)), properties)
    return builder


def _panel(d: Dashboard, panel: Panel, panel_id: int):
    if panel.kind == "stat":
        builder = (stat.Panel().color_mode(common_models.BigValueColorMode.BACKGROUND)
                   .graph_mode(common_models.BigValueGraphMode.NONE)
                   .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False)))
    elif panel.kind == "timeseries":
        builder = timeseries.Panel().fill_opacity(10).line_width(2)
        if d.source == "clickhouse":
            builder = builder.with_transformation(_rename_columns(panel))  # the legend in both languages
        if panel.thresholds:
            builder = builder.thresholds_style(
                common.GraphThresholdsStyleConfig().mode(common_models.GraphThresholdsStyleMode.DASHED))
        if panel.unit == "percentunit":
            builder = builder.min(0).max(1)
    elif panel.kind == "bar":
        builder = (barchart.Panel().orientation(common_models.VizOrientation.HORIZONTAL)
                   .show_value(common_models.VisibilityMode.AUTO).with_transformation(_rename_columns(panel)))
    else:
        builder = table.Panel().with_transformation(_rename_columns(panel))
    builder = builder.id(panel_id).title(f"{panel.title_zh} {panel.title_en}").span(panel.width).height(panel.height)
    if panel.kind in ("table", "bar"):
        builder = _highlight(builder, panel)
    else:
        builder = builder.unit(panel.unit).thresholds(_thresholds(panel))
    for target in _targets(d, panel):
        builder = builder.with_target(target)
    return builder.datasource(PROMETHEUS if d.source == "prometheus" else CLICKHOUSE)


def build(d: Dashboard) -> dict[str, Any]:
    """The dashboard as Grafana's JSON model (a dict)."""
    builder = (dashboard.Dashboard(d.title).uid(d.uid).tags(list(d.tags)).timezone(TIMEZONE)
               .time("now-7d", "now").refresh("1m").readonly()
               # The other supplymon dashboards, keeping the time range.
               .link(dashboard.DashboardLink("集采供应监测 supplymon").type(models.DashboardLinkType.DASHBOARDS)
                     .tags(["supplymon"]).as_dropdown(False).keep_time(True).include_vars(False)))
    for variable in d.variables:
        builder = builder.with_variable(
            dashboard.QueryVariable(variable.name).label(f"{variable.label_zh} {variable.label_en}")
            .datasource(CLICKHOUSE).query(variable.query)
            .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(models.VariableSort.ALPHABETICAL_ASC)
            .include_all(True).current(models.VariableOption(selected=True, text="All", value="$__all")))
    for panel_id, panel in enumerate(d.panels, start=1):
        builder = builder.with_panel(_panel(d, panel, panel_id))
    return json.loads(JSONEncoder(sort_keys=True, indent=2).encode(builder.build()))


def render(d: Dashboard) -> str:
    return json.dumps(build(d), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def all_dashboards() -> dict[str, str]:
    """File name -> JSON text, for every dashboard."""
    return {f"{d.uid}.json": render(d) for d in DASHBOARDS}
