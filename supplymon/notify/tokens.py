"""Signed, expiring acknowledgement links.

A link names the alert, the recipient it was sent to and when it expires, signed
with HMAC-SHA256 under the worker's secret: the server checks the signature and
the expiry before it records an acknowledgement, so only the recipient of a
message can acknowledge in its name. Expiry is on the wall clock (a credential's
lifetime, not a rule).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import quote, urlencode


def _signature(secret: bytes, alert_id: str, recipient: str, expires: int) -> str:
    mac = hmac.new(secret, f"{alert_id}\x1f{recipient}\x1f{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def sign(secret: bytes, alert_id: str, recipient: str, expires: int) -> str:
    return _signature(secret, alert_id, recipient, expires)


def verify(secret: bytes, alert_id: str, recipient: str, expires: int | str, signature: str, now: float) -> str | None:
    """None if the token is good; otherwise why not (Chinese / English)."""
    try:
        expires = int(expires)
    except (TypeError, ValueError):
        return "链接无效 / invalid link"
    if not hmac.compare_digest(_signature(secret, alert_id, recipient, expires), signature or ""):
        return "签名无效 / invalid signature"
    if now > expires:
        return "链接已过期 / link expired"
    return None


def ack_link(base_url: str, secret: bytes, alert_id: str, recipient: str, expires: int) -> str:
    query = urlencode({"r": recipient, "exp": expires, "sig": sign(secret, alert_id, recipient, expires)})
    return f"{base_url.rstrip('/')}/alerts/{quote(alert_id, safe='')}/ack?{query}"
