"""`supplymon assess` on constructed stored facts (order_facts and alerts written
straight into an embedded store): a distributor in each verdict, a re-run replacing
the stored rows, the output formats, the monthly VBP report against an agreed-volume
file, the workbook, and the HTML report opened in headless Chromium."""
from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import orjson
import pytest
from openpyxl import load_workbook

from supplymon.settings import Settings
from supplymon.store import Store
from tests.assess_facts import alert, fact, workdir, write_store  # noqa: F401 (workdir: a fixture)
from tests.browser import artifacts_dir, inspect_page
from tests.conftest import sql_rows, supplymon

PERIOD = ("--from", "2025-07-01", "--to", "2026-06-30")


def _facts() -> tuple[list[dict], list[dict]]:
    facts = []
    # D-PASS: every order answered in 2 h and delivered on time; half grassroots. An
    # order before the period (late) and a confirmation_late alert must not count.
    facts += [fact(f"PASS-{i}", "D-PASS", i, grassroots=i < 5) for i in range(10)]
    facts.append(fact("PASS-OLD", "D-PASS", -5, on_time=0))
    # D-RECT: 10 grassroots orders, 4 late (60 %), one delivery_overdue alert (10 per
    # 100 orders): 35x0.6 + 20 + 15 + 20x0.6 + 10x0.5 = 73 -> rectify.
    facts += [fact(f"RECT-{i}", "D-RECT", i, on_time=0 if i < 4 else 1, grassroots=True) for i in range(10)]
    # D-REVOKE: never answered, never delivered, half grassroots; one alert of its own
    # (10 per 100 orders): half the alert points, 5 of the 85 measurable -> 5.9 -> revoke.
    facts += [fact(f"REV-{i}", "D-REVOKE", i, on_time=0, response_hours=None, grassroots=i % 2 == 0)
              for i in range(10)]
    # D-SILENT: grassroots orders all on time, but answered after 30 h with 1 unit in 10
    # confirmed, and 3 alerts (30 per 100): 35 + 0 + 1.5 + 20 + 0 = 56.5, grassroots 100 %.
    facts += [fact(f"SIL-{i}", "D-SILENT", i, grassroots=True, response_hours=30, confirmed=1) for i in range(10)]
    # D-OTHER: orders in another city only (for --region).
    facts += [fact(f"OTH-{i}", "D-OTHER", i, region_code="360702") for i in range(3)]
    alerts = [alert("A-RECT", "D-RECT", 3, order_id="RECT-3"),
              alert("A-PASS", "D-PASS", 2, "confirmation_late", order_id="PASS-2"),  # not a service alert
              alert("A-OLD", "D-PASS", 10, order_id="PASS-OLD"),  # raised in the period, its order before it
              alert("A-REV", "D-REVOKE", 20, "low_delivery_rate")]  # the distributor's own, raised in the period
    alerts += [alert(f"A-SIL-{i}", "D-SILENT", i, "response_overdue", order_id=f"SIL-{i}") for i in range(3)]
    return facts, alerts


def _vbp_facts() -> list[dict]:
    """Orders of D-VBP (not in the registry). July 2025: H-V1: 100 VBP units at 2.0 and 100 others at 6.0; H-V2: 60 VBP units
    and a rejected order of 1000 (not a purchase); H-V3: nothing."""
    return [
        fact("V1-a", "D-VBP", 3, institution_id="H-V1", product_id="P1", vbp=True, quantity=100, unit_price=2.0),
        fact("V1-b", "D-VBP", 4, institution_id="H-V1", product_id="P9", quantity=100, unit_price=6.0),
        fact("V2-a", "D-VBP", 5, institution_id="H-V2", product_id="P1", vbp=True, quantity=60, unit_price=2.0),
        fact("V2-r", "D-VBP", 6, institution_id="H-V2", product_id="P1", vbp=True, quantity=1000, unit_price=2.0,
             decision="rejected", confirmed=0, on_time=0),
        # June: counted in H-V1's progress on an agreement begun in June, not in July's shares.
        fact("V1-jun", "D-VBP", -10, institution_id="H-V1", product_id="P2", vbp=True, quantity=50),
    ]


@pytest.fixture(scope="module")
def store_dir():
    root = Path(tempfile.mkdtemp(prefix="supplymon-assess-"))  # for the module: see assess_facts.workdir
    facts, alerts = _facts()
    write_store(root / "data", facts + _vbp_facts(), alerts)
    (root / "registry.csv").write_text(
        "配送企业编码,配送企业名称,区划代码\nD-PASS,甲医药,150400\nD-RECT,乙配送,150400\nD-REVOKE,丙物流,150400\n"
        "D-SILENT,丁医药,150400\nD-NONE,戊配送,150400\nD-FAR,己配送,360700\n", encoding="utf-8-sig")
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _assess(store_dir, *args: str):
    return supplymon("assess", *args, "--data-dir", str(store_dir / "data"))


def _json(result) -> dict[str, dict]:
    assert result.returncode == 0, result.stderr
    return {r.get("distributor_id") or r["institution_id"]: r
            for r in map(orjson.loads, result.stdout.splitlines())}


def test_each_verdict_from_the_stored_facts(store_dir):
    result = _assess(store_dir, *PERIOD, "--region", "150400", "--registry", str(store_dir / "registry.csv"),
                     "--format", "JSONEachRow")
    rows = _json(result)
    # D-FAR, D-OTHER: another city; D-VBP: seen in the facts, not in the registry.
    assert set(rows) == {"D-PASS", "D-RECT", "D-REVOKE", "D-SILENT", "D-NONE", "D-VBP"}
    got = {d: (r["verdict"], r["score"], r["reasons"]) for d, r in rows.items()}
    assert got == {
        "D-PASS": ("pass", 100, ["meets_standard"]),
        "D-RECT": ("rectify", 73, ["grassroots_below_rectify"]),
        "D-REVOKE": ("revoke", 5.9, ["low_score", "grassroots_below_revoke"]),
        "D-SILENT": ("rectify", 56.5, ["low_score", "grassroots_at_least_revoke"]),
        "D-NONE": ("revoke", None, ["no_orders"]),
        # 3 of 4 on time, all answered in 2 h, 260 of 1260 units confirmed, no grassroots
        # order (its 20 points go to the others): 100 x (26.25 + 20 + 3.095 + 10) / 80.
        "D-VBP": ("pass", 74.2, ["meets_standard"]),
    }
    assert rows["D-VBP"]["registered"] == 0 and rows["D-PASS"]["registered"] == 1
    assert rows["D-RECT"]["grassroots_delivery_rate"] == 0.6 and rows["D-PASS"]["orders"] == 10
    assert {d: rows[d]["alerts_per_100_orders"] for d in ("D-PASS", "D-RECT", "D-REVOKE", "D-SILENT")} == {
        "D-PASS": 0, "D-RECT": 10, "D-REVOKE": 10, "D-SILENT": 30}
    assert rows["D-NONE"]["distributor_name"] == "戊配送" and rows["D-NONE"]["orders"] == 0
    assert "基层配送率 60.0% 低于 70.0%" in rows["D-RECT"]["reasons_text"]
    # Printed in verdict order: revoke first.
    assert [r["verdict"] for r in map(orjson.loads, result.stdout.splitlines())][:2] == ["revoke", "revoke"]
    assert "取消资格 revoke 2, 限期整改 rectify 2, 合格 pass 2" in result.stderr


def test_a_rerun_replaces_the_period_rows(store_dir):
    first = _json(_assess(store_dir, *PERIOD, "--format", "JSONEachRow"))  # no registry: those in the facts
    assert set(first) == {"D-PASS", "D-RECT", "D-REVOKE", "D-SILENT", "D-OTHER", "D-VBP"}
    assert all(r["registered"] == 1 for r in first.values())
    rules = store_dir / "rules.toml"
    rules.write_text("[assessment]\nlow_score_good_grassroots = \"pass\"\n")
    again = supplymon("assess", *PERIOD, "--format", "JSONEachRow", "--registry", str(store_dir / "registry.csv"),
                      "--data-dir", str(store_dir / "data"), env={"SUPPLYMON_RULES": str(rules)})
    second = _json(again)
    assert second["D-SILENT"]["verdict"] == "pass"
    assert second["D-OTHER"]["registered"] == 0  # seen in the facts, not in the registry
    stored = sql_rows(store_dir / "data", "SELECT distributor_id, verdict FROM supplymon.distributor_assessment FINAL "
                                          "WHERE period_from = '2025-07-01' AND region_code = '' ORDER BY distributor_id")
    assert [(r["distributor_id"], r["verdict"]) for r in stored] == sorted(
        (d, r["verdict"]) for d, r in second.items())
    # Dropping a distributor from the registry (D-FAR, D-NONE are in it) removes its row on the next run.
    (store_dir / "small.csv").write_text("distributor_id\nD-PASS\n")
    _json(_assess(store_dir, *PERIOD, "--format", "JSONEachRow", "--registry", str(store_dir / "small.csv")))
    stored = sql_rows(store_dir / "data", "SELECT distributor_id FROM supplymon.distributor_assessment FINAL "
                                          "WHERE period_from = '2025-07-01' AND region_code = '' ORDER BY distributor_id")
    assert [r["distributor_id"] for r in stored] == ["D-OTHER", "D-PASS", "D-RECT", "D-REVOKE", "D-SILENT", "D-VBP"]


def test_registry_as_a_table_of_the_store(store_dir):
    store = Store(Settings(data_dir=store_dir / "data"))
    try:
        store.client.command("CREATE TABLE IF NOT EXISTS supplymon.registry_test (distributor_id String, "
                             "distributor_name String) ENGINE = MergeTree ORDER BY distributor_id")
        store.client.command("INSERT INTO supplymon.registry_test VALUES ('D-PASS', '甲医药'), ('D-LATE', '庚配送')")
    finally:
        store.close()
    rows = _json(_assess(store_dir, "--from", "2025-07-01", "--to", "2025-07-31", "--registry",
                         "table:supplymon.registry_test", "--format", "JSONEachRow"))
    assert (rows["D-LATE"]["verdict"], rows["D-LATE"]["reasons"]) == ("revoke", ["no_orders"])
    assert rows["D-PASS"]["distributor_name"] == "甲医药" and rows["D-RECT"]["registered"] == 0
    missing = _assess(store_dir, *PERIOD, "--registry", "table:supplymon.nope")
    assert missing.returncode == 2 and "does not exist or has no distributor_id column" in missing.stderr


def test_a_namespace_is_assessed_in_its_own_database(store_dir):
    write_store(store_dir / "data", [fact("NS-1", "D-NS", 1)], namespace="whatif")
    rows = _json(_assess(store_dir, *PERIOD, "--namespace", "whatif", "--format", "JSONEachRow"))
    assert set(rows) == {"D-NS"}
    ns = supplymon("sql", "--data-dir", str(store_dir / "data"), "--namespace", "whatif", "--format", "JSONEachRow",
                   "SELECT distributor_id FROM supplymon.distributor_assessment FINAL")
    assert ns.returncode == 0 and [orjson.loads(x)["distributor_id"] for x in ns.stdout.splitlines()] == ["D-NS"]


def test_output_formats(store_dir):
    csv = _assess(store_dir, *PERIOD, "--format", "CSVWithNames")
    assert csv.returncode == 0, csv.stderr
    header = csv.stdout.splitlines()[0]
    assert header.startswith('"distributor_id","distributor_name","score","grassroots_delivery_rate","orders","verdict"')
    pretty = _assess(store_dir, *PERIOD, "--format", "PrettyCompact")
    assert pretty.returncode == 0 and "D-REVOKE" in pretty.stdout and "┌" in pretty.stdout
    bad = _assess(store_dir, *PERIOD, "--format", "Excel")
    assert bad.returncode == 2 and "--format must be one of" in bad.stderr


@pytest.mark.parametrize("args, message", [
    (("--from", "2026-01-01", "--to", "2025-01-01"), "is before --from"),
    (("--from", "2026-13-01", "--to", "2027-01-01"), "--from must be a date"),
    (("--from", "2025-01-01",), "needs --from DATE and --to DATE"),
    ((*PERIOD, "--region", "15"), "6-digit division code"),
    ((*PERIOD, "--registry", "/nonexistent.csv"), "does not exist"),
    (("vbp",), "needs --month"),
    (("vbp", "--month", "2025-7x"), "a month looks like"),
])
def test_bad_input_is_refused_clearly(store_dir, args, message):
    result = _assess(store_dir, *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_registry_without_the_id_column_is_refused(store_dir, workdir):
    registry = workdir / "r.csv"
    registry.write_text("name\n甲\n", encoding="utf-8")
    result = _assess(store_dir, *PERIOD, "--registry", str(registry))
    assert result.returncode == 2 and "missing column(s) distributor_id" in result.stderr


def test_assess_on_an_empty_data_dir_says_so(workdir):
    result = supplymon("assess", *PERIOD, "--data-dir", str(workdir / "none"))
    assert result.returncode == 2 and "no data in" in result.stderr


AGREED = ("医疗机构编码,产品编码,约定采购量,开始日期,结束日期,区划代码\n"
          "H-V1,P1,1200,2025-07-01,2026-06-30,150402\n"  # 100 of 101.9 due by July's end: behind
          "H-V1,P2,365,2025-06-01,2026-05-31,150402\n"  # 50 (June) of 61 due: behind
          "H-V2,P1,600,2025-07-01,2026-06-30,150402\n"  # 60 of 50.96 due (the rejected 1000 not counted)
          "H-V3,P2,100,2025-05-01,2026-04-30,150403\n"  # 3rd month, nothing bought: behind, not started
          "H-V4,P1,100,2026-01-01,2026-12-31,150402\n"  # not yet in force in July 2025
          "H-X,P1,100,2025-01-01,2025-12-31,360702\n")  # another city


def test_monthly_vbp_report_against_an_agreed_volume_file(store_dir, workdir):
    agreed = workdir / "agreed.csv"
    agreed.write_text(AGREED, encoding="utf-8")
    html, xlsx = workdir / "vbp.html", workdir / "vbp.xlsx"
    result = _assess(store_dir, "vbp", "--month", "2025-07", "--region", "150400", "--agreed", str(agreed),
                     "--format", "JSONEachRow", "--html", str(html), "--xlsx", str(xlsx))
    rows = _json(result)
    assert set(rows) == {"H001", "H-V1", "H-V2", "H-V3"}  # H001: the distributors' orders, none VBP
    v1, v2, v3 = rows["H-V1"], rows["H-V2"], rows["H-V3"]
    assert (rows["H001"]["vbp_quantity_share"], rows["H001"]["agreements"], rows["H001"]["behind_schedule"]) == (
        0, 0, 0)
    assert (v1["vbp_quantity_share"], v1["vbp_amount_share"]) == (0.5, 0.25)
    assert (v1["agreements"], v1["agreements_behind"], v1["behind_schedule"]) == (2, 2, 1)
    assert (v2["agreements_behind"], v2["behind_schedule"]) == (0, 0)
    assert v2["vbp_quantity_share"] == 1 and v2["quantity"] == 1060  # the rejected order was placed
    assert (v3["orders"], v3["vbp_quantity_share"], v3["agreements_not_started"], v3["behind_schedule"]) == (
        0, None, 1, 1)
    assert "4 家医疗机构 institutions, 2 家进度滞后 behind schedule" in result.stderr
    progress = {(r["institution_id"], r["product_id"]): r for r in sql_rows(
        store_dir / "data", "SELECT * FROM supplymon.vbp_progress FINAL WHERE month = '2025-07-01'")}
    assert set(progress) == {("H-V1", "P1"), ("H-V1", "P2"), ("H-V2", "P1"), ("H-V3", "P2")}
    assert progress[("H-V2", "P1")]["purchased_quantity"] == 60
    assert progress[("H-V1", "P2")]["purchased_quantity"] == 50
    assert progress[("H-V1", "P1")]["expected_progress"] == round(31 / 365, 4)
    book = load_workbook(xlsx)
    assert book.sheetnames == ["中选产品占比 VBP share", "约定量进度 Progress"]
    sheet = book["约定量进度 Progress"]
    assert sheet.max_row == 5 and sheet["A1"].value == "医疗机构 Institution"
    page = html.read_text(encoding="utf-8")
    assert "进度滞后的医疗机构" in page and "H-V3" in page
    problems = inspect_page(html, artifacts_dir() / "assess-vbp-report.png")
    assert problems == []


def test_html_report_opens_in_chromium_without_errors(store_dir, workdir):
    html, xlsx = workdir / "report.html", workdir / "report.xlsx"
    result = _assess(store_dir, *PERIOD, "--region", "150400", "--registry", str(store_dir / "registry.csv"),
                     "--html", str(html), "--xlsx", str(xlsx))
    assert result.returncode == 0, result.stderr
    page = html.read_text(encoding="utf-8")
    # Self-contained: no script, no external reference (the SVG namespace is a name, not a fetch).
    assert "<script" not in page
    assert not re.search(r"""(src|href)\s*=|url\(|@import""", page)
    assert [m for m in re.findall(r"https?://[^\s\"'<>]+", page) if m != "http://www.w3.org/2000/svg"] == []
    # The verdict lists come first, then the charts: 70 % and 90 % lines on the rate charts.
    order = [page.index(s) for s in ("取消配送资格", "限期整改", "综合得分分布", "各配送企业按时配送率",
                                      "基层医疗机构订单配送率", "各配送企业月度趋势")]
    assert order == sorted(order)
    assert page.count(">70%</text>") == 2 and page.count(">90%</text>") == 2
    assert page.count('class="card"') == 6  # one trend per distributor
    screenshot = artifacts_dir() / "assess-report.png"
    problems = inspect_page(html, screenshot)
    assert problems == []
    assert screenshot.stat().st_size > 20_000
    book = load_workbook(xlsx)
    assert book.sheetnames[:2] == ["取消配送资格 Revoke delivery rights", "限期整改 Rectify within a deadline"]
    details = book["考核明细 Details"]
    assert details.max_row == 7
    header = [c.value for c in details[1]]
    scores = {row[0]: row[header.index("综合得分 Score")] for row in details.iter_rows(min_row=2, values_only=True)}
    assert scores["D-RECT"] == 73 and scores["D-NONE"] is None


def test_the_browser_check_catches_a_broken_page(workdir):
    """The check above would see errors: a page with one of each kind fails it."""
    page = workdir / "bad.html"
    page.write_text('<html><body><script>console.error("boom"); missing();</script>'
                    '<img src="absent.png"></body></html>')
    problems = inspect_page(page, workdir / "bad.png")
    assert any("boom" in p for p in problems)
    assert any("missing is not defined" in p for p in problems)
    assert any("absent.png" in p for p in problems)
