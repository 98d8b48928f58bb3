"""Reports a supervisor can forward: one self-contained HTML page (inline CSS and
SVG charts drawn here, no script, no external asset) and an Excel workbook with the
same tables. Chinese labels first, English second."""
from __future__ import annotations

from datetime import datetime
from html import escape
from pathlib import Path
from typing import Iterable, Sequence

from jinja2 import Environment, select_autoescape
from markupsafe import Markup

from supplymon.settings import SHANGHAI

VERDICT_LABELS = {"revoke": ("取消配送资格", "Revoke delivery rights"),
                  "rectify": ("限期整改", "Rectify within a deadline"),
                  "pass": ("合格", "Pass")}
COMPONENT_LABELS = {"on_time": "按时配送率 on-time delivery", "response_24h": "24小时响应率 answered within 24 h",
                    "fill": "足额供货率 fill rate", "grassroots": "基层配送率 grassroots delivery",
                    "alerts": "预警扣分 alerts per 100 orders"}
# Column -> (中文, English, kind); kind: pct (a fraction shown as %), num, text.
COLUMNS = {
    "distributor_id": ("配送企业编码", "Distributor", "text"),
    "distributor_name": ("企业名称", "Name", "text"),
    "verdict": ("考核结论", "Verdict", "verdict"),
    "score": ("综合得分", "Score", "num"),
    "grassroots_delivery_rate": ("基层配送率", "Grassroots delivery", "pct"),
    "on_time_rate": ("按时配送率", "On-time delivery", "pct"),
    "response_24h_rate": ("24小时响应率", "Answered ≤ 24 h", "pct"),
    "fill_rate": ("足额供货率", "Fill rate", "pct"),
    "alerts_per_100_orders": ("每百单预警", "Alerts / 100 orders", "num"),
    "orders": ("订单数", "Orders", "num"),
    "grassroots_orders": ("基层订单", "Grassroots orders", "num"),
    "open_orders": ("未结订单", "Open orders", "num"),
    "reasons_text": ("原因", "Reasons", "text"),
    "month": ("月份", "Month", "text"),
    "trend_on_time_rate": ("按时配送率", "On-time delivery", "pct"),
    "trend_grassroots_rate": ("基层配送率", "Grassroots delivery", "pct"),
    "institution_id": ("医疗机构", "Institution", "text"),
    "product_id": ("产品", "Product", "text"),
    "vbp_quantity_share": ("中选产品数量占比", "VBP quantity share", "pct"),
    "vbp_amount_share": ("中选产品金额占比", "VBP amount share", "pct"),
    "quantity": ("采购数量", "Quantity", "num"),
    "vbp_quantity": ("中选产品数量", "VBP quantity", "num"),
    "amount": ("采购金额(元)", "Amount (CNY)", "num"),
    "vbp_amount": ("中选产品金额(元)", "VBP amount (CNY)", "num"),
    "agreements": ("约定品种数", "Agreements", "num"),
    "agreements_behind": ("滞后品种数", "Behind schedule", "num"),
    "agreements_not_started": ("未采购品种数", "Not started", "num"),
    "behind_schedule": ("进度滞后", "Behind schedule", "flag"),
    "period_from": ("协议开始", "Agreement from", "text"),
    "period_to": ("协议结束", "Agreement to", "text"),
    "agreed_quantity": ("约定采购量", "Agreed quantity", "num"),
    "purchased_quantity": ("已采购量", "Purchased", "num"),
    "progress": ("完成进度", "Progress", "pct"),
    "expected_progress": ("序时进度", "Time-proportional target", "pct"),
    "not_started": ("尚未采购", "Not started", "flag"),
}
VERDICT_COLUMNS = ("distributor_id", "distributor_name", "score", "grassroots_delivery_rate", "orders", "reasons_text")
DETAIL_COLUMNS = ("distributor_id", "distributor_name", "verdict", "score", "on_time_rate", "response_24h_rate",
                  "fill_rate", "grassroots_delivery_rate", "alerts_per_100_orders", "orders", "grassroots_orders",
                  "open_orders", "reasons_text")
TREND_COLUMNS = ("distributor_id", "month", "orders", "trend_on_time_rate", "trend_grassroots_rate")
INSTITUTION_COLUMNS = ("institution_id", "vbp_quantity_share", "vbp_amount_share", "quantity", "vbp_quantity",
                       "amount", "vbp_amount", "agreements", "agreements_behind", "agreements_not_started",
                       "behind_schedule")
PROGRESS_COLUMNS = ("institution_id", "product_id", "period_from", "period_to", "agreed_quantity",
                    "purchased_quantity", "progress", "expected_progress", "behind_schedule", "not_started")


def cell(value, kind: str) -> str:
    if value is None or value == "":
        return "—"
    if kind == "pct":
        return f"{100 * float(value):.1f}%"
    if kind == "verdict":
        zh, en = VERDICT_LABELS[value]
        return f"{zh} {en}"
    if kind == "flag":
        return "是 yes" if value else "否 no"
    if kind == "num" and isinstance(value, float):
        return f"{value:,.2f}".rstrip("0").rstrip(".")
    return f"{value:,}" if isinstance(value, int) else str(value)


# --- SVG charts (inline; text escaped) ---------------------------------------------

def _svg(width: int, height: int, body: Iterable[str], label: str) -> Markup:
    return Markup(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
                  f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}">'
                  + "".join(body) + "</svg>")


def bar_chart(items: Sequence[tuple[str, float | None]], lines: Sequence[float], label: str,
              targets: Sequence[tuple[float, bool]] | None = None) -> Markup:
    """Horizontal bars of rates (0-1), one per item, with vertical reference lines; with
    `targets` ((target, short of it) per item), each bar's own target is ticked and a
    bar short of it drawn red."""
    left, width, row = 190, 420, 20
    top = 22
    height = top + row * max(1, len(items)) + 8
    body = []
    for line in lines:
        x = left + width * line
        body.append(f'<line x1="{x:.1f}" y1="14" x2="{x:.1f}" y2="{height - 4}" class="ref"/>'
                    f'<text x="{x:.1f}" y="11" class="axis" text-anchor="middle">{line:.0%}</text>')
    for n, (name, value) in enumerate(items):
        y = top + n * row
        body.append(f'<text x="{left - 6}" y="{y + 13}" class="label" text-anchor="end">{escape(name[:28])}</text>')
        if value is None:
            body.append(f'<text x="{left + 4}" y="{y + 13}" class="axis">— 无订单 no orders</text>')
            continue
        low = min((line for line in lines if value < line), default=None)
        css = "bar" if low is None else ("bar warn" if low == max(lines) else "bar bad")
        if targets is not None:
            target, short = targets[n]
            x = left + width * min(1.0, target)
            body.append(f'<line x1="{x:.1f}" y1="{y + 1}" x2="{x:.1f}" y2="{y + row - 1}" class="target"/>')
            css = "bar bad" if short else "bar"
        body.append(f'<rect x="{left}" y="{y + 3}" width="{width * float(value):.1f}" height="{row - 6}" class="{css}"/>'
                    f'<text x="{left + width * float(value) + 4:.1f}" y="{y + 13}" class="value">{value:.1%}</text>')
    return _svg(left + width + 60, height, body, label)


def histogram(scores: Sequence[float | None], line: float, label: str) -> Markup:
    """Score distribution in bins of 10 points, the verdict line marked."""
    counts = [0] * 10
    missing = 0
    for s in scores:
        if s is None:
            missing += 1
        else:
            counts[min(9, int(s // 10))] += 1
    left, bottom, bin_width, plot = 40, 170, 46, 140
    peak = max(counts + [1])
    body = [f'<line x1="{left}" y1="{bottom}" x2="{left + 10 * bin_width}" y2="{bottom}" class="axisline"/>']
    for n, count in enumerate(counts):
        h = plot * count / peak
        x = left + n * bin_width
        css = "bar" if (n + 1) * 10 > line else "bar bad"
        body.append(f'<rect x="{x + 3}" y="{bottom - h:.1f}" width="{bin_width - 6}" height="{h:.1f}" class="{css}"/>'
                    f'<text x="{x + bin_width / 2}" y="{bottom + 14}" class="axis" text-anchor="middle">{n * 10}</text>')
        if count:
            body.append(f'<text x="{x + bin_width / 2}" y="{bottom - h - 3:.1f}" class="value" '
                        f'text-anchor="middle">{count}</text>')
    x = left + line / 10 * bin_width
    body.append(f'<line x1="{x}" y1="12" x2="{x}" y2="{bottom}" class="ref"/>'
                f'<text x="{x + 3}" y="12" class="axis">{line:g} 分 points</text>')
    if missing:
        body.append(f'<text x="{left + 10 * bin_width + 8}" y="{bottom}" class="axis">无订单 no orders: {missing}</text>')
    return _svg(left + 10 * bin_width + 150, bottom + 22, body, label)


def sparkline(points: Sequence[tuple[str, float | None, float | None]], lines: Sequence[float], label: str) -> Markup:
    """A distributor's monthly on-time (solid) and grassroots (dashed) delivery rates."""
    width, height, pad = 240, 70, 6
    n = max(1, len(points) - 1)

    def xy(i: int, v: float) -> str:
        return f"{pad + (width - 2 * pad) * i / n:.1f},{height - pad - (height - 2 * pad) * v:.1f}"

    body = [f'<line x1="{pad}" y1="{height - pad - (height - 2 * pad) * line:.1f}" x2="{width - pad}" '
            f'y2="{height - pad - (height - 2 * pad) * line:.1f}" class="ref"/>' for line in lines]
    for index, css in ((1, "trend"), (2, "trend grassroots")):
        coords = [xy(i, p[index]) for i, p in enumerate(points) if p[index] is not None]
        if len(coords) == 1:
            x, y = coords[0].split(",")
            body.append(f'<circle cx="{x}" cy="{y}" r="2.5" class="{css}"/>')
        elif coords:
            body.append(f'<polyline points="{" ".join(coords)}" class="{css}"/>')
    return _svg(width, height, body, label)


# --- pages -----------------------------------------------------------------------

PAGE = """<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }} / {{ subtitle }}</title>
<style>
body { font-family: "Noto Sans CJK SC", "Microsoft YaHei", "PingFang SC", sans-serif; margin: 24px auto;
       max-width: 1100px; color: #222; }
h1 { font-size: 24px; margin-bottom: 0; } h2 { font-size: 19px; margin: 28px 0 2px; border-bottom: 2px solid #2a5d9f; }
.en { color: #666; font-size: 0.8em; font-weight: normal; display: block; }
.meta { color: #555; font-size: 13px; }
table { border-collapse: collapse; margin: 8px 0 14px; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #eef3fa; } td.num { text-align: right; }
h3 { font-size: 16px; margin: 16px 0 2px; } h3.revoke { color: #b3261e; } h3.rectify { color: #a15c00; }
h3.pass { color: #1e6b33; }
.empty { color: #777; font-style: italic; }
.bar { fill: #2a7fbf; } .bar.warn { fill: #e0a21b; } .bar.bad { fill: #c8412f; }
.ref { stroke: #b3261e; stroke-dasharray: 4 3; stroke-width: 1; }
.axis { font-size: 11px; fill: #555; } .label { font-size: 12px; fill: #222; } .value { font-size: 11px; fill: #222; }
.axisline { stroke: #888; } .target { stroke: #222; stroke-width: 2; }
.trend { fill: none; stroke: #2a7fbf; stroke-width: 2; } circle.trend { fill: #2a7fbf; }
.trend.grassroots { stroke: #1e6b33; stroke-dasharray: 5 2; } circle.trend.grassroots { fill: #1e6b33; }
.grid { display: flex; flex-wrap: wrap; gap: 10px; } .card { border: 1px solid #ddd; padding: 6px; width: 248px; }
.card b { font-size: 13px; } .note { font-size: 12px; color: #555; }
</style></head><body>
<h1>{{ title }}<span class="en">{{ subtitle }}</span></h1>
<p class="meta">{{ meta }}</p>
{% for section in sections %}
<h2>{{ section.zh }}<span class="en">{{ section.en }}</span></h2>
{% for block in section.blocks %}{{ block }}{% endfor %}
{% endfor %}
<p class="note">{{ note }}</p>
</body></html>
"""


def table(rows: Sequence[dict], columns: Sequence[str]) -> Markup:
    if not rows:
        return Markup('<p class="empty">无 none</p>')
    head = "".join(f"<th>{escape(COLUMNS[c][0])}<span class=\"en\">{escape(COLUMNS[c][1])}</span></th>" for c in columns)
    body = []
    for row in rows:
        tds = []
        for c in columns:
            kind = COLUMNS[c][2]
            css = ' class="num"' if kind in ("num", "pct") else ""
            tds.append(f"<td{css}>{escape(cell(row.get(c), kind))}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    return Markup(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


def _section(zh: str, en: str, *blocks) -> dict:
    return {"zh": zh, "en": en, "blocks": blocks}


def _heading(level: str, zh: str, en: str, css: str = "") -> Markup:
    return Markup(f'<{level} class="{css}">{escape(zh)}<span class="en">{escape(en)}</span></{level}>')


def _label(row: dict) -> str:
    name = row.get("distributor_name")
    return f"{row['distributor_id']} {name}" if name else row["distributor_id"]


def _trend_rows(run) -> list[dict]:
    def rate(part, whole):
        return int(part) / int(whole) if int(whole) else None

    return [{**t, "trend_on_time_rate": rate(t["on_time_orders"], t["settled"]),
             "trend_grassroots_rate": rate(t["grassroots_on_time_orders"], t["grassroots_settled"])} for t in run.trend]


def _render(title: str, subtitle: str, meta: str, sections: list[dict], note: str) -> str:
    env = Environment(autoescape=select_autoescape(default_for_string=True))
    return env.from_string(PAGE).render(title=title, subtitle=subtitle, meta=meta, sections=sections, note=note)


def _generated() -> str:
    return datetime.now(SHANGHAI).strftime("%Y-%m-%d %H:%M")


def assessment_html(run) -> str:
    rules = run.rules
    lines = (rules.rectify_grassroots_below, rules.revoke_grassroots_below)
    verdict_blocks = []
    for verdict, (zh, en) in VERDICT_LABELS.items():
        rows = [r for r in run.rows if r["verdict"] == verdict]
        verdict_blocks += [_heading("h3", f"{zh}（{len(rows)} 家）", f"{en} ({len(rows)})", verdict),
                           table(rows, VERDICT_COLUMNS)]
    by_rate = sorted(run.rows, key=lambda r: (r["on_time_rate"] is None, r["on_time_rate"] or 0))
    by_grassroots = sorted((r for r in run.rows if r["orders"]),
                           key=lambda r: (r["grassroots_delivery_rate"] is None, r["grassroots_delivery_rate"] or 0))
    trend = _trend_rows(run)
    cards = []
    for row in run.rows:
        points = [(t["month"], t["trend_on_time_rate"], t["trend_grassroots_rate"])
                  for t in trend if t["distributor_id"] == row["distributor_id"]]
        chart = sparkline(points, lines, f"{row['distributor_id']} monthly trend") if points else \
            Markup('<p class="empty">无订单 no orders</p>')
        span = (f"{points[0][0][:7]} – {points[-1][0][:7]}：按时 on-time {cell(row['on_time_rate'], 'pct')}，"
                f"基层 grassroots {cell(row['grassroots_delivery_rate'], 'pct')}") if points else ""
        cards.append(Markup('<div class="card"><b>') + _label(row) + Markup("</b><br>") + chart
                     + Markup('<br><span class="axis">') + span + Markup("</span></div>"))
    weights = "，".join(f"{COMPONENT_LABELS[k]} {w:g}" for k, w in rules.weights.items())
    region = f"，区划 region {run.region}" if run.region else ""
    meta = (f"考核期 Period {run.period_from} – {run.period_to}{region}；配送企业 {len(run.rows)} 家 distributors；"
            f"生成于 generated {_generated()} (Asia/Shanghai)")
    note = (f"综合得分权重 Score weights: {weights}（无可计量的分项权重分给其他分项 a component with nothing to "
            f"measure passes its weight on）。结论规则 Verdicts (赤峰 chifeng-2025 §四): 得分低于 "
            f"{rules.revoke_score_below:g} 且基层配送率未达 {rules.revoke_grassroots_below:.0%}（含未参与基层配送）或考核期内"
            f"无订单 → 取消配送资格; 得分 {rules.revoke_score_below:g} 以上但基层配送率低于 "
            f"{rules.rectify_grassroots_below:.0%} → 限期整改; 得分低于 {rules.revoke_score_below:g} 而基层配送率达到 "
            f"{rules.revoke_grassroots_below:.0%} → {VERDICT_LABELS[rules.low_score_good_grassroots][0]} "
            f"({rules.low_score_good_grassroots}, a rule setting)。图中实线 solid: 按时配送率 on-time; "
            f"虚线 dashed: 基层配送率 grassroots; 红色虚线 red dashed: {lines[0]:.0%} / {lines[1]:.0%}。")
    sections = [
        _section("考核结论", "Verdicts", *verdict_blocks),
        _section("综合得分分布", "Score distribution",
                 histogram([r["score"] for r in run.rows], rules.revoke_score_below, "score distribution")),
        _section("各配送企业按时配送率", "On-time delivery rate by distributor",
                 bar_chart([(_label(r), r["on_time_rate"]) for r in by_rate], lines, "on-time delivery rate")),
        _section("基层医疗机构订单配送率", "Grassroots delivery rate by distributor",
                 bar_chart([(_label(r), r["grassroots_delivery_rate"]) for r in by_grassroots], lines,
                           "grassroots delivery rate")),
        _section("各配送企业月度趋势", "Each distributor's monthly trend", Markup('<div class="grid">')
                 + Markup("").join(cards) + Markup("</div>")),
        _section("考核明细", "Details", table(run.rows, DETAIL_COLUMNS)),
    ]
    return _render("配送企业年度考核报告", "Distributor assessment report", meta, sections, note)


def vbp_html(run) -> str:
    behind = [r for r in run.institutions if r["behind_schedule"]]
    late = [r for r in run.progress if r["behind_schedule"] or r["not_started"]]
    shares = sorted(run.institutions, key=lambda r: (r["vbp_amount_share"] is None, r["vbp_amount_share"] or 0))
    region = f"，区划 region {run.region}" if run.region else ""
    meta = f"监测月份 Month {run.month:%Y-%m}{region}；医疗机构 {len(run.institutions)} 家 institutions；生成于 generated {_generated()}"
    note = (f"约定采购量完成进度 = 协议期初至本月末采购量（未被拒绝的订单）/ 约定采购量; 序时进度 = 协议期已过天数 / 协议总天数; "
            f"完成进度低于序时进度 × {run.rules.vbp_schedule_ratio:g} 为进度滞后; 协议第 "
            f"{run.rules.vbp_entry_check_month} 个月起仍未采购为尚未采购 (赣州 ganzhou-2023 §二(二),(三))。"
            "Progress = quantity ordered (not rejected) since the agreement began / agreed quantity; behind schedule "
            "when below the elapsed share of the agreement period.")
    sections = [
        _section("进度滞后的医疗机构", "Institutions behind schedule", table(behind, INSTITUTION_COLUMNS),
                 _heading("h3", "滞后或尚未采购的约定品种", "Agreements behind schedule or not started"),
                 table(late, PROGRESS_COLUMNS)),
        _section("中选产品采购金额占比", "VBP products' share of the amount",
                 bar_chart([(r["institution_id"], r["vbp_amount_share"]) for r in shares], (), "VBP amount share")),
        _section("中选产品采购数量占比", "VBP products' share of the quantity",
                 bar_chart([(r["institution_id"], r["vbp_quantity_share"]) for r in shares], (), "VBP quantity share")),
        _section("约定采购量完成进度", "Purchase progress against agreed volumes",
                 bar_chart([(f"{p['institution_id']} {p['product_id']}", min(1.0, p["progress"]))
                            for p in run.progress], (), "purchase progress",
                           targets=[(p["expected_progress"] * run.rules.vbp_schedule_ratio, p["behind_schedule"])
                                    for p in run.progress]),
                 Markup('<p class="note">黑色竖线: 序时进度 (black tick: the time-proportional target)</p>'),
                 table(run.progress, PROGRESS_COLUMNS)),
        _section("各医疗机构明细", "All institutions", table(run.institutions, INSTITUTION_COLUMNS)),
    ]
    return _render("集采中选产品月度监测", "Monthly VBP procurement monitoring", meta, sections, note)


def write_html(run, path: Path) -> None:
    html = vbp_html(run) if hasattr(run, "institutions") else assessment_html(run)
    Path(path).write_text(html, encoding="utf-8")


# --- workbook ----------------------------------------------------------------------

def _sheet(workbook, title: str, rows: Sequence[dict], columns: Sequence[str]) -> None:
    from openpyxl.styles import Font, PatternFill

    sheet = workbook.create_sheet(title)
    sheet.append([f"{COLUMNS[c][0]} {COLUMNS[c][1]}" for c in columns])
    for c in sheet[1]:
        c.font = Font(bold=True)
        c.fill = PatternFill("solid", fgColor="EEF3FA")
    for row in rows:
        values = []
        for c in columns:
            value, kind = row.get(c), COLUMNS[c][2]
            values.append(cell(value, kind) if kind in ("verdict", "flag") else value)
        sheet.append(values)
    for n, c in enumerate(columns, start=1):
        if COLUMNS[c][2] == "pct":
            for (cell_,) in sheet.iter_rows(min_row=2, min_col=n, max_col=n):
                cell_.number_format = "0.0%"
        sheet.column_dimensions[sheet.cell(1, n).column_letter].width = max(12, len(COLUMNS[c][1]) + 4)
    sheet.freeze_panes = "A2"


def write_xlsx(run, path: Path) -> None:
    from openpyxl import Workbook

    workbook = Workbook()
    workbook.remove(workbook.active)
    if hasattr(run, "institutions"):
        _sheet(workbook, "中选产品占比 VBP share", run.institutions, INSTITUTION_COLUMNS)
        _sheet(workbook, "约定量进度 Progress", run.progress, PROGRESS_COLUMNS)
    else:
        for verdict, (zh, en) in VERDICT_LABELS.items():
            _sheet(workbook, f"{zh} {en}"[:31], [r for r in run.rows if r["verdict"] == verdict], VERDICT_COLUMNS)
        _sheet(workbook, "考核明细 Details", run.rows, DETAIL_COLUMNS)
        _sheet(workbook, "月度趋势 Monthly trend", _trend_rows(run), TREND_COLUMNS)
    workbook.save(path)
