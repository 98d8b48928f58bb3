"""The worker's web token and listening address (no Faust here: `supplymon sql` uses
it). The rules themselves: streams/web_security.py."""
from __future__ import annotations

import ipaddress
import os
import secrets

from supplymon.settings import ConfigError, Settings

TOKEN_HEADER = "X-Supplymon-Token"
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # another name: not known to be loopback


def check_listen_address(settings: Settings) -> None:
    """Refuse to serve on a non-loopback address without a configured token."""
    if is_loopback(settings.web_host):
        return
    if not settings.web_token:
        raise ConfigError(
            f"监听非本机地址 {settings.web_host} 需要凭据：请设置 SUPPLYMON_WEB_TOKEN（至少 16 个字符），"
            "或改用 127.0.0.1。\n"
            f"listening on {settings.web_host}, not a loopback address, needs credentials: set "
            "SUPPLYMON_WEB_TOKEN (16 characters or more), or listen on 127.0.0.1")
    if len(settings.web_token) < 16:
        raise ConfigError("SUPPLYMON_WEB_TOKEN 太短（至少 16 个字符）\n"
                          "SUPPLYMON_WEB_TOKEN is too short (16 characters or more)")


def write_token_file(settings: Settings) -> str:
    """A fresh token in DATA_DIR/web-token, readable by its owner only (the file is
    created 0600 before the token is written, and replaces the old one atomically)."""
    token = secrets.token_urlsafe(32)
    path = settings.web_token_file
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask or an older file
        os.write(fd, token.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return token


def client_token(settings: Settings) -> str | None:
    """The token a client sends: the configured one, or the running worker's file."""
    if settings.web_token:
        return settings.web_token
    try:
        return settings.web_token_file.read_text().strip() or None
    except OSError:
        return None
