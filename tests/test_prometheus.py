"""infra/prometheus: the config and rules pass Debian's promtool (check and unit
tests in rules.test.yml); every metric the rules and the pipeline dashboard use is
one the worker defines (supplymon/metrics.py); the lag metrics measure what they say."""
from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from faust.types import TP

from agents.lag import consumer_lag
from dashboards.panels import PIPELINE
from supplymon import metrics
from tests.conftest import ROOT

PROMETHEUS = ROOT / "infra" / "prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
needs_promtool = pytest.mark.skipif(not Path(PROMTOOL).exists(), reason="promtool missing (make system-tools)")


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120)


@needs_promtool
def test_config_and_rules_pass_promtool():
    checked = promtool("check", "config", "prometheus.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rules = promtool("check", "rules", "rules.yml")
    assert rules.returncode == 0 and "SUCCESS" in rules.stdout, rules.stdout + rules.stderr


@needs_promtool
def test_alert_rules_unit_tests(tmp_path):
    result = promtool("test", "rules", "rules.test.yml")
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr
    # The tests can fail: without its `for`, the stalled-time alert fires where it must not yet.
    rules = yaml.safe_load((PROMETHEUS / "rules.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "SupplymonWorkerDown":
                del rule["for"]
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules, allow_unicode=True))
    shutil.copy(PROMETHEUS / "rules.test.yml", tmp_path)
    broken = subprocess.run([PROMTOOL, "test", "rules", "rules.test.yml"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert broken.returncode != 0 and "SupplymonWorkerDown" in broken.stdout + broken.stderr


def metric_names_in(expression: str) -> set[str]:
    return set(re.findall(r"\b(supplymon_[a-z0-9_]+?)(?:_bucket|_count|_sum)?\b", expression))


def defined_metrics() -> set[str]:
    names = set()
    for collector in metrics.REGISTRY._collector_to_names:
        for family in collector.describe():
            names.add(family.name)
            names.add(family.name + "_total")  # counters are exposed with _total
    return names


def test_rules_and_dashboard_use_defined_metrics():
    rules = yaml.safe_load((PROMETHEUS / "rules.yml").read_text())
    used = set()
    for group in rules["groups"]:
        for rule in group["rules"]:
            used |= metric_names_in(rule["expr"])
    for panel in PIPELINE.panels:
        used |= metric_names_in(panel.query)
    assert used and used <= defined_metrics(), used - defined_metrics()


def test_stream_time_lag_follows_the_wall_clock():
    metrics.stream_time.set(0)
    assert _sample("supplymon_stream_time_lag_seconds") == 0  # no event yet
    metrics.stream_time.set(time.time() - 600)
    assert 599 <= _sample("supplymon_stream_time_lag_seconds") <= 605
    metrics.stream_time.set(0)


def _sample(name: str) -> float:
    return metrics.REGISTRY.get_sample_value(name)


def test_consumer_lag_is_the_highwater_minus_what_is_stored():
    assigned = [TP("supply.orders", 0), TP("supply.orders", 1), TP("supply.arrivals", 2)]
    highwater = {TP("supply.orders", 0): 120, TP("supply.orders", 1): 40, TP("supply.arrivals", 2): None}.get
    stored = {"supply.orders:0": 100, "supply.orders:1": 40}
    assert consumer_lag(assigned, highwater, stored) == {("supply.orders", "0"): 20, ("supply.orders", "1"): 0}
    assert consumer_lag([TP("supply.orders", 3)], {TP("supply.orders", 3): 7}.get, {}) == {("supply.orders", "3"): 7}


def test_the_worker_reports_cpu_seconds_per_thread():
    """supplymon/thread_cpu.py: a thread's CPU under its name (a pool's number dropped),
    the rest of the process as `native`."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from prometheus_client import generate_latest

    from supplymon.thread_cpu import thread_cpu

    def spin() -> None:
        deadline = time.thread_time() + 0.2
        while time.thread_time() < deadline:
            pass

    with ThreadPoolExecutor(1, thread_name_prefix="clickhouse") as pool:
        pool.submit(spin).result()
        cpu = thread_cpu()
        text = generate_latest(metrics.REGISTRY).decode()
    assert cpu["clickhouse"] >= 0.2 and cpu["MainThread"] > 0 and cpu["native"] >= 0
    assert threading.main_thread().name == "MainThread"
    found = re.search(r'supplymon_thread_cpu_seconds_total\{thread="clickhouse"\} (\S+)', text)
    assert found and float(found.group(1)) >= 0.2, text
