"""Putting events on Kafka: topic creation and a batched publisher.

Used by `replay`, the demo's simulator and the embedded worker's rebuild from
`events_raw`. Each event goes to its kind's topic, keyed by `order_id`, with the
Kafka timestamp set to its event time; a tick goes to every partition of every
input topic (contract section 1). A line that is not a usable event is published
as it is to the orders topic (keyed by its order_id if it has one, else to the
first partition), so that the worker dead-letters it with a reason (once: a tick
the validator or the future-stamp rule would refuse is not fanned out, it would be
refused on every partition); the worker's validator decides. A line over
`max_event_bytes` (or one the producer or the broker refuses as too large) is
published as its truncated copy with the header `supplymon-too-large` (its size):
the worker dead-letters it (`too_large`) and the publishing goes on.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import numpy as np
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.partitioner import murmur2
from aiokafka.record.default_records import DefaultRecordBatchBuilder
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


async def keyed_partitions(producer: AIOKafkaProducer, topic: str, keys: Sequence[bytes],
                           partitioner: Callable[[Sequence[bytes], int], np.ndarray] = key_partitions) -> list[int]:
    """The partition of `topic` each key goes to, as the producer's default
    partitioner picks it (or `partitioner`'s index into the topic's partitions)."""
    partitions = sorted(await producer.partitions_for(topic))
    return [partitions[at] for at in partitioner(keys, len(partitions)).tolist()]


def record_batches(producer: AIOKafkaProducer, messages: Sequence[tuple]) -> Iterator[tuple[int, Any]]:
    """`messages` (key, value, timestamp in ms or None, headers or None) appended to
    as few of the producer's record batches as they fit, in order: (count, batch)."""
    batch, count = producer.create_batch(), 0
    for key, value, timestamp, headers in messages:
        if batch.append(key=key, value=value, timestamp=timestamp, headers=headers) is None:  # full
            yield count, batch
            batch, count = producer.create_batch(), 0
            batch.append(key=key, value=value, timestamp=timestamp, headers=headers)  # an empty batch takes any one
        count += 1
    if count:
        yield count, batch


class Outgoing(NamedTuple):
    """A message the publisher sends with its next record batches."""

    topic: str
    partition: int | None  # None: its key's partition (the first, without a key)
    key: bytes | None
    value: bytes
    timestamp: int | None  # ms; None: the wall clock's
    headers: list[tuple[str, bytes]] | None


class Publisher:
    """Batched asynchronous producer of raw event lines; with `speed`, paced so that
    event time runs `speed` times as fast as the wall clock (from the first event).

    The lines' messages are gathered and sent as record batches, a partition's in
    their order (aiokafka's batch API, not a producer call, future and partitioner
    call per message): every `SEND_EVERY` messages, `LINGER_SECONDS` after the
    first message not sent yet (a live source's message waits no longer, as with the
    producer's linger), before a pace's wait, and on `flush()`; one send at a time,
    so a partition's messages keep their order. A send that fails in the background
    is raised by the next `publish()` or `flush()`. A keyed message goes to its
    key's partition by `partitioner` (the producer's default: murmur2, on numpy for
    a whole batch), one without a key (a line with no order_id, dead-lettered by the
    worker) to the first partition. A record batch the broker refuses as too large
    is sent again a message per batch, and a message it refuses alone as its
    truncated copy."""

    SEND_EVERY = 1000
    LINGER_SECONDS = 0.01
    MAX_REQUEST_BYTES = 1 << 20  # the producer's; a message over it is never sent (aiokafka's check, per message)
    partitioner = staticmethod(key_partitions)  # (keys, partition count) -> each key's partition index

    def __init__(self, settings: Settings, window: int = 5000, speed: float | None = None):
        self.settings = settings
        self.window = window  # messages in flight before we wait for their acks
        self.speed = speed
        self._clock_start: tuple[int, float] | None = None  # (first event time ms, monotonic)
        self.stats = PublishStats()
        self._outbox: list[Outgoing] = []  # not sent yet
        self._pending: deque[tuple[asyncio.Future, str, int, list[Outgoing]]] = deque()  # sent, not yet delivered
        self._in_flight = 0  # their messages
        self._producer: AIOKafkaProducer | None = None
        self._partitions: int = settings.partitions
        self._sending = asyncio.Lock()
        self._linger: asyncio.TimerHandle | None = None  # sends the outbox once it has lingered
        self._lingering: asyncio.Task | None = None  # that send

    async def __aenter__(self) -> "Publisher":
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers(self.settings), acks="all", linger_ms=10,
            max_batch_size=1 << 20, max_request_size=self.MAX_REQUEST_BYTES, request_timeout_ms=30_000)
        await self._producer.start()
        parts = await self._producer.partitions_for(self.settings.topics.orders)
        self._partitions = len(parts) if parts else self.settings.partitions
        return self

    async def __aexit__(self, *exc) -> None:
        try:
            await self.flush()
        finally:
            if self._linger is not None:
                self._linger.cancel()
            await self._producer.stop()

    async def publish(self, line: bytes | str, headers: list[tuple[str, bytes]] | None = None) -> None:
        """Publish one JSON Lines line (a tick fans out to every input partition)."""
        self._check()
        raw = line.encode() if isinstance(line, str) else line
        raw = raw.strip()
        if not raw:
            return
        if len(raw) > self.settings.max_event_bytes:
            self._too_large(raw)
        else:
            now_ms = time.time() * 1000
            where = route(raw, self.settings.topics, lambda ts: refused_as_future_at(self.settings, ts, now_ms))
            if self.speed and where.ts is not None and not refused_as_future_at(self.settings, where.ts, now_ms):
                await self._pace(where.ts)
            # A cluster with message.timestamp.after.max.ms refuses a whole record batch
            # for one record stamped in the future: such a record gets the wall clock as
            # its Kafka timestamp, and the worker judges its event time from its `ts`.
            ts = where.ts if where.ts is not None and where.ts <= now_ms else None
            if self._over_request(where.key, raw, headers):
                self._too_large(raw)
            elif where.topic is None:
                self.stats.ticks += 1
                self._outbox += [Outgoing(topic, partition, None, raw, ts, headers)
                                 for topic in self.settings.topics.inputs for partition in range(self._partitions)]
            else:
                if not where.readable:
                    self.stats.unreadable += 1
                self.stats.events += 1
                self._outbox.append(Outgoing(where.topic, None, where.key, raw, ts, headers))
        if len(self._outbox) >= self.SEND_EVERY:
            await self._send()
            if self._in_flight >= self.window:  # the oldest half delivered; the rest stays in flight
                await self._settle(self.window // 2)
        elif self._outbox and self._linger is None:
            self._linger = asyncio.get_running_loop().call_later(self.LINGER_SECONDS, self._send_lingering)

    def _send_lingering(self) -> None:
        self._linger = None
        if self._lingering is None or self._lingering.done():
            self._lingering = asyncio.ensure_future(self._send())
        elif self._outbox:  # a send is still running: this one's turn comes after it
            self._linger = asyncio.get_running_loop().call_later(self.LINGER_SECONDS, self._send_lingering)

    def _check(self) -> None:
        """A background send's failure, raised (its messages were not sent)."""
        task = self._lingering
        if task is not None and task.done():
            self._lingering = None
            task.result()

    def _over_request(self, key: bytes | None, raw: bytes, headers: list[tuple[str, bytes]] | None) -> bool:
        """Whether the producer would refuse the message sent alone (an empty record
        batch takes any, so the check is made here)."""
        return (len(raw) > self.MAX_REQUEST_BYTES // 2
                and DefaultRecordBatchBuilder.estimate_size_in_bytes(key, raw, headers or []) > self.MAX_REQUEST_BYTES)

    def _too_large(self, raw: bytes) -> None:
        """Its truncated copy instead, for the worker to dead-letter (never decoded)."""
        self.stats.too_large += 1
        self.stats.events += 1
        self._outbox.append(Outgoing(self.settings.topics.orders, None, None, truncated(raw), None,
                                     [(TOO_LARGE_HEADER, str(len(raw)).encode())]))

    async def _pace(self, ts: int) -> None:
        if self._clock_start is None:
            self._clock_start = (ts, time.monotonic())
        first_ts, started = self._clock_start
        wait = (ts - first_ts) / 1000 / self.speed - (time.monotonic() - started)
        if wait > 0:
            await self.flush()
            await asyncio.sleep(wait)

    async def _send(self) -> None:
        """The outbox as record batches, a partition's messages in their order."""
        async with self._sending:
            await self._send_outbox()

    async def _send_outbox(self) -> None:
        outbox, self._outbox = self._outbox, []
        keyed: dict[str, list[int]] = {}  # topic -> its messages to send to their key's partition
        for i, message in enumerate(outbox):
            if message.partition is None and message.key is not None:
                keyed.setdefault(message.topic, []).append(i)
        partition_of: dict[int, int] = {}
        for topic, at in keyed.items():
            keys = [outbox[i].key for i in at]
            partition_of.update(zip(at, await keyed_partitions(self._producer, topic, keys, self.partitioner)))
        by_partition: dict[tuple[str, int], list[Outgoing]] = {}
        for i, message in enumerate(outbox):
            partition = message.partition if message.partition is not None else partition_of.get(i, 0)
            by_partition.setdefault((message.topic, partition), []).append(message)
        for (topic, partition), messages in by_partition.items():
            await self._send_batches(topic, partition, messages)

    async def _send_batches(self, topic: str, partition: int, messages: list[Outgoing]) -> None:
        at = 0
        for count, batch in record_batches(self._producer, [message[2:] for message in messages]):
            delivery = await self._producer.send_batch(batch, topic, partition=partition)
            self._pending.append((delivery, topic, partition, messages[at:at + count]))
            self._in_flight += count
            at += count

    async def flush(self) -> None:
        """Everything published so far sent and delivered."""
        if self._lingering is not None:
            await self._lingering  # (its failure raised here)
            self._lingering = None
        while self._outbox or self._pending:
            await self._send()
            await self._settle(0)

    async def _settle(self, in_flight: int) -> None:
        """The oldest record batches delivered until at most `in_flight` messages are
        not; a batch refused as too large is sent again (see the class)."""
        while self._pending and self._in_flight > in_flight:
            delivery, topic, partition, messages = self._pending.popleft()
            self._in_flight -= len(messages)
            try:
                meta = await delivery
            except MessageSizeTooLargeError:  # over the broker's limit
                if len(messages) > 1:
                    async with self._sending:
                        for message in messages:  # each in a record batch of its own
                            await self._send_batches(topic, partition, [message])
                else:
                    self.stats.events -= 1
                    self._too_large(messages[0].value)
                continue
            self.stats.record(meta.topic, meta.partition, meta.offset + len(messages) - 1)
