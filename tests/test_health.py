"""The availability bookkeeping behind /health, the up gauges and the outage logs."""
from __future__ import annotations

import logging

from supplymon import health, metrics


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_outage_is_logged_once_at_start_and_once_at_end(caplog):
    clock = Clock()
    store = health.Availability("store-test", "测试存储", clock=clock)
    caplog.set_level(logging.WARNING, logger="supplymon.health")
    store.ok()
    for attempt in range(5):  # every retry reports; the outage starts once
        clock.now += 1
        store.failed(OSError(f"connection refused {attempt}"))
    assert store.up is False and store.outages == 1 and store.last_error == "connection refused 4"
    assert store.report()["down_seconds"] == 4.0
    assert metrics.system_up.labels("store-test")._value.get() == 0
    clock.now += 3
    store.ok()
    store.ok()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "测试存储不可用" in lines[0] and "store-test is unavailable" in lines[0] and "connection refused 0" in lines[0]
    assert "store-test is back after 7.0 s down" in lines[1]
    assert metrics.system_up.labels("store-test")._value.get() == 1
    assert metrics.outages.labels("store-test")._value.get() == 1
    assert store.report()["last_error"] == "" and store.report()["down_seconds"] == 0.0


def test_ready_needs_store_broker_and_partitions():
    health.store.up, health.broker.up = None, None
    assert health.status(True)[1]["status"] == "starting"
    health.store.up, health.broker.up = True, True
    assert health.status(True)[0] is True
    assert health.status(False)[0] is False
    health.broker.up = False
    ready, report = health.status(True)
    assert not ready and report["status"] == "degraded"
    health.store.up, health.broker.up = None, None


def test_a_new_cluster_id_means_another_broker():
    identity = health.ClusterIdentity()
    assert not identity.replaced(None)
    assert not identity.replaced("supplymon-a")
    assert not identity.replaced("supplymon-a")
    assert identity.replaced("supplymon-b")


def test_stream_lag():
    assert health.stream_lag_seconds(None) is None
    assert health.stream_lag_seconds(1_000_000, now=1_060.5) == 60.5


def test_a_probe_does_not_undo_a_failure_reported_while_it_ran():
    store = health.Availability("store-probe-test", "测试存储")
    store.ok()
    before = store.failures
    store.failed(OSError("disk"))  # a write fails while the probe's SELECT 1 is queued
    store.ok_unless_failed_since(before)  # ... which then succeeds
    assert store.up is False and store.outages == 1
    store.ok_unless_failed_since(store.failures)
    assert store.up is True
