"""Prometheus Alertmanager, through its v2 API (`POST /api/v2/alerts`), so its
routing, grouping, inhibitions and silences apply to supplymon's alerts.

Alertmanager ends an alert that is not sent again by its `endsAt`, and supplymon
sends each state once: a raised alert goes with `endsAt` = now + `hold_hours`
(default 7 days), its resolution with `endsAt` = when it was resolved (the wall
clock if that is still ahead: simulated time may run ahead of it). `startsAt`
is when it was raised (event time), at the latest now.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone

import aiohttp

from supplymon.notify.channels.http import post_json
from supplymon.notify.directory import Channel
from supplymon.notify.render import Message

HOLD_HOURS = 168
LABELS = ("subject_type", "order_id", "distributor_id", "institution_id", "product_id", "region_code")


def _rfc3339(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def alertmanager_alert(alert: dict, generator_url: str, now_ms: float, hold_hours: float = HOLD_HOURS) -> dict:
    labels = {"alertname": alert["kind"], "severity": alert["severity"], "alert_id": alert["alert_id"],
              "source": "supplymon"}
    labels.update({k: str(alert[k]) for k in LABELS if alert.get(k)})
    annotations = {"summary": alert.get("message_zh", ""), "description": alert.get("message", "")}
    if alert.get("ack_url"):
        annotations["ack_url"] = alert["ack_url"]
    if alert.get("resolved_at") is not None:
        ends = min(alert["resolved_at"], now_ms)
    else:
        ends = now_ms + hold_hours * 3_600_000
    starts = min(alert["raised_at"], now_ms, ends)
    return {"labels": labels, "annotations": annotations, "startsAt": _rfc3339(starts), "endsAt": _rfc3339(ends),
            "generatorURL": generator_url}


class Alertmanager:
    def __init__(self, channel: Channel, session: aiohttp.ClientSession, generator_url: str):
        self.url = channel.options["url"].rstrip("/") + "/api/v2/alerts"
        self.session = session
        self.generator_url = generator_url or "http://127.0.0.1/"

    async def send(self, message: Message) -> None:
        now = time.time() * 1000
        body = [alertmanager_alert(alert, self.generator_url, now) for alert in message.alerts]
        if body:
            await post_json(self.session, self.url, body, expect_json=False)
