"""One typed settings object: environment variables plus the rules file.

Everything configurable lives here; modules take a `Settings` (or its `rules`)
instead of reading the environment themselves.
"""
from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta, timezone
from pathlib import Path
from typing import ClassVar, Mapping

from schemas.limits import UINT16_MAX
from supplymon.core.assessment import AssessmentRuleError, AssessmentRules

DEFAULT_RULES_FILE = Path(__file__).with_name("rules.toml")
HOUR_MS = 3_600_000
# Consumer group timeouts (session and rebalance): what a real cluster wants, and a
# short one for the embedded broker (one worker on loopback), which makes a worker
# join in a few seconds instead of half a minute.
CLUSTER_GROUP_TIMEOUT = 60.0
EMBEDDED_GROUP_TIMEOUT = 6.0
SHANGHAI = timezone(timedelta(hours=8))  # the contract's days and local times


# A namespace names a side-by-side run (a replay next to live monitoring): lower-case
# letters, digits and underscores, so that it fits a topic prefix, a consumer group
# and a ClickHouse database name alike.
NAMESPACE_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,39}")
DEFAULT_DATABASE = "supplymon"

# The rules file's sections of the market-conduct rules: [section] key -> section_key.
CONDUCT_KEYS = {
    "distributor_limit": ("max_distributors", "window_days", "quiet_hours"),
    "price_linkage": ("tolerance", "lag_days", "lookback_days"),
    "price_inconsistent": ("tolerance", "window_days"),
    "price_rise": ("tolerance", "window_days"),
    "remote_refusal": ("window_days", "min_orders", "rate", "ratio"),
    "short_supply": ("window_days", "min_orders", "fill_rate_below"),
}


class ConfigError(ValueError):
    """A setting or a rule has a value supplymon cannot run with."""


def read_toml(path: Path, name_zh: str, name_en: str, error: type[ConfigError] = ConfigError) -> dict:
    """A configuration file (TOML), or `error` saying why not (Chinese, then English)."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise error(f"{name_zh} {path} 不存在 / {name_en} {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{name_zh} {path} 不是合法的 TOML：{exc} / {name_en} {path} is not valid TOML: {exc}") from None


@dataclass(frozen=True)
class Rules:
    """Rule thresholds (contract section 3); times in hours unless named otherwise."""

    response_overdue_hours: float = 48
    response_escalation_hours: float = 72
    delivery_urban_hours: float = 24
    delivery_rural_hours: float = 48
    confirmation_late_hours: float = 24
    orphan_timeout_hours: float = 168
    retention_days: float = 14
    shortage_window_hours: float = 72
    shortage_institutions: int = 3
    shortage_min_answered_orders: int = 20
    shortage_fill_rate_below: float = 0.8
    shortage_quiet_hours: float = 24
    surge_window_hours: float = 24
    surge_min_orders: int = 20
    surge_factor: float = 3
    surge_min_history_days: int = 7
    surge_max_history_days: int = 28
    surge_quiet_hours: float = 24
    delivery_rate_window_days: float = 30
    delivery_rate_min_orders: int = 20
    delivery_rate_threshold: float = 0.7
    # Market conduct (hulunbuir-2024 §三(二), fuxin-2020).
    distributor_limit_max_distributors: int = 2
    distributor_limit_window_days: float = 90
    distributor_limit_quiet_hours: float = 24
    price_linkage_tolerance: float = 0.005
    price_linkage_lag_days: float = 30
    price_linkage_lookback_days: float = 180
    price_inconsistent_tolerance: float = 0.005
    price_inconsistent_window_days: float = 7
    price_rise_tolerance: float = 0.05
    price_rise_window_days: float = 90
    remote_refusal_window_days: float = 30
    remote_refusal_min_orders: int = 20
    remote_refusal_rate: float = 0.1
    remote_refusal_ratio: float = 2
    short_supply_window_days: float = 30
    short_supply_min_orders: int = 20
    short_supply_fill_rate_below: float = 0.9
    # The periodic assessment and VBP monitoring (the rules file's [assessment] section).
    assessment: AssessmentRules = field(default_factory=AssessmentRules)
    # Intake: an event or tick stamped more than this past the wall clock is refused
    # (dead letter `future_timestamp`) unless the settings allow a simulated future.
    max_future_skew_minutes: float = 10

    # The rules file groups keys in sections: [response] overdue_hours -> response_overdue_hours.
    _SECTIONS: ClassVar[dict[tuple[str, str], str]] = {
        ("response", "overdue_hours"): "response_overdue_hours",
        ("response", "escalation_hours"): "response_escalation_hours",
        ("delivery", "urban_hours"): "delivery_urban_hours",
        ("delivery", "rural_hours"): "delivery_rural_hours",
        ("delivery", "confirmation_late_hours"): "confirmation_late_hours",
        ("state", "orphan_timeout_hours"): "orphan_timeout_hours",
        ("state", "retention_days"): "retention_days",
        **{("shortage", key): f"shortage_{key}" for key in (
            "window_hours", "institutions", "min_answered_orders", "fill_rate_below", "quiet_hours")},
        **{("surge", key): f"surge_{key}" for key in (
            "window_hours", "min_orders", "factor", "min_history_days", "max_history_days", "quiet_hours")},
        **{("delivery_rate", key): f"delivery_rate_{key}" for key in ("window_days", "min_orders", "threshold")},
        **{(section, key): f"{section}_{key}" for section, keys in CONDUCT_KEYS.items() for key in keys},
        ("intake", "max_future_skew_minutes"): "max_future_skew_minutes",
    }
    _COUNTS: ClassVar[tuple[str, ...]] = (
        "shortage_institutions", "shortage_min_answered_orders", "surge_min_orders",
        "surge_min_history_days", "surge_max_history_days", "delivery_rate_min_orders",
        "distributor_limit_max_distributors", "remote_refusal_min_orders", "short_supply_min_orders")
    _FRACTIONS: ClassVar[tuple[str, ...]] = (
        "shortage_fill_rate_below", "delivery_rate_threshold", "price_linkage_tolerance",
        "price_inconsistent_tolerance", "price_rise_tolerance", "remote_refusal_rate", "short_supply_fill_rate_below")

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "assessment":  # validated by AssessmentRules itself
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"rule {f.name} must be a positive number, got {value!r}")
            if f.name in self._COUNTS and value != int(value):
                raise ConfigError(f"rule {f.name} must be a whole number, got {value!r}")
            if f.name in self._FRACTIONS and value > 1:
                raise ConfigError(f"rule {f.name} is a fraction (0.8 = 80 %), got {value!r}")
        if self.surge_min_history_days > self.surge_max_history_days:
            raise ConfigError(
                "rule surge.min_history_days must not exceed surge.max_history_days "
                f"({self.surge_min_history_days} > {self.surge_max_history_days})")
        if self.price_linkage_lag_days >= self.price_linkage_lookback_days:
            raise ConfigError(
                "rule price_linkage.lag_days must be shorter than price_linkage.lookback_days "
                f"({self.price_linkage_lag_days} >= {self.price_linkage_lookback_days})")
        if self.response_escalation_hours <= self.response_overdue_hours:
            raise ConfigError(
                "rule response.escalation_hours must be later than response.overdue_hours "
                f"({self.response_escalation_hours} <= {self.response_overdue_hours})"
            )

    @classmethod
    def load(cls, path: str | Path | None = None) -> "Rules":
        """Read a rules file (TOML); keys it does not give keep their defaults."""
        path = Path(path) if path else DEFAULT_RULES_FILE
        doc = read_toml(path, "规则文件", "rules file")
        values = {}
        known = {section for section, _ in cls._SECTIONS}
        for section, body in doc.items():
            if section == "assessment" and isinstance(body, dict):
                try:
                    values["assessment"] = AssessmentRules.from_section(body)
                except (AssessmentRuleError, TypeError) as exc:
                    raise ConfigError(f"rules file {path}: [assessment] {exc}") from None
                continue
            if section not in known or not isinstance(body, dict):
                raise ConfigError(f"rules file {path}: unknown section [{section}]")
            for key, value in body.items():
                attr = cls._SECTIONS.get((section, key))
                if attr is None:
                    raise ConfigError(f"rules file {path}: unknown key {section}.{key}")
                values[attr] = value
        try:
            return cls(**values)
        except ConfigError as exc:
            raise ConfigError(f"rules file {path}: {exc}") from None

    def ms(self, name: str) -> int:
        """A threshold in milliseconds (event times are epoch milliseconds)."""
        value = getattr(self, name)
        unit = 24 * HOUR_MS if name.endswith("_days") else HOUR_MS // 60 if name.endswith("_minutes") else HOUR_MS
        return int(value * unit)


@dataclass(frozen=True)
class Topics:
    orders: str = "supply.orders"
    responses: str = "supply.responses"
    shipments: str = "supply.shipments"
    arrivals: str = "supply.arrivals"
    deadletter: str = "supply.deadletter"
    alerts: str = "supply.alerts"
    signals: str = "supply.signals"  # internal: order outcomes by manufacturer and distributor

    @property
    def inputs(self) -> tuple[str, str, str, str]:
        return (self.orders, self.responses, self.shipments, self.arrivals)

    def prefixed(self, prefix: str) -> "Topics":
        """Every topic name with `prefix` in front (a namespace's own topics)."""
        return Topics(**{f.name: prefix + getattr(self, f.name) for f in fields(Topics)})

    def for_kind(self, kind: str) -> str:
        return {
            "order": self.orders,
            "response": self.responses,
            "shipment": self.shipments,
            "arrival": self.arrivals,
        }[kind]


def table_store(url: str) -> str:
    """Only Faust's memory store: the tables are written a batch at a time straight
    into the store (streams/changelog.py), which Faust's RocksDB store does not allow
    outside its own event context."""
    if url.rstrip("/") != "memory:":
        raise ConfigError(f"SUPPLYMON_TABLE_STORE={url!r}: only memory:// is supported (the state is rebuilt "
                          "from the changelogs; for more open orders than fit, run more workers)")
    return url


def topic_configs(text: str) -> tuple[tuple[str, str], ...]:
    """`SUPPLYMON_TOPIC_CONFIGS`: `key=value` pairs separated by commas
    (`min.insync.replicas=2,retention.ms=2592000000`)."""
    out = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[a-z][a-z0-9.]*", key.strip()) or not value.strip():
            raise ConfigError(f"SUPPLYMON_TOPIC_CONFIGS: {item!r} is not a topic config key=value")
        out.append((key.strip(), value.strip()))
    return tuple(out)


@dataclass(frozen=True)
class Settings:
    kafka_url: str | None = None  # None: the embedded broker
    clickhouse_url: str | None = None  # None: embedded chdb under data_dir
    data_dir: Path = Path("data")
    partitions: int = 4
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    app_id: str = "supplymon"
    table_store: str = "memory://"
    batch_size: int = 2000
    batch_seconds: float = 0.2
    # Store inserts (agents/sink.py, WriteBehind): the rows of batches stored while
    # the next are computed are gathered into one insert per table until a table has
    # this many rows, or the oldest waiting batch has waited this long. Each insert
    # costs ~10 ms whatever its size; the wait delays acknowledgements and alerts.
    store_insert_rows: int = 10_000
    store_insert_seconds: float = 0.25
    # The early-warning agent's batch wait: its input is a message or so per signals
    # partition per stored lifecycle batch, already batched, so a short wait only
    # takes what came together (an early warning waits for it after its batch's insert).
    signals_batch_seconds: float = 0.05
    # Reading a backlog, input records that run ahead in time of a co-partitioned topic
    # still behind wait for it at most this long (streams/align.py); 0: never wait. Long:
    # in a backlog a record waits behind the batches queued before its sibling's, and
    # the watermark waits for a stalled partition anyway (nothing waits when caught up).
    align_max_wait_seconds: float = 30.0
    log_level: str = "warning"
    # Live mode: the worker publishes a tick (wall-clock time) to every input
    # partition this often, so deadlines fire while the platform is quiet. 0: off
    # (replays: only the file's events and ticks move time).
    live_tick_seconds: float = 60.0
    # Kafka consumer group session and rebalance timeout; None: CLUSTER_GROUP_TIMEOUT,
    # or EMBEDDED_GROUP_TIMEOUT once pointed at the embedded broker (`with_embedded_broker`).
    group_timeout_seconds: float | None = None
    # Accept events stamped in the future of the wall clock (a replay or demo of a
    # simulated future); off by default: a future stamp is refused (`future_timestamp`).
    allow_future: bool = False
    # Largest event message or replayed line; a larger one goes to the dead letters,
    # truncated (`too_large`). Under Kafka's default message limit (~1 MB).
    max_event_bytes: int = 1_000_000
    # The broker is the embedded one supplymon started: only then are the events it
    # republishes from the store (marked so) trusted not to be checked again.
    embedded_broker: bool = False
    topics: Topics = field(default_factory=Topics)
    rules: Rules = field(default_factory=Rules)
    rules_file: str | None = None
    # The web endpoints' shared secret (streams/web_security.py); None: a fresh one is
    # written to DATA_DIR/web-token (0600) when the worker starts. Required to listen
    # on an address other than loopback.
    web_token: str | None = None
    # Analysts' SQL (`supplymon sql`, `/sql`): longest a query may run.
    sql_timeout_seconds: float = 60.0
    # ClickHouse database of every table (queries name it `supplymon.`; the store
    # rewrites that qualifier when it differs, see supplymon.store.qualify).
    clickhouse_database: str = DEFAULT_DATABASE
    # A ClickHouse cluster (remote_servers name): replicated local tables ON CLUSTER
    # and Distributed tables over them (supplymon/cluster_ddl.py). None: single node.
    clickhouse_cluster: str | None = None
    # Topics supplymon creates: replication factor and configs (a real cluster:
    # 3 and min.insync.replicas=2, message.timestamp.after.max.ms, retention).
    topic_replication: int = 1
    topic_configs: tuple[tuple[str, str], ...] = ()
    namespace: str | None = None  # set by `namespaced`: a side-by-side run
    # Notifications (supplymon/notify): the recipients directory (TOML; None: no
    # notifications), whether this process sends them (`replay` only with --notify),
    # and the key that signs acknowledgement links (None: one kept in the data dir).
    recipients_file: str | None = None
    notify: bool = True
    ack_secret: str | None = None

    ENV_PREFIX: ClassVar[str] = "SUPPLYMON_"

    @property
    def embedded_kafka(self) -> bool:
        return not self.kafka_url

    @property
    def group_timeout(self) -> float:
        return self.group_timeout_seconds or CLUSTER_GROUP_TIMEOUT

    @property
    def heartbeat_interval(self) -> float:
        return min(3.0, self.group_timeout / 10)

    def with_embedded_broker(self, url: str) -> "Settings":
        """These settings pointed at the embedded broker at `url` (short group
        timeouts unless SUPPLYMON_GROUP_TIMEOUT_SECONDS says otherwise)."""
        return replace(self, kafka_url=url, embedded_broker=True, group_timeout_seconds=self.group_timeout_seconds or EMBEDDED_GROUP_TIMEOUT)

    def namespaced(self, name: str) -> "Settings":
        """These settings for a side-by-side run called `name`: its own topics
        (`name.` prefix), consumer group and Faust internal topics (app id
        `supplymon-name`), ClickHouse database (`supplymon_name`) and data dir
        (`DATA_DIR/namespaces/name`), so that live state, alerts and notifications
        are untouched."""
        if not NAMESPACE_PATTERN.fullmatch(name or ""):
            raise ConfigError(f"namespace {name!r}: use lower-case letters, digits and _ (at most 40, "
                              "starting with a letter)")
        if self.namespace:
            raise ConfigError(f"already in namespace {self.namespace!r}")
        # Its own data dir too: its worker's files, and its embedded store (chdb admits
        # one process per directory, and the live worker holds the live one).
        # It notifies nobody unless told (`replay --notify`): its delivery log is its own,
        # so it would send again what live monitoring sent.
        return replace(self, namespace=name, topics=self.topics.prefixed(f"{name}."), notify=False,
                       data_dir=self.data_dir / "namespaces" / name,
                       app_id=f"{self.app_id}-{name}", clickhouse_database=f"{self.clickhouse_database}_{name}")

    @property
    def insert_tmp_dir(self) -> Path:
        """Where a worker's embedded-store inserts pass through temporary files
        (clickhouse-connect's chdb backend): with the data dir, so that those a killed
        worker leaves are removed on the next start, not left in /tmp."""
        return self.data_dir / "tmp"

    @property
    def chdb_path(self) -> Path:
        return (self.data_dir / "clickhouse").resolve()

    @property
    def web_token_file(self) -> Path:
        """The worker's web token when none is configured (mode 0600; `supplymon sql` reads it)."""
        return self.data_dir / "web-token"

    @property
    def worker_file(self) -> Path:
        """Written by a running worker: its pid and web address (for `supplymon sql`)."""
        return self.data_dir / "worker.json"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> "Settings":
        env = os.environ if env is None else env
        p = cls.ENV_PREFIX

        def get(name: str, default=None):
            return env.get(p + name) or default

        def integer(name: str, default: int, minimum: int, maximum: int | None = None) -> int:
            raw = get(name)
            if raw is None:
                return default
            try:
                value = int(raw)
            except ValueError:
                raise ConfigError(f"{p}{name} must be an integer, got {raw!r}") from None
            if value < minimum:
                raise ConfigError(f"{p}{name} must be >= {minimum}, got {value}")
            if maximum is not None and value > maximum:
                raise ConfigError(f"{p}{name} must be <= {maximum:,}, got {value:,}")
            return value

        def number(name: str, default: float, zero_ok: bool = False) -> float:
            raw = get(name)
            if raw is None:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise ConfigError(f"{p}{name} must be a number, got {raw!r}") from None
            if value < 0 or (value == 0 and not zero_ok):
                raise ConfigError(f"{p}{name} must be positive, got {value}")
            return value

        def flag(name: str) -> bool:
            raw = (get(name) or "0").strip().lower()
            if raw not in ("0", "1", "true", "false", "yes", "no"):
                raise ConfigError(f"{p}{name} must be 1 or 0 (true or false), got {raw!r}")
            return raw in ("1", "true", "yes")

        def identifier(name: str, default: str) -> str:
            value = get(name, default)
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
                raise ConfigError(f"{p}{name} must be a ClickHouse identifier (letters, digits, _), got {value!r}")
            return value

        topics = Topics(**{
            f.name: get(f"TOPIC_{f.name.upper()}", f.default) for f in fields(Topics)
        })
        settings = cls(
            kafka_url=get("KAFKA"),
            clickhouse_url=get("CLICKHOUSE"),
            data_dir=Path(get("DATA_DIR", "data")),
            # an order keeps its input partition in 16 bits (supplymon/core/order_table.py)
            partitions=integer("PARTITIONS", 4, 1, maximum=UINT16_MAX + 1),
            web_host=get("WEB_HOST", "127.0.0.1"),
            web_port=integer("WEB_PORT", 6066, 0),
            app_id=get("APP_ID", "supplymon"),
            table_store=table_store(get("TABLE_STORE", "memory://")),
            batch_size=integer("BATCH_SIZE", 2000, 1),
            batch_seconds=number("BATCH_SECONDS", 0.2),
            store_insert_rows=integer("STORE_INSERT_ROWS", 10_000, 1),
            store_insert_seconds=number("STORE_INSERT_SECONDS", 0.25, zero_ok=True),
            signals_batch_seconds=number("SIGNALS_BATCH_SECONDS", 0.05),
            align_max_wait_seconds=number("ALIGN_MAX_WAIT_SECONDS", 30.0, zero_ok=True),
            log_level=get("LOG_LEVEL", "warning"),
            live_tick_seconds=number("LIVE_TICK_SECONDS", 60.0, zero_ok=True),
            group_timeout_seconds=number("GROUP_TIMEOUT_SECONDS", 0.0, zero_ok=True) or None,
            allow_future=flag("ALLOW_FUTURE"),
            embedded_broker=flag("EMBEDDED_BROKER"),
            max_event_bytes=integer("MAX_EVENT_BYTES", 1_000_000, 1024),
            topics=topics,
            rules=Rules.load(get("RULES")),
            rules_file=get("RULES"),
            web_token=get("WEB_TOKEN"),
            sql_timeout_seconds=number("SQL_TIMEOUT_SECONDS", 60.0),
            clickhouse_database=identifier("CLICKHOUSE_DATABASE", DEFAULT_DATABASE),
            clickhouse_cluster=get("CLICKHOUSE_CLUSTER") and identifier("CLICKHOUSE_CLUSTER", ""),
            topic_replication=integer("TOPIC_REPLICATION", 1, 1),
            topic_configs=topic_configs(get("TOPIC_CONFIGS", "")),
            recipients_file=get("RECIPIENTS"),
            notify=get("NOTIFY", "0" if get("NAMESPACE") else "1").lower() not in ("0", "false", "no", "off"),
            ack_secret=get("ACK_SECRET"),
        )
        if settings.kafka_url and not settings.kafka_url.startswith("kafka://"):
            raise ConfigError(f"{p}KAFKA must look like kafka://host:port[,host:port], got {settings.kafka_url!r}")
        if get("NAMESPACE"):
            # SUPPLYMON_NOTIFY, given by the process that started this one, says whether it notifies.
            settings = replace(settings.namespaced(get("NAMESPACE")), notify=settings.notify)
        return replace(settings, **overrides) if overrides else settings

    def _outside_namespace(self) -> "Settings":
        """The settings `namespaced` made these from (for `env`)."""
        name = self.namespace
        if not name:
            return self
        return replace(self, namespace=None, data_dir=self.data_dir.parent.parent,
                       topics=Topics(**{f.name: getattr(self.topics, f.name).removeprefix(f"{name}.")
                                        for f in fields(Topics)}),
                       app_id=self.app_id.removesuffix(f"-{name}"),
                       clickhouse_database=self.clickhouse_database.removesuffix(f"_{name}"))

    def env(self) -> dict[str, str]:
        """These settings as environment variables (to start a worker process with).
        A namespace's settings are given as the settings outside it plus
        SUPPLYMON_NAMESPACE, so that the process knows it runs in a namespace."""
        if self.namespace:
            return {**self._outside_namespace().env(), self.ENV_PREFIX + "NAMESPACE": self.namespace}
        p = self.ENV_PREFIX
        out = {
            p + "DATA_DIR": str(self.data_dir),
            p + "PARTITIONS": str(self.partitions),
            p + "WEB_HOST": self.web_host,
            p + "WEB_PORT": str(self.web_port),
            p + "APP_ID": self.app_id,
            p + "TABLE_STORE": self.table_store,
            p + "BATCH_SIZE": str(self.batch_size),
            p + "BATCH_SECONDS": str(self.batch_seconds),
            p + "STORE_INSERT_ROWS": str(self.store_insert_rows),
            p + "STORE_INSERT_SECONDS": str(self.store_insert_seconds),
            p + "SIGNALS_BATCH_SECONDS": str(self.signals_batch_seconds),
            p + "ALIGN_MAX_WAIT_SECONDS": str(self.align_max_wait_seconds),
            p + "LOG_LEVEL": self.log_level,
            p + "LIVE_TICK_SECONDS": str(self.live_tick_seconds),
            p + "ALLOW_FUTURE": "1" if self.allow_future else "0",
            p + "EMBEDDED_BROKER": "1" if self.embedded_broker else "0",
            p + "MAX_EVENT_BYTES": str(self.max_event_bytes),
        }
        if self.kafka_url:
            out[p + "KAFKA"] = self.kafka_url
        if self.group_timeout_seconds:
            out[p + "GROUP_TIMEOUT_SECONDS"] = str(self.group_timeout_seconds)
        if self.clickhouse_url:
            out[p + "CLICKHOUSE"] = self.clickhouse_url
        if self.rules_file:
            out[p + "RULES"] = self.rules_file
        if self.web_token:
            out[p + "WEB_TOKEN"] = self.web_token
        out[p + "SQL_TIMEOUT_SECONDS"] = str(self.sql_timeout_seconds)
        out[p + "CLICKHOUSE_DATABASE"] = self.clickhouse_database
        if self.clickhouse_cluster:
            out[p + "CLICKHOUSE_CLUSTER"] = self.clickhouse_cluster
        out[p + "TOPIC_REPLICATION"] = str(self.topic_replication)
        if self.topic_configs:
            out[p + "TOPIC_CONFIGS"] = ",".join(f"{k}={v}" for k, v in self.topic_configs)
        if self.recipients_file:
            out[p + "RECIPIENTS"] = self.recipients_file
        out[p + "NOTIFY"] = "1" if self.notify else "0"
        if self.ack_secret:
            out[p + "ACK_SECRET"] = self.ack_secret
        for f in fields(Topics):
            out[f"{p}TOPIC_{f.name.upper()}"] = getattr(self.topics, f.name)
        return out
