"""`supplymon assess`: the periodic distributor assessment and the monthly VBP
monitoring, on the stored facts.

The shell around supplymon.core.assessment: aggregates `order_facts FINAL` and
`alerts FINAL` in SQL, lets the core score and judge, stores the rows
(`distributor_assessment`, `vbp_monthly`, `vbp_progress`) and prints them back in a
ClickHouse format. The store is used directly (embedded chdb under the data dir, or
the ClickHouse server) or, while a worker holds the embedded store, through the
worker: reads by its /sql, like `supplymon sql`, rows by its /assessment/rows.
"""
from __future__ import annotations

import csv
import re
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Callable, Iterable, Sequence

import orjson

from supplymon.core.assessment import (
    Agreement, AssessmentRules, DistributorCounts, Progress, assess_all, month_bounds, progress,
)
from supplymon.settings import SHANGHAI, ConfigError, Settings
from supplymon.store import DATABASE, StoreError

FORMATS = ("PrettyCompact", "JSONEachRow", "CSVWithNames", "TSVWithNames", "Pretty", "Markdown", "JSON")
VERDICT_ORDER = "indexOf(['revoke', 'rectify', 'pass'], verdict)"


class AssessError(ConfigError):
    """Bad input to an assessment (dates, registry or agreed-volume file)."""


# --- store access: directly, or through a running worker --------------------------

# The tables `assess` writes (a worker that holds the store accepts rows for these only).
STORED_TABLES = ("distributor_assessment", "vbp_monthly", "vbp_progress")


class StoreAccess:
    """The store as `assess` uses it: `raw(sql, fmt)` returns ClickHouse-formatted
    bytes; `insert_json(table, data)` stores JSONEachRow rows."""

    def __init__(self, raw: Callable[[str, str], bytes], insert_json: Callable[[str, bytes], None],
                 close: Callable[[], None] = lambda: None):
        self.raw, self.insert_json, self.close = raw, insert_json, close

    def rows(self, sql: str) -> list[dict]:
        return [orjson.loads(line) for line in self.raw(sql, "JSONEachRow").splitlines() if line]

    def insert(self, table: str, rows: Sequence[dict]) -> None:
        if rows:
            self.insert_json(table, b"\n".join(map(orjson.dumps, rows)) + b"\n")


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _post_rows(web: str, token: str | None, table: str, data: bytes, timeout: float = 60.0) -> None:
    from supplymon.runner import RunError
    from supplymon.web_access import TOKEN_HEADER

    headers = {"Content-Type": "application/x-ndjson", **({TOKEN_HEADER: token} if token else {})}
    request = urllib.request.Request(f"{web}/assessment/rows?table={table}", data=data, method="POST",
                                     headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        raise RunError(f"工作进程未能保存考核结果 / the worker did not store the {table} rows: "
                       f"{exc.read().decode(errors='replace').strip()}") from None


def open_store(settings: Settings) -> StoreAccess:
    from supplymon.runner import http_query, running_worker
    from supplymon.store import Store
    from supplymon.web_access import client_token

    worker = running_worker(settings)
    if worker:
        web, token = worker["web"], client_token(settings)
        return StoreAccess(lambda sql, fmt: http_query(web, sql, fmt, token=token),
                           lambda table, data: _post_rows(web, token, table, data))
    if settings.clickhouse_url is None and not settings.chdb_path.exists():
        raise AssessError(f"{settings.data_dir} 中没有数据 / no data in {settings.data_dir} (run a replay or the demo first)")
    store = Store(settings)
    store.migrate()
    return StoreAccess(store.query, store.insert_json, store.close)


# --- inputs ------------------------------------------------------------------------

def parse_day(text: str, what: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise AssessError(f"日期格式错误 / {what} must be a date like 2025-07-01, got {text!r}") from None


def region_prefix(code: str | None) -> str:
    """A division code's significant digits: 150400 (a city) -> 1504, 150000 -> 15."""
    if not code:
        return ""
    if not re.fullmatch(r"\d{6}", code):
        raise AssessError(f"区划代码应为 6 位数字 / --region must be a 6-digit division code like 150400, got {code!r}")
    prefix = code
    while prefix.endswith("00") and len(prefix) > 2:
        prefix = prefix[:-2]
    return prefix


def _read_csv(path: Path, what: str, aliases: dict[str, tuple[str, ...]], required: Iterable[str]) -> list[dict]:
    """A CSV (UTF-8, an Excel BOM welcome) with English or Chinese headers, as dicts by
    the English names."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = {name.strip(): name for name in reader.fieldnames or []}
            mapping = {}
            for name, names in aliases.items():
                found = next((header[n] for n in (name, *names) if n in header), None)
                if found:
                    mapping[name] = found
            missing = [n for n in required if n not in mapping]
            if missing:
                raise AssessError(
                    f"文件缺少列 / {what} {path}: missing column(s) {', '.join(missing)} "
                    f"(found: {', '.join(header) or 'none'}; see README)")
            return [{name: (row.get(col) or "").strip() for name, col in mapping.items()} for row in reader]
    except FileNotFoundError:
        raise AssessError(f"文件不存在 / {what} {path} does not exist") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise AssessError(f"文件不是 UTF-8 CSV / {what} {path} is not a UTF-8 CSV file: {exc}") from None


REGISTRY_COLUMNS = {"distributor_id": ("配送企业编码", "企业编码"), "distributor_name": ("配送企业名称", "企业名称"),
                    "region_code": ("区划代码", "地区编码")}


def _registry(rows: Iterable[dict], prefix: str, source: str) -> dict[str, str]:
    """Distributors with delivery rights: id -> name (those of other regions left out
    when the registry has a region column and --region is given)."""
    out: dict[str, str] = {}
    for n, row in enumerate(rows, start=1):
        if not row["distributor_id"]:
            raise AssessError(f"配送企业编码为空 / registry {source} row {n}: empty distributor_id")
        if prefix and row.get("region_code") and not row["region_code"].startswith(prefix):
            continue
        out[row["distributor_id"]] = row.get("distributor_name") or ""
    return out


def read_registry(path: Path, prefix: str) -> dict[str, str]:
    return _registry(_read_csv(path, "registry", REGISTRY_COLUMNS, ["distributor_id"]), prefix, str(path))


def read_registry_table(store: StoreAccess, table: str, prefix: str) -> dict[str, str]:
    """The registry kept as a table of the store (`--registry table:db.name`), with the
    CSV's column names."""
    if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)?", table):
        raise AssessError(f"表名格式错误 / --registry table:NAME wants a table name like supplymon.registry, got {table!r}")
    database, _, name = table.rpartition(".")
    database = database or DATABASE
    columns = {r["name"] for r in store.rows(
        f"SELECT name FROM system.columns WHERE database = {_literal(database)} AND table = {_literal(name)}")}
    if "distributor_id" not in columns:
        raise AssessError(f"登记表不存在或缺少 distributor_id 列 / registry table {database}.{name} does not exist "
                          f"or has no distributor_id column")
    wanted = [c for c in REGISTRY_COLUMNS if c in columns]
    rows = store.rows(f"SELECT {', '.join(f'toString({c}) AS {c}' for c in wanted)} FROM {database}.{name}")
    return _registry(rows, prefix, f"{database}.{name}")


AGREED_COLUMNS = {"institution_id": ("医疗机构编码", "机构编码"), "product_id": ("产品编码", "药品编码"),
                  "agreed_quantity": ("约定采购量",), "period_from": ("开始日期", "执行开始"),
                  "period_to": ("结束日期", "执行结束"), "region_code": ("区划代码", "地区编码")}
AGREED_REQUIRED = ("institution_id", "product_id", "agreed_quantity", "period_from", "period_to")


def read_agreements(path: Path, prefix: str) -> list[Agreement]:
    """The agreed volumes (those of other regions left out when the file has a region
    column and --region is given)."""
    out = []
    for n, row in enumerate(_read_csv(path, "agreed-volume file", AGREED_COLUMNS, AGREED_REQUIRED), start=2):
        if prefix and row.get("region_code") and not row["region_code"].startswith(prefix):
            continue
        where = f"agreed-volume file {path} line {n}"
        try:
            quantity = int(row["agreed_quantity"])
        except ValueError:
            raise AssessError(f"约定采购量应为整数 / {where}: agreed_quantity must be a whole number, got {row['agreed_quantity']!r}") from None
        if quantity <= 0:
            raise AssessError(f"约定采购量应大于 0 / {where}: agreed_quantity must be positive, got {quantity}")
        if not row["institution_id"] or not row["product_id"]:
            raise AssessError(f"医疗机构或产品编码为空 / {where}: empty institution_id or product_id")
        start, end = parse_day(row["period_from"], f"{where}: period_from"), parse_day(row["period_to"], f"{where}: period_to")
        if end < start:
            raise AssessError(f"协议结束早于开始 / {where}: period_to {end} is before period_from {start}")
        out.append(Agreement(row["institution_id"], row["product_id"], quantity, start, end))
    return out


# --- the distributor assessment -----------------------------------------------------

def _period_filter(start: date, end: date, prefix: str, column: str = "ordered_at") -> str:
    after = (end + timedelta(days=1)).isoformat()
    where = (f"{column} >= toDateTime64('{start.isoformat()} 00:00:00', 3, 'Asia/Shanghai') "
             f"AND {column} < toDateTime64('{after} 00:00:00', 3, 'Asia/Shanghai')")
    return where + (f" AND startsWith(region_code, '{prefix}')" if prefix else "")


COUNTS_SQL = """
SELECT distributor_id, count() AS orders, countIf(on_time IS NOT NULL) AS settled,
    countIf(on_time = 1) AS on_time_orders, countIf(response_hours <= 24) AS responded_within_24h,
    sumIf(quantity, decision IS NOT NULL) AS answered_quantity,
    ifNull(sumIf(confirmed_quantity, decision IS NOT NULL), 0) AS confirmed_quantity,
    countIf(grassroots = 1) AS grassroots_orders,
    countIf(grassroots = 1 AND on_time IS NOT NULL) AS grassroots_settled,
    countIf(grassroots = 1 AND on_time = 1) AS grassroots_on_time_orders
FROM {db}.order_facts FINAL WHERE {where} GROUP BY distributor_id"""

# An order's alerts count in the period its order was placed in (as the order does);
# a distributor's own alerts (low_delivery_rate, ...) by when they were raised.
ALERTS_SQL = """
SELECT distributor_id, count() AS alerts FROM {db}.alerts FINAL
WHERE distributor_id != '' AND kind IN ({kinds})
    AND if(order_id != '', order_id IN (SELECT order_id FROM {db}.order_facts FINAL WHERE {where}), {raised_where})
GROUP BY distributor_id"""

TREND_SQL = """
SELECT distributor_id, toString(toStartOfMonth(ordered_at)) AS month, count() AS orders,
    countIf(on_time IS NOT NULL) AS settled, countIf(on_time = 1) AS on_time_orders,
    countIf(grassroots = 1 AND on_time IS NOT NULL) AS grassroots_settled,
    countIf(grassroots = 1 AND on_time = 1) AS grassroots_on_time_orders
FROM {db}.order_facts FINAL WHERE {where} GROUP BY distributor_id, month ORDER BY distributor_id, month"""

# Human-read formats (Pretty*, Markdown) show the verdict columns only: a narrow
# table (ClickHouse prints a table 250 or more characters wide with few rows vertically).
HUMAN_ASSESSMENT_COLUMNS = "distributor_id, distributor_name, verdict, score, grassroots_delivery_rate, orders, reasons_text"
ASSESSMENT_COLUMNS = (
    "distributor_id, distributor_name, score, grassroots_delivery_rate, orders, verdict, reasons, reasons_text, "
    "on_time_rate, response_24h_rate, fill_rate, alerts_per_100_orders, grassroots_orders, open_orders, "
    "registered, period_from, period_to, region_code")


@dataclass
class AssessmentRun:
    period_from: date
    period_to: date
    region: str
    rows: list[dict]  # as stored in distributor_assessment
    trend: list[dict]  # per distributor and month
    rules: AssessmentRules


def run_assessment(store: StoreAccess, rules: AssessmentRules, start: date, end: date, region: str | None,
                   registry: dict[str, str] | None) -> AssessmentRun:
    prefix = region_prefix(region)
    where = _period_filter(start, end, prefix)
    counts = {r["distributor_id"]: r for r in store.rows(COUNTS_SQL.format(db=DATABASE, where=where))}
    kinds = ", ".join(_literal(k) for k in rules.alert_kinds) or "''"
    raised_where = _period_filter(start, end, "", "raised_at")
    if prefix:  # a distributor's own alerts carry no region
        raised_where += f" AND (region_code = '' OR startsWith(region_code, '{prefix}'))"
    alerts = {r["distributor_id"]: int(r["alerts"]) for r in store.rows(
        ALERTS_SQL.format(db=DATABASE, kinds=kinds, where=where, raised_where=raised_where))}
    facts = {d: DistributorCounts(d, **{k: int(v) for k, v in r.items() if k != "distributor_id"},
                                  alerts=alerts.get(d, 0)) for d, r in counts.items()}
    names = registry or {}
    assessed_at, version = _run_stamp()
    rows = []
    for a in assess_all(facts, list(names), rules):
        rows.append({
            "period_from": start.isoformat(), "period_to": end.isoformat(), "region_code": region or "",
            "distributor_id": a.distributor_id, "distributor_name": names.get(a.distributor_id, ""),
            "registered": int(registry is None or a.distributor_id in registry),
            "orders": a.orders, "open_orders": a.open_orders, "on_time_rate": a.on_time_rate,
            "response_24h_rate": a.components["response_24h"], "fill_rate": a.components["fill"],
            "grassroots_orders": a.grassroots_orders, "grassroots_delivery_rate": a.grassroots_delivery_rate,
            "alerts": a.alerts, "alerts_per_100_orders": a.alerts_per_100_orders,
            "alerts_component": a.components["alerts"], "score": a.score, "verdict": a.verdict,
            "reasons": list(a.reasons), "reasons_text": a.reasons_text,
            "assessed_at": assessed_at, "version": version,
        })
    _replace_rows(store, "distributor_assessment", rows, version,
                  f"period_from = '{start}' AND period_to = '{end}' AND region_code = {_literal(region or '')}",
                  ("period_from", "period_to", "region_code", "distributor_id"))
    trend = [{k: v if k in ("distributor_id", "month") else int(v) for k, v in r.items()}
             for r in store.rows(TREND_SQL.format(db=DATABASE, where=where))]
    return AssessmentRun(start, end, region or "", rows, trend, rules)


def _run_stamp() -> tuple[str, int]:
    """A run's `assessed_at` (Asia/Shanghai, as ClickHouse reads it) and its rows'
    `version` (microseconds: a later run's rows replace an earlier one's)."""
    return datetime.now(SHANGHAI).isoformat(sep=" ", timespec="milliseconds")[:23], time.time_ns() // 1000


def _replace_rows(store: StoreAccess, table: str, rows: list[dict], version: int, scope: str,
                  key: tuple[str, ...]) -> None:
    """Store a run's rows; rows of an earlier run of the same scope that this run no
    longer has get a deletion marker (ReplacingMergeTree's is_deleted), so FINAL shows
    exactly this run."""
    fresh = {tuple(str(row[k]) for k in key) for row in rows}
    stale = [r for r in store.rows(f"SELECT {', '.join(f'toString({k}) AS {k}' for k in key)} "
                                   f"FROM {DATABASE}.{table} FINAL WHERE {scope}")
             if tuple(r[k] for k in key) not in fresh]
    store.insert(table, rows)
    store.insert(table, [{**r, "version": version, "is_deleted": 1} for r in stale])


def _human(fmt: str) -> bool:
    return fmt.startswith("Pretty") or fmt == "Markdown"


def print_assessment(store: StoreAccess, run: AssessmentRun, fmt: str, out) -> None:
    columns = HUMAN_ASSESSMENT_COLUMNS if _human(fmt) else ASSESSMENT_COLUMNS
    sql = (f"SELECT {columns} FROM {DATABASE}.distributor_assessment FINAL "
           f"WHERE period_from = '{run.period_from}' AND period_to = '{run.period_to}' "
           f"AND region_code = {_literal(run.region)} ORDER BY {VERDICT_ORDER}, score, distributor_id")
    out.write(store.raw(sql, fmt))
    out.flush()


# --- monthly VBP monitoring -----------------------------------------------------------

SHARES_SQL = """
SELECT institution_id, count() AS orders, sum(quantity) AS total_quantity, sumIf(quantity, vbp = 1) AS vbp_quantity,
    sum(quantity * unit_price) AS total_amount, sumIf(quantity * unit_price, vbp = 1) AS vbp_amount
FROM {db}.order_facts FINAL WHERE {where} GROUP BY institution_id"""

# Purchases against agreements: ordered quantity of orders not rejected, by day
# (agreement periods need not start on a month's first day).
PURCHASES_SQL = """
SELECT institution_id, product_id, toString(toDate(ordered_at)) AS day, sum(quantity) AS purchased
FROM {db}.order_facts FINAL
WHERE {where} AND product_id IN ({products}) AND (decision IS NULL OR decision != 'rejected')
GROUP BY institution_id, product_id, day"""

VBP_COLUMNS = ("institution_id, vbp_quantity_share, vbp_amount_share, orders, quantity, vbp_quantity, "
               "round(amount, 2) AS amount, round(vbp_amount, 2) AS vbp_amount, agreements, agreements_behind, "
               "agreements_not_started, behind_schedule, month, region_code")


@dataclass
class VbpRun:
    month: date
    region: str
    institutions: list[dict]
    progress: list[dict]
    rules: AssessmentRules


def _share(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None


def run_vbp(store: StoreAccess, rules: AssessmentRules, month: str, region: str | None,
            agreements: list[Agreement] | None) -> VbpRun:
    try:
        first, last = month_bounds(month)
    except ValueError as exc:
        raise AssessError(f"月份格式错误 / --month: {exc}") from None
    prefix = region_prefix(region)
    shares = {r["institution_id"]: r for r in store.rows(
        SHARES_SQL.format(db=DATABASE, where=_period_filter(first, last, prefix)))}
    active = [a for a in agreements or [] if a.period_from <= last and a.period_to >= first]
    results: list[Progress] = []
    if active:
        since = min(a.period_from for a in active)
        products = ", ".join(sorted({_literal(a.product_id) for a in active}))
        daily: dict[tuple[str, str], list[tuple[date, int]]] = {}
        for r in store.rows(PURCHASES_SQL.format(db=DATABASE, where=_period_filter(since, last, prefix),
                                                 products=products)):
            daily.setdefault((r["institution_id"], r["product_id"]), []).append(
                (date.fromisoformat(r["day"]), int(r["purchased"])))
        for a in active:
            bought = sum(q for day, q in daily.get((a.institution_id, a.product_id), ())
                         if a.period_from <= day <= min(a.period_to, last))
            results.append(progress(a, bought, last, rules))
    assessed_at, version = _run_stamp()
    base = {"month": first.isoformat(), "region_code": region or ""}
    progress_rows = [{
        **base, "institution_id": p.agreement.institution_id, "product_id": p.agreement.product_id,
        "period_from": p.agreement.period_from.isoformat(), "period_to": p.agreement.period_to.isoformat(),
        "agreed_quantity": p.agreement.agreed_quantity, "purchased_quantity": p.purchased_quantity,
        "progress": p.progress, "expected_progress": p.expected_progress,
        "behind_schedule": int(p.behind_schedule), "not_started": int(p.not_started),
        "assessed_at": assessed_at, "version": version} for p in results]
    by_institution: dict[str, list[Progress]] = {}
    for p in results:
        by_institution.setdefault(p.agreement.institution_id, []).append(p)
    institution_rows = []
    for inst in sorted(set(shares) | set(by_institution)):
        s = shares.get(inst, {})
        mine = by_institution.get(inst, [])
        quantity, vbp_quantity = int(s.get("total_quantity", 0)), int(s.get("vbp_quantity", 0))
        amount, vbp_amount = float(s.get("total_amount", 0.0)), float(s.get("vbp_amount", 0.0))
        behind = sum(p.behind_schedule for p in mine)
        institution_rows.append({
            **base, "institution_id": inst, "orders": int(s.get("orders", 0)), "quantity": quantity,
            "vbp_quantity": vbp_quantity, "amount": amount, "vbp_amount": vbp_amount,
            "vbp_quantity_share": _share(vbp_quantity, quantity), "vbp_amount_share": _share(vbp_amount, amount),
            "agreements": len(mine), "agreements_behind": behind,
            "agreements_not_started": sum(p.not_started for p in mine), "behind_schedule": int(behind > 0),
            "assessed_at": assessed_at, "version": version})
    scope = f"month = '{first}' AND region_code = {_literal(region or '')}"
    _replace_rows(store, "vbp_monthly", institution_rows, version, scope, ("month", "region_code", "institution_id"))
    _replace_rows(store, "vbp_progress", progress_rows, version, scope,
                  ("month", "region_code", "institution_id", "product_id", "period_from"))
    return VbpRun(first, region or "", institution_rows, progress_rows, rules)


def print_vbp(store: StoreAccess, run: VbpRun, fmt: str, out) -> None:
    sql = (f"SELECT {VBP_COLUMNS} FROM {DATABASE}.vbp_monthly FINAL WHERE month = '{run.month}' "
           f"AND region_code = {_literal(run.region)} ORDER BY behind_schedule DESC, vbp_amount_share, institution_id")
    out.write(store.raw(sql, fmt))
    out.flush()


# --- the command ---------------------------------------------------------------------

def command(settings: Settings, args) -> int:
    rules = settings.rules.assessment
    if args.format not in FORMATS:
        raise AssessError(f"不支持的输出格式 / --format must be one of {', '.join(FORMATS)}, got {args.format!r}")
    out = sys.stdout.buffer
    if args.report == "vbp":
        if not args.month:
            raise AssessError("请给出监测月份 / assess vbp needs --month YYYY-MM")
        agreements = read_agreements(args.agreed, region_prefix(args.region)) if args.agreed else None

        def work(store: StoreAccess):
            run = run_vbp(store, rules, args.month, args.region, agreements)
            print_vbp(store, run, args.format, out)
            behind = sum(r["behind_schedule"] for r in run.institutions)
            return run, (f"{len(run.institutions)} 家医疗机构 institutions, {behind} 家进度滞后 behind schedule; "
                         f"stored in {DATABASE}.vbp_monthly / vbp_progress")
    else:
        if not (args.date_from and args.date_to):
            raise AssessError("请给出考核期 / assess needs --from DATE and --to DATE (e.g. --from 2024-07-01 --to 2025-06-30)")
        start, end = parse_day(args.date_from, "--from"), parse_day(args.date_to, "--to")
        if end < start:
            raise AssessError(f"考核期结束早于开始 / --to {end} is before --from {start}")
        prefix = region_prefix(args.region)
        table = args.registry[len("table:"):] if args.registry and args.registry.startswith("table:") else None
        registry = read_registry(Path(args.registry), prefix) if args.registry and not table else None

        def work(store: StoreAccess):
            listed = read_registry_table(store, table, prefix) if table else registry
            run = run_assessment(store, rules, start, end, args.region, listed)
            print_assessment(store, run, args.format, out)
            counts = {v: sum(r["verdict"] == v for r in run.rows) for v in ("revoke", "rectify", "pass")}
            return run, (f"{len(run.rows)} 家配送企业 distributors: 取消资格 revoke {counts['revoke']}, "
                         f"限期整改 rectify {counts['rectify']}, 合格 pass {counts['pass']}; "
                         f"stored in {DATABASE}.distributor_assessment")
    from clickhouse_connect.driver.exceptions import ClickHouseError

    store = open_store(settings)
    try:
        run, summary = work(store)
    except (ClickHouseError, OSError) as exc:  # the store's or the worker's error, said plainly
        raise StoreError(f"存储无法完成考核 / the store could not run the assessment: {exc}") from None
    finally:
        store.close()
    from supplymon.report import write_html, write_xlsx

    if args.html:
        write_html(run, args.html)
        summary += f"; HTML {args.html}"
    if args.xlsx:
        write_xlsx(run, args.xlsx)
        summary += f"; workbook {args.xlsx}"
    print(summary, file=sys.stderr)
    return 0
