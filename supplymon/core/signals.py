"""What the order lifecycle tells the early-warning monitors (pure).

Each order contributes one record to its manufacturer's group (for the shortage
and surge rules of its product+region) and one to its distributor's group (for
the delivery rate). Records are full values, not deltas: sending one twice (a
replayed batch) changes nothing. A batch's changed records travel packed, one
message per group ({"recs": {order_id: record}}): a few messages per batch
instead of two per order.
"""
from __future__ import annotations

import zlib

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


# Records per signal: ~150 bytes each, so a signal stays far below Kafka's default
# 1 MB message limit whatever the batch size.
RECORDS_PER_SIGNAL = 2000


def packed(records: dict[str, dict]) -> list[dict]:
    """One group's changed records of a batch, by order id, as few signals."""
    items = list(records.items())
    return [{"recs": dict(items[i:i + RECORDS_PER_SIGNAL])} for i in range(0, len(items), RECORDS_PER_SIGNAL)]


def mark(source: str, event_time: int) -> dict:
    """Input partition `source` ("topic:partition") has been read up to `event_time`."""
    return {"mark": source, "t": event_time}
