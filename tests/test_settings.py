"""Settings and the rules file: defaults, overrides and clear errors."""
from __future__ import annotations

import pytest

from supplymon.settings import CLUSTER_GROUP_TIMEOUT, EMBEDDED_GROUP_TIMEOUT, ConfigError, Rules, Settings


def test_defaults_match_the_contract():
    rules = Rules.load()
    assert (rules.response_overdue_hours, rules.response_escalation_hours) == (48, 72)
    assert (rules.delivery_urban_hours, rules.delivery_rural_hours, rules.confirmation_late_hours) == (24, 48, 24)


def test_rules_file_overrides_some_keys(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text("[delivery]\nurban_hours = 12\n")
    rules = Rules.load(path)
    assert rules.delivery_urban_hours == 12 and rules.delivery_rural_hours == 48
    assert Settings.from_env({"SUPPLYMON_RULES": str(path)}).rules.delivery_urban_hours == 12


@pytest.mark.parametrize("text, message", [
    ("[delivery]\nurban_hours = -1\n", "delivery_urban_hours must be a positive"),
    ("[delivery]\nurban_hours = 'soon'\n", "must be a positive"),
    ("[response]\noverdue_hours = 80\n", "escalation_hours must be later"),
    ("[delivery]\nurbn_hours = 3\n", "unknown key delivery.urbn_hours"),
    ("[deliveries]\n", "unknown section [deliveries]"),
    ("[delivery\n", "not valid TOML"),
])
def test_bad_rules_are_refused_with_a_clear_error(tmp_path, text, message):
    path = tmp_path / "rules.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        Rules.load(path)


def test_missing_rules_file():
    with pytest.raises(ConfigError, match="does not exist"):
        Settings.from_env({"SUPPLYMON_RULES": "/nonexistent/rules.toml"})


@pytest.mark.parametrize("env, message", [
    ({"SUPPLYMON_PARTITIONS": "zero"}, "must be an integer"),
    ({"SUPPLYMON_PARTITIONS": "0"}, "must be >= 1"),
    ({"SUPPLYMON_PARTITIONS": "65537"}, "must be <= 65,536"),  # an order keeps its partition in 16 bits
    ({"SUPPLYMON_KAFKA": "localhost:9092"}, "kafka://"),
    ({"SUPPLYMON_BATCH_SECONDS": "-1"}, "must be positive"),
    ({"SUPPLYMON_STORE_INSERT_ROWS": "0"}, "must be >= 1"),
    ({"SUPPLYMON_STORE_INSERT_SECONDS": "-0.5"}, "must be positive"),
    ({"SUPPLYMON_TABLE_STORE": "rocksdb://"}, "only memory:// is supported"),
])
def test_bad_environment_is_refused(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_settings_round_trip_through_the_environment():
    settings = Settings.from_env({"SUPPLYMON_KAFKA": "kafka://h1:9092,h2:9092", "SUPPLYMON_PARTITIONS": "8",
                                  "SUPPLYMON_TOPIC_ORDERS": "p.orders", "SUPPLYMON_STORE_INSERT_ROWS": "20000",
                                  "SUPPLYMON_STORE_INSERT_SECONDS": "0"})
    assert (settings.store_insert_rows, settings.store_insert_seconds) == (20000, 0)
    again = Settings.from_env(settings.env())
    assert again == settings and again.topics.for_kind("order") == "p.orders"


def test_group_timeouts_short_on_the_embedded_broker_only():
    cluster = Settings.from_env({"SUPPLYMON_KAFKA": "kafka://h1:9092"})
    assert cluster.group_timeout == CLUSTER_GROUP_TIMEOUT and cluster.heartbeat_interval == 3.0
    embedded = Settings.from_env({}).with_embedded_broker("kafka://127.0.0.1:1234")
    assert embedded.group_timeout == EMBEDDED_GROUP_TIMEOUT
    # a worker process started for it gets the same value through its environment
    assert Settings.from_env(embedded.env()).group_timeout == EMBEDDED_GROUP_TIMEOUT
    chosen = Settings.from_env({"SUPPLYMON_GROUP_TIMEOUT_SECONDS": "20"}).with_embedded_broker("kafka://x:1")
    assert chosen.group_timeout == 20 and chosen.heartbeat_interval == 2
