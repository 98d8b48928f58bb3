"""What the demo shows while it plays.

`DemoState` follows the run (simulated time, events sent and stored, every alert
from the alerts topic, the early warnings and the story each belongs to). Two
views read it: `LiveView`, a compact rich layout redrawn in place on a terminal,
and `PlainView`, a line per alert and a progress line now and then, for logs and
pipes. Both append every alert to the run's alert log in the data dir.

What the view lists comes from data: the stories from the simulator's
`History.stories`, the places to look next from `Pointer`s (a label and a text, or
a function giving the text at each redraw), so that a new story, page or receiver
only adds an entry.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, TextIO

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from supplymon.core.alerts import KIND_NAMES, local_time
from supplymon.settings import SHANGHAI
from supplymon.simulate import Story

# Alerts about one order (deadlines, late confirmations); the others are the early warnings.
ORDER_SUBJECTS = ("order", "institution")
SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def kind_label(kind: str) -> str:
    """An alert kind for people: its Chinese name, then the kind itself."""
    return f"{KIND_NAMES[kind][0]} {kind}" if kind in KIND_NAMES else kind


def is_early_warning(alert: dict) -> bool:
    return alert["subject_type"] not in ORDER_SUBJECTS


def alert_subject(alert: dict) -> tuple[str, str] | str:
    """An alert's subject as `Story.subject` gives it: the distributor, or (product or
    manufacturer, region or city)."""
    if alert["subject_type"] == "distributor":
        return alert["distributor_id"]
    if alert["subject_type"] == "manufacturer_city":
        return (alert.get("manufacturer_id") or (alert.get("details") or {}).get("manufacturer_id", ""),
                alert["region_code"])
    return (alert["product_id"], alert["region_code"])


def tells(story: Story, alert: dict) -> bool:
    """Whether `alert` (a row of the alerts table or topic) is the one `story` was told to raise."""
    return alert["kind"] == story.kind and alert_subject(alert) == story.subject


def hours_after(story: Story, raised_ms: int) -> float:
    return (raised_ms - story.starts_at.timestamp() * 1000) / 3_600_000


def subject_text(alert: dict) -> str:
    subject = alert_subject(alert)
    if isinstance(subject, str):
        scope = (alert.get("details") or {}).get("scope")
        return subject + (f" ({scope})" if scope and scope != "all" else "")
    return " @ ".join(v for v in subject if v)


def log_line(alert: dict) -> str:
    state = "resolved" if alert["resolved_at"] else "RAISED"
    return (f"[{local_time(alert['raised_at'])}] {alert['severity']:>8} {state:>8} {alert['kind']}: "
            f"{alert['message']}")


@dataclass
class Pointer:
    """Where to look next: a label (Chinese, then English) and a text, or a function
    that gives the text when the view is drawn (e.g. what a receiver got so far).
    `after_run`: still there once the demo has stopped (the summary lists it too)."""

    label: str
    value: str | Callable[[], str]
    after_run: bool = False

    def text(self) -> str:
        return self.value() if callable(self.value) else self.value


@dataclass
class EarlyWarning:
    alert: dict
    story: Story | None


@dataclass
class DemoState:
    stories: list[Story]
    start: datetime  # simulated time the run begins and ends
    end: datetime
    speed: float
    pointers: list[Pointer] = field(default_factory=list)
    phase: str = "启动中 starting"
    sim_time: datetime | None = None
    sent: int = 0  # business events published (ticks not counted)
    published_offsets: int = 0  # offsets published, ticks' copies included; and of them stored
    stored_offsets: int = 0
    alerts: dict[str, dict] = field(default_factory=dict)  # alert_id -> its latest row
    warnings: list[EarlyWarning] = field(default_factory=list)  # early warnings, as raised
    _samples: deque = field(default_factory=lambda: deque(maxlen=40))  # (monotonic, sent)
    _played: list[float] = field(default_factory=list)  # monotonic: first event sent, then all sent

    def on_sent(self, event: dict) -> None:
        if event["kind"] != "tick":
            self.sent += 1
        if not self._played:
            self._played.append(time.monotonic())
        self.sim_time = datetime.fromisoformat(event["ts"])

    def played(self) -> None:
        """Every event is sent: from now on the rate is the run's mean."""
        if len(self._played) == 1:
            self._played.append(time.monotonic())

    @property
    def all_sent(self) -> bool:
        return len(self._played) == 2

    def events_per_second(self) -> float:
        if self.all_sent:
            return self.sent / max(self._played[1] - self._played[0], 1e-3)
        now = time.monotonic()
        self._samples.append((now, self.sent))
        while len(self._samples) > 2 and now - self._samples[0][0] > 5:
            self._samples.popleft()
        (t0, n0), (t1, n1) = self._samples[0], self._samples[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def on_alert(self, alert: dict) -> EarlyWarning | None:
        """Take an alert from the topic; an early warning raised for the first time is returned."""
        known = alert["alert_id"] in self.alerts
        self.alerts[alert["alert_id"]] = alert
        if known or alert["resolved_at"] or not is_early_warning(alert):
            return None
        warning = EarlyWarning(alert, next((s for s in self.stories if tells(s, alert)), None))
        self.warnings.append(warning)
        return warning

    def by_kind(self) -> dict[str, tuple[int, int]]:
        """kind -> (alerts raised, still open)."""
        counts: dict[str, list[int]] = {}
        for alert in self.alerts.values():
            count = counts.setdefault(alert["kind"], [0, 0])
            count[0] += 1
            count[1] += alert["resolved_at"] is None
        return {kind: (n, open_) for kind, (n, open_) in sorted(counts.items())}

    def story_warnings(self, story: Story) -> list[EarlyWarning]:
        return [w for w in self.warnings if w.story is story]


class AlertLog:
    """Every alert the run sees, one line each, in the data dir's logs."""

    def __init__(self, path: Path):
        self.path = path
        self._file = open(path, "w", encoding="utf-8")

    def write(self, alert: dict) -> None:
        self._file.write(log_line(alert) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class PlainView:
    """Line output: each alert as it comes, a progress line every 10 s."""

    def __init__(self, state: DemoState, log: AlertLog, out: TextIO):
        self.state, self.log, self.out = state, log, out
        self._last_progress = time.monotonic()

    def __enter__(self) -> "PlainView":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def alert(self, alert: dict) -> None:
        self.log.write(alert)
        warning = self.state.on_alert(alert)
        self.say(log_line(alert))
        if warning and warning.story:
            self.say(f"    <- 故事 story {warning.story.scenario}: 故事开始后 "
                     f"{hours_after(warning.story, alert['raised_at']):.1f} 小时 h after it began")

    def tick(self) -> None:
        if time.monotonic() - self._last_progress > 10 and self.state.sim_time:
            self._last_progress = time.monotonic()
            self.say(f"-- 模拟时间 simulated time {self.state.sim_time:%Y-%m-%d %H:%M}, "
                     f"已发送 {self.state.sent:,} events sent")


class LiveView:
    """The compact live layout, redrawn in place (rich Live)."""

    WARNINGS_SHOWN = 6

    def __init__(self, state: DemoState, log: AlertLog, console: Console):
        from rich.live import Live

        self.state, self.log, self.console = state, log, console
        # Redrawn from the event loop (tick), never from Live's own thread: the state
        # changes on the loop, and a redraw must not read it halfway through a change.
        self._live = Live(get_renderable=self.render, console=console, auto_refresh=False)

    def __enter__(self) -> "LiveView":
        self._live.start(refresh=True)
        return self

    def __exit__(self, *exc) -> None:
        self._live.refresh()
        self._live.stop()

    def say(self, text: str) -> None:
        self._live.console.print(text)  # printed above the live region

    def alert(self, alert: dict) -> None:
        self.log.write(alert)
        warning = self.state.on_alert(alert)
        if warning and warning.story:
            # Drawn as it comes: alerts arrive a fetch at a time (and those of a worker
            # catching up all at the end), and the panel holds the latest few only, so
            # a story's warning would otherwise scroll past between two redraws.
            self._live.refresh()

    def tick(self) -> None:
        self._live.refresh()

    def render(self) -> Group:
        # The latest warnings, as many as the terminal's height leaves room for: with
        # their message below each while there is room for two lines each, else one;
        # none on a terminal too small (the stories still show theirs). Live would crop
        # the bottom of a view taller than the terminal.
        width, state = self.console.width, self.state
        alert_rows = -(-len(state.by_kind()) // _groups(width)) or 1
        others = (5 + alert_rows + 2 + (len(state.stories) + 2 if state.stories else 0)
                  + len(state.pointers) + 3 + 1)  # borders, a wrapped command, the cursor line
        room = self.console.height - others - 3  # the warnings' borders and "more earlier"
        if room >= 4:
            return render(state, min(self.WARNINGS_SHOWN, room // 2), width)
        return render(state, max(0, room), width, messages=False)


def _clock(state: DemoState) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    days = (state.end - state.start).total_seconds() / 86400
    if state.sim_time:
        done = (state.sim_time - state.start).total_seconds() / 86400
        bar = "█" * round(20 * done / days) + "░" * (20 - round(20 * done / days))
        now = f"{state.sim_time.astimezone(SHANGHAI):%Y-%m-%d %H:%M}  第 {done:.1f}/{days:g} 天 day  {bar}"
    else:
        now = f"{state.start:%Y-%m-%d %H:%M} 起 from, {days:g} 天 days at {state.speed:g}x"
    grid.add_row("模拟时间 simulated", now)
    stored = (f"{100 * state.stored_offsets / state.published_offsets:.0f}%" if state.published_offsets else "-")
    mean = " (平均 mean)" if state.all_sent else ""
    grid.add_row("事件/秒 events/s", f"{state.events_per_second():,.0f}{mean}   已发送 sent {state.sent:,}   "
                                     f"已处理 stored {stored}")
    grid.add_row("状态 state", state.phase)
    return grid


def _groups(width: int) -> int:
    """Alert kinds side by side: as many groups as the width holds, up to 3."""
    return max(1, min(3, (width - 4) // 54))


def _alert_counts(state: DemoState, width: int):
    counts = list(state.by_kind().items())
    if not counts:
        return Text("暂无 none yet", style="dim")
    groups = _groups(width)
    table = Table.grid(padding=(0, 1))
    for _ in range(groups):
        table.add_column(no_wrap=True, overflow="ellipsis")
        table.add_column(justify="right", style="bold", no_wrap=True, min_width=5)
        table.add_column(style="dim", no_wrap=True, min_width=10)
    rows = -(-len(counts) // groups)
    for r in range(rows):
        cells = []
        for kind, (raised, open_) in counts[r::rows]:
            cells += [kind_label(kind), f"{open_:,}", f"/ {raised:,}"]
        table.add_row(*cells, *[""] * (3 * groups - len(cells)))
    return table


def _stories(state: DemoState) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(no_wrap=True, min_width=max(len(s.scenario) for s in state.stories))
    for _ in range(3):
        table.add_column(no_wrap=True, overflow="ellipsis", min_width=8)
    for story in state.stories:
        warned = state.story_warnings(story)
        if warned:
            first = min(w.alert["raised_at"] for w in warned)
            hours = hours_after(story, first)
            outcome = Text(f"✓ {hours:.1f} 小时后预警 raised after {hours:.1f} h", style="green")
        elif (state.sim_time or state.start) < story.starts_at:
            outcome = Text(f"{story.starts_at:%m-%d %H:%M} 开始 begins", style="dim")
        else:
            outcome = Text(f"进行中 under way · 最迟 due {story.due_by:%m-%d %H:%M}", style="yellow")
        subject = story.subject if isinstance(story.subject, str) else " @ ".join(v for v in story.subject if v)
        table.add_row(Text(story.scenario, style="bold"), kind_label(story.kind), subject, outcome)
    return table


def _warnings(state: DemoState, shown: int, messages: bool) -> Table:
    table = Table.grid()
    table.add_column(no_wrap=True, overflow="ellipsis")
    if not state.warnings:
        table.add_row(Text("暂无 none yet", style="dim"))
    for warning in state.warnings[-shown:]:
        alert = warning.alert
        head = Text(f"{local_time(alert['raised_at'])[5:]} ")
        head.append(kind_label(alert["kind"]), style=SEVERITY_STYLE.get(alert["severity"], ""))
        head.append(f" {subject_text(alert)}")
        if warning.story:
            head.append(f"  ← 故事 story {warning.story.scenario}", style="green")
        table.add_row(head)
        if messages:
            table.add_row(Text("  " + alert["message"].split(" / ", 1)[0], style="dim"))
    if len(state.warnings) > shown:
        table.add_row(Text(f"  (另有更早的 {len(state.warnings) - shown} 条 more earlier)", style="dim"))
    return table


def _pointers(state: DemoState) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for pointer in state.pointers:
        table.add_row(pointer.label, pointer.text())
    return table


def render(state: DemoState, warnings_shown: int = 6, width: int = 120, messages: bool = True) -> Group:
    """The live layout from the state alone (also used to save it as an image)."""
    def panel(body, title: str, style: str) -> Panel:
        return Panel(body, title=title, title_align="left", border_style=style)

    parts = [panel(_clock(state), "supplymon 演示 demo", "blue"),
             panel(_alert_counts(state, width), "告警 alerts: 未解除 open / 共 raised", "yellow")]
    if state.stories:
        parts.append(panel(_stories(state), "故事 stories", "magenta"))
    if warnings_shown:
        parts.append(panel(_warnings(state, warnings_shown, messages), "早期预警 early warnings", "red"))
    parts.append(panel(_pointers(state), "接下来看 where to look next", "green"))
    return Group(*parts)
