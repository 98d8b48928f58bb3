"""The Faust app and its topics and tables, defined once from the settings.

The app is built at import from `Settings.from_env()`: the CLI sets the broker
address (for the embedded broker, once it has started) before importing this.
"""
from __future__ import annotations

import asyncio
import functools

import streams.codecs  # noqa: F401  (registers the str and orjson codecs)
from streams.bulk_restore import BulkRestoredTable
from streams.changelog import BatchedChangelog
from streams.producer import BatchProducer, send_keyed
from streams.batches import BatchIntake
from streams.web_security import App, middlewares
from supplymon.core import jsonbytes
from supplymon.publish import key_partition as partition_of_key
from supplymon.settings import Settings

settings = Settings.from_env()


def _broker_urls(url: str) -> list[str]:
    hosts = url.removeprefix("kafka://").replace(";", ",").split(",")
    return [f"kafka://{host.strip()}" for host in hosts if host.strip()]


app = App(  # faust.App without Faust's built-in web pages (streams/web_security.py)
    settings.app_id,
    broker=_broker_urls(settings.kafka_url or "kafka://127.0.0.1:9092"),
    store=settings.table_store,
    datadir=str(settings.data_dir / "faust"),  # Faust's own dir: with ours, not in the working directory
    topic_partitions=settings.partitions,
    topic_replication_factor=settings.topic_replication,  # Faust's own topics (changelogs) too
    autodiscover=False,
    web_enabled=True,
    web_host=settings.web_host,
    web_port=settings.web_port,
    web_bind=settings.web_host,
    web_application_options={"middlewares": middlewares(settings)},  # access rules for every route
    consumer_auto_offset_reset="earliest",
    table_standby_replicas=0,
    # Short on the embedded broker (fast joins), Faust's defaults on a real cluster.
    broker_session_timeout=settings.group_timeout,
    broker_rebalance_timeout=settings.group_timeout,
    broker_heartbeat_interval=settings.heartbeat_interval,
    broker_commit_every=10_000,
    broker_commit_interval=1.0,
    broker_max_poll_records=settings.batch_size,  # a fetch is a batch of the lifecycle agent
    stream_buffer_maxsize=max(4096, settings.batch_size * 2),
    producer_linger_ms=5,
    producer_max_batch_size=1 << 20,
    logging_config=None,
    Monitor="streams.monitor:WorkerMonitor",
)

input_topics = app.topic(
    *settings.topics.inputs,
    key_type=bytes, value_type=bytes,
    key_serializer="raw", value_serializer="raw",
    partitions=settings.partitions,
)
# The input topics are read in whole fetched batches (streams/batches.py): subscribed
# here, their records go from each fetch to this channel, a batch as one value.
app.topics.add(input_topics)
input_batches = app.channel(maxsize=4)
batch_intake = BatchIntake(app, settings.topics.inputs, input_batches)
batch_intake.install()
if settings.embedded_broker:  # its fetches do not end when data arrives (streams/consumer.py, 3.)
    app.transport.Consumer.fetch_max_wait_ms = 100
deadletter_topic = app.topic(
    settings.topics.deadletter, key_serializer="raw", value_serializer="raw",
    partitions=settings.partitions,
)
alerts_topic = app.topic(
    settings.topics.alerts, key_serializer="str", value_serializer="orjson",
    partitions=settings.partitions,
)

# One entry per order, keyed by order_id, its state as orjson bytes: compact in
# memory (a few hundred bytes, not a tree of Python objects), and a snapshot that
# later batches cannot change before it reaches the changelog. The changelog
# partition is the order's input partition (that of its first event, which the
# flow keeps with its state), as Faust keeps a table entry on its input record's
# partition: restored wherever the group assigns that input partition, whatever
# consistent partitioner the producers use. `key_partition` is only the fallback
# for an entry written without one.
ORDER_STATE = "order-state"
order_state = BulkRestoredTable(
    app,
    name=ORDER_STATE,
    beacon=app.tables.beacon,
    partitions=settings.partitions,
    # Table() takes codecs only through key/value *types*; give its changelog topic
    # (read back on recovery) and the table itself the str/raw codecs explicitly.
    changelog_topic=app.topic(
        f"{settings.app_id}-{ORDER_STATE}-changelog", key_serializer="str", value_serializer="raw",
        partitions=settings.partitions, compacting=True, deleting=False, internal=True),
)
order_state.key_serializer = "str"
order_state.value_serializer = "raw"
app.tables.add(order_state)

# Order outcomes regrouped for the early warnings (see supplymon/core/signals.py):
# each group ("m:<manufacturer>" or "d:<distributor>") lives in one partition
# (`group_partition`); every partition gets the marks of how far the inputs were read.
signals_topic = app.topic(
    settings.topics.signals, key_serializer="str", value_serializer="orjson",
    partitions=settings.partitions,
)


@functools.lru_cache(maxsize=1 << 16)  # murmur2 is pure Python; recent orders' keys come back often
def key_partition(key: str) -> int:
    """The partition of a key as the producer's default partitioner picks it (murmur2)."""
    return partition_of_key(key.encode(), settings.partitions)


def group_partition(group: str) -> int:
    """The signals partition of a group."""
    return key_partition(group)


class GroupTable(BulkRestoredTable):
    """A table whose keys are "<group>|<item>": every entry is written to the changelog
    partition of its group, so it is restored where that group's signals are read."""

    def partition_for_key(self, key: str) -> int:
        return group_partition(key.split("|", 1)[0])


# Early-warning state: a record per order and a meta entry per subject, by group.
WARNING_STATE = "warning-state"
warning_state = GroupTable(
    app,
    name=WARNING_STATE,
    beacon=app.tables.beacon,
    partitions=settings.partitions,
    changelog_topic=app.topic(
        f"{settings.app_id}-{WARNING_STATE}-changelog", key_serializer="str", value_serializer="orjson",
        partitions=settings.partitions, compacting=True, deleting=False, internal=True),
)
warning_state.key_serializer = "str"
warning_state.value_serializer = "orjson"
app.tables.add(warning_state)

# Both tables' changes are written a batch at a time (see streams/changelog.py).
batch_producer = BatchProducer(settings)
order_changelog = BatchedChangelog(order_state, batch_producer, key_partition, bytes)
warning_changelog = BatchedChangelog(warning_state, batch_producer, warning_state.partition_for_key, jsonbytes.dumps)


async def send_alerts(alerts: list[dict]) -> list[asyncio.Future]:
    """Alert rows to the alerts topic (keyed by alert_id, as its codecs would write
    them) a batch at a time through the worker's own producer, past Faust's
    per-message path (streams/producer.py); the deliveries to await."""
    return await send_keyed(await batch_producer.get(), alerts_topic.get_topic_name(),
                            [(alert["alert_id"].encode(), jsonbytes.dumps(alert)) for alert in alerts])
