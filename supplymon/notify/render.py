"""Message texts from template files (jinja2), Chinese first, English second.

The built-in templates are in `supplymon/notify/templates/`; a directory named in
the recipients file (`defaults.templates`) overrides any of them by file name, so
an operator changes the words without touching code. Each template writes
markdown (what the robots take) and sets `title` (the e-mail subject, the
robot's card title); e-mail gets the markdown as its plain-text part and an HTML
part converted from it.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from supplymon.core.alerts import local_time as alert_local_time
from supplymon.settings import ConfigError

BUILT_IN = Path(__file__).with_name("templates")
KIND_NAMES = {
    "response_overdue": ("订单超时未响应", "response overdue"),
    "response_escalation": ("督促后仍未响应（上报）", "response escalation"),
    "delivery_overdue": ("配送超时", "delivery overdue"),
    "confirmation_late": ("到货确认延迟", "late confirmation"),
    "supply_shortage": ("供应短缺", "supply shortage"),
    "demand_surge": ("需求激增", "demand surge"),
    "low_delivery_rate": ("按时配送率偏低", "low on-time delivery rate"),
    "distributor_limit_exceeded": ("配送企业超过一厂一区两配送", "more distributors than allowed"),
    "price_linkage_overdue": ("价格未全国联动", "price linkage overdue"),
    "price_inconsistent": ("同城不同价", "price differs within the city"),
    "price_rise": ("价格上涨", "price rise"),
    "remote_refusal": ("拒绝偏远地区配送", "refuses remote areas"),
    "short_supply": ("不足额供货", "short supply"),
}
SEVERITY_NAMES = {"critical": ("严重", "critical"), "warning": ("警告", "warning"), "info": ("提示", "info")}


@dataclass
class Message:
    """One message to one recipient on one channel, rendered."""

    template: str  # alert, folded, daily_distributor, daily_supervisor
    id: str  # what a receiver can deduplicate on: "<alert_id>:<state>", a digest's id, ...
    title: str
    markdown: str
    recipient: str
    alerts: list[dict] = field(default_factory=list)  # the alerts it tells of (with `state`, `ack_url`)

    @property
    def html(self) -> str:
        return markdown_to_html(self.markdown, self.title)


def local_time(ms: int | None) -> str:
    return "" if ms is None else alert_local_time(ms)


class Renderer:
    def __init__(self, override_dir: str | Path | None = None):
        loaders = [jinja2.FileSystemLoader(str(override_dir))] if override_dir else []
        loaders.append(jinja2.FileSystemLoader(str(BUILT_IN)))
        self.env = jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), undefined=jinja2.StrictUndefined,
                                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
        self.env.filters["local_time"] = local_time
        self.env.globals.update(kind_zh=lambda k: KIND_NAMES.get(k, (k, k))[0],
                                kind_en=lambda k: KIND_NAMES.get(k, (k, k))[1],
                                severity_zh=lambda s: SEVERITY_NAMES.get(s, (s, s))[0])

    def check(self) -> None:
        """Load every template now, so a broken override fails at start, not at the first alert."""
        for name in sorted(p.name for p in BUILT_IN.glob("*.md.j2")):
            try:
                self.env.get_template(name)
            except jinja2.TemplateError as exc:
                where = f"{exc.filename}:{exc.lineno}" if isinstance(exc, jinja2.TemplateSyntaxError) else name
                raise ConfigError(f"模板 {where} 有误：{exc} / template {where} is broken: {exc}") from None

    def render(self, template: str, message_id: str, recipient: str, alerts: list[dict],
               **context: Any) -> Message:
        module = self.env.get_template(f"{template}.md.j2").make_module(
            {"alerts": alerts, "recipient": recipient, **context})
        title = str(getattr(module, "title", "")).strip() or template
        return Message(template, message_id, title, str(module).strip() + "\n", recipient, alerts)


_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_BOLD = re.compile(r"\*\*(.+?)\*\*")


def _inline(text: str) -> str:
    out = html.escape(text)  # a link's address is escaped here with the rest
    out = _LINK.sub(lambda m: f'<a href="{m[2]}">{m[1]}</a>', out)
    return _BOLD.sub(r"<strong>\1</strong>", out)


def markdown_to_html(markdown: str, title: str) -> str:
    """The small markdown the templates write (headings, lists, quotes, bold, links) as HTML."""
    parts, in_list = [], False
    for line in markdown.splitlines():
        stripped = line.strip()
        is_item = stripped.startswith(("- ", "* "))
        if in_list and not is_item:
            parts.append("</ul>")
            in_list = False
        if not stripped:
            continue
        if heading := re.match(r"(#{1,6})\s+(.*)", stripped):
            level = len(heading[1])
            parts.append(f"<h{level}>{_inline(heading[2])}</h{level}>")
        elif is_item:
            if not in_list:
                parts.append("<ul>")
                in_list = True
            parts.append(f"<li>{_inline(stripped[2:])}</li>")
        elif stripped.startswith(">"):
            parts.append(f"<blockquote>{_inline(stripped.lstrip('> '))}</blockquote>")
        else:
            parts.append(f"<p>{_inline(stripped)}</p>")
    if in_list:
        parts.append("</ul>")
    return (f'<!DOCTYPE html>\n<html lang="zh-CN"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            "</head><body>\n" + "\n".join(parts) + "\n</body></html>\n")
