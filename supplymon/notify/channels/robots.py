"""Group robots: WeCom (企业微信), DingTalk (钉钉, signed), Feishu (飞书, signed).

Each answers HTTP 200 with its own code; anything but 0 is a failure. Their
"too many messages" codes raise `Throttled` (the dispatcher then waits and folds).
Base URLs come from the directory (`[vendors]`), or a channel's own `url`.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import time
import urllib.parse

import aiohttp

from supplymon.notify.channels import MESSAGE_BYTES, DeliveryError, Throttled
from supplymon.notify.channels.http import post_json
from supplymon.notify.directory import Channel
from supplymon.notify.render import Message

WECOM_THROTTLED = {45009}
WECOM_BUSY = {-1}
DINGTALK_THROTTLED = {130101}
FEISHU_THROTTLED = {9499, 11232}


def _check(answer, code_key: str, throttled: set[int], busy: set[int] = frozenset(), vendor: str = "") -> None:
    body = answer if isinstance(answer, dict) else {}
    code = body.get(code_key)
    if code == 0:
        return
    text = f"{vendor} {code_key} {code}: {body.get('errmsg') or body.get('msg') or answer}"
    if code in throttled:
        raise Throttled(text)
    raise DeliveryError(text, retriable=code in busy or code is None)


def truncate_bytes(text: str, limit: int, note: str = "\n\n…（内容过长，已截断 / truncated）") -> str:
    raw = text.encode()
    if len(raw) <= limit:
        return text
    room = limit - len(note.encode())
    return raw[:room].decode(errors="ignore") + note


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk: urlencode(base64(HMAC-SHA256(key=secret, msg=timestamp+"\\n"+secret))), encoded once."""
    mac = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(mac).decode())


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """Feishu: base64(HMAC-SHA256(key=timestamp+"\\n"+secret, msg=""))."""
    mac = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


class WeComRobot:
    def __init__(self, channel: Channel, base_url: str, session: aiohttp.ClientSession):
        self.url = channel.options.get("url") or f"{base_url}/cgi-bin/webhook/send"
        self.key = channel.options["key"]
        self.session = session

    async def send(self, message: Message) -> None:
        body = {"msgtype": "markdown",
                "markdown": {"content": truncate_bytes(message.markdown, MESSAGE_BYTES["wecom"])}}
        answer = await post_json(self.session, self.url, body, params={"key": self.key})
        _check(answer, "errcode", WECOM_THROTTLED, WECOM_BUSY, "WeCom")


class DingTalkRobot:
    def __init__(self, channel: Channel, base_url: str, session: aiohttp.ClientSession):
        self.url = channel.options.get("url") or f"{base_url}/robot/send"
        self.token = channel.options["access_token"]
        self.secret = channel.options["secret"]
        self.session = session

    async def send(self, message: Message) -> None:
        timestamp = int(time.time() * 1000)  # the vendor checks it against its clock (1 h)
        # The signature is already URL-encoded: put it in the query as is (encoding it twice is rejected).
        query = (f"access_token={urllib.parse.quote_plus(self.token)}&timestamp={timestamp}"
                 f"&sign={dingtalk_sign(self.secret, timestamp)}")
        text = truncate_bytes(message.markdown, MESSAGE_BYTES["dingtalk"])  # digests come in parts that fit
        body = {"msgtype": "markdown", "markdown": {"title": message.title, "text": text}}
        answer = await post_json(self.session, f"{self.url}?{query}", body)
        _check(answer, "errcode", DINGTALK_THROTTLED, vendor="DingTalk")


class FeishuBot:
    def __init__(self, channel: Channel, base_url: str, session: aiohttp.ClientSession):
        self.url = channel.options.get("url") or f"{base_url}/open-apis/bot/v2/hook/{channel.options['token']}"
        self.secret = channel.options["secret"]
        self.session = session

    async def send(self, message: Message) -> None:
        timestamp = int(time.time())
        # lark_md has no headings: the title goes in the card's header.
        body_md = "\n".join(line for line in message.markdown.splitlines() if not line.startswith("#"))
        body = {
            "timestamp": str(timestamp), "sign": feishu_sign(self.secret, timestamp),
            "msg_type": "interactive",
            "card": {"header": {"title": {"tag": "plain_text", "content": message.title}},
                     "elements": [{"tag": "div", "text": {"tag": "lark_md",
                                                           "content": truncate_bytes(body_md.strip(), MESSAGE_BYTES["feishu"])}}]},
        }
        answer = await post_json(self.session, self.url, body)
        _check(answer, "code", FEISHU_THROTTLED, vendor="Feishu")
