"""Property tests of the intake in process (many examples): no input makes it raise,
what it admits fits the store, and every hostile line is refused with its reason."""
from __future__ import annotations

import time

import orjson
from hypothesis import HealthCheck, given, settings, strategies as st

from schemas.events import Invalid
from schemas.limits import MAX_ID, MAX_TS_MS, MAX_UNIT_PRICE, MIN_TS_MS, UINT32_MAX
from supplymon.core.intake import Intake
from supplymon.core.lifecycle import OrderLifecycle, new_state
from supplymon.settings import Rules
from supplymon.simulate import generate
from tests.hostile import hostile_lines, huge

EVENTS = list(generate(days=1, orders_per_day=30, seed=13))
BY_ID = {e["event_id"]: e for e in EVENTS}
REASONS = {"not_json", "not_object", "unknown_kind", "missing_field", "bad_field", "bad_time",
           "future_timestamp", "too_large"}
INTAKE = Intake(1_000_000, Rules().ms("max_future_skew_minutes"), allow_future=False, trust_rebuilt=False)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def now_ms() -> int:
    return int(time.time() * 1000)


def assert_fits_the_store(event: dict) -> None:
    assert MIN_TS_MS <= event["ts_ms"] < MAX_TS_MS
    for name in ("quantity", "confirmed_quantity"):
        if name in event:
            assert 0 <= event[name] <= UINT32_MAX
    if "unit_price" in event:
        assert 0 <= event["unit_price"] <= MAX_UNIT_PRICE
    for name in ("event_id", "order_id", "institution_id", "distributor_id", "product_id", "shipment_id"):
        if name in event:
            assert 0 < len(event[name]) <= MAX_ID


@SETTINGS
@given(st.binary(max_size=2000))
def test_any_bytes_are_admitted_or_refused_never_raise(raw):
    result = INTAKE.admit(raw, now_ms())
    assert isinstance(result, Invalid) and result.reason in REASONS or isinstance(result, dict)


json_values = st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats(allow_nan=False,
                           allow_infinity=False) | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                        max_size=3), max_leaves=10)


@SETTINGS
@given(st.sampled_from(EVENTS), st.dictionaries(st.sampled_from(sorted({k for e in EVENTS for k in e})), json_values,
                                                max_size=3))
def test_whatever_a_field_holds_the_admitted_event_fits_the_store(event, changes):
    result = INTAKE.admit(orjson.dumps({**event, **changes}), now_ms())
    if isinstance(result, Invalid):
        assert result.reason in REASONS
    else:
        assert_fits_the_store(result)


@SETTINGS
@given(hostile_lines(EVENTS, 1, 20))
def test_every_hostile_line_is_refused_with_its_reason(lines):
    life = OrderLifecycle(Rules())
    for hostile in lines:
        if hostile.after is None:
            refused = INTAKE.admit(hostile.line, now_ms())
            assert isinstance(refused, Invalid) and refused.reason in hostile.reasons, (hostile, refused)
            continue
        # A duplicate: refused by the order's state, once the event it contradicts is in.
        original = BY_ID[hostile.after]
        state = new_state(original["order_id"])
        placed = next(e for e in EVENTS if e["kind"] == "order" and e["order_id"] == original["order_id"])
        for event in {id(e): e for e in (placed, original)}.values():
            assert not life.apply(state, INTAKE.admit(orjson.dumps(event), now_ms())).rejected
        copy = INTAKE.admit(hostile.line, now_ms())
        assert isinstance(copy, dict), copy
        assert [r for _, r, _ in life.apply(state, copy).rejected] in ([reason] for reason in hostile.reasons)


def test_a_huge_document_is_refused_unread():
    line = huge(EVENTS, 0, 5_000_000).line
    assert len(line) > 4_900_000
    refused = INTAKE.admit(line, now_ms())
    assert refused.reason == "too_large" and len(refused.original) <= 4096
