"""`supplymon dashboards push --url URL`: provision the dashboards into an existing
Grafana with grafana-client: the folder, the datasources (when their addresses are
given), then every dashboard of dashboards/grafana/ (overwriting older versions).

The token comes from the environment (`GRAFANA_TOKEN`, a service-account token with
the Editor role), or user and password from the URL (`http://user:pass@host:3000`).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlparse

from dashboards.build import OUT
from dashboards.grafana import CLICKHOUSE_TYPE, CLICKHOUSE_UID, PROMETHEUS_UID

FOLDER_UID = "supplymon"
FOLDER_TITLE = "集采供应监测 supplymon"
DATABASE = "supplymon"


class PushError(RuntimeError):
    """Grafana refused or could not be reached: the message says what to do."""


@dataclass(frozen=True)
class Target:
    url: str
    token: str | None
    clickhouse_url: str | None = None  # http(s)://user:password@host:8123 of the ClickHouse server
    prometheus_url: str | None = None


def clickhouse_datasource(url: str) -> dict:
    """The ClickHouse plugin's datasource (its settings: pkg/plugin/settings.go)."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise PushError(f"--clickhouse must be an http(s)://user:password@host:port URL, got {url!r}")
    secure = parsed.scheme == "https"
    return {
        "uid": CLICKHOUSE_UID, "name": "supplymon ClickHouse", "type": CLICKHOUSE_TYPE, "access": "proxy",
        "jsonData": {"host": parsed.hostname, "port": parsed.port or (8443 if secure else 8123), "protocol": "http",
                     "secure": secure, "username": parsed.username or "default", "defaultDatabase": DATABASE},
        "secureJsonData": {"password": parsed.password or ""},
    }


def prometheus_datasource(url: str) -> dict:
    return {"uid": PROMETHEUS_UID, "name": "supplymon Prometheus", "type": "prometheus", "access": "proxy",
            "url": url, "jsonData": {"httpMethod": "POST"}}


def _api(target: Target):
    from grafana_client import GrafanaApi

    parsed = urlparse(target.url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise PushError(f"--url must be Grafana's http(s) address, got {target.url!r}")
    if not target.token and not parsed.password:
        raise PushError("set GRAFANA_TOKEN (a Grafana service-account token with the Editor role), "
                        "or give user:password in --url")
    return GrafanaApi.from_url(target.url, credential=target.token or None, timeout=30)


def push(target: Target, say: Callable[[str], None] = print) -> int:
    """Provision everything; returns the number of dashboards pushed."""
    from grafana_client.client import GrafanaClientError, GrafanaException
    from niquests.exceptions import RequestException

    api = _api(target)
    try:
        try:
            api.folder.get_folder(FOLDER_UID)
            say(f"folder {FOLDER_UID}: exists")
        except GrafanaClientError as exc:
            if exc.status_code != 404:
                raise
            api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
            say(f"folder {FOLDER_UID}: created")
        given = {CLICKHOUSE_UID: target.clickhouse_url and clickhouse_datasource(target.clickhouse_url),
                 PROMETHEUS_UID: target.prometheus_url and prometheus_datasource(target.prometheus_url)}
        for uid, datasource in given.items():
            _datasource(api, uid, datasource, say)
        pushed = 0
        for path in sorted(OUT.glob("*.json")):
            dashboard = json.loads(path.read_text(encoding="utf-8"))
            api.dashboard.update_dashboard({"dashboard": {**dashboard, "id": None}, "folderUid": FOLDER_UID,
                                            "overwrite": True, "message": "supplymon dashboards push"})
            say(f"dashboard {dashboard['uid']}: {dashboard['title']}")
            pushed += 1
        return pushed
    except GrafanaClientError as exc:
        if exc.status_code in (401, 403):
            raise PushError(f"Grafana refused the credentials ({exc.status_code}): check GRAFANA_TOKEN and its role") \
                from None
        raise PushError(f"Grafana answered {exc.status_code}: {exc.message}") from None
    except GrafanaException as exc:
        raise PushError(f"cannot reach Grafana at {target.url}: {exc.message}") from None
    except RequestException as exc:  # refused, unresolvable, TLS
        raise PushError(f"cannot reach Grafana at {target.url}: {exc}") from None


def _datasource(api, uid: str, datasource: dict | None, say: Callable[[str], None]) -> None:
    from grafana_client.client import GrafanaClientError

    try:
        api.datasource.get_datasource_by_uid(uid)
        exists = True
    except GrafanaClientError as exc:
        if exc.status_code != 404:
            raise
        exists = False
    if datasource is None:
        say(f"datasource {uid}: " + ("exists" if exists else
            "MISSING: the dashboards need it; pass its address (--clickhouse / --prometheus) "
            "or provision infra/grafana/provisioning/datasources"))
    elif exists:
        api.datasource.update_datasource_by_uid(uid, datasource)
        say(f"datasource {uid}: updated")
    else:
        api.datasource.create_datasource(datasource)
        say(f"datasource {uid}: created")


def target_from(url: str, clickhouse_url: str | None, prometheus_url: str | None) -> Target:
    return Target(url=url.rstrip("/"), token=os.environ.get("GRAFANA_TOKEN"), clickhouse_url=clickhouse_url,
                  prometheus_url=prometheus_url)
