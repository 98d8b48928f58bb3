"""`supplymon demo`: the monitor on live simulated traffic, all on this machine.

Starts the embedded broker and a worker on the data dir, plays the simulator's
hospitals, distributors and products onto the input topics at `--speed` times
event time, with the simulator's stories on top (every one by default: a
shortage, a demand surge, a bad distributor; `--scenario healthy` for calm
traffic), and shows what the monitor sees: a compact live view on a terminal
(supplymon/demo_view.py), plain lines otherwise or with `--plain`. Every alert
also goes to `DATA_DIR/logs/demo-alerts.log`. It ends (or on Ctrl-C) with a
summary read back from ClickHouse: each story's warning and how long after the
story began it came, and the commands to explore what was stored.

Simulated time ends at the last full hour before the run (the platform refuses
events stamped ahead of its clock), so the worker's wall-clock ticks are off (one
would jump past the simulated days): the simulator's own ticks move time, as in
a replay.
"""
from __future__ import annotations

import asyncio
import contextlib
import io
import shlex
import shutil
import sys
import time
import urllib.error
import urllib.request
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from supplymon.core.alerts import local_time
from supplymon.demo_view import (ORDER_SUBJECTS, AlertLog, DemoState, LiveView, PlainView, Pointer, hours_after,
                                 kind_label, render, subject_text, tells)
from supplymon.publish import Publisher, bootstrap_servers
from supplymon.runner import RunError, embedded_stack, prepare_data_dir
from supplymon.settings import SHANGHAI, Settings
from supplymon.simulate import History, Story, generate
from supplymon.sources import parse_moment
from supplymon.store import Store

ID_PREFIX = "demo-"  # every id of the demo's traffic starts so (a rerun replaces only that)


def sql_command(settings: Settings, sql: str) -> str:
    return f'supplymon sql --data-dir {shlex.quote(str(settings.data_dir))} "{sql}"'


# What a newcomer may ask of the store after a run: (what it shows, the query).
EXPLORE = (
    ("告警按类型 alerts by kind",
     "SELECT kind, count() AS alerts, countIf(resolved_at IS NULL) AS open FROM supplymon.alerts FINAL "
     "GROUP BY kind ORDER BY alerts DESC"),
    ("早期预警全文 the early warnings in full",
     "SELECT raised_at, kind, message FROM supplymon.alerts FINAL "
     f"WHERE subject_type NOT IN {ORDER_SUBJECTS} ORDER BY raised_at"),
    ("配送企业逐日表现 distributors day by day",
     "SELECT day, distributor_id, orders, delivered_on_time, undelivered, response_p90_hours "
     "FROM supplymon.distributor_daily ORDER BY day, distributor_id"),
    ("延迟响应清单 the delayed-response list",
     "SELECT distributor_id, order_id, raised_at FROM supplymon.alerts FINAL "
     "WHERE kind = 'response_overdue' AND resolved_at IS NULL ORDER BY distributor_id, raised_at"),
)


async def _read_alerts(settings: Settings, take, positions: dict, to_the_end: bool = False) -> None:
    """Hand alerts to `take` as they come, from `positions` (partition -> next offset,
    kept up to date) or the beginning; with `to_the_end`, return once the topic is read."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # metadata, for the partitions
        tps = [TopicPartition(settings.topics.alerts, p)
               for p in sorted(consumer.partitions_for_topic(settings.topics.alerts) or ())]
        consumer.assign(tps)
        for tp in tps:
            if tp.partition in positions:
                consumer.seek(tp, positions[tp.partition])
            else:
                await consumer.seek_to_beginning(tp)
        while True:
            batches = await consumer.getmany(timeout_ms=200)
            for tp, messages in batches.items():
                for message in messages:
                    take(orjson.loads(message.value))
                    positions[tp.partition] = message.offset + 1
            if to_the_end and not batches:
                # The fetch's high watermark, not end_offsets (see README: the embedded broker's limits).
                if all((consumer.highwater(tp) or 0) <= positions.get(tp.partition, 0) for tp in tps):
                    return
    finally:
        await consumer.stop()


async def _follow(worker, state: DemoState, view, publisher: Publisher) -> None:
    """Redraw the view, and once a second ask the worker how far it has stored."""
    last_asked = 0.0
    while True:
        if time.monotonic() - last_asked >= 1:
            last_asked = time.monotonic()
            published = dict(publisher.stats.end_offsets)  # "topic:partition" -> next offset
            with contextlib.suppress(OSError, ValueError, RunError):
                stored = (await asyncio.to_thread(worker.progress))["offsets"]
                state.stored_offsets = sum(min(stored.get(tp, 0), end) for tp, end in published.items())
                state.published_offsets = sum(published.values())
        view.tick()
        await asyncio.sleep(0.25)


async def _play(settings: Settings, speed: float, events: History, state: DemoState, view, worker,
                positions: dict):
    reader = asyncio.create_task(_read_alerts(settings, view.alert, positions))
    follower = None
    try:
        async with Publisher(settings, speed=speed) as publisher:
            follower = asyncio.create_task(_follow(worker, state, view, publisher))
            for event in events:
                await publisher.publish(orjson.dumps(event))
                state.on_sent(event)
        state.played()
        return publisher.stats
    finally:
        for task in (reader, follower):
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


def _clear_previous_demo(settings: Settings, start: datetime, say) -> None:
    """A demo on a data dir that holds an earlier demo replaces it: its simulated days
    overlap this run's, and events older than what the monitor has seen would fire
    their deadlines at once. Other data is never removed: if it reaches past this
    run's start, the demo stops with a clear error."""
    if settings.clickhouse_url is not None or not settings.chdb_path.exists():
        return
    store = Store(settings)
    try:
        store.migrate()
        (held,) = store.rows(
            f"SELECT count() AS events, countIf(kind != 'tick' AND NOT startsWith(event_id, '{ID_PREFIX}')) AS other,"
            " toUnixTimestamp64Milli(max(ts)) AS latest FROM supplymon.events_raw")
    finally:
        store.close()
    if not held["events"]:
        return
    if not held["other"]:
        for part in (settings.chdb_path, settings.data_dir / "faust", settings.insert_tmp_dir):
            shutil.rmtree(part, ignore_errors=True)
        say(f"已清除 {settings.data_dir} 中上次演示的数据 / removed the previous demo's data from "
            f"{settings.data_dir} (each demo run starts afresh)")
    elif int(held["latest"]) > start.timestamp() * 1000:
        raise RunError(
            f"数据目录 {settings.data_dir} 存有演示以外的数据，其事件截至 {local_time(int(held['latest']))}，"
            f"晚于本次演示的模拟起点；请另用 --data-dir。 / data dir {settings.data_dir} holds other data than a "
            f"demo's, with events up to {local_time(int(held['latest']))}, after this demo's simulated start "
            f"{start:%Y-%m-%d %H:%M}: use another --data-dir")


def where_to_look(settings: Settings, worker, alert_log: Path) -> list[Pointer]:
    """The places to look while the demo runs, from what the worker serves."""
    pointers = []
    if _serves_page(worker):
        pointers.append(Pointer("监测页面 supervisors' page", f"{worker.web}/"))
    pointers += [
        Pointer("即席查询 ad-hoc SQL",
                sql_command(settings, "SELECT kind, count() FROM supplymon.alerts FINAL GROUP BY kind")),
        Pointer("告警日志 alert log", str(alert_log), after_run=True),
        Pointer("指标 metrics", f"{worker.web}/metrics"),
    ]
    return pointers


def _serves_page(worker) -> bool:
    try:
        with urllib.request.urlopen(worker.web + "/", timeout=5) as response:
            return response.status == 200 and response.headers.get_content_type() == "text/html"
    except (OSError, urllib.error.HTTPError):
        return False


def demo_end(until: str | None, now: datetime) -> datetime:
    """Where the simulated days end: the last full hour, or the hour `--until` names
    (a run that can be told again to the minute). Never past the wall clock: the
    worker refuses events stamped in the future."""
    end = (parse_moment(until) if until else now).astimezone(SHANGHAI).replace(minute=0, second=0, microsecond=0)
    if end > now:
        raise RunError(f"--until {until} 晚于当前时间，演示事件不能标在未来 / is past the wall clock: "
                       "a demo's events cannot be stamped in the future")
    return end


def run_demo(settings: Settings, args, out=sys.stdout) -> int:
    days = max(1, int(args.days))
    end = demo_end(args.until, datetime.now(SHANGHAI))
    start = end - timedelta(days=days)
    # A scenario the history is too short for fails here, before anything starts.
    events = generate(days=days, orders_per_day=args.orders_per_day, seed=args.seed, start=start,
                      prefix=f"{ID_PREFIX}{end:%y%m%d%H}-",
                      scenario=None if args.scenario == "healthy" else args.scenario)
    plain = args.plain or not out.isatty()
    state = DemoState(events.stories, start, end, args.speed)
    say = (lambda text: print(text, file=out, flush=True))
    say(f"supplymon 演示 demo: {days} 个模拟日 simulated days ({start:%Y-%m-%d %H:%M} - {end:%Y-%m-%d %H:%M}) "
        f"at {args.speed:g}x, 约 about {days * 86400 / args.speed:.0f} s; Ctrl-C 停止 stops")
    for story in events.stories:
        wait = (story.starts_at - start).total_seconds() / args.speed
        say(f"故事 story {story.describe()}\n    (约 {wait:.0f} 秒后开始 it begins about {wait:.0f} s into the run)")
    logs = prepare_data_dir(settings)  # first: a data dir held by a running worker is refused as it is
    _clear_previous_demo(settings, start, say)
    alert_log = AlertLog(logs / "demo-alerts.log")
    view = PlainView(state, alert_log, out) if plain else LiveView(state, alert_log, _console(out))
    summary = None
    receiver = None
    try:
        with view:
            view.say(f"启动本地消息代理与处理进程 starting the embedded broker and a worker on {settings.data_dir} ...")
            receiver, settings = _local_receiver(settings, args.seed)
            with embedded_stack(settings, live=False) as (settings, worker):
                state.pointers = where_to_look(settings, worker, alert_log.path)
                if receiver is not None:
                    state.pointers.insert(1, Pointer("通知 notifications", receiver.brief))
                if plain:
                    for pointer in state.pointers:
                        view.say(f"{pointer.label}: {pointer.text()}")
                positions: dict[int, int] = {}  # alerts partition -> next offset read
                try:
                    state.phase = "播放中 playing"
                    stats = asyncio.run(_play(settings, args.speed, events, state, view, worker, positions))
                    state.phase = "存储中 storing what was sent ..."
                    view.tick()

                    def report(done: int, total: int) -> None:
                        state.stored_offsets, state.published_offsets = done, total
                        view.tick()

                    worker.wait_stored(stats.end_offsets, sum(stats.end_offsets.values()), report)
                    # Everything is stored, so every alert is on the topic: read the rest.
                    asyncio.run(_read_alerts(settings, view.alert, positions, to_the_end=True))
                    state.phase = "完成 done"
                except KeyboardInterrupt:
                    state.phase = "已停止 stopped"
                    view.say("停止中 stopping ...")
                summary = _summary(worker, settings, start, events.stories, state.pointers)
                # before the summary, whose last line says where the alert log is
                summary = _notifications(worker, settings, receiver) + summary
                if args.screenshot:
                    save_svg(state, args.screenshot)
    finally:
        if receiver is not None:  # stopped already unless the run failed before its summary
            receiver.stop()
        alert_log.close()
    say(summary)
    return 0


def _local_receiver(settings: Settings, seed: int):
    """Without SUPPLYMON_RECIPIENTS, notifications go to a receiver in this process
    (a webhook per simulated distributor and region bureau), printed at the end."""
    if settings.recipients_file:
        return None, settings
    import random

    from supplymon.notify.local_receiver import LocalReceiver
    from supplymon.simulate import REGIONS, World

    receiver = LocalReceiver().start()
    world = World.build(random.Random(seed))  # the world `generate` builds for this seed
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path = receiver.write_directory(settings.data_dir / "demo-recipients.toml",
                                    {d.id: d.regions for d in world.distributors}, list(REGIONS))
    return receiver, replace(settings, recipients_file=str(path.resolve()), notify=True)


def _notifications(worker, settings: Settings, receiver) -> str:
    """What was sent (once sent), and what each recipient of the local receiver got."""
    if not (settings.notify and settings.recipients_file):
        return ""
    from supplymon.replay import notified

    lines = []
    with contextlib.suppress(KeyboardInterrupt):
        lines.append(notified(worker))
    if receiver is not None:
        receiver.stop()
        lines.append(receiver.summary())
    return "\n".join(lines) + "\n"


def _console(out):
    from rich.console import Console

    return Console(file=out)


def save_svg(state: DemoState, path: Path, width: int = 120) -> None:
    """The live view as it stands, as an SVG image (for the README)."""
    from rich.console import Console

    console = Console(record=True, width=width, file=io.StringIO(), force_terminal=True, color_system="truecolor")
    console.print(render(state, width=width))
    console.save_svg(str(path), title="supplymon demo")


def _summary(worker, settings: Settings, start: datetime, stories: list[Story], pointers: list[Pointer]) -> str:
    def rows(sql: str) -> list[dict]:
        return [orjson.loads(line) for line in worker.query(sql).splitlines()]

    (totals,) = rows(
        "SELECT count() AS orders, countIf(on_time = 1) AS delivered_on_time, countIf(on_time = 0) AS missed,"
        " round(avg(response_hours), 1) AS mean_response_hours FROM supplymon.order_facts FINAL")
    alerts = rows("SELECT kind, count() AS n, countIf(resolved_at IS NULL) AS open"
                  " FROM supplymon.alerts FINAL GROUP BY kind ORDER BY kind")
    worst = rows("SELECT distributor_id, count() AS orders, round(100 * avg(on_time), 1) AS on_time_pct"
                 " FROM supplymon.order_facts FINAL WHERE on_time IS NOT NULL"
                 " GROUP BY distributor_id ORDER BY on_time_pct LIMIT 3")
    lines = [
        "== 小结 summary ==",
        f"订单 orders: {totals['orders']:,}; 按时送达 delivered on time: {totals['delivered_on_time']:,}; "
        f"迟到或未送达 late or undelivered: {totals['missed']:,}; 平均响应 mean response time: "
        f"{totals['mean_response_hours']} 小时 h",
        "告警 alerts: " + ("; ".join(f"{kind_label(a['kind'])} {a['n']:,}（未解除 {a['open']:,} open）" for a in alerts)
                         or "无 none"),
        "按时配送率最低的配送企业 weakest distributors by on-time delivery: "
        + ", ".join(f"{w['distributor_id']} {w['on_time_pct']}%（{w['orders']:,} 单 orders）" for w in worst),
    ]
    warnings = rows(
        "SELECT kind, subject_type, product_id, region_code, distributor_id,"
        " JSONExtractString(details, 'scope') AS scope, JSONExtractString(details, 'manufacturer_id') AS manufacturer_id,"
        " toUnixTimestamp64Milli(raised_at) AS raised,"
        " toUnixTimestamp64Milli(resolved_at) AS resolved FROM supplymon.alerts FINAL"
        f" WHERE subject_type NOT IN {ORDER_SUBJECTS}"
        f" AND toUnixTimestamp64Milli(raised_at) >= {int(start.timestamp() * 1000)} ORDER BY raised, kind")
    for w in warnings:
        w.update(raised_at=w.pop("raised"), resolved_at=w.pop("resolved"), details={"scope": w.pop("scope")})
    lines.append(f"本次早期预警 early warnings in this run: {len(warnings) or '无 none'}")
    lines += [f"  {_warning_line(w)}" for w in warnings]
    if stories:
        lines.append("故事 stories:")
        lines += [f"  {_story_outcome(story, [w for w in warnings if tells(story, w)])}" for story in stories]
    lines.append("查看存储的数据 explore what was stored:")
    for what, sql in EXPLORE:
        lines += [f"  # {what}", f"  {sql_command(settings, sql)}"]
    lines += [f"{p.label}: {p.text()}" for p in pointers if p.after_run]
    return "\n".join(lines)


def _warning_line(w: dict) -> str:
    resolved = f"{local_time(w['resolved_at'])} 解除 resolved" if w["resolved_at"] is not None else "未解除 open"
    return f"{kind_label(w['kind'])} {subject_text(w)}: {local_time(w['raised_at'])} 预警 raised, {resolved}"


def _story_outcome(story: Story, warnings: list[dict]) -> str:
    if not warnings:
        return (f"{story.scenario}: 尚无 no {story.kind} yet（最迟 due by {story.due_by:%Y-%m-%d %H:%M}；"
                "提前停止的运行可能未到 a run stopped early may end before it）")
    raised = ", ".join(f"{subject_text(w)} 故事开始后 {hours_after(story, w['raised_at']):.1f} 小时 h after the story began"
                       for w in warnings)
    return f"{story.scenario}: {kind_label(story.kind)} 已预警 raised: {raised}"
