"""Keys of any length hashed on numpy: the keys of each length as one matrix of
their bytes, a column at a time (the producer's partitioner for a batch of keys,
supplymon/publish.py; the identities of a recovery's keys, streams/bulk_restore.py)."""
from __future__ import annotations

from typing import Iterator

import numpy as np


def equal_length_keys(joined: bytes, ends: np.ndarray) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(length, which keys, their bytes as a keys x length uint8 matrix) for the
    keys of each length among those joined in `joined` (key i ends at `ends[i]`)."""
    lengths = np.diff(ends, prepend=0)
    starts = ends - lengths
    data = np.frombuffer(joined, dtype=np.uint8)
    for length in np.unique(lengths).tolist():
        rows = np.flatnonzero(lengths == length)
        yield length, rows, data[starts[rows][:, None] + np.arange(length)[None, :]]
