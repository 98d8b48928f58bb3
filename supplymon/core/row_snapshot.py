"""A placed order's state as compact snapshot bytes: its table row as one numpy
record, its strings beside it (pure).

The Kafka shell writes the state of every order a batch changed to the order
changelog (agents/lifecycle.py), and reads it back on a new assignment
(`ColumnarOrderFlow.restore`) or for an order it does not hold (the lookup).
Building the per-event core's dict of each changed order and dumping it with
orjson cost more than the batch's own work on that order; here the changed rows
are packed a batch at a time:

    b"\\x02" | u32 record size | the row's record (ROW_DTYPE, little-endian) | strings

The strings (orjson): the order id, the first answer's, first arrival's and late
confirmation's event ids, the names the row's codes stand for (codes are
per-process interning, not stable across restarts), and the seen ids past the
inline slots. The leading byte is the format's version: a snapshot starting with
"{" is the earlier orjson state dict (read as before by `decode_state`).
"""
from __future__ import annotations

from itertools import repeat

import numpy as np
import orjson

from supplymon.core.order_table import _CODES, _COLUMNS, _WIDE, OrderTable

VERSION = 2
_NAMED = _CODES + ("resp_reason", "lc_inst")  # columns holding name codes
_OBJECTS = ("oid", "resp_eid", "arr_eid", "lc_eid")
# alert marks always as 64 bits here: the table widens them only when one does not fit
# the partition as 32 bits too, as the format had it before the table narrowed it
_SNAPSHOT_DTYPE = {name: dtype for name, (dtype, _) in _COLUMNS.items()} | {"part": np.int32}
ROW_DTYPE = np.dtype([(name, np.dtype(dtype).newbyteorder("<")) for name, dtype in _SNAPSHOT_DTYPE.items()]
                     + [(name, np.dtype(np.int64 if name.startswith("al_") and name != "al_flags" else dtype)
                         .newbyteorder("<"), (width,)) for name, (dtype, _, width) in _WIDE.items()])
_HEADER = bytes([VERSION]) + ROW_DTYPE.itemsize.to_bytes(4, "little")


def encode_rows(table: OrderTable, rows: np.ndarray) -> list[bytes]:
    """Snapshot bytes of each of these placed rows."""
    if not len(rows):
        return []
    records = np.empty(len(rows), dtype=ROW_DTYPE)
    for name in ROW_DTYPE.names:
        records[name] = table.col[name][rows]
    # the codes of each row become indices into its own list of names
    codes = np.stack([records[name] for name in _NAMED], axis=1)
    for j, name in enumerate(_NAMED):
        records[name] = np.where(codes[:, j] >= 0, j, -1)
    # (each step a C-level pass over the rows: no Python frame per row)
    strings = zip(*(table.col[name][rows].tolist() for name in _OBJECTS),
                  table.names.array()[codes].tolist(),  # a code of -1 is the last name: None
                  map(table.overflow.get, rows.tolist(), repeat(())))  # orjson writes a tuple as a list
    blobs = np.frombuffer(records.tobytes(), dtype=f"V{ROW_DTYPE.itemsize}").tolist()
    return list(map(b"".join, zip(repeat(_HEADER), blobs, map(orjson.dumps, strings))))


_scratch = OrderTable(capacity=1)


def decode_row(raw: bytes) -> dict:
    """The per-event core's state dict of a snapshot made by `encode_rows`."""
    if not is_compact(raw):
        size = int.from_bytes(raw[1:5], "little")
        raise ValueError(f"an order snapshot of an unknown format (version {raw[0]}, record {size} bytes)")
    table = _scratch
    table.clear()
    table.names.clear()
    order_id = orjson.loads(raw[5 + ROW_DTYPE.itemsize:])[0]
    (row,) = load_rows(table, [(order_id, raw)]).tolist()
    return table.state_of(row)


def is_compact(raw: bytes) -> bool:
    return raw[:5] == _HEADER


def load_rows(table: OrderTable, snapshots: list[tuple[str, bytes]]) -> np.ndarray:
    """New rows of `table` for compact snapshots (`is_compact`), a batch at a time:
    the records read as one array, each column set at once (a restore reads every
    order a worker holds; one at a time took ~36 us an order)."""
    if not snapshots:
        return np.empty(0, dtype=np.int64)
    size = ROW_DTYPE.itemsize
    records = np.frombuffer(b"".join(raw[5:5 + size] for _, raw in snapshots), dtype=ROW_DTYPE)
    strings = [orjson.loads(raw[5 + size:]) for _, raw in snapshots]
    rows = table.allocate([order_id for order_id, _ in snapshots])
    for name in ("al_raised", "al_resolved"):  # widened where a mark does not fit 32 bits
        info = np.iinfo(table.col[name].dtype)
        if len(records) and (records[name].min() < info.min or records[name].max() > info.max):
            for wide in ("al_raised", "al_resolved"):
                table.col[wide] = table.col[wide].astype(np.int64)
            table.__dict__.update(table.col)
            break
    for name in ROW_DTYPE.names:
        if name not in _NAMED:
            table.col[name][rows] = records[name]
    names_of = table.names.of
    for j, name in enumerate(_NAMED):
        table.col[name][rows] = [names_of(s[4][j]) if at >= 0 else -1 for s, at in zip(strings, records[name].tolist())]
    for k, name in enumerate(_OBJECTS[1:], start=1):  # (the order id: set by allocate)
        table.col[name][rows] = [s[k] for s in strings]
    for row, s in zip(rows.tolist(), strings):
        if s[5]:
            table.overflow[row] = [tuple(entry) for entry in s[5]]
    return rows
