"""`/health` and `/ready`: is the worker able to do its work, and if not, why.

- `/health`: a report (JSON): the store (ClickHouse) and the broker (Kafka), each
  up or down, since when and the last error; whether the worker holds its
  partitions; stream time and its lag behind the wall clock. HTTP 200 when the
  store and broker are up and the worker holds its partitions, 503 otherwise
  (body says which).
- `/ready`: the same verdict without the details (for a Kubernetes readiness probe).
- `/live`: 200 while the worker's event loop answers (a liveness probe: restarting
  the worker does not bring a broker or store back, so outages do not fail it).

The broker is probed every `PROBE_SECONDS` (a metadata request from a fresh client:
it answers only if a broker does); the store by the sink's writes, and, when no
write has come for a while, by a `SELECT 1`.
"""
from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone

from aiokafka import AIOKafkaClient
from aiokafka.protocol.metadata import MetadataRequest

from agents.lifecycle import _assigned_inputs, sink, stream_time
from streams.app import _broker_urls, app, settings
from supplymon import health

log = logging.getLogger(__name__)

PROBE_SECONDS = 2.0
STORE_IDLE_SECONDS = 10.0  # the store is probed only after this long without a successful write
identity = health.ClusterIdentity()


def _bootstrap() -> list[str]:
    return [url.removeprefix("kafka://") for url in _broker_urls(settings.kafka_url or "kafka://127.0.0.1:9092")]


async def broker_cluster_id() -> str | None:
    """The cluster id of the broker answering (raises if none answers)."""
    client = AIOKafkaClient(bootstrap_servers=_bootstrap(), request_timeout_ms=5000, client_id="supplymon-health")
    try:
        await asyncio.wait_for(client.bootstrap(), timeout=8)
        metadata = await asyncio.wait_for(client.send(client.get_random_node(), MetadataRequest(
            topics=[], allow_auto_topic_creation=False)), timeout=8)
        return getattr(metadata, "cluster_id", None)
    finally:
        try:
            await client.close()
        except Exception:  # closing a half-open client is not worth failing for
            pass


def learn_cluster_id(loop: asyncio.AbstractEventLoop) -> None:
    """Before the worker reads anything: the id of the broker its offsets and state
    will refer to (the probes compare every later answer with it)."""
    try:
        identity.replaced(loop.run_until_complete(broker_cluster_id()))
    except Exception:  # not answering yet: the first probe that gets an answer learns it
        log.warning("could not ask the broker its cluster id at start", exc_info=True)


async def probe_broker() -> None:
    try:
        cluster_id = await broker_cluster_id()
    except Exception as exc:  # unreachable, or it does not answer
        health.broker.failed(exc)
        return
    if identity.replaced(cluster_id):
        health.lose_broker("Kafka 代理已被替换（集群 ID 变了）", "the broker was replaced (its cluster id changed)",
                           settings.worker_file)
    elif not health.broker_lost:
        health.broker.ok()


async def probe_store() -> None:
    """The store's connection, while the sink is quiet: not while it is failing (its
    retries report then), nor right after a write succeeded. A probe that times out
    says the store's thread is busy (a large insert), not that the store is away."""
    if health.store.up is False or time.time() - health.store.last_ok < STORE_IDLE_SECONDS:
        return
    failures = health.store.failures
    try:
        await asyncio.wait_for(sink.query("SELECT 1", "TSV"), timeout=30)
    except asyncio.TimeoutError:
        log.info("the store's thread did not answer the health probe within 30 s (busy)")
    except Exception as exc:
        health.store.failed(exc)
    else:
        health.store.ok_unless_failed_since(failures)


@app.timer(PROBE_SECONDS)
async def probe_dependencies() -> None:
    await asyncio.gather(probe_broker(), probe_store())


def _report() -> tuple[bool, dict]:
    ready, report = health.status(bool(_assigned_inputs()))
    watermark = stream_time.watermark(_assigned_inputs())
    report["stream_time"] = (datetime.fromtimestamp(watermark / 1000, timezone.utc).isoformat(timespec="milliseconds")
                             if watermark is not None else None)
    report["stream_lag_seconds"] = health.stream_lag_seconds(watermark)
    report["checked_at"] = datetime.fromtimestamp(time.time(), timezone.utc).isoformat(timespec="seconds")
    return ready, report


@app.page("/health")
async def health_view(web, request):
    ready, report = _report()
    return web.json(report, status=200 if ready else 503)


@app.page("/ready")
async def ready_view(web, request):
    ready, report = _report()
    return web.json({"status": report["status"]}, status=200 if ready else 503)


@app.page("/live")
async def live_view(web, request):
    return web.json({"status": "alive"})
