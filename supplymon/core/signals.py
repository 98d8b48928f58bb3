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

import zlib
from typing import Callable

import orjson


def manufacturer_group(manufacturer_id: str) -> str:
    return f"m:{manufacturer_id}"


def distributor_group(distributor_id: str) -> str:
    return f"d:{distributor_id}"


def order_signals(fact: dict) -> list[tuple[str, dict]]:
    """(group, record) for an order's `order_facts` row."""
    supply = {
        "p": fact["product_id"], "rg": fact["region_code"], "i": fact["institution_id"],
        "dist": fact["distributor_id"], "at": fact["ordered_at"], "q": fact["quantity"],
        "rt": fact["responded_at"], "d": fact["decision"], "c": fact["confirmed_quantity"],
        "r": fact["reject_reason"],
    }
    # On time is known from the confirmation of the first receipt, if that was in time.
    delivery = {"dl": fact["deadline_at"], "g": bool(fact["grassroots"]),
                "ot": fact["first_confirmed_at"] if fact["on_time"] == 1 else None}
    return [(manufacturer_group(fact["manufacturer_id"]), supply),
            (distributor_group(fact["distributor_id"]), delivery)]


def fingerprint(record: dict) -> int:
    """A short checksum of a record: an unchanged one need not be sent again."""
    return zlib.crc32(orjson.dumps(record))


# Records per message: ~150 bytes each, so a message stays far below Kafka's default
# 1 MB limit whatever the batch size.
RECORDS_PER_SIGNAL = 2000


def pack(records: dict[str, dict[str, dict]], marks: dict[str, int], partition_of: Callable[[str], int],
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
