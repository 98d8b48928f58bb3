"""Who may use the worker's web server, and how.

The worker serves read-only pages (`/metrics`, `/health`, `/progress`, ...) with
GET, and actions (`/sql`, acknowledgements, ...) with POST only. The rules, for
every route (the middleware) and for each action (`GuardedPostView`):

- **A secret token.** `SUPPLYMON_WEB_TOKEN`, or else a fresh random token that the
  worker writes to `DATA_DIR/web-token` (mode 0600) when it starts; clients send it
  in the `X-Supplymon-Token` header (or `Authorization: Bearer ...`).
  `supplymon sql` reads it from there.
- **Loopback by default.** Listening on an address other than loopback needs a
  configured `SUPPLYMON_WEB_TOKEN` (`check_listen_address`: the worker refuses to
  start without it). On loopback, requests must name a loopback host (`Host:
  127.0.0.1:6066`, `localhost`, `[::1]`): a web page whose own name resolves to
  127.0.0.1 (DNS rebinding) cannot read the pages.
- **No cross-site requests.** A request other than GET/HEAD/OPTIONS that carries
  an `Origin` other than the server's own is refused, on every route: a web page
  on another site cannot make the browser post to the worker.
- **Actions are POST only** (GET gets 405 with a clear message: a GET, which a
  link or an image can make a browser send, never changes anything), and need the
  token, or, for actions a page served by this worker posts from the supervisor's
  browser (`same_origin_ok = True`), a same-origin request from loopback while
  the worker listens on loopback only.

To add an action:

    from streams.web_security import GuardedPostView

    @app.page("/alerts/{alert_id}/ack")
    class AckView(GuardedPostView):
        same_origin_ok = True   # the dashboard page at / posts it from the browser

        async def post(self, request, alert_id):
            ...

Refusals are plain text, Chinese first, English second.
"""
from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import urlsplit

import faust
from aiohttp import web as aioweb
from faust.web import View
from faust.web.drivers.aiohttp import Web as AiohttpWeb

from supplymon.settings import Settings
from supplymon.web_access import TOKEN_HEADER, is_loopback

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class WebAccess:
    """The access rules of one worker's web server (built from its settings)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.loopback_only = is_loopback(settings.web_host)
        self._token: str | None = settings.web_token

    @property
    def token(self) -> str | None:
        # The file is written by the worker before it serves; read once it exists.
        if self._token is None:
            try:
                self._token = self.settings.web_token_file.read_text().strip() or None
            except OSError:
                return None
        return self._token

    def has_token(self, request: aioweb.Request) -> bool:
        expected = self.token
        if not expected:
            return False
        sent = request.headers.get(TOKEN_HEADER)
        if sent is None:
            auth = request.headers.get("Authorization", "")
            sent = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        return sent is not None and hmac.compare_digest(sent.encode(), expected.encode())

    @staticmethod
    def same_origin(request: aioweb.Request) -> bool:
        origin = request.headers.get("Origin")
        if not origin or origin == "null":
            return False
        parts = urlsplit(origin)
        return parts.scheme == request.scheme and parts.netloc.lower() == request.host.lower()

    def host_allowed(self, request: aioweb.Request) -> bool:
        if not self.loopback_only:
            return True
        return is_loopback(urlsplit(f"//{request.host}").hostname or "")

    def may_post(self, request: aioweb.Request, same_origin_ok: bool) -> bool:
        if self.has_token(request):
            return True
        return (same_origin_ok and self.loopback_only and is_loopback(request.remote or "")
                and self.same_origin(request))


def refusal(status: int, zh: str, en: str, headers: dict | None = None) -> aioweb.Response:
    return aioweb.Response(status=status, text=f"{zh}\n{en}\n", content_type="text/plain", charset="utf-8",
                           headers=headers)


def middlewares(settings: Settings) -> list:
    """The checks every route gets (aiohttp middleware, given to the Faust app)."""
    access = WebAccess(settings)

    @aioweb.middleware
    async def guard(request: aioweb.Request, handler):
        if not access.host_allowed(request):
            return refusal(403, f"拒绝：Host {request.host!r} 不是本机地址（本服务只在本机监听）",
                           f"refused: Host {request.host!r} is not a loopback name (this server listens on loopback only)")
        if request.method not in SAFE_METHODS and request.headers.get("Origin") is not None \
                and not access.same_origin(request) and not access.has_token(request):
            return refusal(403, "拒绝：不接受来自其他网站的请求", "refused: cross-site requests are not accepted")
        request["supplymon_access"] = access
        return await handler(request)

    return [guard]


class GuardedPostView(View):
    """An action: POST only, with the token (or, if `same_origin_ok`, same-origin
    from loopback on a loopback-only server). Subclasses define `post`."""

    same_origin_ok: bool = False

    async def get(self, request: Any, **kwargs: Any) -> Any:
        """Registered so that a GET gets the explanation below, not aiohttp's bare 405."""
        return self._get_refused(request)

    @staticmethod
    def _get_refused(request: Any) -> aioweb.Response:
        return refusal(405, f"{request.path} 只接受 POST 请求（GET 不能执行操作）",
                           f"{request.path} accepts POST only (a GET never performs an action)",
                           headers={"Allow": "POST"})

    async def dispatch(self, request: Any) -> Any:
        if request.method in ("GET", "HEAD"):
            return self._get_refused(request)
        access: WebAccess = request["supplymon_access"]
        if request.method == "POST" and not access.may_post(request, self.same_origin_ok):
            return refusal(401, f"需要令牌：请在 {TOKEN_HEADER} 请求头中发送令牌（令牌在数据目录的 web-token 文件中，"
                                "或为 SUPPLYMON_WEB_TOKEN）",
                           f"a token is required: send it in the {TOKEN_HEADER} header (it is in the data dir's "
                           "web-token file, or SUPPLYMON_WEB_TOKEN)", headers={"WWW-Authenticate": "Bearer"})
        return await super().dispatch(request)


class Web(AiohttpWeb):
    """Faust's aiohttp web server without its built-in pages: `/router` (the cluster's
    worker URLs), `/table/...` (table data by key), the statistics at `/` and
    `/assignment/`, `/graph`, `/performance/`. supplymon serves its own."""

    default_blueprints = []
    production_blueprints = []
    debug_blueprints = []
    optional_blueprints = []


class App(faust.App):
    """The Faust app, serving only supplymon's pages (see `Web`)."""

    def _new_web(self) -> Web:
        return Web(self)
