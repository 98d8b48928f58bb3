"""Validation of input events against the contract."""
from __future__ import annotations

import typing

import orjson
import pytest

from schemas.events import Arrival, Invalid, Order, Response, parse_event

ORDER = {"event_id": "e1", "kind": "order", "ts": "2026-03-01T08:00:00+08:00", "order_id": "O1",
         "institution_id": "I1", "region_code": "150702", "area": "urban", "grassroots": False,
         "distributor_id": "D1", "manufacturer_id": "M1", "product_id": "P1", "product_kind": "drug",
         "vbp": True, "quantity": 10, "unit_price": 2.5}
RESPONSE = {"event_id": "e2", "kind": "response", "ts": "2026-03-01T09:00:00Z", "order_id": "O1",
            "distributor_id": "D1", "decision": "partial", "confirmed_quantity": 4, "reason": "out_of_stock"}
ARRIVAL = {"event_id": "e3", "kind": "arrival", "ts": "2026-03-02T09:00:00.250+08:00", "order_id": "O1",
           "shipment_id": "S1", "institution_id": "I1", "quantity": 0, "received_at": "2026-03-01T17:00:00Z"}


def parse(doc) -> object:
    return parse_event(orjson.dumps(doc))


def _fields(record_type) -> set[str]:
    return set(typing.get_type_hints(record_type))


def test_valid_events_become_records_with_epoch_ms():
    order = parse({**ORDER, "note": "not in the contract"})
    assert order == {**ORDER, "ts_ms": 1772323200000}  # exactly the record's fields
    assert set(order) == _fields(Order) and type(order["unit_price"]) is float
    assert parse({**ORDER, "unit_price": 3})["unit_price"] == 3.0 and type(parse({**ORDER, "unit_price": 3})["unit_price"]) is float
    assert set(parse(RESPONSE)) == _fields(Response)
    arrival = parse(ARRIVAL)
    assert set(arrival) == _fields(Arrival) and arrival["ts_ms"] - arrival["received_ms"] == 8 * 3600_000 + 250
    assert parse({"event_id": "t", "kind": "tick", "ts": "2026-03-01T00:00:00Z"}) == {
        "event_id": "t", "kind": "tick", "ts": "2026-03-01T00:00:00Z", "ts_ms": 1772323200000}
    accepted = parse({**RESPONSE, "decision": "accepted", "confirmed_quantity": 10, "reason": None})
    assert set(accepted) == _fields(Response) and accepted["reason"] is None


@pytest.mark.parametrize("change, reason", [
    ({"quantity": 0}, "bad_field"),
    ({"quantity": -3}, "bad_field"),
    ({"quantity": 2.5}, "bad_field"),
    ({"quantity": True}, "bad_field"),  # a bool is not an integer
    ({"grassroots": 1}, "bad_field"),
    ({"area": "suburb"}, "bad_field"),
    ({"region_code": "15070"}, "bad_field"),
    ({"product_kind": "device"}, "bad_field"),
    ({"unit_price": -1}, "bad_field"),
    ({"ts": "2026-03-01T08:00:00"}, "bad_time"),  # no offset
    ({"ts": "yesterday"}, "bad_time"),
    ({"ts": "2026-02-30T08:00:00Z"}, "bad_time"),
    ({"kind": "refund"}, "unknown_kind"),
    ({"event_id": ""}, "bad_field"),
    ({"order_id": "x" * 129}, "bad_field"),
])
def test_bad_order_fields(change, reason):
    result = parse({**ORDER, **change})
    assert isinstance(result, Invalid) and result.reason == reason, result


@pytest.mark.parametrize("field", sorted(set(ORDER) - {"kind"}))
def test_every_order_field_is_required(field):
    doc = dict(ORDER)
    del doc[field]
    result = parse(doc)
    assert isinstance(result, Invalid) and result.reason == "missing_field" and field in result.detail


def test_reason_required_unless_accepted_and_rejected_confirms_zero():
    no_reason = dict(RESPONSE)
    del no_reason["reason"]
    assert parse(no_reason).reason == "missing_field"
    assert parse({**no_reason, "decision": "accepted"})["reason"] is None
    assert parse({**RESPONSE, "decision": "rejected", "confirmed_quantity": 3}).reason == "bad_field"
    assert parse({**RESPONSE, "reason": "weather"}).reason == "bad_field"


def test_not_json_not_object_and_bytes_that_are_not_utf8():
    assert parse_event(b"{not json").reason == "not_json"
    assert parse_event(b"\xff\xfe").reason == "not_json"
    assert parse_event(b"[1, 2]").reason == "not_object"
    assert parse_event(None).reason == "not_json"


def test_invalid_keeps_the_event_id_when_it_has_one():
    assert parse({**ORDER, "quantity": -1}).event_id == "e1"


def test_every_dead_letter_reason_has_a_chinese_name_and_the_readme_lists_them_all():
    import re
    from pathlib import Path

    from schemas.events import DEAD_LETTER_REASONS, dead_letter_detail

    readme = Path(__file__).resolve().parents[1].joinpath("README.md").read_text()
    section = readme[readme.index("## What supplymon refuses"):]
    section = section[:section.index("\n## ", 10)]
    listed = set(re.findall(r"^\| `([a-z_]+)`", section, re.M))
    assert listed == set(DEAD_LETTER_REASONS)
    for zh, en in DEAD_LETTER_REASONS.values():
        assert re.search(r"[\u4e00-\u9fff]", zh) and en.isascii()
    detail = dead_letter_detail("orphan", "no order O1 was seen")
    assert detail.startswith("找不到对应订单") and detail.endswith("no order O1 was seen")
