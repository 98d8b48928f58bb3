"""Kept JSON documents hold their own size, not orjson's whole write buffer."""
import tracemalloc

import orjson

from supplymon.core import jsonbytes


def _held_per_document(dumps, doc, count: int = 2000) -> float:
    tracemalloc.start()
    try:
        kept = [dumps(doc) for _ in range(count)]
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(kept) == count
    return held / count


def test_a_kept_document_holds_about_its_size_and_is_orjsons():
    small = {"order_id": "ORD0000000001", "ordered_at": 1767225600000, "quantity": 12, "seen": [1, 2, 3]}
    large = {"points": list(range(3000))}
    for doc in (small, large):
        out = jsonbytes.dumps(doc)
        assert out == orjson.dumps(doc)
        assert _held_per_document(jsonbytes.dumps, doc, 200) < len(out) + 200
