"""Acknowledgements: `POST /alerts/{alert_id}/ack` records who answered an alert,
when, and what they said, into `alert_acks`.

The credential is the signed, expiring link the message carried (`r`, `exp`,
`sig`: see supplymon/notify/tokens.py), verified here, in place of the worker's web
token (streams/web_security.py), which distributors do not have; the web server's
rules for every route (loopback Host names on a loopback server, no cross-site
POST) apply as to any page. `GET` on the same address only shows a small form that
posts to it (a GET never changes state). An acknowledgement stops nothing: an order
still unanswered is escalated as the rules say; it shows in the next digest.
"""
from __future__ import annotations

import functools
import html
import time

from faust.web import View

from agents.lifecycle import sink
from streams.app import app, settings
from supplymon.notify.service import ack_secret
from supplymon.notify.tokens import verify

MAX_COMMENT = 2000


@functools.cache
def _secret() -> bytes:
    return ack_secret(settings)


def _form(alert_id: str, params, note: str = "") -> str:
    fields = "".join(f'<input type="hidden" name="{k}" value="{html.escape(params.get(k, ""))}">'
                     for k in ("r", "exp", "sig"))
    return (f'<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8"><title>确认告警 / Acknowledge</title>'
            f"</head><body><h3>确认告警 / Acknowledge alert {html.escape(alert_id)}</h3>{note}"
            f'<form method="post">{fields}<p><textarea name="comment" rows="4" cols="60" '
            f'placeholder="情况说明 / what is being done"></textarea></p>'
            f'<p><button type="submit">确认 / Acknowledge</button></p></form></body></html>')


@app.page("/alerts/{alert_id}/ack")
class AckView(View):
    async def get(self, request, alert_id):
        return self.html(_form(alert_id, request.query))

    async def post(self, request, alert_id):
        try:
            body = await request.json() if request.content_type == "application/json" else dict(await request.post())
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return self.json({"error": "请求格式有误 / malformed request"}, status=400)
        params = {**dict(request.query), **body}
        problem = verify(_secret(), alert_id, params.get("r", ""), params.get("exp", ""), params.get("sig", ""),
                         time.time())
        if problem:
            return self.json({"error": problem}, status=403)
        comment = str(params.get("comment", ""))[:MAX_COMMENT]
        row = {"alert_id": alert_id, "recipient": params["r"], "acked_at": int(time.time() * 1000),
               "comment": comment}
        await sink.on_store(lambda store: store.insert("alert_acks", [row]))
        if "text/html" in request.headers.get("Accept", ""):
            return self.html("<p>已确认，谢谢。 / Acknowledged, thank you.</p>")
        return self.json({"acknowledged": alert_id, "recipient": params["r"], "comment": comment})
