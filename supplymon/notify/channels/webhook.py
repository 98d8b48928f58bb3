"""A generic webhook: the message as JSON, signed.

Headers: `X-Supplymon-Timestamp` (Unix seconds), `X-Supplymon-Signature`
(`sha256=` + hex HMAC-SHA256 under the channel's secret of `<timestamp>.<body>`),
`X-Supplymon-Alert-Id` (the alert's id; absent on digests) and `Idempotency-Key`
(`<alert_id>:<state>` for one alert, the digest's id for a digest): a receiver that
sees a key again has had that message already.
"""
from __future__ import annotations

import hashlib
import hmac
import time

import aiohttp
import orjson

from supplymon.notify.channels.http import post_json
from supplymon.notify.directory import Channel
from supplymon.notify.render import Message


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def webhook_body(message: Message) -> bytes:
    return orjson.dumps({"type": message.template, "id": message.id, "recipient": message.recipient,
                         "title": message.title, "markdown": message.markdown, "alerts": message.alerts})


class Webhook:
    def __init__(self, channel: Channel, session: aiohttp.ClientSession):
        self.url = channel.options["url"]
        self.secret = channel.options["secret"]
        self.session = session

    async def send(self, message: Message) -> None:
        body = webhook_body(message)
        timestamp = str(int(time.time()))
        headers = {"X-Supplymon-Timestamp": timestamp, "Idempotency-Key": message.id,
                   "X-Supplymon-Signature": webhook_signature(self.secret, timestamp, body)}
        if message.template == "alert":
            headers["X-Supplymon-Alert-Id"] = message.alerts[0]["alert_id"]
        await post_json(self.session, self.url, data=body, headers=headers, expect_json=False)
