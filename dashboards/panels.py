"""Every panel of the supervisors' view, once: its title (Chinese first), its query,
the kind of chart, its unit and its threshold lines.

From this module come both the Grafana dashboards (`dashboards/grafana.py`, written
to `dashboards/grafana/*.json` by `python -m dashboards.build`) and the page the
worker serves at `/` (`agents/dashboard.py`). A panel's SQL is written for Grafana's
ClickHouse plugin (`grafana-clickhouse-datasource`) with its macros; the worker
expands them the way the plugin does (`dashboards/macros.py`). Adding a panel is
adding one `Panel(...)` to a dashboard's list.

Rates are fractions (0-1, unit `percentunit`); the threshold lines are the policy's:
70 % and 90 % on-time delivery (chifeng-2025 §二,四: under 70 % rectify; grassroots
under 90 % with a low score, revoke), 80 % fill rate (nhsa-2024: shortage).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from supplymon.report import VERDICT_LABELS

Kind = Literal["stat", "timeseries", "bar", "table"]
Source = Literal["clickhouse", "prometheus"]


@dataclass(frozen=True)
class Threshold:
    """A line (or a colour step) at `value`: below it, the colour of the step before."""

    value: float
    color: str
    label_zh: str
    label_en: str


@dataclass(frozen=True)
class Panel:
    name: str  # stable: the page's /panels/<name>, Grafana's panel id comes from its place
    title_zh: str
    title_en: str
    kind: Kind
    query: str  # ClickHouse SQL with the plugin's macros, or PromQL (one expression per line)
    unit: str = "short"  # Grafana unit id: short, percentunit, h, s, dateTimeAsIso
    thresholds: tuple[Threshold, ...] = ()
    width: int = 12  # Grafana grid: 24 columns
    height: int = 8
    base_color: str = "green"  # below the first threshold
    legend: tuple[str, ...] = ()  # PromQL only: a legend format per expression

    @property
    def expressions(self) -> list[str]:
        return [line.strip() for line in self.query.strip().splitlines() if line.strip()]

    @property
    def columns(self) -> list[str]:
        """The labelled columns the query names (for renaming them in tables and bars)."""
        return [name for name in COLUMNS if re.search(rf"\b{name}\b", self.query)]

    @property
    def highlighted(self) -> list[str]:
        """In a table or bar chart, the columns the unit and thresholds apply to (rates
        and ratios); the other columns are plain counts and codes."""
        if self.kind in ("stat", "timeseries"):
            return self.columns
        return [name for name in self.columns
                if "_rate" in name or name.endswith(("_ratio", "_out_of_stock")) or name == "failed"]


@dataclass(frozen=True)
class Variable:
    name: str
    label_zh: str
    label_en: str
    query: str  # ClickHouse SQL returning one column of values


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title_zh: str
    title_en: str
    source: Source
    panels: tuple[Panel, ...]
    variables: tuple[Variable, ...] = ()
    tags: tuple[str, ...] = field(default=("supplymon",))

    @property
    def title(self) -> str:
        return f"{self.title_zh} {self.title_en}"


# Column names -> labels (Chinese, English), for tables on the page and in Grafana.
COLUMNS: dict[str, tuple[str, str]] = {
    "time": ("时间", "time"),
    "orders": ("订单数", "orders"),
    "rejected": ("拒绝", "rejected"),
    "on_time_rate": ("按时配送率", "on-time delivery rate"),
    "grassroots_on_time_rate": ("基层按时配送率", "grassroots on-time rate"),
    "response_rate_24h": ("24小时响应率", "24 h response rate"),
    "response_p50_hours": ("响应时长中位数", "response p50 (h)"),
    "response_p90_hours": ("响应时长P90", "response p90 (h)"),
    "rejection_rate": ("拒绝率", "rejection rate"),
    "open_alerts": ("未解除预警", "open alerts"),
    "region_code": ("地区", "region"),
    "distributor_id": ("配送企业", "distributor"),
    "institution_id": ("医疗机构", "institution"),
    "product_id": ("产品", "product"),
    "order_id": ("订单", "order"),
    "kind": ("类型", "kind"),
    "severity": ("级别", "severity"),
    "state": ("状态", "state"),
    "message": ("内容", "message"),
    "ack_time": ("确认时间", "acknowledged at"),
    "ack_comment": ("确认说明", "acknowledgement"),
    "channel": ("渠道", "channel"),
    "sent": ("已发送", "sent"),
    "pending": ("待发送", "pending"),
    "failed": ("发送失败", "failed"),
    "recipients": ("接收方", "recipients"),
    "raised_at": ("预警时间", "raised at"),
    "overdue_hours": ("超时(小时)", "overdue (h)"),
    "ordered_units": ("订购数量", "ordered quantity"),
    "confirmed_units": ("确认数量", "confirmed quantity"),
    "fill_rate": ("数量满足率", "fill rate"),
    "subject": ("产品/地区", "product / region"),
    "institutions_out_of_stock": ("缺货被拒机构数", "institutions turned away"),
    "quantity_last_24h": ("近24小时数量", "quantity, last 24 h"),
    "baseline_daily_quantity": ("此前日均数量", "baseline daily mean"),
    "surge_ratio": ("激增倍数", "surge ratio"),
    "distributor_name": ("配送企业名称", "distributor name"),
    "period": ("考核期", "period"),
    "score": ("得分", "score"),
    "verdict": ("结论", "verdict"),
    "grassroots_delivery_rate": ("基层配送率", "grassroots delivery rate"),
    "reasons_text": ("原因", "reasons"),
}

ON_TIME_LINES = (
    Threshold(0.7, "orange", "70% 整改线", "70% rectification line"),
    Threshold(0.9, "green", "90% 基层线", "90% grassroots line"),
)
# A rate against the on-time lines (red below 70 %); a small panel (the stats' row).
RATE = dict(unit="percentunit", thresholds=ON_TIME_LINES, base_color="red")
SMALL = dict(width=6, height=4)
FILL_RATE_LINE = (Threshold(0.8, "green", "80% 短缺线", "80% shortage line"),)

# Dashboard variables, as filters that vanish when "All" is chosen (the plugin's macro).
REGION = "$__conditionalAll(region_code IN (${region:singlequote}), $region)"
DISTRIBUTOR = "$__conditionalAll(distributor_id IN (${distributor:singlequote}), $distributor)"
FACTS = "supplymon.order_facts FINAL"
ALERTS = "supplymon.alerts FINAL"
NOTIFICATIONS = "supplymon.notifications FINAL"
# Each alert's latest acknowledgement (POST /alerts/{id}/ack from a notification's
# link), Nullable: joined, an alert nobody acknowledged shows them empty.
ACKS = ("(SELECT alert_id, toNullable(max(acked_at)) AS ack_time, toNullable(argMax(comment, acked_at)) AS ack_comment"
        " FROM supplymon.alert_acks GROUP BY alert_id) acks")
# The alerts about a whole subject (product+region, distributor, ...), not one order.
EARLY_WARNING = "subject_type NOT IN ('order', 'institution')"
ALERT_STATE = "if(resolved_at IS NULL, '未解除 open', '已解除 resolved') AS state"
# Open at the range's end: raised by then and not resolved by then.
OPEN_AT_END = "raised_at <= $__toTime AND (resolved_at IS NULL OR resolved_at > $__toTime)"

ON_TIME = "avg(on_time) AS on_time_rate"
GRASSROOTS_ON_TIME = "avgIf(on_time, grassroots = 1) AS grassroots_on_time_rate"
# Over the orders whose 24 h have passed by the range's end, or that were answered within them.
RESPONDED_24H = ("countIf(response_hours <= 24)"
                 " / countIf(response_hours <= 24 OR ordered_at <= $__toTime - INTERVAL 1 DAY) AS response_rate_24h")

REGION_VARIABLE = Variable("region", "地区", "region",
                           f"SELECT DISTINCT region_code FROM {FACTS} ORDER BY region_code")
# `supplymon assess` writes a period's scores and verdicts (issue-by-issue, not live):
# the panel shows the period assessed last, whatever the dashboard's time range.
ASSESSMENT = "supplymon.distributor_assessment FINAL"
LATEST_ASSESSMENT = (f"(period_from, period_to) IN (SELECT period_from, period_to FROM {ASSESSMENT}"
                     " ORDER BY assessed_at DESC LIMIT 1)")
VERDICT = "multiIf(" + ", ".join(f"verdict = '{code}', '{zh} {en}'" for code, (zh, en) in VERDICT_LABELS.items()) \
    + ", verdict) AS verdict"

DISTRIBUTOR_VARIABLE = Variable("distributor", "配送企业", "distributor",
                                f"SELECT DISTINCT distributor_id FROM {FACTS} ORDER BY distributor_id")

OVERVIEW = Dashboard(
    uid="supplymon-overview", title_zh="供应保障总览", title_en="Supply overview",
    source="clickhouse", variables=(REGION_VARIABLE,),
    panels=(
        Panel("orders", "订单数", "Orders", "stat",
              f"SELECT count() AS orders FROM {FACTS} WHERE $__timeFilter(ordered_at) AND {REGION}", **SMALL),
        Panel("on_time_rate", "按时配送率", "On-time delivery rate", "stat",
              f"SELECT {ON_TIME} FROM {FACTS} WHERE $__timeFilter(deadline_at) AND {REGION}",
              **RATE, **SMALL),
        Panel("response_rate", "24小时响应率", "Responded within 24 h", "stat",
              f"SELECT {RESPONDED_24H} FROM {FACTS} WHERE $__timeFilter(ordered_at) AND {REGION}",
              **RATE, **SMALL),
        Panel("open_alerts", "未解除预警", "Open alerts", "stat",
              f"SELECT count() AS open_alerts FROM {ALERTS} WHERE {OPEN_AT_END}",
              thresholds=(Threshold(1, "orange", "有预警", "any open"),), **SMALL),
        Panel("orders_over_time", "订单量", "Orders over time", "timeseries",
              f"SELECT $__timeInterval(ordered_at) AS time, count() AS orders, countIf(decision = 'rejected') AS rejected"
              f" FROM {FACTS} WHERE $__timeFilter(ordered_at) AND {REGION} GROUP BY time ORDER BY time"),
        Panel("daily_rates", "每日按时配送率与响应率", "Daily on-time delivery and response rates", "timeseries",
              f"SELECT toStartOfDay(ordered_at) AS time, {ON_TIME}, {RESPONDED_24H}"
              f" FROM {FACTS} WHERE $__timeFilter(ordered_at) AND {REGION} GROUP BY time ORDER BY time",
              **RATE),
        Panel("region_rates", "各地区配送与响应", "Delivery and response by region", "table",
              f"SELECT region_code, count() AS orders, {ON_TIME}, {GRASSROOTS_ON_TIME}, {RESPONDED_24H}"
              f" FROM {FACTS} WHERE $__timeFilter(ordered_at) AND {REGION}"
              " GROUP BY region_code ORDER BY on_time_rate, region_code",
              **RATE),
        Panel("open_alerts_by_kind", "未解除预警（按类型）", "Open alerts by kind", "bar",
              f"SELECT kind, count() AS open_alerts FROM {ALERTS} WHERE {OPEN_AT_END}"
              " GROUP BY kind ORDER BY open_alerts DESC, kind"),
        Panel("delayed_responses", "延迟响应清单", "Delayed-response list", "table",
              "SELECT raised_at, distributor_id, order_id, institution_id, region_code,"
              f" {ALERT_STATE}, round(dateDiff('minute', raised_at, coalesce(resolved_at, $__toTime)) / 60, 1)"
              f" AS overdue_hours, ack_time, ack_comment FROM {ALERTS} LEFT JOIN {ACKS} USING (alert_id)"
              f" WHERE kind = 'response_overdue' AND $__timeFilter(raised_at)"
              f" AND {REGION} ORDER BY resolved_at IS NOT NULL, raised_at DESC LIMIT 500",
              width=24, height=10),
        # By the alerts' event time (a replayed history's deliveries are sent today).
        Panel("notifications", "预警通知投递（按渠道）", "Alert notifications delivered, by channel", "table",
              "SELECT channel, uniqExact(recipient) AS recipients, countIf(status = 'sent') AS sent,"
              " countIf(status = 'pending') AS pending, countIf(status = 'failed') AS failed"
              f" FROM {NOTIFICATIONS} WHERE alert_id IN (SELECT alert_id FROM {ALERTS} WHERE $__timeFilter(raised_at))"
              " GROUP BY channel ORDER BY failed DESC, channel",
              thresholds=(Threshold(1, "red", "有失败", "any failed"),), width=24, height=6),
        Panel("worst_distributors", "配送企业排名（按时率最低）", "Weakest distributors", "table",
              f"SELECT distributor_id, count() AS orders, {ON_TIME}, {GRASSROOTS_ON_TIME}, {RESPONDED_24H},"
              " countIf(decision = 'rejected') / count() AS rejection_rate"
              f" FROM {FACTS} WHERE $__timeFilter(ordered_at) AND {REGION}"
              " GROUP BY distributor_id ORDER BY on_time_rate, distributor_id LIMIT 10",
              **RATE, width=24),
    ),
)

DISTRIBUTOR_CARD = Dashboard(
    uid="supplymon-distributor", title_zh="配送企业", title_en="Distributor scorecard",
    source="clickhouse", variables=(DISTRIBUTOR_VARIABLE,),
    panels=(
        Panel("distributor_orders", "订单数", "Orders", "stat",
              f"SELECT count() AS orders FROM {FACTS} WHERE $__timeFilter(ordered_at) AND {DISTRIBUTOR}",
              **SMALL),
        Panel("distributor_on_time", "按时配送率", "On-time delivery rate", "stat",
              f"SELECT {ON_TIME} FROM {FACTS} WHERE $__timeFilter(deadline_at) AND {DISTRIBUTOR}",
              **RATE, **SMALL),
        Panel("distributor_grassroots", "基层按时配送率", "Grassroots on-time rate", "stat",
              f"SELECT {GRASSROOTS_ON_TIME} FROM {FACTS} WHERE $__timeFilter(deadline_at) AND {DISTRIBUTOR}",
              **RATE, **SMALL),
        Panel("distributor_response_p50", "响应时长中位数", "Median response time", "stat",
              f"SELECT quantileExact(0.5)(response_hours) AS response_p50_hours FROM {FACTS}"
              f" WHERE $__timeFilter(ordered_at) AND {DISTRIBUTOR}",
              unit="h", thresholds=(Threshold(24, "orange", "24小时", "24 h"), Threshold(48, "red", "48小时", "48 h")),
              **SMALL),
        Panel("distributor_daily_rates", "每日按时配送率", "Daily delivery and response rates", "timeseries",
              f"SELECT toStartOfDay(ordered_at) AS time, {ON_TIME}, {GRASSROOTS_ON_TIME}, {RESPONDED_24H}"
              f" FROM {FACTS} WHERE $__timeFilter(ordered_at) AND {DISTRIBUTOR} GROUP BY time ORDER BY time",
              **RATE),
        Panel("distributor_response_hours", "响应时长 P50/P90", "Response time p50/p90", "timeseries",
              "SELECT toStartOfDay(ordered_at) AS time, quantileExact(0.5)(response_hours) AS response_p50_hours,"
              " quantileExact(0.9)(response_hours) AS response_p90_hours"
              f" FROM {FACTS} WHERE $__timeFilter(ordered_at) AND {DISTRIBUTOR} GROUP BY time ORDER BY time",
              unit="h", thresholds=(Threshold(24, "orange", "24小时", "24 h"), Threshold(48, "red", "48小时", "48 h"))),
        Panel("distributor_assessment", "考核结果（最近一期）", "Assessment, latest period assessed", "table",
              "SELECT concat(toString(period_from), ' ~ ', toString(period_to)) AS period, region_code,"
              f" distributor_id, distributor_name, score, {VERDICT}, grassroots_delivery_rate, on_time_rate,"
              f" fill_rate, reasons_text FROM {ASSESSMENT} WHERE {LATEST_ASSESSMENT} AND {DISTRIBUTOR}"
              " ORDER BY score, distributor_id",
              **RATE, width=24, height=10),
        Panel("distributor_alerts", "预警", "Alerts", "table",
              f"SELECT raised_at, kind, severity, {ALERT_STATE}, message FROM {ALERTS}"
              f" WHERE $__timeFilter(raised_at) AND {DISTRIBUTOR} ORDER BY raised_at DESC LIMIT 200",
              width=24, height=10),
    ),
)

SHORTAGE = Dashboard(
    uid="supplymon-shortage", title_zh="短缺与激增", title_en="Shortages and surges",
    source="clickhouse", variables=(REGION_VARIABLE,),
    panels=(
        Panel("fill_rate", "产品×地区 数量满足率（最低）", "Fill rate by product and region (lowest)", "table",
              "SELECT product_id, region_code, count() AS orders, sum(quantity) AS ordered_units,"
              " sum(confirmed_quantity) AS confirmed_units, confirmed_units / ordered_units AS fill_rate"
              f" FROM {FACTS} WHERE $__timeFilter(ordered_at) AND decision IS NOT NULL AND {REGION}"
              " GROUP BY product_id, region_code ORDER BY fill_rate, orders DESC LIMIT 50",
              unit="percentunit", thresholds=FILL_RATE_LINE, base_color="red"),
        Panel("out_of_stock", "缺货被拒机构", "Institutions turned away for out of stock", "bar",
              "SELECT concat(product_id, ' / ', region_code) AS subject,"
              " uniqExact(institution_id) AS institutions_out_of_stock"
              f" FROM {FACTS} WHERE $__timeFilter(ordered_at) AND reject_reason = 'out_of_stock' AND {REGION}"
              " GROUP BY subject ORDER BY institutions_out_of_stock DESC, subject LIMIT 20",
              thresholds=(Threshold(3, "red", "3家 短缺线", "3 institutions: shortage"),), base_color="orange"),
        Panel("surge_vs_baseline", "订购量与基线", "Ordered quantity against its baseline", "table",
              "SELECT product_id, region_code,"
              " sumIf(quantity, ordered_at > $__toTime - INTERVAL 1 DAY) AS quantity_last_24h,"
              # the days before the last 24 h, from the pair's first order in the range
              " round(sumIf(quantity, ordered_at <= $__toTime - INTERVAL 1 DAY)"
              " / greatest(1, dateDiff('hour', min(ordered_at), $__toTime - INTERVAL 1 DAY) / 24), 1)"
              " AS baseline_daily_quantity,"
              " round(quantity_last_24h / greatest(1, baseline_daily_quantity), 2) AS surge_ratio"
              f" FROM {FACTS} WHERE $__timeFilter(ordered_at) AND {REGION}"
              " GROUP BY product_id, region_code ORDER BY surge_ratio DESC, quantity_last_24h DESC LIMIT 20",
              unit="short", thresholds=(Threshold(3, "red", "3倍 激增线", "3x surge line"),)),
        Panel("early_warnings", "预警（短缺、激增、配送）", "Early warnings", "table",
              f"SELECT raised_at, kind, severity, product_id, region_code, distributor_id, {ALERT_STATE}, message"
              f" FROM {ALERTS} WHERE {EARLY_WARNING} AND (resolved_at IS NULL OR $__timeFilter(raised_at))"
              " AND raised_at <= $__toTime ORDER BY resolved_at IS NOT NULL, raised_at DESC LIMIT 200",
              width=24, height=10),
    ),
)

# Prometheus: the worker's own metrics (supplymon/metrics.py), and the recording rules
# of infra/prometheus/rules.yml (supplymon:*).
PIPELINE = Dashboard(
    uid="supplymon-pipeline", title_zh="数据管道健康", title_en="Pipeline health", source="prometheus",
    panels=(
        Panel("events_in", "事件流入（每秒）", "Events in per second", "timeseries",
              "sum by (kind) (rate(supplymon_events_in_total[$__rate_interval]))", legend=("{{kind}}",)),
        Panel("dead_letters", "死信（按原因，每秒）", "Dead letters by reason per second", "timeseries",
              "sum by (reason) (rate(supplymon_dead_letters_total[$__rate_interval]))", legend=("{{reason}}",)),
        Panel("stream_time_lag", "流时间滞后", "Stream time lag", "timeseries",
              "max by (instance) (supplymon_stream_time_lag_seconds)\n"
              "max by (instance) (supplymon_warning_stream_time_lag_seconds)",
              unit="s", legend=("{{instance}} 订单 orders", "{{instance}} 预警 early warnings"),
              thresholds=(Threshold(600, "red", "10分钟", "10 min"),)),
        Panel("consumer_lag", "消费滞后（消息数）", "Consumer lag (messages)", "timeseries",
              "sum by (topic) (supplymon_consumer_lag_messages)", legend=("{{topic}}",)),
        Panel("sink_retries", "ClickHouse 写入重试（每秒）", "Sink retries per second", "timeseries",
              "sum by (table) (rate(supplymon_sink_retries_total[$__rate_interval]))", legend=("{{table}}",),
              thresholds=(Threshold(0.01, "red", "重试", "retrying"),)),
        Panel("sink_write_p90", "写入耗时 P90", "Sink write time p90", "timeseries",
              "histogram_quantile(0.9, sum by (le) (rate(supplymon_sink_write_seconds_bucket[$__rate_interval])))",
              unit="s", legend=("p90",)),
        Panel("open_orders", "在途订单", "Open orders held", "timeseries",
              "sum by (instance) (supplymon_open_orders)", legend=("{{instance}}",)),
        Panel("alerts_rate", "预警产生（每秒）", "Alerts per second", "timeseries",
              "sum by (kind) (rate(supplymon_alerts_total[$__rate_interval]))", legend=("{{kind}}",)),
    ),
)

DASHBOARDS: tuple[Dashboard, ...] = (OVERVIEW, DISTRIBUTOR_CARD, SHORTAGE, PIPELINE)


def clickhouse_panels() -> dict[str, tuple[Dashboard, Panel]]:
    """The panels the page can ask for, by name."""
    return {p.name: (d, p) for d in DASHBOARDS if d.source == "clickhouse" for p in d.panels}


def _check_unique() -> None:
    names = [p.name for d in DASHBOARDS for p in d.panels]
    duplicated = {n for n in names if names.count(n) > 1}
    if duplicated:
        raise ValueError(f"panel names must be unique: {sorted(duplicated)}")


_check_unique()
