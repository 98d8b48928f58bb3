"""`supplymon dashboards push` and the provisioning files.

No Grafana can run here (none in Debian, PyPI or npm), so the push goes to a
stand-in: a small aiohttp server on 127.0.0.1 that implements the few Grafana HTTP
API calls the push makes (folders, datasources by uid, POST /api/dashboards/db) the
way Grafana answers them, and records and checks every request."""
from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest
import yaml
from aiohttp import web

from dashboards.build import OUT
from dashboards.grafana import CLICKHOUSE_TYPE, CLICKHOUSE_UID, PROMETHEUS_UID
from supplymon.embedded import free_port
from tests.conftest import ROOT, supplymon

TOKEN = "glsa_test_token"
PROVISIONING = ROOT / "infra" / "grafana" / "provisioning"


class GrafanaStandIn:
    """A stand-in for Grafana's HTTP API (not Grafana): the calls the push makes."""

    def __init__(self):
        self.requests: list[tuple[str, str, dict | None]] = []
        self.folders: dict[str, dict] = {}
        self.datasources: dict[str, dict] = {}
        self.dashboards: dict[str, dict] = {}
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    @web.middleware
    async def check(self, request, handler):
        body = await request.json() if request.can_read_body else None
        self.requests.append((request.method, request.path, body))
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"message": "Unauthorized"}, status=401)
        return await handler(request)

    async def get_folder(self, request):
        uid = request.match_info["uid"]
        if uid not in self.folders:
            return web.json_response({"message": "folder not found"}, status=404)
        return web.json_response(self.folders[uid])

    async def create_folder(self, request):
        body = await request.json()
        assert set(body) <= {"title", "uid", "parentUid"}
        self.folders[body["uid"]] = {**body, "id": len(self.folders) + 1}
        return web.json_response(self.folders[body["uid"]])

    async def get_datasource(self, request):
        uid = request.match_info["uid"]
        if uid not in self.datasources:
            return web.json_response({"message": "Data source not found"}, status=404)
        return web.json_response(self.datasources[uid])

    async def create_datasource(self, request):
        body = await request.json()
        if body["uid"] in self.datasources:
            return web.json_response({"message": "data source with the same uid already exists"}, status=409)
        self.datasources[body["uid"]] = body
        return web.json_response({"datasource": body, "message": "Datasource added"})

    async def update_datasource(self, request):
        uid = request.match_info["uid"]
        if uid not in self.datasources:
            return web.json_response({"message": "Data source not found"}, status=404)
        self.datasources[uid] = await request.json()
        return web.json_response({"message": "Datasource updated"})

    async def post_dashboard(self, request):
        body = await request.json()
        dashboard = body["dashboard"]
        if body.get("folderUid") not in self.folders:
            return web.json_response({"message": "folder not found"}, status=400)
        if dashboard["uid"] in self.dashboards and not body.get("overwrite"):
            return web.json_response({"message": "The dashboard has been changed by someone else"}, status=412)
        self.dashboards[dashboard["uid"]] = body
        return web.json_response({"status": "success", "uid": dashboard["uid"], "version": 1})

    def __enter__(self):
        app = web.Application(middlewares=[self.check])
        app.router.add_get("/api/folders/{uid}", self.get_folder)
        app.router.add_post("/api/folders", self.create_folder)
        app.router.add_get("/api/datasources/uid/{uid}", self.get_datasource)
        app.router.add_post("/api/datasources", self.create_datasource)
        app.router.add_put("/api/datasources/uid/{uid}", self.update_datasource)
        app.router.add_post("/api/dashboards/db", self.post_dashboard)
        self.runner = web.AppRunner(app)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    async def _start(self):
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    def __exit__(self, *exc):
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def test_push_provisions_folder_datasources_and_every_dashboard():
    with GrafanaStandIn() as grafana:
        env = {"GRAFANA_TOKEN": TOKEN}
        result = supplymon("dashboards", "push", "--url", grafana.url, "--clickhouse",
                           "https://reader:s3cret@ch.example:8443", "--prometheus", "http://prom:9090", env=env)
        assert result.returncode == 0, result.stderr
        assert "pushed 4 dashboards" in result.stdout and "folder supplymon: created" in result.stdout
        assert grafana.folders["supplymon"]["title"] == "集采供应监测 supplymon"
        clickhouse = grafana.datasources[CLICKHOUSE_UID]
        assert clickhouse["type"] == CLICKHOUSE_TYPE
        assert clickhouse["jsonData"] == {"host": "ch.example", "port": 8443, "protocol": "http", "secure": True,
                                          "username": "reader", "defaultDatabase": "supplymon"}
        assert clickhouse["secureJsonData"] == {"password": "s3cret"}
        assert grafana.datasources[PROMETHEUS_UID]["url"] == "http://prom:9090"
        committed = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in OUT.glob("*.json")}
        assert set(grafana.dashboards) == set(committed)
        for uid, body in grafana.dashboards.items():
            assert body["folderUid"] == "supplymon" and body["overwrite"] is True
            assert body["dashboard"]["id"] is None  # matched by uid, not by another instance's id
            assert {k: v for k, v in body["dashboard"].items() if k != "id"} == committed[uid]

        # Again: nothing is created twice; the datasources are updated in place.
        grafana.requests.clear()
        again = supplymon("dashboards", "push", "--url", grafana.url, "--prometheus", "http://prom2:9090", env=env)
        assert again.returncode == 0, again.stderr
        calls = [(method, path) for method, path, _ in grafana.requests]
        assert ("POST", "/api/folders") not in calls and ("POST", "/api/datasources") not in calls
        assert ("PUT", f"/api/datasources/uid/{PROMETHEUS_UID}") in calls
        assert grafana.datasources[PROMETHEUS_UID]["url"] == "http://prom2:9090"
        assert f"datasource {CLICKHOUSE_UID}: exists" in again.stdout  # not given: left as it is
        assert calls.count(("POST", "/api/dashboards/db")) == 4


def test_push_says_what_is_wrong():
    with GrafanaStandIn() as grafana:
        refused = supplymon("dashboards", "push", "--url", grafana.url, env={"GRAFANA_TOKEN": "wrong"})
        assert refused.returncode == 1
        assert "Grafana refused the credentials (401)" in refused.stderr and "Traceback" not in refused.stderr
        missing = supplymon("dashboards", "push", "--url", grafana.url, env={"GRAFANA_TOKEN": TOKEN})
        assert missing.returncode == 0
        assert f"datasource {CLICKHOUSE_UID}: MISSING" in missing.stdout
    no_token = supplymon("dashboards", "push", "--url", "http://127.0.0.1:9", env={"GRAFANA_TOKEN": ""})
    assert no_token.returncode == 1 and "set GRAFANA_TOKEN" in no_token.stderr
    unreachable = supplymon("dashboards", "push", "--url", f"http://127.0.0.1:{free_port()}",
                            env={"GRAFANA_TOKEN": TOKEN})
    assert unreachable.returncode == 1 and "cannot reach Grafana" in unreachable.stderr


def test_provisioning_matches_the_dashboards():
    datasources = yaml.safe_load((PROVISIONING / "datasources" / "supplymon.yml").read_text())["datasources"]
    by_uid = {d["uid"]: d for d in datasources}
    clickhouse = by_uid[CLICKHOUSE_UID]
    assert clickhouse["type"] == CLICKHOUSE_TYPE
    assert clickhouse["jsonData"]["defaultDatabase"] == "supplymon" and "database" not in clickhouse["jsonData"]
    assert set(clickhouse["jsonData"]) >= {"host", "port", "protocol", "username"}
    assert "password" in clickhouse["secureJsonData"]
    assert by_uid[PROMETHEUS_UID]["type"] == "prometheus"
    # Every datasource a dashboard refers to is provisioned.
    used = set()
    for path in OUT.glob("*.json"):
        for panel in json.loads(path.read_text(encoding="utf-8"))["panels"]:
            used |= {t["datasource"]["uid"] for t in panel["targets"]}
    assert used == set(by_uid)
    (provider,) = yaml.safe_load((PROVISIONING / "dashboards" / "supplymon.yml").read_text())["providers"]
    assert provider["type"] == "file" and provider["folderUid"] == "supplymon"
    assert Path(provider["options"]["path"]).is_absolute()
