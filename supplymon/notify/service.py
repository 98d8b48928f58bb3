"""The notifier as the worker runs it: the directory, the dispatcher, the daily
digests and the acknowledgement links, over the store (`run(fn)` runs
`fn(store)` on the store's thread)."""
from __future__ import annotations

import logging
import os
import secrets
import time
from datetime import datetime
from pathlib import Path
from typing import Awaitable, Callable, Iterable, Mapping

import orjson

from supplymon.notify.channels import MESSAGE_BYTES
from supplymon.notify.digest import DAY_MS, as_of, daily_digests, first_instant, split_to_fit
from supplymon.notify.directory import Directory, load_directory
from supplymon.notify.dispatcher import Dispatcher, StoreDeliveryLog, prepared
from supplymon.notify.render import Message, Renderer
from supplymon.notify.routing import DeliveryKey
from supplymon.notify.tokens import ack_link
from supplymon.settings import SHANGHAI, Settings
from supplymon.store import sql_string

log = logging.getLogger(__name__)
ALERT_COLUMNS = ("alert_id, kind, severity, subject_type, order_id, distributor_id, institution_id, product_id, "
                 "region_code, toUnixTimestamp64Milli(raised_at) AS raised_ms, "
                 "toUnixTimestamp64Milli(resolved_at) AS resolved_ms, message, details")


def ack_secret(settings: Settings) -> bytes:
    """SUPPLYMON_ACK_SECRET, or a random key kept in the data dir (readable by its owner only)."""
    if settings.ack_secret:
        return settings.ack_secret.encode()
    path = Path(settings.data_dir) / "ack-secret"
    try:
        key = path.read_bytes().strip()
    except FileNotFoundError:
        key = b""
    if key:
        return key
    # None yet, or an empty one (a crash between creating and writing it): an empty
    # key would sign links anyone can forge. The new key is written whole under a
    # temporary name first, so the name never stands for an empty file.
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32).encode()
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fh.fileno(), 0o600)  # whatever the umask or an older file
        fh.write(key)
    os.replace(tmp, path)
    return key


def public_url(settings: Settings, directory: Directory) -> str:
    return directory.public_url or f"http://{settings.web_host}:{settings.web_port}"


def _decoded(rows: Iterable[dict]) -> list[dict]:
    """Alert rows (ALERT_COLUMNS) as the alerts topic carries them: times in epoch ms, details decoded.
    (The times are selected under other names: an alias named like its column would
    replace the column in the WHERE clause too.)"""
    return [{**{k: v for k, v in row.items() if k not in ("raised_ms", "resolved_ms")},
             "raised_at": int(row["raised_ms"]),
             "resolved_at": None if row["resolved_ms"] is None else int(row["resolved_ms"]),
             "details": orjson.loads(row["details"]) if row.get("details") else {}} for row in rows]


class Notifier:
    def __init__(self, settings: Settings, directory: Directory, run: Callable[[Callable], Awaitable],
                 secret: bytes, database: str = "supplymon"):
        self.settings = settings
        self.directory = directory
        self.run = run
        self.secret = secret
        self.database = database
        self.base_url = public_url(settings, directory)
        self.renderer = Renderer(directory.templates or None)
        self.renderer.check()
        self.dispatcher = Dispatcher(directory, StoreDeliveryLog(run, database), self.renderer, self.ack_url,
                                     generator_url=self.base_url)
        self.dispatcher.check()
        self.next_digest: int | None = None
        self.alerts_read = 0
        self.digests_at: int | None = None  # the stream time the digests were last brought up to

    @classmethod
    def from_settings(cls, settings: Settings, run: Callable[[Callable], Awaitable]) -> "Notifier":
        return cls(settings, load_directory(settings.recipients_file), run, ack_secret(settings))

    def ack_url(self, alert_id: str, recipient: str) -> str:
        expires = int(time.time() + self.directory.ack_link_hours * 3600)
        return ack_link(self.base_url, self.secret, alert_id, recipient, expires)

    async def rows(self, sql: str) -> list[dict]:
        return await self.run(lambda store: store.rows(sql))

    async def on_alerts(self, alerts: list[Mapping]) -> list[DeliveryKey]:
        self.alerts_read += len(alerts)
        return await self.dispatcher.submit(alerts)

    async def resume(self, owns: Callable[[str], bool] = lambda alert_id: True) -> int:
        """Queue again the alert deliveries a stopped worker left `pending` (their
        alerts' messages were acknowledged on the topic already)."""
        pending = await self.rows(
            f"SELECT DISTINCT alert_id FROM {self.database}.notifications FINAL "
            f"WHERE status = 'pending' AND NOT startsWith(alert_id, 'daily:')")
        ids = [row["alert_id"] for row in pending if owns(row["alert_id"])]
        if not ids:
            return 0
        alerts = _decoded(await self.rows(
            f"SELECT {ALERT_COLUMNS} FROM {self.database}.alerts FINAL "
            f"WHERE alert_id IN ({', '.join(map(sql_string, ids))})"))
        return len(await self.dispatcher.submit(alerts))

    async def on_stream_time(self, watermark: int) -> int:
        """Send the daily digests of every digest instant stream time has passed."""
        if self.next_digest is None:
            self.next_digest = await self._first_digest()
            if self.next_digest is None:
                self.digests_at = watermark
                return 0
        sent = 0
        while self.next_digest < watermark:
            sent += await self.send_digests(self.next_digest)
            self.next_digest += DAY_MS
        self.digests_at = watermark
        return sent

    async def _first_digest(self) -> int | None:
        """The first digest instant to look at: that of the earliest alert (an earlier
        digest would be empty), or the last digest sent, whichever is later (the days
        before it were gone through in order by an earlier run)."""
        (first,) = await self.rows(
            f"SELECT toUnixTimestamp64Milli(min(raised_at)) AS t, count() AS n FROM {self.database}.alerts")
        if not first["n"]:
            return None
        (last,) = await self.rows(f"SELECT max(alert_id) AS id FROM {self.database}.notifications "
                                  "WHERE startsWith(alert_id, 'daily:')")
        start = first_instant(int(first["t"]), self.directory.digest_time)
        if last["id"]:
            # "daily:YYYY-MM-DD", or "daily:YYYY-MM-DD#n/k" for a part of a long digest
            day = datetime.strptime(last["id"].removeprefix("daily:")[:10], "%Y-%m-%d").replace(tzinfo=SHANGHAI)
            start = max(start, first_instant(int(day.timestamp() * 1000), self.directory.digest_time))
        return start

    async def send_digests(self, instant: int) -> int:
        t = f"fromUnixTimestamp64Milli({instant})"
        open_alerts = _decoded(await self.rows(
            f"SELECT {ALERT_COLUMNS} FROM {self.database}.alerts FINAL "
            f"WHERE kind IN ('response_overdue', 'response_escalation') AND raised_at <= {t} "
            f"AND (resolved_at IS NULL OR resolved_at > {t})"))
        day_alerts = [as_of(a, instant) for a in _decoded(await self.rows(
            f"SELECT {ALERT_COLUMNS} FROM {self.database}.alerts FINAL "
            f"WHERE raised_at > fromUnixTimestamp64Milli({instant - DAY_MS}) AND raised_at <= {t}"))]
        ids = sorted({a["alert_id"] for a in open_alerts + day_alerts})
        acks: dict[str, list[dict]] = {}
        if ids:
            for row in await self.rows(
                    f"SELECT alert_id, recipient, formatDateTime(acked_at, '%Y-%m-%d %H:%i') AS acked_at, comment "
                    f"FROM {self.database}.alert_acks FINAL WHERE alert_id IN ({', '.join(map(sql_string, ids))}) "
                    f"ORDER BY acked_at"):
                acks.setdefault(row["alert_id"], []).append(row)
        digests = daily_digests(self.directory, instant, open_alerts, day_alerts, acks,
                                self.settings.rules.response_overdue_hours)
        queued = 0
        for digest in digests:
            rid = digest.recipient.id
            context = dict(digest.context)
            if "overdue" in context:
                context["overdue"] = [dict(o, ack_url=None if o["ack"] else self.ack_url(o["alert_id"], rid))
                                      for o in context["overdue"]]
            alerts = [prepared(a, self.ack_url(a["alert_id"], rid)) for a in digest.alerts]
            for key, message in self._digest_parts(digest, context, alerts):
                queued += await self.dispatcher.submit_message(key, digest.recipient, digest.channel, message)
        return queued

    def _digest_parts(self, digest, context: dict, alerts: list[dict]) -> list[tuple[DeliveryKey, Message]]:
        """The digest's messages: one, or, where the channel takes messages of a limited
        length (the robots), as many parts as fit it, each a delivery of its own."""
        rid, key = digest.recipient.id, digest.key
        limit = MESSAGE_BYTES.get(digest.channel.type)
        totals = dict(overdue_total=len(context.get("overdue", [])), alerts_total=len(alerts))

        def render(overdue: list, part_alerts: list, part: int, parts: int, message_id: str) -> Message:
            part_context = dict(context, **totals, part=part, parts=parts)
            if "overdue" in context:
                part_context["overdue"] = overdue
            return self.renderer.render(digest.template, message_id, rid, part_alerts, **part_context)

        if limit is None:
            return [(key, render(context.get("overdue", []), alerts, 1, 1, f"{key.alert_id}:{rid}"))]
        split = split_to_fit(context.get("overdue", []), alerts, lambda o, a, bound: len(
            render(o, a, bound, bound, f"{key.alert_id}#{bound}/{bound}:{rid}").markdown.encode()) <= limit)
        if len(split) == 1:
            return [(key, render(*split[0], 1, 1, f"{key.alert_id}:{rid}"))]
        out = []
        for n, (overdue, part_alerts) in enumerate(split, 1):
            part_id = f"{key.alert_id}#{n}/{len(split)}"
            out.append((DeliveryKey(part_id, key.state, key.recipient, key.channel),
                        render(overdue, part_alerts, n, len(split), f"{part_id}:{rid}")))
        return out

    def progress(self, watermark: int | None) -> dict:
        """For `/notify/progress`: deliveries still queued; whether the digests are behind stream time."""
        due = watermark is not None and (self.digests_at is None or self.digests_at < watermark)
        return {"queued": self.dispatcher.queued, "digests_due": due, "alerts_read": self.alerts_read}

    async def close(self) -> None:
        await self.dispatcher.close()


def wait_notified(get_progress: Callable[[], dict], stall_timeout: float = 120.0, settle_polls: int = 6) -> dict:
    """Until the worker has sent everything it queued and the digests due (replay --notify,
    the demo): nothing queued, no digest due, and no new alert read for `settle_polls` polls
    in a row (the alerts of what is stored are on the topic; this lets the agent read them)."""
    last, still, started = None, 0, time.monotonic()
    while True:
        progress = get_progress()
        idle = not progress["queued"] and not progress["digests_due"] and not progress.get("alerts_behind")
        still = still + 1 if idle and progress["alerts_read"] == last else 0
        last = progress["alerts_read"]
        if still >= settle_polls:
            return progress
        if time.monotonic() - started > stall_timeout and not idle:
            raise TimeoutError(f"notifications still pending after {stall_timeout:.0f}s: {progress}")
        time.sleep(0.25)
