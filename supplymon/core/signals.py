"""What the order lifecycle tells the early-warning monitors (pure).

Each order contributes one record to its manufacturer's group (for the shortage
and surge rules of its product+region) and one to its distributor's group (for
the delivery rate). Records are full values, not deltas: sending one twice (a
replayed batch) changes nothing.

A batch's signals travel packed, one message per signals partition (more only
for very large batches): {"recs": {group: {order_id: record}}, "marks": {input
partition: event time}}, the records of the groups that live in that partition,
then how far each input partition has been read. A few messages per batch instead
of two per order and one per input partition.
"""
from __future__ import annotations

import hashlib
import struct
from typing import Callable, Iterable

import numpy as np


def manufacturer_group(manufacturer_id: str) -> str:
    return f"m:{manufacturer_id}"


def distributor_group(distributor_id: str) -> str:
    return f"d:{distributor_id}"


# Records are lists, not dicts: the early warnings keep one per order and side for
# 29 days, and a list of 10 costs ~140 bytes where a dict costs ~350; the decoded
# list is kept as is, by the monitors and the table's store alike.
SUPPLY_FIELDS = ("p", "rg", "i", "dist", "at", "q", "rt", "d", "c", "r", "u")
(PRODUCT, REGION, INSTITUTION, DISTRIBUTOR, ORDERED_AT, QUANTITY, ANSWERED_AT, DECISION, CONFIRMED,
 REASON, UNIT_PRICE) = range(len(SUPPLY_FIELDS))
DELIVERY_FIELDS = ("dl", "g", "ot", "at", "ru", "q", "rt", "d", "c")
(DEADLINE, GRASSROOTS, ON_TIME_SINCE, D_ORDERED_AT, RURAL, D_QUANTITY, D_ANSWERED_AT, D_DECISION,
 D_CONFIRMED) = range(len(DELIVERY_FIELDS))


def supply_record(p: str, rg: str, i: str, dist: str, at: int, q: int, rt: int | None = None,
                  d: str | None = None, c: int | None = None, r: str | None = None,
                  u: float | None = None) -> list:
    """An order as the manufacturer's rules see it: product, region, institution,
    distributor, ordered at, quantity, its first answer (ts, decision, confirmed,
    reason; None until answered) and its unit price (the price rules)."""
    return [p, rg, i, dist, at, q, rt, d, c, r, u]


def delivery_record(dl: int, g: bool, ot: int | None, at: int | None = None, ru: bool | None = None,
                    q: int | None = None, rt: int | None = None, d: str | None = None,
                    c: int | None = None) -> list:
    """An order as the distributor's rules see it: deadline, grassroots, on time since
    (the delivery rate); ordered at, rural, quantity and its first answer's ts,
    decision and confirmed quantity (remote refusals, short supply)."""
    return [dl, g, ot, at, ru, q, rt, d, c]


def order_signals(fact: dict) -> list[tuple[str, list]]:
    """(group, record) for an order's `order_facts` row."""
    supply = supply_record(fact["product_id"], fact["region_code"], fact["institution_id"],
                           fact["distributor_id"], fact["ordered_at"], fact["quantity"], fact["responded_at"],
                           fact["decision"], fact["confirmed_quantity"], fact["reject_reason"], fact["unit_price"])
    # On time is known from the confirmation of the first receipt, if that was in time.
    delivery = delivery_record(fact["deadline_at"], bool(fact["grassroots"]),
                               fact["first_confirmed_at"] if fact["on_time"] == 1 else None, fact["ordered_at"],
                               fact["area"] == "rural", fact["quantity"], fact["responded_at"], fact["decision"],
                               fact["confirmed_quantity"])
    return [(manufacturer_group(fact["manufacturer_id"]), supply),
            (distributor_group(fact["distributor_id"]), delivery)]


def supply_records(facts: dict[str, list], rows: Iterable[int]) -> list[list]:
    """The supply records (`order_signals`' first) of these rows of `order_facts` columns."""
    p, rg, i, dist = facts["product_id"], facts["region_code"], facts["institution_id"], facts["distributor_id"]
    at, q, rt, d, c = (facts["ordered_at"], facts["quantity"], facts["responded_at"], facts["decision"],
                       facts["confirmed_quantity"])
    r, u = facts["reject_reason"], facts["unit_price"]
    return [[p[n], rg[n], i[n], dist[n], at[n], q[n], rt[n], d[n], c[n], r[n], u[n]] for n in rows]


def delivery_records(facts: dict[str, list], rows: Iterable[int]) -> list[list]:
    """The delivery records (`order_signals`' second) of these rows of `order_facts` columns."""
    dl, g, confirmed, on_time, at, area = (facts["deadline_at"], facts["grassroots"], facts["first_confirmed_at"],
                                           facts["on_time"], facts["ordered_at"], facts["area"])
    q, rt, d, c = facts["quantity"], facts["responded_at"], facts["decision"], facts["confirmed_quantity"]
    return [[dl[n], bool(g[n]), confirmed[n] if on_time[n] == 1 else None, at[n], area[n] == "rural", q[n], rt[n],
             d[n], c[n]] for n in rows]


# A record's fingerprint: its fields folded into 64 bits (multiply, xor-shift), each
# field's value as 64 bits: an int as itself, a bool as 0/1, a float by its bits, a
# text by its own 64-bit blake2b, None as NONE_VALUE. The same for a record made
# one at a time (`fingerprint`, the per-event core) and for a batch's records on
# numpy (`fold`, the columnar flow: the fields as uint64 columns, the texts by
# their codes' `Names.values()`). Only "unchanged since last sent" is asked of it:
# a state written with another fingerprint (before this one) has its records sent
# once more.
_MIX = 0x9E3779B97F4A7C15
_SEED = 0x243F6A8885A308D3
_MASK = (1 << 64) - 1
NONE_VALUE = 0xA5A5A5A55A5A5A5A
_TEXTS: dict[str, int] = {}


def text_value(text: str) -> int:
    """A text as 64 bits (the same in every process)."""
    value = _TEXTS.get(text)
    if value is None:
        if len(_TEXTS) > 1 << 20:
            _TEXTS.clear()
        value = _TEXTS[text] = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
    return value


def _value(field) -> int:
    if field is None:
        return NONE_VALUE
    if isinstance(field, str):
        return text_value(field)
    if isinstance(field, float):
        return _FLOAT_BITS.unpack(_FLOAT.pack(field))[0]
    return int(field) & _MASK  # int, bool


_FLOAT, _FLOAT_BITS = struct.Struct("<d"), struct.Struct("<Q")


def fingerprint(record: list) -> int:
    """A record's fingerprint (63 bits: never the -1 of "none sent yet")."""
    h = _SEED
    for field in record:
        h = ((h ^ _value(field)) * _MIX) & _MASK
        h ^= h >> 29
    return h >> 1


def fold(fields: list[np.ndarray]) -> np.ndarray:
    """`fingerprint` of each row of these uint64 field columns (a record's fields in order)."""
    h = np.full(len(fields[0]), _SEED, dtype=np.uint64)
    mix, shift = np.uint64(_MIX), np.uint64(29)
    with np.errstate(over="ignore"):
        for field in fields:
            h = (h ^ field) * mix
            h ^= h >> shift
    return (h >> np.uint64(1)).astype(np.int64)


def float_values(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.float64).view(np.uint64)


def int_values(values: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
    """Ints as their 64 bits; NONE_VALUE where not `present`."""
    out = np.asarray(values).astype(np.int64).view(np.uint64)
    return out if present is None else np.where(present, out, np.uint64(NONE_VALUE))


# Records per message: ~150 bytes each, so a message stays far below Kafka's default
# 1 MB limit whatever the batch size.
RECORDS_PER_SIGNAL = 2000


def pack(records: dict[str, dict[str, list]], marks: dict[str, int], partition_of: Callable[[str], int],
         partitions: int) -> list[tuple[int, dict]]:
    """(signals partition, message) for a batch: each group's changed records (group ->
    order id -> record) in its group's partition, and the marks ("topic:partition" ->
    event time read up to) to every partition, after the records (the last message of
    a partition carries them)."""
    out = []
    for partition in range(partitions):
        messages, count = [], RECORDS_PER_SIGNAL
        for group, by_order in records.items():
            if partition_of(group) != partition:
                continue
            for order_id, record in by_order.items():
                if count == RECORDS_PER_SIGNAL:
                    messages.append({"recs": {}})
                    count = 0
                messages[-1]["recs"].setdefault(group, {})[order_id] = record
                count += 1
        if marks:
            if not messages:
                messages.append({})
            messages[-1]["marks"] = marks
        out += [(partition, message) for message in messages]
    return out
