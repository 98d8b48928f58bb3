"""The columnar order flow (supplymon/core/columnar_flow.py) against the per-event
reference (`ReferenceOrderFlow`): batch for batch the same rows, alerts, dead
letters, signals, marks and window parts, and snapshots that mean the same state,
on simulated histories and on hostile mixes (repeats, conflicting duplicates,
events before their order, orphans, second orders, quantities over the ordered,
ties on time, out-of-order arrivals, ticks jumping days), over batch sizes and
arrival orders. Also: a restart from the columnar flow's snapshots, and from the
reference's own (orjson dicts), goes on as if nothing happened."""
from __future__ import annotations

import io
import random
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from bench.pipeline import history
from supplymon.core import columnar_flow
from supplymon.core.columnar_flow import OrderFlow, decode_state
from supplymon.core.order_table import SLOTS, OrderTable, event_hash, event_hashes
from supplymon.core.row_snapshot import encode_rows, is_compact, load_rows
from supplymon.direct import DirectReplay, Progress
from supplymon.settings import Settings
from tests.flow_compare import SideBySide, state_meaning

TZ = timezone(timedelta(hours=8))
T0 = datetime(2026, 3, 1, tzinfo=TZ)


def _settings(partitions: int = 2) -> Settings:
    return replace(Settings.from_env({}), partitions=partitions, allow_future=True)


def _batches(settings: Settings, lines: list[bytes], size: int):
    replay = DirectReplay(settings, None, Progress(io.StringIO()), batch=size)
    return replay.inputs, list(replay.file_batches(lines))


def _iso(ms: int) -> str:
    return (T0 + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds")


def hostile_lines(rnd: random.Random, orders: int) -> list[bytes]:
    """Events of a few orders, with every kind of trouble, shuffled."""
    out: list[dict] = []
    hour = 3_600_000
    for n in range(orders):
        oid, qty = f"ORD{n:04d}", rnd.randint(1, 20)
        at = rnd.randrange(0, 72) * hour + rnd.choice((0, 0, 1234))
        order = {"event_id": f"o-{n}", "kind": "order", "ts": _iso(at), "order_id": oid,
                 "institution_id": f"INS{rnd.randrange(3)}", "region_code": "150781",
                 "area": rnd.choice(("urban", "rural")), "grassroots": rnd.random() < 0.5,
                 "distributor_id": f"DST{rnd.randrange(2)}", "manufacturer_id": "MFR1",
                 "product_id": f"P{rnd.randrange(2)}", "product_kind": "drug", "vbp": True,
                 "quantity": qty, "unit_price": 2.5}
        events = []
        if rnd.random() < 0.85:  # else: never placed (orphans)
            events.append(order)
            if rnd.random() < 0.1:
                events.append(dict(order))  # a repeat
            if rnd.random() < 0.1:
                events.append(dict(order, quantity=qty + 1))  # a conflicting duplicate
            if rnd.random() < 0.05:
                events.append(dict(order, event_id=f"o2-{n}"))  # a second order
        tie = at + rnd.randrange(1, 60) * hour
        for k in range(rnd.choice((0, 1, 1, 2))):
            decision = rnd.choice(("accepted", "partial", "rejected"))
            confirmed = 0 if decision == "rejected" else rnd.randint(1, qty + (2 if rnd.random() < 0.1 else 0))
            ts = tie if rnd.random() < 0.3 else at + rnd.randrange(1, 60) * hour
            response = {"event_id": f"r-{n}-{k}", "kind": "response", "ts": _iso(ts), "order_id": oid,
                        "distributor_id": "DST0", "decision": decision, "confirmed_quantity": confirmed}
            if decision != "accepted":
                response["reason"] = rnd.choice(("out_of_stock", "remote_area"))
            events.append(response)
        for k in range(rnd.choice((0, 1, 2, 3))):
            ts = tie if rnd.random() < 0.2 else at + rnd.randrange(2, 50) * hour
            events.append({"event_id": f"s-{n}-{k}", "kind": "shipment", "ts": _iso(ts), "order_id": oid,
                           "shipment_id": f"SH{n}-{k}", "distributor_id": "DST0",
                           "quantity": rnd.randint(1, qty + (3 if rnd.random() < 0.1 else 0))})
        for k in range(rnd.choice((0, 1, 1, 2, 3))):
            received = at + rnd.randrange(3, 60) * hour
            ts = tie if rnd.random() < 0.2 else received + rnd.choice((0, 1, 30, 49)) * hour
            events.append({"event_id": f"a-{n}-{k}", "kind": "arrival", "ts": _iso(max(ts, received)),
                           "order_id": oid, "shipment_id": f"SH{n}-{k}", "institution_id": "INS0",
                           "quantity": rnd.randint(0, qty), "received_at": _iso(received)})
        if events and rnd.random() < 0.15:
            events.append(dict(rnd.choice(events)))  # another repeat of anything
        out += events
    rnd.shuffle(out)  # any arrival order (each order's events stay in its one partition)
    lines = [orjson.dumps(event) for event in out]
    # ticks jumping hours or days, spread through the stream (time moves forward)
    ticks = sorted(rnd.randrange(0, 40 * 24) for _ in range(rnd.randint(1, 6)))
    for k, hours in enumerate(ticks):
        at = rnd.randrange(len(lines) + 1) if k < len(ticks) - 1 else len(lines)
        lines.insert(at, orjson.dumps({"event_id": f"tick-{hours}", "kind": "tick", "ts": _iso(hours * hour)}))
    lines.insert(rnd.randrange(len(lines) + 1), b'{"kind": "order", "event_id": 1}')  # malformed
    return lines


def _compare(lines: list[bytes], size: int, partitions: int = 2) -> SideBySide:
    settings = _settings(partitions)
    inputs, batches = _batches(settings, lines, size)
    pair = SideBySide(settings, inputs)
    for _, records, now_ms, decoded in batches:
        pair.assert_same(records, now_ms, decoded)
    return pair


@pytest.mark.parametrize("size", [1, 7, 500, 20_000])
def test_simulated_history_batch_for_batch(size):
    lines = history(1_500 if size == 1 else 12_000, seed=3)
    pair = _compare(lines, size)
    assert len(pair.columnar) == len(pair.states) > 100  # every open order held, as the reference holds it


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), orders=st.integers(1, 25), size=st.sampled_from([1, 3, 7, 40, 500]))
def test_hostile_mixes_batch_for_batch(seed, orders, size):
    _compare(hostile_lines(random.Random(seed), orders), size)


def test_hostile_mix_takes_both_paths():
    """The hostile mixes do reach the per-event core and the columns both (else the
    property above would test one path only)."""
    lines = hostile_lines(random.Random(5), 200)
    pair = _compare(lines, 50)
    flow = pair.columnar
    assert flow.table.size > 0
    reasons = set()
    settings = _settings()
    inputs, batches = _batches(settings, lines, 50)
    fresh = OrderFlow.from_settings(settings, trust_rebuilt=True)
    fresh.restore(inputs, ())
    for _, records, now_ms, decoded in batches:
        reasons |= set(fresh.process(records, inputs, lambda _: None, now_ms).dead_reasons)
    assert {"conflicting_duplicate", "inconsistent", "duplicate_order", "orphan", "not_json"} & reasons >= {
        "conflicting_duplicate", "inconsistent", "orphan"}


def _first_half(seed: int, source: str):
    """Both flows over the first half of a history; the snapshots held after it (the
    columnar flow's own, or the reference's), and the second half's batches."""
    settings = _settings()
    inputs, batches = _batches(settings, history(8_000, seed=seed), 400)
    pair = SideBySide(settings, inputs)
    held: dict[str, bytes] = {}
    half = len(batches) // 2
    for _, records, now_ms, decoded in batches[:half]:
        expected, got = pair.step(records, now_ms, decoded)
        for order_id, snapshot in (got if source == "columnar" else expected).snapshots.items():
            if snapshot is None:
                held.pop(order_id, None)
            else:
                held[order_id] = snapshot
    return settings, inputs, pair, held, batches[half:]


@pytest.mark.parametrize("source,chunk", [("columnar", None), ("reference", None), ("columnar", 7)])
def test_restart_from_snapshots_goes_on_unchanged(source, chunk, monkeypatch):
    """Half a history, then a new flow restored from the snapshots (the columnar
    flow's own, or the reference's orjson dicts; compact ones loaded, and the orders
    counted in the windows, in one chunk or in many): the rest gives what one flow gives."""
    if chunk:
        monkeypatch.setattr(columnar_flow, "RESTORE_CHUNK", chunk)
        monkeypatch.setattr(columnar_flow, "WINDOWS_RESTORE_CHUNK", chunk)
    settings, inputs, pair, held, rest = _first_half(seed=5, source=source)
    assert held
    restarted = OrderFlow.from_settings(settings, trust_rebuilt=True)
    assert restarted.restore(inputs, held.items()) == len(held)
    # the reference restarts too, from its states (stream time is forgotten on both)
    pair.reference.restore(inputs, pair.states.items())
    pair.columnar = restarted
    for _, records, now_ms, decoded in rest:
        pair.assert_same(records, now_ms, decoded)


def test_a_rebalance_keeps_the_orders_still_held_and_adds_those_read_back():
    """The Kafka shell keeps no copy of the states: after a rebalance the flow keeps
    the orders of the partitions it still holds, drops the others, and adds the
    states read back for a partition assigned again. Partition 1 taken away, then
    given back with its snapshots: the rest gives what one flow gives."""
    _, inputs, pair, held, rest = _first_half(seed=7, source="columnar")
    flow = pair.columnar
    one = {order_id: raw for order_id, raw in held.items() if decode_state(raw)["p"] == 1}
    assert one and len(one) < len(held) == len(flow)
    assert flow.restore([tp for tp in inputs if tp.partition != 1], (), keep_held=True) == 0
    assert len(flow) == len(held) - len(one) and not set(one) & set(flow.table.rows)
    # given back: only its states are read back (a stale state of an order held is not taken)
    stale = next(order_id for order_id in held if order_id not in one)
    assert flow.restore(inputs, [*one.items(), (stale, held[stale])], keep_held=True) == len(one) + 1
    assert len(flow) == len(held)
    pair.reference.restore(inputs, pair.states.items())
    for _, records, now_ms, decoded in rest:
        pair.assert_same(records, now_ms, decoded)


def test_table_rows_are_reused_and_the_state_round_trips():
    table = OrderTable(capacity=2)
    rows = table.allocate(["a", "b", "c"])
    assert table.capacity == 4 and sorted(rows.tolist()) == [0, 1, 2]
    state = {"oid": "b", "seen": ["e1", "e2"], "fp": [7], "n": 2, "passed": 1, "p": 1,
             "alerts": {"response_overdue": [5, None]},
             "order": {"institution_id": "I", "region_code": "150781", "area": "urban", "grassroots": False,
                       "distributor_id": "D", "manufacturer_id": "M", "product_id": "P", "product_kind": "drug",
                       "vbp": True, "quantity": 3, "unit_price": 1.5, "ordered_at": 10},
             "resp": [20, "r1", "partial", 2, "out_of_stock"], "ship": 30, "ships": 1,
             "sg": [1, 2], "c": [1, 1, 1, 0, 0, 0, 0, 3, 0, 0.5], "cv": 17}
    table.put(int(rows[1]), state)
    back = table.state_of(int(rows[1]))
    assert state_meaning(orjson.dumps(dict(back, seen=list(back["seen"])))) == state_meaning(orjson.dumps(state))
    # marks are offsets from ordered_at in 32 bits until one does not fit: then 64
    far = {**state, "alerts": {"response_overdue": [None, 10 + 2**40], "confirmation_late": [10 - 2**31, 11]}}
    table.put(int(rows[0]), dict(far, oid="a"))
    assert table.al_raised.dtype == np.int64
    for row, expected in ((rows[0], far), (rows[1], state)):
        back = table.state_of(int(row))
        assert back["alerts"] == expected["alerts"]
    # the compact snapshot of a row reads back as its state (widened marks, seen ids
    # past the inline slots, a name absent), and old orjson snapshots still read
    many = dict(far, oid="a", seen=[f"e{i}" for i in range(SLOTS + 3)], fp=list(range(SLOTS + 1)),
                resp=[20, "r1", "accepted", 3, None], late_conf=[40, "a9", "I2", 12])
    table.put(int(rows[0]), many)
    for row in rows[:2].tolist():
        raw = encode_rows(table, np.array([row]))[0]
        assert raw[0] == 2 and state_meaning(raw) == state_meaning(orjson.dumps(
            dict(table.state_of(row), seen=list(table.state_of(row)["seen"]))))
    # restored a batch at a time (load_rows) as one at a time (decode_row)
    raws = encode_rows(table, rows[:2])
    fresh = OrderTable(capacity=1)
    loaded = load_rows(fresh, [(table.oid[row], raw) for row, raw in zip(rows[:2].tolist(), raws)])
    assert fresh.al_raised.dtype == np.int64 and len(fresh.overflow) == 1
    for row, raw in zip(loaded.tolist(), raws):
        assert is_compact(raw)
        back = fresh.state_of(row)
        assert state_meaning(orjson.dumps(dict(back, seen=list(back["seen"])))) == state_meaning(raw)
    assert decode_state(orjson.dumps(state))["oid"] == "b"
    table.release(rows[:2])
    assert len(table) == 1 and "b" not in table.rows
    again = table.allocate(["d"])
    assert int(again[0]) in rows[:2].tolist() and not table.placed[again[0]]


@given(st.lists(st.text(max_size=40)))
def test_a_batch_of_event_ids_hashes_as_each_alone(event_ids):
    """The columnar path hashes a batch's event ids at once; the seen ids held and
    snapshotted are the per-event `event_hash`es, whichever path saw them."""
    assert event_hashes(event_ids).tolist() == [event_hash(event_id) for event_id in event_ids]


@pytest.mark.parametrize("source", ["simulated", "hostile"])
def test_the_signal_fingerprints_on_columns_are_those_of_the_records(source):
    """The columnar flow fingerprints a batch's signal records on numpy; the per-event
    core (the rare events, the reference) fingerprints each record it makes: the same
    values, or an order moving between the two would be sent again for nothing."""
    from supplymon.core.signals import delivery_records, fingerprint, supply_records

    lines = history(3_000, seed=3) if source == "simulated" else hostile_lines(random.Random(5), 60)
    settings = _settings()
    inputs, batches = _batches(settings, lines, 7)  # small: the hostile orders are held between batches
    flow = OrderFlow.from_settings(settings, trust_rebuilt=True)
    flow.restore(inputs, ())
    checked = 0
    for _, records, now_ms, decoded in batches:
        flow.process(records, inputs, lambda order_id: None, now_ms, decoded)
        rows = np.flatnonzero(flow.table.placed[:flow.table.size])
        facts, _, (supply, delivery) = flow._fact_columns(rows)
        everyone = range(len(rows))
        assert supply.tolist() == [fingerprint(r) for r in supply_records(facts.data, everyone)]
        assert delivery.tolist() == [fingerprint(r) for r in delivery_records(facts.data, everyone)]
        assert (flow.table.sg0[rows] == supply).all() and (flow.table.sg1[rows] == delivery).all()
        checked += len(rows)
    assert checked > 100


def test_marks_set_a_batch_at_once_are_those_set_one_by_one():
    """`set_marks` (the columnar flow's alerts) as `set_mark` cell by cell, None and a
    mark that does not fit 32 bits (the columns widened) included."""
    from supplymon.core.order_table import NULL

    cells = [(0, 0, 100, None), (0, 2, 300, 400), (1, 1, None, 50), (2, 3, 10 + 2**40, 7)]
    one, many = OrderTable(capacity=4), OrderTable(capacity=4)
    for table in (one, many):
        table.allocate(["a", "b", "c"])
        table.ordered_at[:3] = [5, 6, 7]
    for row, kind, up, down in cells:
        one.set_mark(row, kind, up, down)
    many.set_marks(np.array([c[0] for c in cells]), np.array([c[1] for c in cells]),
                   np.array([NULL if c[2] is None else c[2] for c in cells], dtype=np.int64),
                   np.array([NULL if c[3] is None else c[3] for c in cells], dtype=np.int64))
    for name in ("al_raised", "al_resolved", "al_flags"):
        assert many.col[name].dtype == one.col[name].dtype
        assert (many.col[name][:3] == one.col[name][:3]).all(), name
