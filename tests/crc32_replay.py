"""`supplymon replay` as a producer that partitions by the CRC32 of the key
(librdkafka's default partitioner) rather than Kafka's murmur2: consistent (an
order's events share one partition number on the four topics), but not the
partition supplymon's own tools pick. For tests: `python -m tests.crc32_replay replay
FILE [options]`, as `python -m supplymon replay ...`."""
from __future__ import annotations

import functools
import random
import sys
import zlib

import supplymon.publish as publish
from supplymon.cli import main


def crc32_partitioner(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    if key is None:  # as Kafka's: anywhere
        return random.choice(available or all_partitions)
    return all_partitions[zlib.crc32(key) % len(all_partitions)]


if __name__ == "__main__":
    publish.AIOKafkaProducer = functools.partial(publish.AIOKafkaProducer, partitioner=crc32_partitioner)
    raise SystemExit(main(sys.argv[1:]))
