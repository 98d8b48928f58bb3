"""Intake (supplymon/core/intake.py) and the bounds of what the store holds: pure,
with the wall clock passed in."""
from __future__ import annotations

import orjson
import pytest

from schemas.events import Invalid, parse_event
from schemas.limits import UINT16_MAX, UINT32_MAX
from supplymon.core.intake import (KEPT_BYTES, REBUILT_HEADER, TOO_LARGE_HEADER, Intake, header,
                                   truncated)
from supplymon.core.lifecycle import OrderLifecycle, new_state
from supplymon.settings import Rules
from tests.test_events import ARRIVAL, ORDER, RESPONSE
from tests.test_lifecycle import T0, H, arrival, order, shipment

MINUTE = 60_000
NOW = T0 + 30 * 24 * H  # the wall clock in these tests


def tick(ts: str) -> bytes:
    return orjson.dumps({"event_id": "t", "kind": "tick", "ts": ts})


def intake(allow_future=False, trust_rebuilt=False, max_bytes=10_000) -> Intake:
    return Intake(max_bytes, Rules().ms("max_future_skew_minutes"), allow_future, trust_rebuilt)


def test_the_default_skew_is_ten_minutes():
    assert Rules().ms("max_future_skew_minutes") == 10 * MINUTE


def test_a_stamp_past_the_wall_clock_by_more_than_the_skew_is_refused():
    at_limit = parse_event(tick("2026-03-31T00:10:00Z"))
    assert at_limit["ts_ms"] == NOW + 10 * MINUTE
    assert intake().admit(tick("2026-03-31T00:10:00Z"), NOW) == at_limit  # exactly at the skew: admitted
    late = intake().admit(tick("2026-03-31T00:10:00.001Z"), NOW)
    assert isinstance(late, Invalid) and late.reason == "future_timestamp" and late.event_id == "t"
    assert "moves no time" in late.detail
    far = intake().admit(tick("2099-01-01T00:00:00+08:00"), NOW)
    assert far.reason == "future_timestamp"
    # Business events too, and the past is no concern of this check.
    future_order = orjson.dumps({**ORDER, "ts": "2027-01-01T00:00:00Z"})
    assert intake().admit(future_order, NOW).reason == "future_timestamp"
    assert intake().admit(orjson.dumps(ORDER), NOW)["order_id"] == "O1"


def test_a_simulated_future_is_taken_only_when_allowed():
    assert intake(allow_future=True).admit(tick("2099-01-01T00:00:00Z"), NOW)["kind"] == "tick"


def test_events_republished_from_the_store_are_trusted_only_on_the_embedded_broker():
    rebuilt = [(REBUILT_HEADER, b"1")]
    future = tick("2099-01-01T00:00:00Z")
    assert intake(trust_rebuilt=True).admit(future, NOW, rebuilt)["kind"] == "tick"
    assert intake(trust_rebuilt=False).admit(future, NOW, rebuilt).reason == "future_timestamp"
    # Still validated: the header skips only the clock.
    assert intake(trust_rebuilt=True).admit(b"{", NOW, rebuilt).reason == "not_json"


def test_a_message_over_the_limit_is_kept_truncated_and_never_decoded():
    big = orjson.dumps({**ORDER, "note": "x" * 20_000})
    refused = intake(max_bytes=10_000).admit(big, NOW)
    assert refused.reason == "too_large" and refused.original == big[:KEPT_BYTES]
    assert f"{len(big):,} bytes" in refused.detail
    # A publisher that could not send a line sends its truncated copy, saying its size.
    copy = intake().admit(big[:KEPT_BYTES], NOW, {TOO_LARGE_HEADER: b"5000000"})
    assert copy.reason == "too_large" and "5,000,000 bytes" in copy.detail and copy.original == big[:KEPT_BYTES]


def test_truncation_keeps_whole_utf8_characters():
    text = ("配送" * 3000).encode()
    cut = truncated(text, 100)
    assert len(cut) == 99 and cut.decode() == ("配送" * 17)[:33]  # 3 bytes a character
    assert truncated(b"short", 100) == b"short"


def test_headers_are_read_as_pairs_or_a_dict():
    assert header([("a", b"1"), (REBUILT_HEADER, b"1")], REBUILT_HEADER) == b"1"
    assert header({TOO_LARGE_HEADER: b"9"}, TOO_LARGE_HEADER) == b"9"
    assert header(None, REBUILT_HEADER) is None and header([], REBUILT_HEADER) is None


@pytest.mark.parametrize("doc", [
    {**ORDER, "quantity": UINT32_MAX + 1},
    {**ORDER, "quantity": 10**18},
    {**ORDER, "unit_price": 1e14},
    {**ORDER, "unit_price": 1e30},
    {**ORDER, "ts": "1899-12-31T23:59:59Z"},
    {**ORDER, "ts": "2200-01-01T00:00:00Z"},
    {**ORDER, "ts": "9999-12-31T23:59:59+08:00"},
    {**ORDER, "order_id": "O" * 129},
    {**RESPONSE, "confirmed_quantity": UINT32_MAX + 1},
    {**ARRIVAL, "quantity": 2**40},
    {**ARRIVAL, "received_at": "0001-01-01T00:00:00Z"},
])
def test_values_the_store_cannot_hold_are_bad_fields(doc):
    refused = parse_event(orjson.dumps(doc))
    assert isinstance(refused, Invalid) and refused.reason == "bad_field", refused
    assert len(refused.detail) < 300  # a huge value is cut short in the sentence


def test_the_largest_values_the_store_holds_are_taken():
    assert parse_event(orjson.dumps({**ORDER, "quantity": UINT32_MAX, "unit_price": 1e13}))["quantity"] == UINT32_MAX
    assert parse_event(orjson.dumps({**ORDER, "ts": "1900-01-01T00:00:00Z"}))["kind"] == "order"
    assert parse_event(orjson.dumps({**ORDER, "ts": "2199-12-31T23:59:59.999Z"}))["kind"] == "order"


def test_an_order_cannot_outgrow_its_fact_row_columns():
    life = OrderLifecycle(Rules())
    state = new_state("O1")
    life.apply(state, order(quantity=UINT32_MAX))
    assert not life.apply(state, arrival(T0 + H, T0 + H, quantity=UINT32_MAX, event_id="a1")).rejected
    (refused,) = life.apply(state, arrival(T0 + H, T0 + H, quantity=1, event_id="a2")).rejected
    assert refused[1] == "bad_field" and life.fact(state)["delivered_quantity"] == UINT32_MAX
    state["ships"] = UINT16_MAX  # as many shipments as the column counts
    (refused,) = life.apply(state, shipment(T0 + H, 1, "s-last")).rejected
    assert refused[1] == "bad_field" and life.fact(state)["shipments"] == UINT16_MAX


def test_one_advance_past_every_deadline_and_the_retention_still_settles_the_order():
    """The rule core's side of a big advance: the order's deadlines pass and its alerts
    stand in the same outcome that lets the state go (the agent writes them first)."""
    life = OrderLifecycle(Rules())
    state = new_state("O1")
    life.apply(state, order())
    outcome = life.advance(state, T0 + 24 * 24 * H)
    assert outcome.changed and outcome.purge
    assert life.fact(state)["on_time"] == 0
    assert {a["kind"] for a in life.changed_alerts(state)} == {
        "response_overdue", "response_escalation", "delivery_overdue"}
