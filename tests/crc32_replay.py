"""`supplymon replay` as a producer that partitions by the CRC32 of the key
(librdkafka's default partitioner) rather than Kafka's murmur2: consistent (an
order's events share one partition number on the four topics), but not the
partition supplymon's own tools pick. For tests: `python -m tests.crc32_replay replay
FILE [options]`, as `python -m supplymon replay ...`."""
from __future__ import annotations

import sys
import zlib

import numpy as np

import supplymon.publish as publish
from supplymon.cli import main


def crc32_partitions(keys: list[bytes], partitions: int) -> np.ndarray:
    return np.array([zlib.crc32(key) % partitions for key in keys], dtype=np.int64)


if __name__ == "__main__":
    publish.Publisher.partitioner = staticmethod(crc32_partitions)
    raise SystemExit(main(sys.argv[1:]))
