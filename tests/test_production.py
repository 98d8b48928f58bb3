"""The production deployment (infra/production), validated as far as this machine
allows: the compose file by Debian's `docker-compose config`, the Kubernetes manifests
against the Kubernetes schemas (kubernetes-validate), Prometheus' configs by
`promtool check config` (with the pipeline's rules of infra/prometheus/rules.yml), the
Alertmanager config by `amtool check-config`. No Docker engine or cluster runs here:
that the services start together is not tested. The settings the workers are given
are read by supplymon's own settings object, and supplymon's topic creation with a
replication factor and configs is checked on the embedded broker."""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess

import kubernetes_validate
import pytest
import yaml
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from supplymon.embedded import EmbeddedBroker
from supplymon.publish import ensure_topics
from supplymon.settings import Settings
from tests.conftest import ROOT

PRODUCTION = ROOT / "infra" / "production"
MANIFESTS = sorted((PRODUCTION / "kubernetes").glob("*.yaml"))
SECRETS = {"CH_SUPPLYMON_PASSWORD": "pw-supplymon-7f3a", "CH_GRAFANA_PASSWORD": "pw-grafana-91c2",
           "CH_CLUSTER_SECRET": "cluster-secret-55d0", "GRAFANA_ADMIN_PASSWORD": "pw-admin-0b8e",
           "SUPPLYMON_WEB_TOKEN": "token-3c9d"}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:  # `make test` installs them (system-tools); say so rather than pass
        pytest.fail(f"{name} is not installed: run `make system-tools`")
    return path


def _compose(tmp_path, env: dict) -> subprocess.CompletedProcess:
    smtp = tmp_path / "smtp_password"
    smtp.write_text("not-a-real-password\n")
    full = {k: v for k, v in os.environ.items() if k not in SECRETS}
    full.update(env)
    if "ALERTMANAGER_SMTP_PASSWORD_FILE" not in env:
        full["ALERTMANAGER_SMTP_PASSWORD_FILE"] = str(smtp)
    return subprocess.run([_tool("docker-compose"), "-f", str(PRODUCTION / "docker-compose.yml"), "config"],
                          capture_output=True, text=True, env=full, cwd=PRODUCTION, timeout=60)


def _bind(volume) -> tuple[str, str]:
    """(source, target) of a volume as `docker-compose config` writes it (short or long form)."""
    if isinstance(volume, dict):
        return volume.get("source", ""), volume["target"]
    source, target, *_ = volume.split(":")
    return source, target


def _documents() -> list[dict]:
    return [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_compose_file_is_valid_and_takes_its_secrets_from_the_environment(tmp_path):
    result = _compose(tmp_path, SECRETS)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    services = config["services"]
    assert {f"kafka-{n}" for n in (1, 2, 3)} <= set(services)
    assert {f"clickhouse-keeper-{n}" for n in (1, 2, 3)} <= set(services)
    assert {f"clickhouse-s{s}-r{r}" for s in (1, 2) for r in (1, 2)} <= set(services)
    assert {"supplymon-worker", "kafka-topics", "prometheus", "alertmanager", "grafana"} <= set(services)
    for n in (1, 2, 3):
        kafka = services[f"kafka-{n}"]["environment"]
        assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller" and str(kafka["KAFKA_NODE_ID"]) == str(n)
        assert str(kafka["KAFKA_MIN_INSYNC_REPLICAS"]) == "2" and str(kafka["KAFKA_DEFAULT_REPLICATION_FACTOR"]) == "3"
    worker = services["supplymon-worker"]
    env = worker["environment"]
    # The password reached the worker from the environment, not from a file.
    assert env["SUPPLYMON_CLICKHOUSE"] == f"http://supplymon:{SECRETS['CH_SUPPLYMON_PASSWORD']}@clickhouse:8123"
    assert env["SUPPLYMON_WEB_TOKEN"] == SECRETS["SUPPLYMON_WEB_TOKEN"]
    settings = Settings.from_env({k: str(v) for k, v in env.items()})
    assert settings.clickhouse_cluster == "supplymon" and settings.topic_replication == 3
    assert dict(settings.topic_configs) == {"min.insync.replicas": "2", "retention.ms": "2592000000",
                                            "message.timestamp.after.max.ms": "600000"}
    assert "/health" in " ".join(worker["healthcheck"]["test"])
    mounts = dict(_bind(v) for service in services.values() for v in service.get("volumes", []))
    assert mounts[str(ROOT / "infra" / "prometheus" / "rules.yml")] == "/etc/prometheus/rules.yml"
    assert mounts[str(ROOT / "infra" / "grafana" / "provisioning")] == "/etc/grafana/provisioning"
    # Where infra/grafana/provisioning/dashboards tells Grafana to look.
    assert mounts[str(ROOT / "dashboards" / "grafana")] == "/var/lib/grafana/dashboards/supplymon"
    grafana = services["grafana"]["environment"]
    assert (grafana["CLICKHOUSE_USER"], grafana["CLICKHOUSE_PASSWORD"]) == ("grafana", SECRETS["CH_GRAFANA_PASSWORD"])
    # No secret in the repository's files: each one must come from the environment.
    for name in SECRETS:
        missing = _compose(tmp_path, {k: v for k, v in SECRETS.items() if k != name})
        assert missing.returncode != 0 and f"set {name}" in missing.stderr, name
    for path in PRODUCTION.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            assert not any(value in text for value in SECRETS.values()), path


def test_kubernetes_manifests_are_valid_and_use_secrets_by_reference():
    documents = _documents()
    for doc in documents:
        kubernetes_validate.validate(doc, "1.30.0", strict=True)  # raises on a schema violation
    kinds = {(doc["kind"], doc["metadata"]["name"]) for doc in documents}
    assert ("StatefulSet", "kafka") in kinds and ("StatefulSet", "clickhouse-keeper") in kinds
    assert {("StatefulSet", "clickhouse-s1"), ("StatefulSet", "clickhouse-s2"), ("Job", "kafka-topics"),
            ("Deployment", "supplymon-worker"), ("Deployment", "prometheus"), ("Deployment", "alertmanager"),
            ("Deployment", "grafana")} <= kinds
    assert not any(kind == "Secret" for kind, _ in kinds), "secrets are created by hand, never kept in files"
    by_name = {(doc["kind"], doc["metadata"]["name"]): doc for doc in documents}
    assert by_name["StatefulSet", "kafka"]["spec"]["replicas"] == 3
    assert all(by_name["StatefulSet", f"clickhouse-s{s}"]["spec"]["replicas"] == 2 for s in (1, 2))
    worker = by_name["Deployment", "supplymon-worker"]["spec"]["template"]["spec"]["containers"][0]
    assert worker["livenessProbe"]["httpGet"]["path"] == "/live"
    assert worker["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert worker["resources"]["limits"]["memory"] and worker["resources"]["requests"]["memory"]
    settings = Settings.from_env(by_name["ConfigMap", "supplymon-config"]["data"])
    assert settings.clickhouse_cluster == "supplymon" and settings.topic_replication == 3
    # Secret values only by reference, and only to keys deploy.sh tells the operator to create.
    deploy = (PRODUCTION / "deploy.sh").read_text()
    refs = [env["valueFrom"]["secretKeyRef"] for doc in documents
            for container in _containers(doc) for env in container.get("env", []) if "valueFrom" in env
            and "secretKeyRef" in env["valueFrom"]]
    assert refs and all(f"--from-literal={ref['key']}=" in deploy for ref in refs), refs
    # The kustomization's generated ConfigMaps come from files that exist.
    kustomization = yaml.safe_load((PRODUCTION / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (PRODUCTION / resource).is_file(), resource
    for generator in kustomization["configMapGenerator"]:
        for path in generator["files"]:
            assert (PRODUCTION / path).is_file(), path


def _containers(doc: dict) -> list[dict]:
    spec = doc.get("spec", {})
    pod = spec.get("template", {}).get("spec", {}) if "template" in spec else {}
    return pod.get("containers", []) + pod.get("initContainers", [])


def test_prometheus_config_passes_promtool_with_the_pipeline_rules(tmp_path):
    # As deployed (compose and Kubernetes alike): beside the rules of infra/prometheus/rules.yml
    # (an empty rule file while that is absent).
    shutil.copy(PRODUCTION / "prometheus" / "prometheus.yml", tmp_path / "prometheus.yml")
    rules = ROOT / "infra" / "prometheus" / "rules.yml"
    if rules.is_file():
        shutil.copy(rules, tmp_path / "rules.yml")
    else:
        (tmp_path / "rules.yml").write_text("groups: []\n")
    result = subprocess.run([_tool("promtool"), "check", "config", str(tmp_path / "prometheus.yml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_alertmanager_config_passes_amtool_and_reads_its_password_from_a_file():
    path = PRODUCTION / "alertmanager" / "alertmanager.yml"
    result = subprocess.run([_tool("amtool"), "check-config", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(path.read_text())
    assert config["global"]["smtp_auth_password_file"].startswith("/etc/alertmanager/secrets/")
    assert "smtp_auth_password" not in config["global"]


def test_topics_created_with_the_configured_replication_and_configs(tmp_path):
    settings = Settings.from_env({"SUPPLYMON_TOPIC_CONFIGS": "min.insync.replicas=1,retention.ms=86400000,"
                                                             "message.timestamp.after.max.ms=600000",
                                  "SUPPLYMON_PARTITIONS": "3"})
    with EmbeddedBroker() as broker:
        ensure_topics(settings.with_embedded_broker(broker.url))

        async def describe():
            admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
            await admin.start()
            try:
                (response,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "supply.orders")])
                (topic,) = await admin.describe_topics(["supply.orders"])
                return {entry[0]: entry[1] for entry in response.resources[0][4]}, topic
            finally:
                await admin.close()

        described, topic = asyncio.run(describe())
    assert described["min.insync.replicas"] == "1" and described["retention.ms"] == "86400000"
    assert described["message.timestamp.after.max.ms"] == "600000" and described["retention.bytes"] == "-1"
    assert len(topic["partitions"]) == 3


def test_topic_script_is_valid_shell():
    result = subprocess.run(["sh", "-n", str(PRODUCTION / "kafka" / "create-topics.sh")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    result = subprocess.run(["sh", "-n", str(PRODUCTION / "deploy.sh")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_a_future_stamped_event_is_published_with_the_wall_clock_as_its_kafka_timestamp():
    """A production cluster refuses records stamped past message.timestamp.after.max.ms
    (the whole batch): the publisher stamps such a record with the wall clock and leaves
    its payload, so the worker decides on its event time."""
    import time

    import orjson
    from aiokafka import AIOKafkaConsumer

    from supplymon.publish import Publisher

    future = {"event_id": "f1", "kind": "order", "ts": "2099-01-01T00:00:00+08:00", "order_id": "O1"}
    past = {"event_id": "p1", "kind": "order", "ts": "2026-03-01T08:00:00+08:00", "order_id": "O2"}
    with EmbeddedBroker() as broker:
        settings = Settings().with_embedded_broker(broker.url)
        ensure_topics(settings)

        async def go():
            async with Publisher(settings) as publisher:
                for event in (future, past):
                    await publisher.publish(orjson.dumps(event))
            consumer = AIOKafkaConsumer("supply.orders", bootstrap_servers=broker.bootstrap,
                                        auto_offset_reset="earliest")
            await consumer.start()
            try:
                batches = await consumer.getmany(timeout_ms=5000)
                while sum(map(len, batches.values())) < 2:
                    for tp, records in (await consumer.getmany(timeout_ms=5000)).items():
                        batches.setdefault(tp, []).extend(records)
                return {orjson.loads(r.value)["event_id"]: r for records in batches.values() for r in records}
            finally:
                await consumer.stop()

        before = time.time() * 1000
        records = asyncio.run(go())
    assert before - 60_000 <= records["f1"].timestamp <= time.time() * 1000
    assert orjson.loads(records["f1"].value) == future
    assert records["p1"].timestamp == 1772323200000  # 2026-03-01T08:00+08:00: its event time
