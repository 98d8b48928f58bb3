"""Faust's messages as the plain records the dataflow reads (supplymon/core/flow.py).

A batch intake that hands over aiokafka's ConsumerRecords needs no adapter: they
have the same attributes (timestamp in ms)."""
from __future__ import annotations

from faust.types import EventT

from supplymon.core.flow import Record


def record_of(event: EventT) -> Record:
    message = event.message
    value = message.value if isinstance(message.value, bytes) else event.value
    # Faust's timestamp is in seconds (a float), aiokafka's in milliseconds.
    timestamp = int(message.timestamp * 1000) if message.timestamp else 0
    return Record(message.topic, message.partition, message.offset, timestamp, message.key, value,
                  message.headers or ())
