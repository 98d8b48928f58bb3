"""Notifications: the directory, routing, rate limits and tokens (pure), and the
dispatcher against real receivers on 127.0.0.1 with the delivery log in real
embedded ClickHouse (chdb)."""
from __future__ import annotations

import asyncio

import pytest

from supplymon.core.alerts import SUBJECT_TYPE
from supplymon.notify.directory import DirectoryError, parse_directory
from supplymon.notify.dispatcher import Dispatcher, StoreDeliveryLog
from supplymon.notify.ratelimit import Plan, RateLimits, RateWindow, plan
from supplymon.notify.render import Renderer
from supplymon.notify.routing import DeliveryKey, route
from supplymon.notify import tokens
from supplymon.settings import ConfigError, Settings
from tests.notify_servers import Robots, store_run  # noqa: F401  (a fixture)

H = 3_600_000
T0 = 1_767_225_600_000  # 2026-01-01 08:00 +08:00


def alert(kind="response_overdue", n=1, distributor="D1", region="360702", resolved=None, **extra) -> dict:
    subject = "product_region" if kind in ("supply_shortage", "demand_surge") else (
        SUBJECT_TYPE.get(kind, "order"))
    return {"alert_id": f"{kind}-{n:04d}", "kind": kind,
            "severity": "critical" if kind in ("response_escalation", "supply_shortage") else "warning",
            "subject_type": subject, "order_id": f"O{n}" if subject == "order" else "",
            "distributor_id": distributor if subject != "product_region" else "", "institution_id": "H1",
            "product_id": "P1", "region_code": region if subject != "distributor" else "",
            "raised_at": T0 + n * 60_000, "resolved_at": resolved,
            "message": f"订单 O{n} 未响应。 / Order O{n} has no answer.", "details": {"quantity": 5, **extra}}


def directory(robots_url="http://127.0.0.1:9", **defaults):
    return parse_directory({
        "defaults": {"first_backoff_seconds": 0.05, "max_backoff_seconds": 0.2, "attempts": 3,
                     "throttle_seconds": 0.5, **defaults},
        "vendors": {"wecom": robots_url, "dingtalk": robots_url, "feishu": robots_url},
        "distributor": [
            {"id": "D1", "name": "配送企业一", "regions": ["360702"],
             "channels": [{"type": "dingtalk", "access_token": "tok", "secret": "ding-secret", "per_minute": 3}]},
            {"id": "D2", "name": "配送企业二",
             "channels": [{"type": "webhook", "url": f"{robots_url}/hook", "secret": "hook-secret"}]},
        ],
        "supervisor": [
            {"id": "S1", "name": "章贡分局", "regions": ["3607*"],
             "channels": [{"type": "feishu", "token": "ft", "secret": "feishu-secret"},
                          {"type": "wecom", "key": "wecom-key", "kinds": ["supply_shortage"]}]},
            {"id": "S2", "name": "别处", "regions": ["110101"],
             "channels": [{"type": "wecom", "key": "other"}]},
        ],
    }, "test.toml", env={})


# -- the directory -----------------------------------------------------------------------------

def test_directory_errors_are_all_listed_chinese_first():
    with pytest.raises(DirectoryError) as info:
        parse_directory({
            "defaults": {"digest_time": "25:00"},
            "distributor": [{"id": "D1", "channels": [{"type": "dingtalk", "access_token": "t"},
                                                      {"type": "pager"}]}],
            "supervisor": [{"id": "S1", "channels": [{"type": "email", "to": ["nobody"], "kinds": ["nope"]}]}],
            "extra": {},
        }, "r.toml", env={})
    text = str(info.value)
    assert text.startswith("通讯录 r.toml 有误 / recipients directory r.toml is invalid")
    for line in ("defaults.digest_time: 应为 HH:MM", "distributor[0].channels[0].secret: 缺少此项 / missing",
                 "distributor[0].channels[1].type: 未知渠道类型 'pager'", "supervisor[0]: 监管人员须有 regions",
                 "'nobody' 不是邮箱地址", "未知告警类型 'nope'", "extra: 没有此节 / unknown section",
                 "smtp: 有邮件渠道但缺少 [smtp] 节"):
        assert line in text, line


def test_directory_reads_secrets_from_the_environment():
    doc = {"distributor": [{"id": "D1", "channels": [{"type": "wecom", "key": "env:WECOM_KEY"}]}]}
    assert parse_directory(doc, env={"WECOM_KEY": "k1"}).recipients[0].channels[0].options["key"] == "k1"
    with pytest.raises(DirectoryError, match="环境变量 WECOM_KEY 未设置 / environment variable WECOM_KEY is not set"):
        parse_directory(doc, env={})


def test_the_example_directory_is_valid():
    from supplymon.notify.directory import load_directory
    from tests.conftest import ROOT
    env = {name: "x" for name in ("SUPPLYMON_SMTP_PASSWORD", "D001_WECOM_KEY", "D002_DINGTALK_TOKEN", "D002_DINGTALK_SECRET", "D002_WEBHOOK_SECRET", "ZG_FEISHU_TOKEN", "ZG_FEISHU_SECRET")}
    example = load_directory(ROOT / "infra" / "recipients.example.toml", env=env)
    assert {r.role for r in example.recipients} == {"distributor", "supervisor", "observer"}


# -- routing -----------------------------------------------------------------------------------

def routed(a, d=None):
    return sorted((r.id, c.label) for r, c in route(a, d or directory()))


def test_order_alerts_go_to_the_orders_distributor():
    assert routed(alert("response_overdue")) == [("D1", "dingtalk")]
    assert routed(alert("delivery_overdue", distributor="D2")) == [("D2", "webhook")]


def test_supervised_kinds_go_to_the_regions_supervisors_too():
    assert routed(alert("response_escalation")) == [("D1", "dingtalk"), ("S1", "feishu")]
    assert routed(alert("demand_surge")) == [("S1", "feishu")]  # wecom wants only shortages
    # a distributor's alert has no region: the regions the directory gives the distributor
    assert routed(alert("low_delivery_rate")) == [("S1", "feishu")]
    assert routed(alert("low_delivery_rate", distributor="D2")) == []


def test_market_conduct_warnings_go_to_the_supervisors_of_the_region_or_city():
    from supplymon.core.alerts import warning_alert_row

    limit = warning_alert_row("distributor_limit_exceeded", {"manufacturer_id": "M1", "region_code": "360700"},
                              T0, None, {"distributors": ["D1", "D2", "D3"], "window_days": 90,
                                                  "max_distributors": 2})
    assert routed(limit) == [("S1", "feishu")]  # S1 covers "3607*", the city too
    assert routed(alert("remote_refusal")) == [("S1", "feishu")]  # D1 serves 360702
    from supplymon.notify.dispatcher import subject_of
    assert subject_of(limit) == "生产企业 / manufacturer M1 @ 360700"


def test_a_shortage_also_goes_to_the_distributors_that_could_cover_it():
    assert routed(alert("supply_shortage", could_cover=["D2"])) == [("D2", "webhook"), ("S1", "feishu"),
                                                                    ("S1", "wecom")]


# -- rate limits, tokens -----------------------------------------------------------------------

def test_rate_window_and_fold_plan():
    window = RateWindow(3, period=60)
    for t in (0, 1, 2):
        window.record(t)
    assert window.available(30) == 0 and window.next_free(30) == 60
    assert window.available(60.5) == 1
    window.block(100)
    assert window.available(70) == 0 and window.next_free(70) == 100
    assert plan(2, 3) == Plan(2, 0)
    assert plan(7, 3) == Plan(2, 5)  # two alone, five folded into the third slot
    assert plan(7, 1) == Plan(0, 7)
    feishu = RateLimits([(100, 60), (5, 1)])  # a burst of 10: four alone, six folded, within the second
    assert plan(10, feishu.available(0)) == Plan(4, 6)
    for _ in range(5):
        feishu.record(0)
    assert feishu.available(0.5) == 0 and feishu.next_free(0.5) == 1 and feishu.available(1) == 5
    assert directory().throttle_for("dingtalk") == 0.5  # set in the file
    assert parse_directory({}).throttle_for("dingtalk") == 600 and parse_directory({}).throttle_for("wecom") == 60


def test_ack_tokens_are_signed_and_expire():
    sig = tokens.sign(b"k", "a1", "D1", 1000)
    assert tokens.verify(b"k", "a1", "D1", 1000, sig, now=999) is None
    assert "expired" in tokens.verify(b"k", "a1", "D1", 1000, sig, now=1001)
    assert "signature" in tokens.verify(b"k", "a1", "D2", 1000, sig, now=0)  # not transferable
    assert "signature" in tokens.verify(b"other", "a1", "D1", 1000, sig, now=0)
    # whatever a form or JSON body sends is an answer, never an exception (a 500)
    assert "signature" in tokens.verify(b"k", "a1", "D1", 1000, "签名", now=0)
    assert "signature" in tokens.verify(b"k", "a1", "D1", 1000, "", now=0)
    assert "invalid link" in tokens.verify(b"k", "a1", "D1", 1000, 123, now=0)
    assert "invalid link" in tokens.verify(b"k", "a1", ["D1"], 1000, sig, now=0)


def test_the_ack_secret_is_made_once_owner_only_and_never_empty(tmp_path):
    import stat

    from supplymon.notify.service import ack_secret

    settings = Settings(data_dir=tmp_path, ack_secret=None)
    key = ack_secret(settings)
    path = tmp_path / "ack-secret"
    assert len(key) >= 32 and path.read_bytes() == key and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ack_secret(settings) == key  # kept across restarts
    path.write_bytes(b"")  # what a crash between creating the file and writing it left
    renewed = ack_secret(settings)
    assert len(renewed) >= 32 and renewed != key and path.read_bytes() == renewed
    assert ack_secret(Settings(data_dir=tmp_path, ack_secret="configured")) == b"configured"


# -- the dispatcher on real receivers and a real delivery log ----------------------------------

def log_rows(store):
    return store.rows("SELECT alert_id, state, recipient, channel, status, attempts, message "
                      "FROM supplymon.notifications FINAL ORDER BY alert_id, state, recipient, channel")


def deliver(run, *batches, setup=None, make_directory=directory, renderer=None, **options) -> Robots:
    """Submit the batches of alerts to a dispatcher over loopback robots; the robots once all is sent."""
    async def main():
        robots = await Robots().start()
        if setup:
            setup(robots)
        try:
            dispatcher = Dispatcher(make_directory(robots.url), StoreDeliveryLog(run), renderer or Renderer(),
                                    **options)
            for batch in batches:
                await dispatcher.submit(batch)
            await dispatcher.drain(timeout=60)
            await dispatcher.close()
        finally:
            await robots.stop()
        return robots

    return asyncio.run(main())


def test_failing_receiver_gets_exactly_one_delivery_and_a_restart_sends_nothing_again(store_run):
    run, store = store_run

    async def main():
        robots = await Robots().start()
        robots.fail["webhook"] = 2  # 503 twice, then 204
        try:
            d = directory(robots.url)
            first = Dispatcher(d, StoreDeliveryLog(run), Renderer())
            alerts = [alert("delivery_overdue", 1, distributor="D2"), alert("delivery_overdue", 2, distributor="D2")]
            assert len(await first.submit(alerts)) == 2
            await first.drain(timeout=30)
            await first.close()
            # A new worker (a restart) reads the same alerts again, and a resolution arrives.
            second = Dispatcher(d, StoreDeliveryLog(run), Renderer())
            resolved = dict(alerts[0], resolved_at=T0 + 5 * H)
            assert await second.submit([*alerts, resolved]) == [
                DeliveryKey("delivery_overdue-0001", "resolved", "D2", "webhook")]
            await second.drain(timeout=30)
            await second.close()
        finally:
            await robots.stop()
        return robots

    robots = asyncio.run(main())
    keys = [(b["id"], h["Idempotency-Key"]) for b, h in
            ((body, headers) for v, body, headers in robots.received if v == "webhook")]
    assert sorted(keys) == [("delivery_overdue-0001:raised",) * 2, ("delivery_overdue-0001:resolved",) * 2,
                            ("delivery_overdue-0002:raised",) * 2]
    assert not robots.refused
    rows = log_rows(store)
    assert [(r["alert_id"], r["state"], r["status"]) for r in rows] == [
        ("delivery_overdue-0001", "raised", "sent"), ("delivery_overdue-0001", "resolved", "sent"),
        ("delivery_overdue-0002", "raised", "sent")]
    assert sum(r["attempts"] for r in rows) == 3 + 2  # two 503s retried on the first delivery


def test_a_receiver_that_keeps_failing_is_marked_failed_without_holding_up_others(store_run):
    run, store = store_run
    robots = deliver(run, [alert("delivery_overdue", 1, distributor="D2"), alert("response_overdue", 2)],
                     setup=lambda robots: robots.fail.update(webhook=100))
    assert len(robots.of("dingtalk")) == 1
    assert {(r["recipient"], r["status"], r["attempts"]) for r in log_rows(store)} == {
        ("D2", "failed", 3), ("D1", "sent", 1)}
    # failed is final: not tried again on a replay
    assert deliver(run, [alert("delivery_overdue", 1, distributor="D2")]).received == []


def test_robots_signed_and_over_the_limit_folded_never_dropped(store_run):
    run, store = store_run
    # 7 order alerts to D1's DingTalk robot, limited to 3 a minute; Feishu answers "frequency
    # limited" once: the shortage waits and is sent after
    robots = deliver(run, [alert("response_overdue", n) for n in range(1, 8)], [alert("supply_shortage", 9)],
                     setup=lambda robots: robots.throttle.update(feishu=1),
                     ack_url=lambda a, r: f"http://127.0.0.1/alerts/{a}/ack?r={r}")
    assert not robots.refused  # every signature passed the vendors' checks
    ding = robots.of("dingtalk")
    assert len(ding) == 3  # two alone, the other five folded into the third
    texts = [m["markdown"]["text"] for m in ding]
    for n in range(1, 8):
        assert sum(f"订单 O{n} 未响应" in t or f"订单 / order O{n}，" in t for t in texts) == 1
    assert "5 alerts folded" in ding[2]["markdown"]["title"]
    assert "alerts/response_overdue-0007/ack?r=D1" in texts[2]
    feishu = robots.of("feishu")
    assert len(feishu) == 1 and "供应短缺" in feishu[0]["card"]["header"]["title"]["content"]
    wecom = robots.of("wecom")
    assert len(wecom) == 1 and wecom[0]["msgtype"] == "markdown"
    rows = log_rows(store)
    assert len(rows) == 7 + 2 and {r["status"] for r in rows} == {"sent"}
    assert sorted(r["message"] for r in rows if r["recipient"] == "D1") == ["alert"] * 2 + ["folded"] * 5


def digests_at(run, make_directory, *instants: int) -> tuple:
    """The worker's digest path (Notifier) brought to each stream time in turn, the
    deliveries drained after each; then a restarted worker going over the same days
    again, which must send nothing. Returns the receivers and what each step queued."""
    from supplymon.notify.service import Notifier

    async def main():
        robots = await Robots().start()
        try:
            notifier = Notifier(Settings(), make_directory(robots.url), run, b"secret")
            queued = []
            for instant in instants:
                queued.append(await notifier.on_stream_time(instant))
                await notifier.dispatcher.drain(timeout=30)
            again = Notifier(Settings(), make_directory(robots.url), run, b"secret")
            assert await again.on_stream_time(instants[-1]) == 0
            await notifier.close()
            await again.close()
        finally:
            await robots.stop()
        return robots, tuple(queued)

    return asyncio.run(main())


def test_digests_follow_stream_time_and_show_acknowledgements(store_run):
    """The worker's digest path (Notifier): alerts and an acknowledgement as stored, the
    digests of each 09:00 stream time has passed, each sent once."""
    run, store = store_run
    overdue = dict(alert("response_overdue", 1, distributor="D2"), raised_at=T0 + 2 * H)  # 10:00, day 1
    escalation = dict(alert("response_escalation", 1, distributor="D2"), raised_at=T0 + 26 * H)  # 10:00, day 2
    shortage = alert("supply_shortage", 3, could_cover=["D2"])  # 08:03 day 1, region 360702
    store.insert("alerts", [dict(a, version=1) for a in (overdue, escalation, shortage)])
    store.insert("alert_acks", [{"alert_id": overdue["alert_id"], "recipient": "D2", "acked_at": T0 + 30 * H,
                                 "comment": "库存已到，今日发货"}])

    # past 09:00 of day 2, then of day 3
    robots, (sent, later) = digests_at(run, directory, T0 + 25 * H + 1, T0 + 49 * H + 1)
    assert (sent, later) == (3, 2)
    hooks = robots.of("webhook")  # D2
    assert [m["id"] for m in hooks] == ["daily:2026-01-02:D2", "daily:2026-01-03:D2"]
    day2, day3 = hooks
    assert day2["type"] == "daily_distributor" and "订单 / order **O1**" in day2["markdown"]
    assert "超时 / overdue **23.0 h**" in day2["markdown"] and "已上报" not in day2["markdown"]
    assert "已上报 / escalated" in day3["markdown"] and "已确认 / acknowledged" in day3["markdown"]
    assert "库存已到，今日发货" in day3["markdown"]
    # the region's supervisor: the shortage (08:03) in day 1's summary, the escalation in day 3's
    feishu = [m["card"] for m in robots.of("feishu")]
    assert [c["header"]["title"]["content"] for c in feishu] == [
        "每日告警汇总 2026-01-01（1 条）/ Daily alert summary 2026-01-01 (1)",
        "每日告警汇总 2026-01-03（1 条）/ Daily alert summary 2026-01-03 (1)"]
    assert "供应短缺" in feishu[0]["elements"][0]["text"]["content"]
    assert "督促后仍未响应" in feishu[1]["elements"][0]["text"]["content"]
    assert len(robots.of("wecom")) == 1  # S1's WeCom wants shortages only: day 1


def test_a_long_delayed_response_list_comes_in_parts_that_fit_the_robot_none_cut(store_run):
    """A distributor with 40 overdue orders on WeCom (4,096 bytes a message): its daily
    list is sent in parts, each whole, every order in exactly one, each part a delivery
    of its own (logged; a restart sends none again)."""
    run, store = store_run
    overdue = [dict(alert("response_overdue", n, distributor="D1"), raised_at=T0 + 2 * H + n) for n in range(1, 41)]
    store.insert("alerts", [dict(a, version=1) for a in overdue])
    wecom = lambda url: parse_directory({"vendors": {"wecom": url}, "distributor": [
        {"id": "D1", "name": "配送企业一", "channels": [{"type": "wecom", "key": "wecom-key"}]}]}, env={})

    robots, (sent,) = digests_at(run, wecom, T0 + 25 * H + 1)  # past 09:00 of day 2
    contents = [m["markdown"]["content"] for m in robots.of("wecom")]
    assert sent == len(contents) > 1
    assert all(len(c.encode()) <= 4096 and "截断" not in c for c in contents)
    for n in range(1, 41):
        assert sum(f"order **O{n}**，" in c for c in contents) == 1, n
    parts = len(contents)
    assert all(f"（40 笔，第 {i}/{parts} 部分）" in c and f"(40 orders, part {i} of {parts})" in c
               for i, c in enumerate(contents, 1))
    rows = log_rows(store)
    assert sorted(r["alert_id"] for r in rows) == sorted(f"daily:2026-01-02#{i}/{parts}" for i in range(1, parts + 1))
    assert {r["status"] for r in rows} == {"sent"}


def test_split_to_fit_keeps_order_and_puts_an_overlong_row_alone():
    from supplymon.notify.digest import split_to_fit

    fits = lambda overdue, alerts, bound: sum(map(len, overdue + alerts)) <= 10
    parts = split_to_fit(["aaaa", "bbbb", "cccccccccccc", "dd"], ["eeee", "ff"], fits)
    assert parts == [(["aaaa", "bbbb"], []), (["cccccccccccc"], []), (["dd"], ["eeee", "ff"])]
    assert split_to_fit([], [], fits) == [([], [])]


def test_the_cli_refuses_a_bad_directory_before_starting_anything(tmp_path):
    from tests.conftest import supplymon

    bad = tmp_path / "recipients.toml"
    bad.write_text('[[distributor]]\nid = "D1"\n[[distributor.channels]]\ntype = "dingtalk"\naccess_token = "t"\n')
    result = supplymon("worker", "--data-dir", str(tmp_path / "data"), env={"SUPPLYMON_RECIPIENTS": str(bad)})
    assert result.returncode == 2
    assert "distributor[0].channels[0].secret: 缺少此项 / missing" in result.stderr
    assert not (tmp_path / "data").exists()  # nothing started
    result = supplymon("replay", str(bad), "--embedded", "--notify", "--data-dir", str(tmp_path / "data"),
                       env={"SUPPLYMON_RECIPIENTS": ""})
    assert result.returncode == 2 and "--notify needs a recipients directory" in result.stderr


def test_a_restart_mid_way_resumes_what_was_pending_and_sends_nothing_twice(store_run):
    from supplymon.notify.service import Notifier

    run, store = store_run
    alerts = [alert("response_overdue", n) for n in (1, 2)] + [
        alert("delivery_overdue", n, distributor="D2") for n in (3, 4)]
    store.insert("alerts", [dict(a, version=1) for a in alerts])

    async def main():
        robots = await Robots().start()
        robots.throttle["dingtalk"] = 1000  # D1's robot refuses everything for now
        try:
            first = Notifier(Settings(), directory(robots.url), run, b"secret")
            assert len(await first.on_alerts(alerts)) == 4
            while len(robots.of("webhook")) < 2:  # D2's are delivered, D1's wait
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            await first.close()  # the worker stops (or dies) here
            pending = {r["recipient"]: r["status"] for r in log_rows(store) if r["status"] == "pending"}
            assert pending == {"D1": "pending"}
            robots.throttle["dingtalk"] = 0
            second = Notifier(Settings(), directory(robots.url), run, b"secret")
            assert await second.resume() == 2
            await second.on_alerts(alerts)  # the topic read again after the restart: nothing new
            await second.dispatcher.drain(timeout=30)
            await second.close()
        finally:
            await robots.stop()
        return robots

    robots = asyncio.run(main())
    assert sorted(m["id"] for m in robots.of("webhook")) == ["delivery_overdue-0003:raised",
                                                              "delivery_overdue-0004:raised"]
    texts = [m["markdown"]["text"] for m in robots.of("dingtalk")]
    assert len(texts) == 2 and all(sum(f"订单 O{n} 未响应" in t for t in texts) == 1 for n in (1, 2))
    assert {r["status"] for r in log_rows(store)} == {"sent"}


def test_an_operator_changes_the_words_without_code(tmp_path):
    (tmp_path / "alert.md.j2").write_text(
        '{% set title = "请处理：" ~ kind_zh(alerts[0].kind) %}{{ title }}\n{{ alerts[0].message_zh }}\n', "utf-8")
    message = Renderer(tmp_path).render("alert", "a:raised", "D1", [dict(alert(), state="raised", message_zh="中文")])
    assert (message.title, message.markdown) == ("请处理：订单超时未响应", "请处理：订单超时未响应\n中文\n")
    # the other templates stay the built-in ones
    assert Renderer(tmp_path).render("folded", "f", "D1", []).title.startswith("告警汇总")
    (tmp_path / "folded.md.j2").write_text("{% if %}", "utf-8")
    with pytest.raises(ConfigError, match="folded.md.j2:1 有误"):
        Renderer(tmp_path).check()


def test_wecom_markdown_is_cut_to_its_byte_limit():
    from supplymon.notify.channels.robots import truncate_bytes

    text = "订单" * 3000
    cut = truncate_bytes(text, 4096)
    assert len(cut.encode()) <= 4096 and cut.endswith("（内容过长，已截断 / truncated）")
    assert truncate_bytes("短", 4096) == "短"


def test_a_template_that_fails_on_an_alert_marks_its_deliveries_failed_and_nothing_waits(store_run, tmp_path):
    run, store = store_run
    (tmp_path / "alert.md.j2").write_text("{{ alerts[0].details.no_such_field }}", "utf-8")
    # D2's webhook takes the first, S1's robots the shortage
    deliver(run, [alert("delivery_overdue", 1, distributor="D2"), alert("supply_shortage", 2)],
            renderer=Renderer(tmp_path))
    rows = {(r["recipient"], r["channel"]): r["status"] for r in log_rows(store)}
    assert rows == {("D2", "webhook"): "failed", ("S1", "feishu"): "failed", ("S1", "wecom"): "failed"}
    (error,) = {r["last_error"] for r in store.rows("SELECT last_error FROM supplymon.notifications FINAL")}
    assert "no_such_field" in error


def test_a_fold_longer_than_wecom_takes_is_split_over_slots_not_cut(store_run):
    run, store = store_run
    # a vendor minute of 0.5 s here, so that the test does not wait minutes for slots
    robots = deliver(run, [alert("response_overdue", n) for n in range(1, 61)], period=0.5,
                     make_directory=lambda url: parse_directory({"vendors": {"wecom": url}, "distributor": [
                         {"id": "D1", "channels": [{"type": "wecom", "key": "wecom-key", "per_minute": 2}]}]}, env={}),
                     ack_url=lambda a, r: f"https://supplymon.example.gov.cn/alerts/{a}/ack?r={r}"
                                          f"&exp=1900000000&sig={'x' * 43}")
    contents = [m["markdown"]["content"] for m in robots.of("wecom")]
    assert all(len(c.encode()) <= 4096 and "截断" not in c for c in contents)
    for n in range(1, 61):
        assert sum(f"订单 / order O{n}，" in c or f"订单 O{n} 未响应" in c for c in contents) == 1, n
    assert len(contents) >= 4  # 60 alerts of ~250 bytes do not fit in one folded message
    assert {r["status"] for r in log_rows(store)} == {"sent"} and len(log_rows(store)) == 60


def test_a_vendor_error_code_in_http_200_is_a_failure(store_run):
    run, store = store_run
    robots = deliver(run, [alert("supply_shortage", 1, region="110101")])  # S2's WeCom key is wrong
    assert robots.of("wecom") == []
    ((row,),) = [store.rows("SELECT recipient, status, attempts, last_error FROM supplymon.notifications FINAL")]
    assert (row["recipient"], row["status"], row["attempts"]) == ("S2", "failed", 1)  # a refusal: not retried
    assert row["last_error"] == "WeCom errcode 93000: invalid webhook url"


def test_a_namespace_notifies_nobody_unless_its_replay_says_notify():
    from dataclasses import replace

    assert Settings().namespaced("whatif").notify is False
    assert Settings.from_env({"SUPPLYMON_NAMESPACE": "whatif"}).notify is False
    told = replace(Settings(recipients_file="r.toml").namespaced("whatif"), notify=True)  # replay --notify
    child = Settings.from_env(told.env())  # its worker process
    assert child.notify is True and child.namespace == "whatif" and child.recipients_file == "r.toml"
    assert Settings.from_env(Settings().namespaced("whatif").env()).notify is False
