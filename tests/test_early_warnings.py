"""The early-warning evaluation a worker runs over its signals partitions
(supplymon/core/early_warnings.py): the same signals give the same alerts however
they are batched, stream time waits for every input partition, and a worker
restored from the table entries goes on exactly."""
from __future__ import annotations

import orjson
import pytest

from supplymon.core.early_warnings import CONDUCT_CLOCK, EarlyWarnings
from supplymon.core.signals import RECORDS_PER_SIGNAL, delivery_record, pack, supply_record
from supplymon.settings import HOUR_MS as H, Rules
from tests.test_warnings import T0

SOURCES = ("supply.orders:0", "supply.responses:0")
GROUPS = {"m:M1": 0, "d:D1": 1}


def evaluation() -> EarlyWarnings:
    warnings = EarlyWarnings(Rules(), GROUPS.__getitem__)
    warnings.restore([], [0, 1], SOURCES)
    return warnings


def marks(t: int, sources=SOURCES) -> list[tuple[int, dict]]:
    return [(partition, {"marks": {source: t for source in sources}}) for partition in (0, 1)]


def shortage_signals() -> list[tuple[int, dict]]:
    """Three institutions turned away for out of stock, 03:30 the third; marks to 05:00,
    then the marks of five quiet days (the shortage leaves the window and resolves)."""
    records = {f"O{n}": supply_record(p="P1", rg="R1", i=f"I{n}", dist="D1", at=T0 + n * H, q=10,
                                      rt=T0 + n * H + 30 * 60_000, d="rejected", c=0, r="out_of_stock")
               for n in (1, 2, 3)}
    out = [(0, {"recs": {"m:M1": {oid: rec}}}) for oid, rec in records.items()]
    out += marks(T0 + 5 * H)
    for day in range(1, 6):
        out += marks(T0 + day * 24 * H)
    return out


def alerts_of(batches: list[list], warnings: EarlyWarnings | None = None) -> list[tuple]:
    warnings = warnings or evaluation()
    out = []
    for batch in batches:
        out += [(a["kind"], a["product_id"], a["raised_at"], a["resolved_at"])
                for a in warnings.process(batch).alerts]
    return out


def test_all_signals_in_one_batch_raise_and_resolve_like_one_signal_per_batch():
    signals = shortage_signals()
    one_batch = alerts_of([signals])
    assert one_batch == alerts_of([[s] for s in signals])
    # Raised at the third institution's answer; resolved 24 h after it left the 72 h window.
    assert one_batch == [("supply_shortage", "P1", T0 + 3 * H + 30 * 60_000, None),
                         ("supply_shortage", "P1", T0 + 3 * H + 30 * 60_000, T0 + 97 * H)]


def test_stream_time_waits_for_a_mark_from_every_input_partition():
    warnings = evaluation()
    records = [s for s in shortage_signals() if "recs" in s[1]]
    warnings.process(records + marks(T0 + 10 * H, SOURCES[:1]))
    assert warnings.watermark(0) is None  # supply.responses:0 has not said how far it is
    outcome = warnings.process(marks(T0 + 10 * H, SOURCES[1:]))
    assert warnings.watermark(0) == T0 + 10 * H
    assert [a["kind"] for a in outcome.alerts] == ["supply_shortage"]
    # An older mark (a resend) does not move stream time back.
    warnings.process(marks(T0, SOURCES[1:]))
    assert warnings.watermark(0) == T0 + 10 * H
    # Marks of input partitions this worker does not read (another app's topics) do not count.
    warnings.process(marks(T0 + 20 * H, ("other.supply.orders:0",)))
    assert warnings.watermark(0) == T0 + 10 * H


def test_marks_of_other_topics_do_not_make_a_stream_time():
    warnings = evaluation()
    warnings.process(marks(T0, SOURCES[:1]) + marks(T0 + 10 * H, ("other.supply.orders:0",)))
    assert warnings.watermark(0) is None


def restored_at(with_clocks: bool, signals: list, cut: int) -> tuple[list[tuple], EarlyWarnings]:
    """The alerts of signals[:cut] one by one, and a fresh worker rebuilt from the
    table entries those batches wrote."""
    first, table, before = evaluation(), {}, []
    for batch in ([s] for s in signals[:cut]):
        outcome = first.process(batch)
        before += [(a["kind"], a["product_id"], a["raised_at"], a["resolved_at"]) for a in outcome.alerts]
        for key, value in outcome.writes.items():
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
    restored = EarlyWarnings(Rules(), GROUPS.__getitem__)
    # Marks are not in the table: after a rebalance the lifecycle sends them again.
    restored.marks = {p: dict(m) for p, m in first.marks.items()}
    # the conduct clocks read first (as the agent does), or only among the rest
    clocks = [(key, value) for key, value in table.items() if key.endswith(CONDUCT_CLOCK)] if with_clocks else ()
    restored.restore(table.items(), [0, 1], SOURCES, clocks=clocks)
    return before, restored


@pytest.mark.parametrize("with_clocks", [True, False])
def test_a_worker_restored_from_the_table_goes_on_exactly(with_clocks):
    signals = shortage_signals()
    cut = len(signals) - 6  # after the raise (03:30, marks of day 2), before the resolution (day 5)
    before, restored = restored_at(with_clocks, signals, cut)
    after = [(a["kind"], a["resolved_at"]) for a in restored.process(signals[cut:]).alerts]
    assert [(kind, resolved) for kind, _, _, resolved in before] == [("supply_shortage", None)]
    assert after == [("supply_shortage", T0 + 97 * H)]


def test_a_batch_is_packed_into_a_message_or_so_per_partition_records_before_marks():
    groups = {"m:M1": 0, "d:D1": 1, "d:D2": 1}
    records = {group: {f"O{n}": delivery_record(dl=n, g=False, ot=None) for n in range(count)}
               for group, count in (("m:M1", 3), ("d:D1", RECORDS_PER_SIGNAL), ("d:D2", 2))}
    read_to = {"supply.orders:0": T0, "supply.responses:0": T0 + 1}
    messages = pack(records, read_to, groups.__getitem__, 3)
    assert [(p, sorted(m.get("recs", {})), "marks" in m) for p, m in messages] == [
        (0, ["m:M1"], True), (1, ["d:D1"], False), (1, ["d:D2"], True), (2, [], True)]
    assert all(m["marks"] == read_to for _, m in messages if "marks" in m)
    unpacked: dict = {}
    for _, m in messages:
        for group, by_order in m.get("recs", {}).items():
            unpacked.setdefault(group, {}).update(by_order)
    assert unpacked == records
    assert max(sum(map(len, m.get("recs", {}).values())) for _, m in messages) <= RECORDS_PER_SIGNAL
    assert max(len(orjson.dumps(m)) for _, m in messages) < 1_000_000
    assert pack({}, {}, groups.__getitem__, 3) == []


def conduct_signals() -> list[tuple[int, dict]]:
    """Orders of P1 in two regions of one city, the second 3 % dearer from day 2 (a
    second price: price_inconsistent), answered by three distributors (more than two:
    distributor_limit_exceeded); each order with its day's marks, then 10 quiet days."""
    out = []
    for day in range(5):
        for n, (region, dist) in enumerate((("150702", "D1"), ("150721", "D2"), ("150721", "D3"))):
            at = T0 + day * 24 * H + (9 + n) * H
            price = 103.0 if region == "150721" and day >= 2 else 100.0
            record = supply_record(p="P1", rg=region, i=f"I{n}", dist=dist, at=at, q=10, rt=at + H,
                                   d="accepted" if dist != "D3" or day >= 3 else "rejected", c=10, u=price)
            out.append((0, {"recs": {"m:M1": {f"O{day}-{n}": record}}}))
        out += marks(T0 + day * 24 * H + 20 * H)
    for day in range(5, 16):
        out += marks(T0 + day * 24 * H)
    return out


@pytest.mark.parametrize("with_clocks", [True, False])
def test_conduct_alerts_do_not_depend_on_batching_and_survive_a_restore(with_clocks):
    signals = conduct_signals()
    one_batch = alerts_of([signals])
    assert one_batch == alerts_of([[s] for s in signals])
    assert len(one_batch) == 3 and {(k, r, e) for k, _, r, e in one_batch} == {
        ("distributor_limit_exceeded", T0 + 3 * 24 * H + 12 * H, None),  # D3's first acceptance, day 3
        ("price_inconsistent", T0 + 2 * 24 * H + 10 * H, None),
        ("price_inconsistent", T0 + 2 * 24 * H + 10 * H, T0 + 4 * 24 * H + 11 * H + 7 * 24 * H)}
    # Cut after the raise; a worker rebuilt from the table entries ends alike.
    cut = len(signals) // 2
    before, restored = restored_at(with_clocks, signals, cut)
    after = alerts_of([signals[cut:]], restored)
    assert before and after and sorted(before + after, key=str) == sorted(one_batch, key=str)


def test_the_store_holds_no_records_and_a_rebalance_keeps_or_rebuilds_exactly():
    """As the agent runs: the changelog gets every entry, the worker's store none
    (the monitors hold the state); after a rebalance it holds what Faust's recovery
    read back, and is emptied once the core is restored. A rebalance that keeps both
    partitions keeps their groups as they are; one that takes partition 0 away and
    gives it back rebuilds it from the changelog (Faust's recovery reads a newly
    assigned partition from the start). Either way the alerts are those of a worker
    never interrupted."""
    for signals in (shortage_signals(), conduct_signals()):
        uninterrupted = alerts_of([[s] for s in signals])
        worker, changelog, store, got = evaluation(), {}, {}, []
        thirds = (len(signals) // 3, 2 * len(signals) // 3, len(signals))
        for n, signal in enumerate(signals):
            if n == thirds[0]:  # a rebalance, both partitions kept: the core's own groups go on
                worker.restore(store.items(), [0, 1], SOURCES, keep_held=True)
            if n == thirds[1]:  # partition 0 revoked, then assigned again: read back whole
                worker.restore(store.items(), [1], SOURCES, keep_held=True)
                assert not worker.groups.get("m:M1")
                store = {k: v for k, v in changelog.items() if k.startswith("m:") and v is not None}  # recovery
                worker.restore(store.items(), [0, 1], SOURCES, keep_held=True)
                assert worker.groups["m:M1"]
                store = {}
            outcome = worker.process([signal])
            got += [(a["kind"], a["product_id"], a["raised_at"], a["resolved_at"]) for a in outcome.alerts]
            changelog.update(outcome.writes)
        assert got == uninterrupted and got
        assert any("|o:" in key for key in changelog)
