"""Rows the store refuses, told apart from the store being away.

A write can fail because ClickHouse cannot be reached (connection refused, a
timeout, the embedded store's directory unusable): that is an outage, and the
sink retries until it is over, losing nothing. Or it fails because of a value in
the rows (a quantity of 10^18 in a UInt32 column): retrying would fail forever and
stop the pipeline behind one row. Validation at intake keeps such values out
(schemas/limits.py); this is the defence in depth behind it: the sink isolates the
refused rows by halving the batch, stores the rest, and dead-letters each refused
row (reason `bad_field`, the store's error in the detail).
"""
from __future__ import annotations

import hashlib
import re
import struct

import orjson

from schemas.events import dead_letter_detail
from schemas.limits import UINT16_MAX

# ClickHouse error codes that are about the data written, not about the server.
DATA_ERROR_CODES = frozenset({
    6,    # CANNOT_PARSE_TEXT
    27,   # CANNOT_PARSE_INPUT_ASSERTION_FAILED
    38,   # CANNOT_PARSE_DATE
    41,   # CANNOT_PARSE_DATETIME
    53,   # TYPE_MISMATCH
    69,   # ARGUMENT_OUT_OF_BOUND
    70,   # CANNOT_CONVERT_TYPE
    72,   # CANNOT_PARSE_NUMBER
    117,  # INCORRECT_DATA
    131,  # TOO_LARGE_STRING_SIZE
    321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    349,  # CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
})
_CODE = re.compile(r"\bCode: (\d+)\b")
REFUSED_REASON = "bad_field"


def refused_by_store(exc: BaseException) -> bool:
    """Whether `exc` says the rows cannot be stored (as opposed to the store being away).
    Anything not recognised as a data error counts as an outage: retried, never dropped."""
    from clickhouse_connect.driver.exceptions import DatabaseError, DataError, OperationalError

    if isinstance(exc, DataError):  # the client could not encode a value into its column type
        return True
    if isinstance(exc, (TypeError, ValueError, OverflowError, struct.error)):  # the same, found in Python
        return True
    if isinstance(exc, DatabaseError) and not isinstance(exc, OperationalError):
        code = _CODE.search(str(exc))
        return code is not None and int(code.group(1)) in DATA_ERROR_CODES
    return False


def describe(exc: BaseException, limit: int = 500) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    # clickhouse-connect's data errors name the column in their first line; the rest is a traceback.
    cause = exc.__cause__
    if cause is not None:
        text += f" ({type(cause).__name__}: {cause})"
    return text if len(text) <= limit else text[:limit] + "..."


def _storable_source(row: dict) -> bool:
    partition, offset = row.get("partition"), row.get("offset")
    return (isinstance(partition, int) and 0 <= partition <= UINT16_MAX
            and isinstance(offset, int) and 0 <= offset < 2**64)


def dead_letter_row(table: str, row: dict, error: str, noticed_at: int) -> dict:
    """The `dead_letters` row for a refused row. A raw event keeps its source message;
    a derived row (a fact, an alert, a window part) is named by its table and a hash
    of its content, so that the same refusal stored twice is one row."""
    original = orjson.dumps(row, default=str, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    topic, partition = f"clickhouse.{table}", 0
    offset = int.from_bytes(hashlib.blake2b(original, digest_size=8).digest(), "big") >> 1
    if table == "events_raw":
        original = row["payload"].encode()
        if _storable_source(row):
            topic, partition, offset = row["topic"], row["partition"], row["offset"]
    return {"topic": topic, "partition": partition, "offset": offset, "reason": REFUSED_REASON,
            "detail": dead_letter_detail(REFUSED_REASON, f"the store refused this {table} row: {error}"),
            "event_id": row.get("event_id"), "original": original.decode("utf-8", "replace"),
            "noticed_at": noticed_at}


def refused_alerts(dead: list[dict]) -> set[tuple[str, int]]:
    """(alert_id, version) of the alert rows among refused rows' dead letters: an
    alert whose row the store refused is not sent (it would announce what the
    `alerts` table does not hold; its dead letter says why)."""
    out = set()
    for row in dead:
        if row["topic"] == "clickhouse.alerts":
            alert = orjson.loads(row["original"])
            out.add((alert["alert_id"], int(alert["version"])))
    return out
