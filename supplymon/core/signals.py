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


def signal_columns(facts: dict[str, list]) -> tuple[list[str], list[list], list[str], list[list]]:
    """`order_signals` of `order_facts` rows given as columns (name -> list), a column
    at a time: (manufacturer groups, supply records, distributor groups, delivery
    records), each record as `order_signals` makes it for the same row."""
    supply = list(map(list, zip(facts["product_id"], facts["region_code"], facts["institution_id"],
                                facts["distributor_id"], facts["ordered_at"], facts["quantity"],
                                facts["responded_at"], facts["decision"], facts["confirmed_quantity"],
                                facts["reject_reason"], facts["unit_price"])))
    on_time_since = [at if on_time == 1 else None for at, on_time in zip(facts["first_confirmed_at"], facts["on_time"])]
    delivery = list(map(list, zip(facts["deadline_at"], map(bool, facts["grassroots"]), on_time_since,
                                  facts["ordered_at"], [area == "rural" for area in facts["area"]],
                                  facts["quantity"], facts["responded_at"], facts["decision"],
                                  facts["confirmed_quantity"])))
    return (list(map(manufacturer_group, facts["manufacturer_id"])), supply,
            list(map(distributor_group, facts["distributor_id"])), delivery)


def fingerprint(record: list) -> int:
    """A short checksum of a record: an unchanged one need not be sent again."""
    return zlib.crc32(orjson.dumps(record))


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
