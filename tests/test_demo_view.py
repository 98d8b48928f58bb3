"""The demo's view: which alerts are early warnings, which story each tells, what the
live layout shows; and every alert message read Chinese first, English second."""
from __future__ import annotations

import io
import re
from datetime import datetime, timedelta

from rich.console import Console

from supplymon.core.alerts import KIND_NAMES, order_alert_row, warning_alert_row
from supplymon.demo_view import DemoState, Pointer, alert_subject, kind_label, render, subject_text, tells
from supplymon.settings import SHANGHAI
from supplymon.simulate import Story

START = datetime(2026, 3, 1, tzinfo=SHANGHAI)
HOUR_MS = 3_600_000
CJK = re.compile(r"[\u4e00-\u9fff]")


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def story(scenario: str, kind: str, subject_type: str, product=None, region=None, dist="D1") -> Story:
    return Story(scenario, kind, subject_type, product, region, dist, START + timedelta(days=1),
                 START + timedelta(days=3), timedelta(hours=72), (), "what happens", "发生了什么")


SHORTAGE = story("shortage", "supply_shortage", "product_region", "P1", "150702")
BAD = story("bad-distributor", "low_delivery_rate", "distributor", dist="D9")


def shortage_alert(product="P1", region="150702", hours=10.0, resolved=None) -> dict:
    details = {"institutions_out_of_stock": ["I1", "I2", "I3"], "distributors": ["D1"], "could_cover": [],
               "fill_rate": 0.5, "window_hours": 72}
    return warning_alert_row("supply_shortage", {"product_id": product, "region_code": region,
                                                 "manufacturer_id": "M1"},
                             ms(SHORTAGE.starts_at) + int(hours * HOUR_MS), resolved, details)


def rate_alert(dist="D9", scope="grassroots") -> dict:
    details = {"scope": scope, "on_time_rate": 0.4, "threshold": 0.7, "window_days": 30, "on_time": 8,
               "orders": 20}
    return warning_alert_row("low_delivery_rate", {"distributor_id": dist}, ms(START + timedelta(days=3)), None,
                             details, scope)


def deadline_alert(kind: str, order="O1") -> dict:
    fact = {"order_id": order, "distributor_id": "D1", "institution_id": "I1", "area": "rural",
            "grassroots": True, "quantity": 5, "ordered_at": ms(START), "product_id": "P1",
            "region_code": "150702"}
    alert = {"kind": kind, "severity": "warning", "raised_at": ms(START) + 48 * HOUR_MS, "resolved_at": None}
    if kind == "confirmation_late":
        alert.update(institution_id="I1", hours=30.5)
    return order_alert_row(alert, fact, 1)


def test_a_story_is_told_by_its_kind_on_its_subject_only():
    assert tells(SHORTAGE, shortage_alert())
    assert not tells(SHORTAGE, shortage_alert(product="P2"))
    assert not tells(SHORTAGE, shortage_alert(region="360702"))
    assert tells(BAD, rate_alert()) and tells(BAD, rate_alert(scope="all"))
    assert not tells(BAD, rate_alert(dist="D1"))
    assert not tells(SHORTAGE, rate_alert()) and not tells(BAD, shortage_alert())
    # A manufacturer+city subject is read from the alert's details.
    limit = {"kind": "distributor_limit_exceeded", "subject_type": "manufacturer_city", "product_id": "",
             "region_code": "150700", "distributor_id": "", "details": {"manufacturer_id": "M1"}}
    assert alert_subject(limit) == ("M1", "150700") and subject_text(limit) == "M1 @ 150700"
    assert subject_text(rate_alert()) == "D9 (grassroots)" and subject_text(rate_alert(scope="all")) == "D9"


def test_state_keeps_the_early_warnings_once_with_their_story_and_counts_alerts_by_kind():
    state = DemoState([SHORTAGE, BAD], START, START + timedelta(days=5), 3600)
    raised = shortage_alert()
    warning = state.on_alert(raised)
    assert warning is not None and warning.story is SHORTAGE
    assert state.on_alert(dict(raised)) is None  # the same alert again (a duplicate on the topic)
    assert state.on_alert(shortage_alert(resolved=raised["raised_at"] + HOUR_MS)) is None  # its resolution
    assert state.on_alert(deadline_alert("delivery_overdue")) is None  # not an early warning
    stray = state.on_alert(shortage_alert(product="P7"))
    assert stray is not None and stray.story is None  # a warning no story told
    assert [w.alert["product_id"] for w in state.warnings] == ["P1", "P7"]
    assert state.by_kind() == {"delivery_overdue": (1, 1), "supply_shortage": (2, 1)}
    assert state.story_warnings(SHORTAGE) == [warning] and state.story_warnings(BAD) == []


def frame(state: DemoState, width: int = 120) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(render(state))
    return console.file.getvalue()


def test_the_live_layout_shows_time_alerts_stories_warnings_and_pointers():
    state = DemoState([SHORTAGE, BAD], START, START + timedelta(days=5), 3600)
    received = []
    state.pointers = [Pointer("即席查询 ad-hoc SQL", "supplymon sql --data-dir data \"SELECT 1\""),
                      Pointer("通知 notifications", lambda: f"{len(received)} 条 received")]
    state.on_sent({"kind": "order", "ts": (START + timedelta(days=1, hours=12)).isoformat()})
    state.on_alert(deadline_alert("delivery_overdue"))
    state.on_alert(shortage_alert(hours=10))
    text = frame(state)
    assert "2026-03-02 12:00" in text and "第 1.5/5 天 day" in text
    assert re.search(r"配送超时 delivery_overdue +1 / 1 ", text) and re.search(r"供应短缺 supply_shortage +1 / 1", text)
    # The shortage's story has its warning, 10 h after it began; the other is under way.
    assert re.search(r"shortage +供应短缺 supply_shortage +P1 @ 150702 +✓ 10\.0 小时后预警 raised after 10\.0 h", text)
    assert re.search(r"bad-distributor +按时配送率偏低 low_delivery_rate +D9 +进行中 under way", text)
    assert "供应短缺 supply_shortage P1 @ 150702  ← 故事 story shortage" in text
    assert "起产品 P1（生产企业 M1）在 150702 供应短缺" in text  # the warning's Chinese message
    assert 'supplymon sql --data-dir data "SELECT 1"' in text and "0 条 received" in text
    received.append(1)
    assert "1 条 received" in frame(state)  # a pointer's function is asked again at each redraw


def test_stories_not_begun_yet_say_when_they_begin():
    state = DemoState([SHORTAGE], START, START + timedelta(days=5), 3600)
    assert "03-02 00:00 开始 begins" in frame(state)


def test_every_alert_message_is_chinese_first_then_english():
    rows = [deadline_alert(kind) for kind in
            ("response_overdue", "response_escalation", "delivery_overdue", "confirmation_late")]
    rows += [shortage_alert(), rate_alert()]
    for row in rows:
        chinese, english = row["message"].split(" / ", 1)
        assert CJK.search(chinese) and not CJK.search(english), row["message"]
        assert row["order_id"] in chinese or row["subject_type"] != "order"
    assert "主城区外" in deadline_alert("delivery_overdue")["message"]
    assert all(kind in kind_label(kind) and KIND_NAMES[kind][0] in kind_label(kind) for kind in KIND_NAMES)
    assert kind_label("new_kind") == "new_kind"


def test_the_live_view_fits_the_terminal_it_is_drawn_on(tmp_path):
    """Live crops what does not fit: the view drops the warnings' messages, then the
    warnings, before the places to look next would fall off a small terminal."""
    from supplymon.demo_view import AlertLog, LiveView

    state = DemoState([SHORTAGE, BAD], START, START + timedelta(days=5), 3600)
    state.pointers = [Pointer("即席查询 ad-hoc SQL", "supplymon sql --data-dir data \"SELECT kind, count() FROM "
                              "supplymon.alerts FINAL GROUP BY kind\""), Pointer("指标 metrics", "http://x/metrics")]
    for kind in ("delivery_overdue", "response_overdue", "confirmation_late", "response_escalation"):
        state.on_alert(deadline_alert(kind, order=kind))
    for n in range(8):
        state.on_alert(shortage_alert(product=f"P{n}", hours=n))
    log = AlertLog(tmp_path / "alerts.log")
    for width, height, shown in ((80, 24, "none"), (80, 28, "lines"), (100, 40, "messages"), (120, 50, "messages")):
        console = Console(file=io.StringIO(), width=width, height=height, color_system=None)
        console.print(LiveView(state, log, console).render())
        text = console.file.getvalue()
        assert len(text.splitlines()) < height, (width, height)
        assert "http://x/metrics" in text and "✓ 1.0 小时后预警" in text
        assert ("P7 @ 150702" in text) == (shown != "none")  # the latest warning
        assert ("起产品 P7（生产企业 M1）" in text) == (shown == "messages")
    log.close()


def test_a_storys_warning_is_drawn_as_it_comes_even_in_a_burst_of_alerts(tmp_path):
    """Alerts come a fetch at a time (a worker catching up sends many at once) and the
    panel holds the latest few: the story's warning must still reach the terminal."""
    from supplymon.demo_view import AlertLog, LiveView

    state = DemoState([SHORTAGE, BAD], START, START + timedelta(days=5), 3600)
    console = Console(file=io.StringIO(), width=120, height=50, color_system=None, force_terminal=True)
    log = AlertLog(tmp_path / "alerts.log")
    with LiveView(state, log, console) as view:
        view.alert(shortage_alert())  # the story's
        for n in range(20):  # then a burst before the next redraw, none of them the story's
            view.alert(shortage_alert(product=f"Q{n}", region="110101", hours=n))
        view.tick()
    log.close()
    frames = console.file.getvalue()
    assert "← 故事 story shortage" in frames
