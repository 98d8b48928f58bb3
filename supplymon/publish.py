"""Putting events on Kafka: topic creation and a batched publisher.

Used by `replay`, the demo's simulator and the embedded worker's rebuild from
`events_raw`. Each event goes to its kind's topic, keyed by `order_id`, with the
Kafka timestamp set to its event time; a tick goes to every partition of every
input topic (contract section 1). A line that is not a usable event is published
as it is to the orders topic, so that the worker dead-letters it with a reason
(once: a tick the validator or the future-stamp rule would refuse is not fanned
out, it would be refused on every partition); the worker's validator decides. A line over `max_event_bytes` (or one the broker
refuses as too large) is published as its truncated copy with the header
`supplymon-too-large` (its size): the worker dead-letters it (`too_large`) and the
publishing goes on.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Callable, NamedTuple, Sequence

import numpy as np
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.partitioner import murmur2
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from schemas.events import Invalid, validate_doc
from schemas.limits import MAX_TS_MS, MIN_TS_MS
from supplymon.core.byte_keys import equal_length_keys
from supplymon.core.intake import TOO_LARGE_HEADER, truncated
from supplymon.settings import Settings, Topics

log = logging.getLogger(__name__)

# The embedded broker describes only the configs given at creation; set the ones
# clients read back. Unbounded retention: replay and rebuild need whole histories.
TOPIC_CONFIGS = {"retention.ms": "-1", "retention.bytes": "-1"}


def bootstrap_servers(settings: Settings) -> list[str]:
    if not settings.kafka_url:
        raise ValueError("no Kafka configured")
    return [h.strip() for h in settings.kafka_url.removeprefix("kafka://").replace(";", ",").split(",") if h.strip()]


def ensure_topics(settings: Settings) -> None:
    """Create the input, dead-letter, alert and signal topics when missing (existing ones are kept)."""
    topics = settings.topics
    wanted = [*topics.inputs, topics.deadletter, topics.alerts, topics.signals]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers(settings), client_id="supplymon-admin")
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(name, settings.partitions, settings.topic_replication, topic_configs=topic_configs(settings))
                   for name in wanted if name not in existing]
        if missing:
            try:
                admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()


def topic_configs(settings: Settings) -> dict[str, str]:
    """Configs of the topics supplymon creates: the defaults above, overridden and
    extended by SUPPLYMON_TOPIC_CONFIGS (a real cluster: min.insync.replicas,
    retention.ms, message.timestamp.after.max.ms)."""
    return {**TOPIC_CONFIGS, **dict(settings.topic_configs)}


def event_time_ms(value) -> int | None:
    """The Kafka timestamp for an event's `ts` (None if unusable: the worker says why)."""
    try:
        ms = int(datetime.fromisoformat(value).timestamp() * 1000)
    except (TypeError, ValueError, OverflowError):
        return None
    return ms if MIN_TS_MS <= ms < MAX_TS_MS else None


class Route(NamedTuple):
    """Where a line is published."""

    topic: str | None  # None: a tick, to every partition of every input topic
    key: bytes | None  # its order_id: the partition is the key's (murmur2), or any if None
    ts: int | None  # the Kafka timestamp (its event time, if usable)
    readable: bool  # False: left to the worker to dead-letter with a reason


def route(raw: bytes, topics: Topics, refused_as_future: Callable[[int], bool] = lambda ts: False) -> Route:
    """Each event to its kind's topic, keyed by `order_id`; a line that is not a
    usable event to the orders topic, for the worker to say why. A tick goes to
    every input partition, unless it would be refused there (invalid, or stamped
    from the future): then once, as any unusable line."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict):
        return Route(topics.orders, None, None, False)
    kind = doc.get("kind")
    ts = event_time_ms(doc.get("ts"))
    if kind == "tick":
        if isinstance(validate_doc(doc), Invalid) or (ts is not None and refused_as_future(ts)):
            return Route(topics.orders, None, ts, False)
        return Route(None, None, ts, True)
    order_id = doc.get("order_id")
    key = order_id.encode() if isinstance(order_id, str) else None
    if kind in ("order", "response", "shipment", "arrival"):
        return Route(topics.for_kind(kind), key, ts, True)
    return Route(topics.orders, key, ts, False)


def refused_as_future_at(settings: Settings, ts: int, now_ms: float) -> bool:
    """Whether the worker will refuse an event stamped `ts` as from the future (then
    not worth waiting for, and a tick not worth fanning out)."""
    return not settings.allow_future and ts > now_ms + settings.rules.ms("max_future_skew_minutes")


@lru_cache(maxsize=1 << 18)  # murmur2 is pure Python (~2 us); an order's ~4 events share its key
def key_partition(key: bytes, partitions: int) -> int:
    """The partition of a key as the producer's default partitioner picks it."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


_MURMUR_M = np.uint32(0x5BD1E995)


def key_partitions(keys: Sequence[bytes], partitions: int) -> np.ndarray:
    """`key_partition` of each key, for a batch at once: Kafka's murmur2 (aiokafka's
    `murmur2`, the Java client's) on numpy's wrapping uint32 arithmetic, over the
    keys of each length as one matrix of their bytes."""
    out = np.empty(len(keys), dtype=np.int64)
    ends = np.cumsum(np.fromiter(map(len, keys), dtype=np.int64, count=len(keys)))
    m = _MURMUR_M
    for length, at, data in equal_length_keys(b"".join(keys), ends):
        h = np.full(len(at), (0x9747B28C ^ length) & 0xFFFFFFFF, dtype=np.uint32)
        whole = length // 4
        words = np.ascontiguousarray(data[:, :whole * 4]).view("<u4").astype(np.uint32)
        for b in range(whole):
            k = words[:, b] * m
            k ^= k >> np.uint32(24)
            k *= m
            h *= m
            h ^= k
        tail = data[:, whole * 4:].astype(np.uint32)
        if length % 4 >= 3:
            h ^= tail[:, 2] << np.uint32(16)
        if length % 4 >= 2:
            h ^= tail[:, 1] << np.uint32(8)
        if length % 4 >= 1:
            h ^= tail[:, 0]
            h *= m
        h ^= h >> np.uint32(13)
        h *= m
        h ^= h >> np.uint32(15)
        out[at] = (h & np.uint32(0x7FFFFFFF)).astype(np.int64) % partitions
    return out


@dataclass
class PublishStats:
    events: int = 0
    ticks: int = 0
    unreadable: int = 0
    too_large: int = 0
    end_offsets: dict[str, int] = field(default_factory=dict)  # "topic:partition" -> next offset

    def record(self, topic: str, partition: int, offset: int) -> None:
        key = f"{topic}:{partition}"
        if offset + 1 > self.end_offsets.get(key, 0):
            self.end_offsets[key] = offset + 1


class Publisher:
    """Batched asynchronous producer of raw event lines; with `speed`, paced so that
    event time runs `speed` times as fast as the wall clock (from the first event)."""

    def __init__(self, settings: Settings, window: int = 5000, speed: float | None = None):
        self.settings = settings
        self.window = window  # sends in flight before we wait for their acks
        self.speed = speed
        self._clock_start: tuple[int, float] | None = None  # (first event time ms, monotonic)
        self.stats = PublishStats()
        self._pending: list[asyncio.Future] = []
        self._producer: AIOKafkaProducer | None = None
        self._partitions: int = settings.partitions

    async def __aenter__(self) -> "Publisher":
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers(self.settings), acks="all",
            linger_ms=10, max_batch_size=1 << 20, request_timeout_ms=30_000)
        await self._producer.start()
        parts = await self._producer.partitions_for(self.settings.topics.orders)
        self._partitions = len(parts) if parts else self.settings.partitions
        return self

    async def __aexit__(self, *exc) -> None:
        try:
            await self.flush()
        finally:
            await self._producer.stop()

    async def publish(self, line: bytes | str, headers: list[tuple[str, bytes]] | None = None) -> None:
        """Publish one JSON Lines line (a tick fans out to every input partition)."""
        raw = line.encode() if isinstance(line, str) else line
        raw = raw.strip()
        if not raw:
            return
        if len(raw) > self.settings.max_event_bytes:
            await self._too_large(raw)
            return
        now_ms = time.time() * 1000
        where = route(raw, self.settings.topics, lambda ts: refused_as_future_at(self.settings, ts, now_ms))
        if self.speed and where.ts is not None and not refused_as_future_at(self.settings, where.ts, now_ms):
            await self._pace(where.ts)
        if where.topic is None:
            self.stats.ticks += 1
            for topic in self.settings.topics.inputs:
                for partition in range(self._partitions):
                    await self._send(topic, None, raw, where.ts, partition, headers)
            return
        if not where.readable:
            self.stats.unreadable += 1
        self.stats.events += 1
        await self._send(where.topic, where.key, raw, where.ts, None, headers)

    async def _too_large(self, raw: bytes) -> None:
        """Its truncated copy instead, for the worker to dead-letter (never decoded)."""
        self.stats.too_large += 1
        self.stats.events += 1
        await self._send(self.settings.topics.orders, None, truncated(raw), None, None,
                         [(TOO_LARGE_HEADER, str(len(raw)).encode())])

    async def _pace(self, ts: int) -> None:
        if self._clock_start is None:
            self._clock_start = (ts, time.monotonic())
        first_ts, started = self._clock_start
        wait = (ts - first_ts) / 1000 / self.speed - (time.monotonic() - started)
        if wait > 0:
            await self.flush()
            await asyncio.sleep(wait)

    async def _send(self, topic, key, value, ts, partition, headers=None) -> None:
        if ts is not None and ts > time.time() * 1000:
            # A cluster with message.timestamp.after.max.ms refuses a whole record batch
            # for one record stamped in the future: such a record gets the wall clock as
            # its Kafka timestamp, and the worker judges its event time from its `ts`.
            ts = None
        try:
            future = await self._producer.send(topic, value=value, key=key, timestamp_ms=ts,
                                               partition=partition, headers=headers)
        except MessageSizeTooLargeError:  # over the producer's request size
            self.stats.events -= 1
            await self._too_large(value)
            return
        self._pending.append((future, value))
        if len(self._pending) >= self.window:
            await self.flush()

    async def flush(self) -> None:
        while self._pending:
            pending, self._pending = self._pending, []
            for future, value in pending:
                try:
                    meta = await future
                except MessageSizeTooLargeError:  # over the broker's message limit
                    self.stats.events -= 1
                    await self._too_large(value)
                    continue
                self.stats.record(meta.topic, meta.partition, meta.offset)
