"""Sending: one lane per endpoint (robot, mailbox server, webhook), each with its
own queue, rate window and retries, so a slow or failing receiver never holds up
the others; the delivery log (`notifications`) is read before anything is queued
and written as each delivery ends, so a restart or a replay sends nothing twice.

A delivery is one (alert state, recipient, channel). Before queueing, its row is
written `pending`; then `sent` (with the attempts it took) or, after `attempts`
tries with exponential backoff, `failed` (counted in
`supplymon_notifications_total{status="failed"}`). A `pending` row left by a
crash is sent again on restart (a receiver that deduplicates on the message id
sees it once; a robot might show it twice if the crash fell between its answer
and the log write). A robot's "too many messages" answer blocks its lane for
`throttle_seconds`; what waits is then folded into one message (never dropped).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Iterable, Mapping, Protocol

import aiohttp
from prometheus_client import Counter, Gauge

from supplymon import metrics
from supplymon.notify.channels import MESSAGE_BYTES, ChannelClient, DeliveryError, Throttled
from supplymon.notify.directory import PER_SECOND, Channel, Directory, DirectoryError, Recipient
from supplymon.notify.ratelimit import RateLimits, plan
from supplymon.notify.render import Message, Renderer
from supplymon.notify.routing import DeliveryKey, alert_state, details_of, key_of, route
from supplymon.retry import retry_until_done

log = logging.getLogger(__name__)

sent_total = Counter("supplymon_notifications_total", "Deliveries ended, by channel type and status (sent/failed)",
                     ["channel", "status"], registry=metrics.REGISTRY)
retries_total = Counter("supplymon_notification_retries_total", "Failed delivery attempts tried again, by channel type",
                        ["channel"], registry=metrics.REGISTRY)
folded_total = Counter("supplymon_notifications_folded_total",
                       "Alerts folded into one message over a robot's rate limit, by channel type",
                       ["channel"], registry=metrics.REGISTRY)
queued_gauge = Gauge("supplymon_notifications_queued", "Deliveries waiting to be sent", registry=metrics.REGISTRY)
FINAL = ("sent", "failed")


class DeliveryLog(Protocol):
    async def statuses(self, keys: list[DeliveryKey]) -> dict[DeliveryKey, str]: ...

    async def record(self, rows: list[dict]) -> None: ...


def log_row(key: DeliveryKey, status: str, attempts: int = 0, error: str = "", message: str = "") -> dict:
    now_ms = time.time() * 1000  # when it happened on this machine (an operational log, not a rule)
    return {"alert_id": key.alert_id, "state": key.state, "recipient": key.recipient, "channel": key.channel,
            "status": status, "attempts": attempts, "last_error": error[:1000], "message": message,
            "sent_at": int(now_ms) if status == "sent" else None, "updated_at": int(now_ms),
            "version": time.time_ns() // 1000}


def prepared(alert: Mapping, ack_url: str | None) -> dict:
    """An alert as templates and payloads see it: its state, its sentence split in
    Chinese and English, its details decoded, its acknowledgement link."""
    message = alert.get("message", "")
    zh, _, en = message.partition(" / ")
    out = {k: v for k, v in alert.items() if k != "version"}
    out.update(state=alert_state(alert), message_zh=zh, message_en=en or zh, details=details_of(alert),
               ack_url=ack_url, subject=subject_of(alert))
    return out


def subject_of(alert: Mapping) -> str:
    """What an alert is about, in a few words (Chinese / English)."""
    if alert.get("order_id"):
        return f"订单 / order {alert['order_id']}"
    if alert.get("product_id"):
        return f"产品 / product {alert['product_id']} @ {alert.get('region_code', '')}"
    if alert.get("distributor_id"):
        return f"配送企业 / distributor {alert['distributor_id']}"
    manufacturer = details_of(alert).get("manufacturer_id", "")
    return f"生产企业 / manufacturer {manufacturer} @ {alert.get('region_code', '')}"


def with_raised_states(alerts: Iterable[Mapping]) -> list[Mapping]:
    """Each resolved alert preceded by its raised state: whether the topic carried the
    raised row too depends on how the events fell into batches (an alert raised and
    resolved within one batch is sent once, resolved), and the deliveries must not."""
    out: list[Mapping] = []
    for alert in alerts:
        if alert.get("resolved_at") is not None:
            out.append({**alert, "resolved_at": None})
        out.append(alert)
    return out


@dataclass
class Job:
    key: DeliveryKey
    recipient: Recipient
    channel: Channel
    alert: dict | None = None  # an alert delivery (foldable) ...
    message: Message | None = None  # ... or a message rendered already (a digest)
    attempts: int = 0


@dataclass
class Lane:
    window: RateLimits
    queue: deque[Job] = field(default_factory=deque)
    task: asyncio.Task | None = None


class Dispatcher:
    def __init__(self, directory: Directory, delivery_log: DeliveryLog, renderer: Renderer,
                 ack_url: Callable[[str, str], str | None] = lambda alert_id, recipient: None,
                 clients: Mapping[tuple[str, str], ChannelClient] | None = None,
                 generator_url: str = "", period: float = 60.0):
        self.directory = directory
        self.log = delivery_log
        self.renderer = renderer
        self.ack_url = ack_url
        self.period = period
        self.generator_url = generator_url
        self._clients = dict(clients or {})
        self._session: aiohttp.ClientSession | None = None
        self._lanes: dict[str, Lane] = {}
        self._inflight: set[DeliveryKey] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    # -- clients -------------------------------------------------------------------------
    def check(self) -> None:
        """Refuse at start what cannot be sent: an SMS gateway that is not registered."""
        from supplymon.notify.channels.sms import GATEWAYS
        missing = sorted({c.options["gateway"] for r in self.directory.recipients for c in r.channels
                          if c.type == "sms" and c.options["gateway"] not in GATEWAYS})
        if missing:
            raise DirectoryError(f"短信服务商 {'、'.join(missing)} 尚未接入（暂无短信厂商实现） / SMS gateway "
                                 f"{', '.join(missing)} is not registered (no SMS vendor is integrated yet)")

    def _client(self, recipient: Recipient, channel: Channel) -> ChannelClient:
        client = self._clients.get((recipient.id, channel.label))
        if client is None:
            client = self._clients[(recipient.id, channel.label)] = self._build(channel)
        return client

    def _build(self, channel: Channel) -> ChannelClient:
        from supplymon.notify.channels.alertmanager import Alertmanager
        from supplymon.notify.channels.email import Email
        from supplymon.notify.channels.robots import DingTalkRobot, FeishuBot, WeComRobot
        from supplymon.notify.channels.sms import Sms
        from supplymon.notify.channels.webhook import Webhook

        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        vendors = self.directory.vendors
        match channel.type:
            case "wecom":
                return WeComRobot(channel, vendors["wecom"], self._session)
            case "dingtalk":
                return DingTalkRobot(channel, vendors["dingtalk"], self._session)
            case "feishu":
                return FeishuBot(channel, vendors["feishu"], self._session)
            case "webhook":
                return Webhook(channel, self._session)
            case "alertmanager":
                return Alertmanager(channel, self._session, self.generator_url)
            case "email":
                return Email(channel, self.directory.smtp)
            case "sms":
                return Sms(channel)
        raise ValueError(f"unknown channel type {channel.type}")

    # -- queueing ------------------------------------------------------------------------
    async def submit(self, alerts: Iterable[Mapping]) -> list[DeliveryKey]:
        """Queue the immediate deliveries of these alert states not delivered before;
        returns their keys."""
        jobs: dict[DeliveryKey, Job] = {}
        for alert in with_raised_states(alerts):
            for recipient, channel in route(alert, self.directory):
                key = key_of(alert, recipient, channel)
                if key not in self._inflight:
                    jobs[key] = Job(key, recipient, channel, alert=dict(alert))
        return await self._queue_new(list(jobs.values()))

    async def submit_message(self, key: DeliveryKey, recipient: Recipient, channel: Channel,
                             message: Message) -> bool:
        """Queue a rendered message (a digest) unless it was delivered before."""
        if key in self._inflight:
            return False
        return bool(await self._queue_new([Job(key, recipient, channel, message=message)]))

    async def _queue_new(self, jobs: list[Job]) -> list[DeliveryKey]:
        if not jobs:
            return []
        statuses = await self.log.statuses([job.key for job in jobs])
        fresh = [job for job in jobs if statuses.get(job.key) not in FINAL]
        await self.log.record([log_row(job.key, "pending") for job in fresh if job.key not in statuses])
        for job in fresh:
            self._inflight.add(job.key)
            lane = self._lanes.get(job.channel.endpoint)
            if lane is None:
                limits = [(job.channel.per_minute, self.period)]
                if job.channel.type in PER_SECOND:
                    limits.append((PER_SECOND[job.channel.type], self.period / 60))
                lane = self._lanes[job.channel.endpoint] = Lane(RateLimits(limits))
            lane.queue.append(job)
            if lane.task is None or lane.task.done():
                lane.task = asyncio.get_running_loop().create_task(self._run(lane), name=f"notify {job.channel.endpoint}")
        self._update_idle()
        return [job.key for job in fresh]

    def _update_idle(self) -> None:
        queued_gauge.set(len(self._inflight))
        if self._inflight:
            self._idle.clear()
        else:
            self._idle.set()

    @property
    def queued(self) -> int:
        return len(self._inflight)

    async def drain(self, timeout: float | None = None) -> None:
        """Until every queued delivery has ended (sent or failed)."""
        await asyncio.wait_for(self._idle.wait(), timeout)

    async def close(self) -> None:
        for lane in self._lanes.values():
            if lane.task is not None:
                lane.task.cancel()
        await asyncio.gather(*(lane.task for lane in self._lanes.values() if lane.task), return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- one lane --------------------------------------------------------------------------
    async def _run(self, lane: Lane) -> None:
        while lane.queue:
            now = time.monotonic()
            available = lane.window.available(now)
            if not available:
                await asyncio.sleep(max(0.01, lane.window.next_free(now) - now))
                continue
            first = lane.queue[0]
            if first.message is not None:
                batch = [lane.queue.popleft()]
            else:
                run = 0  # consecutive alert deliveries to the same recipient and channel
                for job in lane.queue:
                    if job.message is not None or (job.recipient.id, job.channel.label) != (
                            first.recipient.id, first.channel.label):
                        break
                    run += 1
                p = plan(run, available)
                batch = [lane.queue.popleft()] if p.singles else [lane.queue.popleft() for _ in range(p.folded)]
            await self._deliver(lane, batch)

    def _message(self, batch: list[Job]) -> Message:
        first = batch[0]
        if first.message is not None:
            return first.message
        alerts = [prepared(job.alert, self.ack_url(job.key.alert_id, job.recipient.id)) for job in batch]
        if len(batch) == 1:
            return self.renderer.render("alert", f"{first.key.alert_id}:{first.key.state}", first.recipient.id, alerts)
        ids = ",".join(f"{job.key.alert_id}:{job.key.state}" for job in batch)
        return self.renderer.render("folded", f"folded:{ids}", first.recipient.id, alerts)

    def _fitted(self, lane: Lane, batch: list[Job]) -> Message:
        """The message for `batch`; a folded one that is longer than the channel takes
        keeps fewer alerts, the others going back to the front of the lane (for the next
        slot): a robot would cut the text, and the alerts past the cut would be lost."""
        limit = MESSAGE_BYTES.get(batch[0].channel.type)
        message = self._message(batch)
        while limit and len(batch) > 1 and len(message.markdown.encode()) > limit:
            keep = max(1, len(batch) * 3 // 4)
            lane.queue.extendleft(reversed(batch[keep:]))
            del batch[keep:]
            message = self._message(batch)
        if len(batch) > 1:
            folded_total.labels(batch[0].channel.type).inc(len(batch))
        return message

    async def _deliver(self, lane: Lane, batch: list[Job]) -> None:
        first = batch[0]
        try:
            client = self._client(first.recipient, first.channel)
            message = self._fitted(lane, batch)
        except Exception as exc:  # an operator's template that fails on this alert: fail it, go on
            log.exception("preparing the message to %s on %s failed", first.recipient.id, first.channel.label)
            await self._end(batch, "failed", f"{type(exc).__name__}: {exc}", "")
            return
        delay = self.directory.first_backoff_seconds
        while True:
            for job in batch:
                job.attempts += 1
            lane.window.record(time.monotonic())
            try:
                await client.send(message)
            except Throttled as exc:
                # Not the receiver's fault nor ours: wait, then send what waits (folded), never drop.
                for job in batch:
                    job.attempts -= 1
                log.warning("%s throttled %s, waiting %.0fs: %s", first.channel.type, first.recipient.id,
                            self.directory.throttle_for(first.channel.type), exc)
                lane.window.block(time.monotonic() + self.directory.throttle_for(first.channel.type))
                lane.queue.extendleft(reversed(batch))
                return
            except Exception as exc:  # noqa: BLE001: a client bug must not stop the other deliveries
                retriable = isinstance(exc, DeliveryError) and exc.retriable
                if not isinstance(exc, DeliveryError):
                    log.exception("sending to %s on %s failed", first.recipient.id, first.channel.label)
                if retriable and first.attempts < self.directory.attempts:
                    retries_total.labels(first.channel.type).inc()
                    log.warning("sending to %s on %s failed (attempt %d), retrying in %.1fs: %s",
                                first.recipient.id, first.channel.label, first.attempts, delay, exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.directory.max_backoff_seconds)
                    continue
                log.error("giving up sending to %s on %s after %d attempts: %s", first.recipient.id,
                          first.channel.label, first.attempts, exc)
                await self._end(batch, "failed", str(exc), message.template)
                return
            await self._end(batch, "sent", "", message.template)
            return

    async def _end(self, batch: list[Job], status: str, error: str, template: str) -> None:
        await self.log.record([log_row(job.key, status, job.attempts, error, template) for job in batch])
        sent_total.labels(batch[0].channel.type, status).inc(len(batch))
        for job in batch:
            self._inflight.discard(job.key)
        self._update_idle()


def sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class StoreDeliveryLog:
    """The delivery log in ClickHouse (`notifications`, a ReplacingMergeTree on the
    delivery's key, read with FINAL). `run(fn)` runs `fn(store)` on the store's thread.

    Writes are grouped: rows recorded while an insert is under way go together in the
    next one (every lane that ends a delivery meanwhile shares it), and `record`
    returns once its own rows are stored."""

    def __init__(self, run: Callable[[Callable], Awaitable], database: str = "supplymon"):
        self.run = run
        self.database = database
        self._buffer: list[dict] = []
        self._next: asyncio.Task | None = None  # the insert that will take the buffered rows
        self._lock = asyncio.Lock()

    async def statuses(self, keys: list[DeliveryKey]) -> dict[DeliveryKey, str]:
        wanted = set(keys)
        ids = sorted({key.alert_id for key in keys})
        out: dict[DeliveryKey, str] = {}
        for start in range(0, len(ids), 1000):
            sql = (f"SELECT alert_id, state, recipient, channel, status FROM {self.database}.notifications FINAL "
                   f"WHERE alert_id IN ({', '.join(map(sql_string, ids[start:start + 1000]))})")
            for row in await self._retried(lambda store, sql=sql: store.rows(sql), "reading"):
                key = DeliveryKey(row["alert_id"], row["state"], row["recipient"], row["channel"])
                if key in wanted:
                    out[key] = row["status"]
        return out

    async def record(self, rows: list[dict]) -> None:
        if not rows:
            return
        self._buffer.extend(rows)
        if self._next is None:
            self._next = asyncio.get_running_loop().create_task(self._flush())
        await asyncio.shield(self._next)

    async def _flush(self) -> None:
        async with self._lock:  # one insert at a time; what comes meanwhile waits for the next
            self._next = None
            rows, self._buffer = self._buffer, []
            await self._retried(lambda store: store.insert("notifications", rows), "writing")

    async def _retried(self, fn: Callable, doing: str):
        """Until the store answers: an alert whose deliveries are not logged is not acknowledged."""
        async def again(attempt: int, delay: float, exc: Exception) -> None:
            log.warning("%s the delivery log failed (attempt %d), retrying in %.1fs: %s", doing, attempt, delay, exc)

        return await retry_until_done(lambda: self.run(fn), on_retry=again)
