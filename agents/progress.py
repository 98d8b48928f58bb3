"""How far each agent's input is processed and stored, for `/progress` (replay and
the tests wait on it): per "topic:partition", the next offset not yet known to be
stored."""
from __future__ import annotations

from typing import Iterable, Mapping

from faust.types import Message

from streams.app import batch_intake

_stored: dict[str, int] = {}  # what this worker stored
_sent: dict[str, int] = {}  # what this worker sent to the signals topic (delivered)


def mark_stored(messages: Iterable[Message]) -> None:
    for message in messages:
        _stored[f"{message.topic}:{message.partition}"] = message.offset + 1


def mark_stored_offsets(offsets: Mapping) -> None:
    """Per partition, the next offset: everything before it is stored."""
    for tp, offset in offsets.items():
        key = f"{tp.topic}:{tp.partition}"
        _stored[key] = max(_stored.get(key, 0), offset)


def mark_sent(deliveries: Iterable) -> None:
    """Record the offsets of delivered messages (RecordMetadata): a worker's own
    account of how far it wrote, where a broker's end offsets may not be exact
    (the embedded broker's are not: see streams/changelog.py)."""
    for delivery in deliveries:
        key = f"{delivery.topic}:{delivery.partition}"
        _sent[key] = max(_sent.get(key, 0), delivery.offset + 1)


def sent_offsets() -> dict[str, int]:
    return dict(_sent)


def stored_offsets(topics: Iterable[str]) -> dict[str, int]:
    """What this worker stored, or what was committed before it started (committed =>
    stored), for the partitions of `topics`."""
    topics = set(topics)
    out = {key: offset for key, offset in _stored.items() if key.rsplit(":", 1)[0] in topics}
    for tp, offset in batch_intake.committed().items():
        key = f"{tp.topic}:{tp.partition}"
        if tp.topic in topics and offset is not None and offset > out.get(key, 0):
            out[key] = offset
    return out
