"""Asking the log itself whether offsets exist: a short-lived reader outside the
consumer group, so what Faust has fetched and queued already does not answer."""
from __future__ import annotations

import logging
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from supplymon.publish import bootstrap_servers
from supplymon.settings import Settings

log = logging.getLogger(__name__)


async def first_offset_from(settings: Settings, tp: Any, offset: int, timeout_ms: int = 10_000) -> int | None:
    """The first offset at or after `offset` that the log of `tp` holds a record at
    (past the log's start if retention deleted it); None when it cannot tell (no
    record there yet, or the broker did not answer)."""
    partition = TopicPartition(tp.topic, tp.partition)
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers(settings), group_id=None,
                              enable_auto_commit=False, auto_offset_reset="earliest",
                              client_id="supplymon-log-probe")
    try:
        await reader.start()
        reader.assign([partition])
        reader.seek(partition, offset)
        records = await reader.getmany(partition, timeout_ms=timeout_ms, max_records=1)
        found = records.get(partition)
        return found[0].offset if found else None
    except Exception:
        log.warning("could not read %s:%d from offset %d to check a gap", tp.topic, tp.partition, offset,
                    exc_info=True)
        return None
    finally:
        await reader.stop()
