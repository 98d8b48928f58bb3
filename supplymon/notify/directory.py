"""The recipients directory (通讯录): who hears of which alerts, on which channels.

A TOML file (path in `Settings.recipients_file`, env SUPPLYMON_RECIPIENTS), read
and validated once at start: every problem is reported at once, each line in
Chinese first and English second, so an operator can fix the file in one go.
An example with every key: `infra/recipients.example.toml`.

Secrets need not be written in the file: any string value `env:NAME` is read from
the environment variable NAME (an error if it is unset).
"""
from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from typing import Any, Mapping

from supplymon.settings import ConfigError, read_toml

SEVERITIES = ("info", "warning", "critical")
ALERT_KINDS = (
    "response_overdue", "response_escalation", "delivery_overdue", "confirmation_late",
    "supply_shortage", "demand_surge", "low_delivery_rate",
    "distributor_limit_exceeded", "price_linkage_overdue", "price_inconsistent", "price_rise",
    "remote_refusal", "short_supply",
)
ROBOTS = ("wecom", "dingtalk", "feishu")
# Required keys per channel type (besides `type`); secrets may be "env:NAME".
CHANNEL_KEYS: dict[str, tuple[str, ...]] = {
    "wecom": ("key",),
    "dingtalk": ("access_token", "secret"),
    "feishu": ("token", "secret"),
    "email": ("to",),
    "webhook": ("url", "secret"),
    "alertmanager": ("url",),
    "sms": ("phones", "gateway"),
}
OPTIONAL_KEYS = {"name", "kinds", "min_severity", "mode", "resolved", "daily", "per_minute", "url"}
# Messages a minute each vendor accepts per robot (stack notes); 0: no limit.
DEFAULT_PER_MINUTE = {"wecom": 20, "dingtalk": 20, "feishu": 100}
PER_SECOND = {"feishu": 5}  # Feishu also takes at most 5 a second
THROTTLE_SECONDS = {"dingtalk": 600.0}
VENDOR_URLS = {
    "wecom": "https://qyapi.weixin.qq.com",
    "dingtalk": "https://oapi.dingtalk.com",
    "feishu": "https://open.feishu.cn",
}
ROLES = ("distributor", "supervisor", "observer")


class DirectoryError(ConfigError):
    """The recipients directory cannot be used; the message lists every problem."""


@dataclass(frozen=True)
class Channel:
    type: str
    label: str  # the `channel` column of `notifications`: the name, or the type
    options: Mapping[str, Any]  # the type's keys (key, secret, url, to, ...)
    kinds: frozenset[str] | None = None  # None: every kind routed to the recipient
    min_severity: str = "info"
    mode: str = "immediate"  # or "digest": only the daily message
    resolved: bool = True  # also tell when an alert is resolved
    daily: bool = True  # the daily digest (delayed-response list / region summary)
    per_minute: int = 0  # robot rate limit; over it, alerts fold into one digest message

    def wants(self, alert: Mapping) -> bool:
        if self.kinds is not None and alert["kind"] not in self.kinds:
            return False
        rank = {name: n for n, name in enumerate(SEVERITIES)}
        return rank.get(alert.get("severity", "info"), len(SEVERITIES)) >= rank[self.min_severity]

    @property
    def endpoint(self) -> str:
        """What a vendor's rate limit is counted on: one robot, one mailbox server, ..."""
        return f"{self.type}:" + str(self.options.get("url") or self.options.get("key")
                                     or self.options.get("access_token") or self.options.get("token") or self.label)


@dataclass(frozen=True)
class Recipient:
    id: str
    role: str  # distributor, supervisor, observer
    name: str
    channels: tuple[Channel, ...]
    regions: tuple[str, ...] = ()  # region codes or patterns ("3607*")
    distributors: tuple[str, ...] = ()  # a supervisor's distributors, whatever the region

    def covers_region(self, region_code: str) -> bool:
        return bool(region_code) and any(fnmatch.fnmatchcase(region_code, p) for p in self.regions)


@dataclass(frozen=True)
class Smtp:
    host: str = "127.0.0.1"
    port: int = 25
    tls: str = "none"  # none, starttls, ssl
    username: str = ""
    password: str = ""
    sender: str = "supplymon <supplymon@localhost>"
    timeout_seconds: float = 30.0


@dataclass(frozen=True)
class Directory:
    recipients: tuple[Recipient, ...] = ()
    digest_time: time = time(9, 0)  # Asia/Shanghai, on event time
    ack_link_hours: float = 72.0
    public_url: str = ""  # base of acknowledgement links; "" = the worker's web address
    attempts: int = 5
    first_backoff_seconds: float = 1.0
    max_backoff_seconds: float = 60.0
    # How long a robot that answered "too many" is left alone; None: the vendor's own
    # (DingTalk blocks a robot for 10 minutes, the others count by the minute).
    throttle_seconds: float | None = None

    def throttle_for(self, channel_type: str) -> float:
        return self.throttle_seconds if self.throttle_seconds is not None else THROTTLE_SECONDS.get(channel_type, 60.0)
    templates: str = ""  # a directory of templates that override the built-in ones
    vendors: Mapping[str, str] = field(default_factory=lambda: dict(VENDOR_URLS))
    smtp: Smtp = field(default_factory=Smtp)
    source: str = ""

    def by_id(self, recipient_id: str) -> Recipient | None:
        for recipient in self.recipients:
            if recipient.id == recipient_id:
                return recipient
        return None

    def of_role(self, role: str) -> list[Recipient]:
        return [r for r in self.recipients if r.role == role]


class _Problems:
    def __init__(self, source: str):
        self.source = source
        self.lines: list[str] = []

    def add(self, where: str, zh: str, en: str) -> None:
        self.lines.append(f"  {where}: {zh} / {en}")

    def raise_if_any(self) -> None:
        if self.lines:
            raise DirectoryError(f"通讯录 {self.source} 有误 / recipients directory {self.source} is invalid:\n"
                                 + "\n".join(self.lines))


def _resolve_env(value: Any, where: str, problems: _Problems, env: Mapping[str, str]) -> Any:
    if isinstance(value, str) and value.startswith("env:"):
        name = value[4:]
        if name not in env:
            problems.add(where, f"环境变量 {name} 未设置", f"environment variable {name} is not set")
            return ""
        return env[name]
    if isinstance(value, list):
        return [_resolve_env(v, where, problems, env) for v in value]
    return value


def _number(body: dict, key: str, default: float, where: str, problems: _Problems, *, whole: bool = False,
            minimum: float = 0) -> Any:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum or (
            whole and value != int(value)):
        kind_zh, kind_en = ("整数", "a whole number") if whole else ("数字", "a number")
        problems.add(f"{where}.{key}", f"应为不小于 {minimum:g} 的{kind_zh}，实为 {value!r}",
                     f"must be {kind_en} >= {minimum:g}, got {value!r}")
        return default
    return int(value) if whole else float(value)


def _channel(body: Any, where: str, problems: _Problems, env: Mapping[str, str]) -> Channel | None:
    if not isinstance(body, dict):
        problems.add(where, "应为表（[[...channels]]）", "must be a table ([[...channels]])")
        return None
    kind = body.get("type")
    if kind not in CHANNEL_KEYS:
        problems.add(f"{where}.type", f"未知渠道类型 {kind!r}（可用：{'、'.join(CHANNEL_KEYS)}）",
                     f"unknown channel type {kind!r} (one of {', '.join(CHANNEL_KEYS)})")
        return None
    for key in sorted(set(body) - set(CHANNEL_KEYS[kind]) - OPTIONAL_KEYS - {"type"}):
        problems.add(f"{where}.{key}", f"{kind} 渠道没有此项", f"unknown key for a {kind} channel")
    options: dict[str, Any] = {}
    for key in CHANNEL_KEYS[kind]:
        value = _resolve_env(body.get(key), f"{where}.{key}", problems, env)
        if value in (None, "", []):
            problems.add(f"{where}.{key}", "缺少此项", "missing")
        elif key in ("to", "phones") and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            problems.add(f"{where}.{key}", "应为字符串列表", "must be a list of strings")
        elif key not in ("to", "phones") and not isinstance(value, str):
            problems.add(f"{where}.{key}", "应为字符串", "must be a string")
        options[key] = value
    if body.get("url") is not None:
        url = _resolve_env(body["url"], f"{where}.url", problems, env)
        if not isinstance(url, str) or not re.match(r"https?://", url):
            problems.add(f"{where}.url", f"应为 http(s):// 地址，实为 {url!r}", f"must be an http(s):// URL, got {url!r}")
        options["url"] = url
    if kind == "email":
        for address in options.get("to") or []:
            if isinstance(address, str) and "@" not in address:
                problems.add(f"{where}.to", f"{address!r} 不是邮箱地址", f"{address!r} is not an e-mail address")
    kinds = body.get("kinds")
    if kinds is not None:
        if not isinstance(kinds, list) or not kinds:
            problems.add(f"{where}.kinds", "应为告警类型的非空列表", "must be a non-empty list of alert kinds")
            kinds = None
        else:
            for k in kinds:
                if k not in ALERT_KINDS:
                    problems.add(f"{where}.kinds", f"未知告警类型 {k!r}", f"unknown alert kind {k!r}")
            kinds = frozenset(kinds)
    severity = body.get("min_severity", "info")
    if severity not in SEVERITIES:
        problems.add(f"{where}.min_severity", f"应为 {'/'.join(SEVERITIES)} 之一，实为 {severity!r}",
                     f"must be one of {'/'.join(SEVERITIES)}, got {severity!r}")
        severity = "info"
    mode = body.get("mode", "immediate")
    if mode not in ("immediate", "digest"):
        problems.add(f"{where}.mode", f"应为 immediate（即时）或 digest（每日汇总），实为 {mode!r}",
                     f"must be immediate or digest, got {mode!r}")
        mode = "immediate"
    if kind == "alertmanager" and mode == "digest":
        problems.add(f"{where}.mode", "Alertmanager 只接收即时告警", "Alertmanager takes immediate alerts only")
    flags = {}
    for flag in ("resolved", "daily"):
        value = body.get(flag, flag != "daily" or kind != "alertmanager")
        if not isinstance(value, bool):
            problems.add(f"{where}.{flag}", "应为 true 或 false", "must be true or false")
            value = True
        flags[flag] = value
    per_minute = _number(body, "per_minute", DEFAULT_PER_MINUTE.get(kind, 0), where, problems, whole=True)
    label = body.get("name", kind)
    if not isinstance(label, str) or not label:
        problems.add(f"{where}.name", "应为非空字符串", "must be a non-empty string")
        label = kind
    return Channel(kind, label, options, kinds, severity, mode, flags["resolved"], flags["daily"], per_minute)


def _recipient(role: str, body: Any, where: str, problems: _Problems, env: Mapping[str, str]) -> Recipient | None:
    if not isinstance(body, dict):
        problems.add(where, f"应为表（[[{role}]]）", f"must be a table ([[{role}]])")
        return None
    rid = body.get("id")
    if not isinstance(rid, str) or not rid:
        problems.add(f"{where}.id", "缺少编号", "missing id")
        rid = f"<{where}>"
    allowed = {"id", "name", "channels", "regions", "distributors"}
    for key in sorted(set(body) - allowed):
        problems.add(f"{where}.{key}", "没有此项", "unknown key")
    lists = {}
    for key in ("regions", "distributors"):
        value = body.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            problems.add(f"{where}.{key}", "应为字符串列表", "must be a list of strings")
            value = []
        lists[key] = tuple(value)
    if role == "supervisor" and not lists["regions"] and not lists["distributors"]:
        problems.add(where, "监管人员须有 regions（辖区代码）或 distributors", "a supervisor needs regions or distributors")
    raw_channels = body.get("channels")
    if not isinstance(raw_channels, list) or not raw_channels:
        problems.add(f"{where}.channels", "至少需要一个通知渠道", "needs at least one channel")
        raw_channels = []
    channels = [c for n, raw in enumerate(raw_channels)
                if (c := _channel(raw, f"{where}.channels[{n}]", problems, env)) is not None]
    labels = [c.label for c in channels]
    for label in sorted({x for x in labels if labels.count(x) > 1}):
        problems.add(f"{where}.channels", f"渠道名 {label!r} 重复，请用 name 区分",
                     f"channel name {label!r} repeats: tell them apart with `name`")
    return Recipient(rid, role, str(body.get("name", rid)), tuple(channels),
                     lists["regions"], lists["distributors"])


def parse_directory(doc: Mapping[str, Any], source: str = "<directory>",
                    env: Mapping[str, str] | None = None) -> Directory:
    env = os.environ if env is None else env
    problems = _Problems(source)
    for key in sorted(set(doc) - {"defaults", "vendors", "smtp", *ROLES}):
        problems.add(key, "没有此节", "unknown section")
    defaults = doc.get("defaults", {})
    known_defaults = {"digest_time", "ack_link_hours", "public_url", "attempts", "first_backoff_seconds",
                      "max_backoff_seconds", "throttle_seconds", "templates"}
    for key in sorted(set(defaults) - known_defaults):
        problems.add(f"defaults.{key}", "没有此项", "unknown key")
    digest_time = time(9, 0)
    raw_time = defaults.get("digest_time", "09:00")
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", raw_time) if isinstance(raw_time, str) else None
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        problems.add("defaults.digest_time", f"应为 HH:MM（北京时间），实为 {raw_time!r}",
                     f"must be HH:MM (Asia/Shanghai), got {raw_time!r}")
    else:
        digest_time = time(int(match[1]), int(match[2]))
    public_url = defaults.get("public_url", "")
    if public_url and not (isinstance(public_url, str) and re.match(r"https?://", public_url)):
        problems.add("defaults.public_url", "应为 http(s):// 地址", "must be an http(s):// URL")
        public_url = ""
    templates = defaults.get("templates", "")
    if templates and not Path(templates).is_dir():
        problems.add("defaults.templates", f"模板目录 {templates} 不存在", f"template directory {templates} does not exist")
    vendors = dict(VENDOR_URLS)
    for name, url in doc.get("vendors", {}).items():
        if name not in VENDOR_URLS:
            problems.add(f"vendors.{name}", f"未知厂商（可用：{'、'.join(VENDOR_URLS)}）",
                         f"unknown vendor (one of {', '.join(VENDOR_URLS)})")
        elif not isinstance(url, str) or not re.match(r"https?://", url):
            problems.add(f"vendors.{name}", "应为 http(s):// 地址", "must be an http(s):// URL")
        else:
            vendors[name] = url.rstrip("/")
    smtp_body = {k: _resolve_env(v, f"smtp.{k}", problems, env) for k, v in doc.get("smtp", {}).items()}
    smtp = Smtp()
    smtp_fields = set(Smtp.__dataclass_fields__)
    for key in sorted(set(smtp_body) - smtp_fields):
        problems.add(f"smtp.{key}", "没有此项", "unknown key")
    if smtp_body.get("tls", "none") not in ("none", "starttls", "ssl"):
        problems.add("smtp.tls", "应为 none、starttls 或 ssl", "must be none, starttls or ssl")
    elif not isinstance(smtp_body.get("port", 25), int) or not 0 < smtp_body.get("port", 25) < 65536:
        problems.add("smtp.port", f"应为端口号，实为 {smtp_body.get('port')!r}", f"must be a port number, got {smtp_body.get('port')!r}")
    else:
        smtp = Smtp(**{k: v for k, v in smtp_body.items() if k in smtp_fields})
    recipients: list[Recipient] = []
    for role in ROLES:
        entries = doc.get(role, [])
        if not isinstance(entries, list):
            problems.add(role, f"应写作 [[{role}]]", f"must be written [[{role}]]")
            continue
        for n, body in enumerate(entries):
            recipient = _recipient(role, body, f"{role}[{n}]", problems, env)
            if recipient is not None:
                recipients.append(recipient)
    ids = [r.id for r in recipients]
    for rid in sorted({x for x in ids if ids.count(x) > 1}):
        problems.add(rid, "编号重复", "id repeats")
    if any(c.type == "email" for r in recipients for c in r.channels) and "smtp" not in doc:
        problems.add("smtp", "有邮件渠道但缺少 [smtp] 节", "e-mail channels need an [smtp] section")
    directory = Directory(
        recipients=tuple(recipients), digest_time=digest_time,
        ack_link_hours=_number(defaults, "ack_link_hours", 72.0, "defaults", problems, minimum=0.01),
        public_url=public_url.rstrip("/"),
        attempts=_number(defaults, "attempts", 5, "defaults", problems, whole=True, minimum=1),
        first_backoff_seconds=_number(defaults, "first_backoff_seconds", 1.0, "defaults", problems),
        max_backoff_seconds=_number(defaults, "max_backoff_seconds", 60.0, "defaults", problems),
        throttle_seconds=(_number(defaults, "throttle_seconds", 60.0, "defaults", problems)
                          if "throttle_seconds" in defaults else None),
        templates=templates, vendors=vendors, smtp=smtp, source=source)
    problems.raise_if_any()
    return directory


def load_directory(path: str | Path, env: Mapping[str, str] | None = None) -> Directory:
    path = Path(path)
    doc = read_toml(path, "通讯录文件", "recipients directory", DirectoryError)
    return parse_directory(doc, str(path), env)
