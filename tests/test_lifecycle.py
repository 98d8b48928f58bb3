"""The order lifecycle rules at their edges (pure functions, no broker)."""
from __future__ import annotations

import pytest

from supplymon.core.lifecycle import OrderLifecycle, new_state
from supplymon.settings import HOUR_MS, Rules

T0 = 1_772_323_200_000  # 2026-03-01T00:00:00Z
H = HOUR_MS


@pytest.fixture
def life() -> OrderLifecycle:
    return OrderLifecycle(Rules())


def order(area="urban", quantity=10, ts=T0, event_id="o1"):
    return {"event_id": event_id, "kind": "order", "ts_ms": ts, "order_id": "O1", "institution_id": "I1",
            "region_code": "150702", "area": area, "grassroots": area == "rural", "distributor_id": "D1",
            "manufacturer_id": "M1", "product_id": "P1", "product_kind": "drug", "vbp": True,
            "quantity": quantity, "unit_price": 2.0}


def response(ts, decision="accepted", confirmed=10, event_id="r1", reason=None):
    return {"event_id": event_id, "kind": "response", "ts_ms": ts, "order_id": "O1", "distributor_id": "D1",
            "decision": decision, "confirmed_quantity": confirmed,
            "reason": reason or (None if decision == "accepted" else "out_of_stock")}


def shipment(ts, quantity, event_id):
    return {"event_id": event_id, "kind": "shipment", "ts_ms": ts, "order_id": "O1", "shipment_id": event_id,
            "distributor_id": "D1", "quantity": quantity}


def arrival(ts, received, quantity=10, event_id="a1"):
    return {"event_id": event_id, "kind": "arrival", "ts_ms": ts, "order_id": "O1", "shipment_id": "S1",
            "institution_id": "I1", "quantity": quantity, "received_ms": received}


def run(life, events, watermark=None):
    state = new_state("O1")
    for event in events:
        life.apply(state, event)
    if watermark is not None:
        life.advance(state, watermark)
    return state


def kinds(life, state):
    return {a["kind"]: a for a in life.alerts(state)}


def test_deadline_urban_24h_rural_48h(life):
    assert life.fact(run(life, [order("urban")]))["deadline_at"] == T0 + 24 * H
    assert life.fact(run(life, [order("rural")]))["deadline_at"] == T0 + 48 * H


def test_response_exactly_at_deadline_is_in_time(life):
    state = run(life, [order(), response(T0 + 48 * H)], watermark=T0 + 100 * H)
    assert "response_overdue" not in kinds(life, state)
    assert life.fact(state)["response_hours"] == 48.0


def test_deadline_fires_only_when_time_passes_it(life):
    state = run(life, [order()], watermark=T0 + 48 * H)
    assert "response_overdue" not in kinds(life, state)
    life.advance(state, T0 + 48 * H + 1)
    alert = kinds(life, state)["response_overdue"]
    assert alert["raised_at"] == T0 + 48 * H and alert["resolved_at"] is None


def test_late_response_resolves_overdue_and_escalation(life):
    state = run(life, [order()], watermark=T0 + 80 * H)
    assert set(kinds(life, state)) >= {"response_overdue", "response_escalation"}
    life.apply(state, response(T0 + 81 * H))
    alerts = kinds(life, state)
    assert alerts["response_overdue"]["resolved_at"] == T0 + 81 * H
    assert alerts["response_escalation"]["resolved_at"] == T0 + 81 * H
    assert alerts["response_escalation"]["raised_at"] == T0 + 72 * H


def test_response_between_48_and_72h_raises_overdue_only(life):
    state = run(life, [order(), response(T0 + 60 * H)], watermark=T0 + 200 * H)
    assert "response_overdue" in kinds(life, state)
    assert "response_escalation" not in kinds(life, state)


def test_first_response_by_time_wins_whatever_the_reading_order(life):
    late, early = response(T0 + 5 * H, "rejected", 0, "r2", "price"), response(T0 + 2 * H, "partial", 4, "r1")
    a = life.fact(run(life, [order(), late, early]))
    b = life.fact(run(life, [order(), early, late]))
    assert a == b
    assert (a["decision"], a["confirmed_quantity"], a["response_hours"]) == ("partial", 4, 2.0)


def test_rejected_before_deadline_counts_undelivered_without_delivery_alert(life):
    state = run(life, [order(), response(T0 + H, "rejected", 0, reason="price")], watermark=T0 + 200 * H)
    assert life.on_time(state) == 0
    assert "delivery_overdue" not in kinds(life, state)


def test_rejected_after_deadline_still_raises_delivery_overdue(life):
    state = run(life, [order(), response(T0 + 30 * H, "rejected", 0, reason="price")], watermark=T0 + 200 * H)
    assert life.on_time(state) == 0
    assert kinds(life, state)["delivery_overdue"]["raised_at"] == T0 + 24 * H


def test_partial_answer_and_several_shipments(life):
    state = run(life, [
        order(quantity=10), response(T0 + H, "partial", 6),
        shipment(T0 + 2 * H, 4, "s1"), shipment(T0 + 3 * H, 2, "s2"),
        arrival(T0 + 6 * H, T0 + 5 * H, 4, "a1"), arrival(T0 + 30 * H, T0 + 29 * H, 2, "a2"),
    ], watermark=T0 + 200 * H)
    fact = life.fact(state)
    assert fact["confirmed_quantity"] == 6
    assert fact["delivered_quantity"] == 6
    assert fact["first_shipped_at"] == T0 + 2 * H
    assert fact["shipments"] == 2 and fact["arrivals"] == 2
    assert fact["on_time"] == 1  # judged by the first receipt
    assert "delivery_overdue" not in kinds(life, state)


def test_on_time_by_received_at_but_overdue_alert_by_confirmation(life):
    # Goods arrived before the deadline, the institution confirmed 30 h later.
    state = run(life, [order(), response(T0 + H), arrival(T0 + 50 * H, T0 + 20 * H)], watermark=T0 + 200 * H)
    assert life.on_time(state) == 1
    alerts = kinds(life, state)
    assert alerts["confirmation_late"]["raised_at"] == T0 + 50 * H
    assert alerts["confirmation_late"]["hours"] == 30.0
    assert alerts["delivery_overdue"]["resolved_at"] == T0 + 50 * H


def test_confirmation_exactly_24h_after_receipt_is_not_late(life):
    state = run(life, [order(), arrival(T0 + 30 * H, T0 + 6 * H)], watermark=T0 + 31 * H)
    assert "confirmation_late" not in kinds(life, state)


def test_on_time_open_until_deadline_then_zero_then_corrected_by_arrival(life):
    state = run(life, [order("rural"), response(T0 + H)], watermark=T0 + 47 * H)
    assert life.on_time(state) is None
    life.advance(state, T0 + 49 * H)
    assert life.on_time(state) == 0
    life.apply(state, arrival(T0 + 50 * H, T0 + 47 * H))  # received in time, reported late
    assert life.on_time(state) == 1


def test_held_events_apply_when_order_arrives(life):
    state = new_state("O1")
    outcome = life.apply(state, response(T0 + H))
    assert outcome.held and "order" not in state
    life.apply(state, order())
    assert life.fact(state)["decision"] == "accepted"
    assert "pend" not in state


def test_duplicates_change_nothing(life):
    state = run(life, [order(), response(T0 + H)])
    before = life.fact(state)
    assert life.apply(state, response(T0 + H)).duplicate
    assert life.apply(state, order()).duplicate
    assert life.fact(state) == before


def test_second_order_event_for_same_order_is_rejected(life):
    state = run(life, [order()])
    outcome = life.apply(state, order(event_id="o2", quantity=99))
    assert outcome.rejected and outcome.rejected[0][1] == "duplicate_order"
    assert life.fact(state)["quantity"] == 10


def test_quantity_beyond_the_order_is_rejected(life):
    state = run(life, [order(quantity=5)])
    outcome = life.apply(state, response(T0 + H, "accepted", 9))
    assert outcome.rejected[0][1] == "inconsistent"
    assert "resp" not in state


def test_orphans_expire_after_timeout(life):
    state = new_state("O1")
    life.apply(state, response(T0))
    assert life.next_due(state) == T0 + 168 * H
    assert not life.advance(state, T0 + 168 * H).orphans
    outcome = life.advance(state, T0 + 168 * H + 1)
    assert [e["event_id"] for e in outcome.orphans] == ["r1"] and outcome.purge


def test_version_grows_and_is_path_independent(life):
    events = [order(), response(T0 + H), arrival(T0 + 5 * H, T0 + 4 * H)]
    versions = []
    state = new_state("O1")
    for event in events:
        life.apply(state, event)
        versions.append(life.version(state))
    life.advance(state, T0 + 100 * H)
    versions.append(life.version(state))
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    reordered = run(life, list(reversed(events)), watermark=T0 + 100 * H)
    assert life.fact(reordered) == life.fact(state)


def test_state_is_purged_after_retention(life):
    state = run(life, [order(), response(T0 + H)])
    purge_at = T0 + 72 * H + 14 * 24 * H
    assert not life.advance(state, purge_at).purge
    assert life.advance(state, purge_at + 1).purge


def test_changed_alerts_emitted_once(life):
    state = run(life, [order()], watermark=T0 + 49 * H)
    assert {a["kind"] for a in life.changed_alerts(state)} == {"delivery_overdue", "response_overdue"}
    assert life.changed_alerts(state) == []
    life.apply(state, response(T0 + 50 * H))
    assert [a["kind"] for a in life.changed_alerts(state)] == ["response_overdue"]


def test_custom_rules_move_deadlines():
    life = OrderLifecycle(Rules(delivery_urban_hours=12, response_overdue_hours=24, response_escalation_hours=36))
    state = run(life, [order()], watermark=T0 + 25 * H)
    assert life.fact(state)["deadline_at"] == T0 + 12 * H
    assert kinds(life, state)["response_overdue"]["raised_at"] == T0 + 24 * H


def test_a_repeat_changes_nothing_and_a_conflicting_duplicate_is_refused(life):
    state = run(life, [order(), response(T0 + H)])
    before = life.fact(state)
    again = life.apply(state, response(T0 + H))
    assert again.duplicate and not again.rejected
    # The same instant written with another offset is the same content.
    same = dict(response(T0 + H), ts="2026-03-01T09:00:00+08:00")
    assert not life.apply(state, same).rejected
    conflicting = life.apply(state, response(T0 + 2 * H, decision="rejected", confirmed=0))
    assert conflicting.duplicate and [r[1] for r in conflicting.rejected] == ["conflicting_duplicate"]
    assert life.fact(state) == before  # the first stands
    # States kept before fingerprints existed still tell repeats, without the check.
    old = run(life, [order()])
    del old["fp"]
    assert life.apply(old, response(T0 + H)).rejected == []
    assert life.apply(old, response(T0 + 2 * H, decision="rejected", confirmed=0)).duplicate
