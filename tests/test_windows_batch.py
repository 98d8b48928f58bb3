"""The windows a batch at a time (`Windows.update_batch`, columns in) against the
same tables one order at a time (tests/windows_reference.py): random histories of
order changes (new orders, answers and their corrections, arrivals, on-time
verdicts, versions growing, the same fact again), watermarks advancing across
closing and expiry, corrections after a window expired, restarts rebuilding the
parts from the order states, each batch's changes split at random into calls.
The rows written after every batch and the parts in memory must be equal."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings, strategies as st

from supplymon.core.windows import (FACT_COLUMNS, N_COUNTS, Coded, Windows, contribution_array, contribution_lists,
                                    fact_columns, part_row)
from supplymon.settings import HOUR_MS as H, Rules
from tests.test_lifecycle import T0
from tests.windows_reference import ReferenceWindows

# A short retention, so that histories of a few days expire windows.
RULES = Rules(retention_days=1)
DISTRIBUTORS, PRODUCTS, REGIONS = ("D1", "D2", "D3"), ("P1", "P2"), ("150100", "150200")


def placed(i: int, data) -> dict:
    """Order i as first seen: placed within a few days of T0 (minutes apart, so
    hours and days are shared)."""
    return {
        "order_id": f"O{i}", "ordered_at": T0 + data.draw(st.integers(-30, 6 * 24 * 60)) * 60_000,
        "distributor_id": data.draw(st.sampled_from(DISTRIBUTORS)), "product_id": data.draw(st.sampled_from(PRODUCTS)),
        "region_code": data.draw(st.sampled_from(REGIONS)), "responded_at": None, "decision": None,
        "on_time": None, "arrivals": 0, "quantity": data.draw(st.integers(1, 50)), "delivered_quantity": 0,
        "response_hours": None, "version": 1,
    }


def changed(fact: dict, data) -> dict:
    """The order's next fact: one thing about it changes (or nothing, same version)."""
    fact = dict(fact)
    what = data.draw(st.sampled_from(("answer", "answer", "arrival", "verdict", "same", "unanswer")))
    if what == "answer":  # an answer, or a correction of it (other time, other decision)
        fact["responded_at"] = fact["ordered_at"] + data.draw(st.integers(0, 60)) * H // 2
        fact["decision"] = data.draw(st.sampled_from(("accepted", "accepted", "rejected")))
        fact["response_hours"] = (fact["responded_at"] - fact["ordered_at"]) / H
    elif what == "unanswer":  # the answer withdrawn (a correction leaving none)
        fact["responded_at"] = fact["decision"] = fact["response_hours"] = None
    elif what == "arrival":
        fact["arrivals"] += 1
        fact["delivered_quantity"] = min(fact["quantity"], fact["delivered_quantity"] + data.draw(st.integers(1, 20)))
    elif what == "verdict":
        fact["on_time"] = data.draw(st.sampled_from((None, 0, 1)))
    if what != "same":
        fact["version"] += data.draw(st.integers(1, 3))
    return fact


def as_columns(facts: list[dict], kind: str) -> dict:
    """The columns in one of the forms a caller may hold them."""
    columns = fact_columns(facts)
    if kind == "arrow":
        return {name: pa.array(values) for name, values in columns.items()}
    if kind == "numpy":
        out = {name: np.array(values, dtype=object) for name, values in columns.items()}
        for name in ("ordered_at", "arrivals", "quantity", "delivered_quantity", "version"):
            out[name] = np.array(columns[name], dtype=np.int64)
        out["response_hours"] = np.array([np.nan if h is None else h for h in columns["response_hours"]], dtype=float)
        # the subjects as codes into one table of names, as the columnar flow holds them
        names = ["unused", *sorted({v for c in ("distributor_id", "product_id", "region_code") for v in columns[c]})]
        for name in ("distributor_id", "product_id", "region_code"):
            out[name] = Coded(np.array([names.index(v) for v in columns[name]], dtype=np.int32), names)
        return out
    return columns


def keyed(rows: list[dict]) -> dict:
    out = {}
    for row in rows:
        key = (row["family"], row["subject"], row["window_start"], row["partition"])
        assert key not in out, f"part {key} written twice in one batch"
        out[key] = row
    return out


class Worker:
    """Both windows, fed the same changes; the order states as a flow keeps them."""

    def __init__(self) -> None:
        self.reference, self.batch = ReferenceWindows(RULES), Windows(RULES)
        self.states: dict[str, dict] = {}  # order id -> fact, partition, contribution, its version

    def feed(self, changes: list[tuple[dict, int]], cuts: list[bool], kind: str) -> None:
        counted = {order_id: (state["c"], state["cv"]) for order_id, state in self.states.items()}
        for fact, partition in changes:
            old, version = counted.get(fact["order_id"], (None, 0))
            counted[fact["order_id"]] = self.reference.update(fact, partition, old, version), fact["version"]
        # the batch side: the same changes, split into calls (an order at most once a call)
        chunk: list[tuple[dict, int]] = []
        for (fact, partition), cut in zip(changes, cuts):
            if cut or any(f["order_id"] == fact["order_id"] for f, _ in chunk):
                self.call(chunk, kind)
                chunk = []
            chunk.append((fact, partition))
        self.call(chunk, kind)
        assert {order_id: (state["c"], state["cv"]) for order_id, state in self.states.items()} == counted

    def call(self, chunk: list[tuple[dict, int]], kind: str) -> None:
        facts = [fact for fact, _ in chunk]
        states = [self.states.get(fact["order_id"]) for fact in facts]
        old, had_none = contribution_array([state["c"] if state else None for state in states])
        old_version = np.array([state["cv"] if state else 0 for state in states], dtype=np.int64)
        partitions = np.array([p for _, p in chunk], dtype=np.int64)
        new = self.batch.update_batch(as_columns(facts, kind), partitions, old, had_none, old_version)
        assert new.shape == (len(chunk), N_COUNTS + 1)
        for fact, partition, contrib in zip(facts, partitions.tolist(), contribution_lists(new)):
            self.states[fact["order_id"]] = {"fact": fact, "p": partition, "c": contrib, "cv": fact["version"]}

    def advance_and_compare(self, watermark: int | None, rows_as: str) -> None:
        if watermark is not None:
            self.reference.advance(watermark)
            self.batch.advance(watermark)
        expected = keyed([part_row(key, part) for key, part in self.reference.take_dirty()])
        if rows_as == "parts":
            got = keyed([part_row(key, part) for key, part in self.batch.take_dirty()])
        else:
            got = keyed(self.batch.take_dirty_rows())
        assert got == expected
        self.compare_parts()

    def compare_parts(self) -> None:
        assert {k: part_row(k, p) for k, p in self.reference.parts.items()} == \
            {k: part_row(k, p) for k, p in self.batch.parts.items()}

    def restart(self, one_call: bool) -> None:
        """A rebalance: both rebuilt from the order states (nothing written)."""
        self.reference.clear()
        self.batch.clear()
        states = list(self.states.values())
        for state in states:
            self.reference.restore(state["fact"], state["p"], state["c"], state["cv"])
        if one_call:
            self.batch.restore_facts([s["fact"] for s in states], [s["p"] for s in states],
                                     [s["c"] for s in states], [s["cv"] for s in states])
        else:
            for state in states:
                self.batch.restore(state["fact"], state["p"], state["c"], state["cv"])
        assert self.batch.take_dirty() == [] and self.reference.take_dirty() == []
        self.compare_parts()


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_batches_of_columns_write_what_one_order_at_a_time_writes(data):
    worker, facts, partition_of = Worker(), {}, {}
    watermark = T0 - H
    for _ in range(data.draw(st.integers(1, 12))):
        changes = []
        for _ in range(data.draw(st.integers(0, 14))):
            i = data.draw(st.integers(0, 25))
            if i not in facts:
                facts[i], partition_of[i] = placed(i, data), data.draw(st.integers(0, 3))
            else:
                facts[i] = changed(facts[i], data)
            changes.append((facts[i], partition_of[i]))
        cuts = data.draw(st.lists(st.booleans(), min_size=len(changes), max_size=len(changes)))
        worker.feed(changes, cuts, data.draw(st.sampled_from(("lists", "arrow", "numpy"))))
        step = data.draw(st.sampled_from((None, 0, H, 20 * H, 3 * 24 * H, 9 * 24 * H)))
        if step is not None:
            watermark += step
        worker.advance_and_compare(None if step is None else watermark, data.draw(st.sampled_from(("parts", "rows"))))
        if data.draw(st.integers(0, 9)) == 0:
            worker.restart(one_call=data.draw(st.booleans()))


def test_an_order_corrected_after_its_window_expired_changes_nothing_written():
    worker = Worker()
    fact = {"order_id": "O1", "ordered_at": T0, "distributor_id": "D1", "product_id": "P1", "region_code": "150100",
            "responded_at": None, "decision": None, "on_time": None, "arrivals": 0, "quantity": 5,
            "delivered_quantity": 0, "response_hours": None, "version": 1}
    worker.feed([(fact, 0)], [False], "lists")
    worker.advance_and_compare(T0 + 30 * 24 * H, "rows")  # written, closed, then gone
    assert worker.batch.parts == {}
    answered = dict(fact, responded_at=T0 + H, decision="accepted", response_hours=1.0, version=2)
    worker.feed([(answered, 0)], [False], "lists")
    assert worker.batch.take_dirty_rows() == [] and worker.batch.parts == {}


def test_a_batch_of_one_order_changed_twice_in_two_calls_moves_its_hours():
    """The same order in two calls of one batch: its first hours leave the part."""
    windows = Windows(RULES)
    base = {"ordered_at": T0, "distributor_id": "D1", "product_id": "P1", "region_code": "150100",
            "responded_at": T0 + 2 * H, "decision": "accepted", "on_time": None, "arrivals": 0, "quantity": 5,
            "delivered_quantity": 0, "response_hours": 2.0, "version": 2}
    (first,) = windows.update_facts([base], [1], [None], [0])
    corrected = dict(base, responded_at=T0 + 3 * H, response_hours=3.0, version=3)
    windows.update_facts([corrected], [1], [first], [2])
    rows = windows.take_dirty_rows()
    assert {row["family"]: row["response_hours"] for row in rows} == {
        "distributor_daily": [3.0], "distributor_hourly": [3.0], "product_region_daily": [3.0]}
    assert {row["version"] for row in rows} == {2 * 3}


def test_columns_of_every_kind_give_the_same_contributions():
    facts = [{"ordered_at": T0, "distributor_id": "D1", "product_id": "P1", "region_code": "150100",
              "responded_at": T0 + 30 * H, "decision": "rejected", "on_time": 0, "arrivals": 0, "quantity": 5,
              "delivered_quantity": 0, "response_hours": 30.0, "version": 4},
             {"ordered_at": T0, "distributor_id": "D2", "product_id": "P1", "region_code": "150100",
              "responded_at": None, "decision": None, "on_time": None, "arrivals": 2, "quantity": 7,
              "delivered_quantity": 7, "response_hours": None, "version": 1}]
    expected = [[1, 1, 0, 1, 0, 0, 1, 5, 0, 30.0], [1, 0, 0, 0, 0, 0, 0, 7, 7, None]]
    for kind in ("lists", "arrow", "numpy"):
        windows = Windows(RULES)
        new = windows.update_batch(as_columns(facts, kind), [0, 0], np.zeros((2, 10)), [True, True], [0, 0])
        assert contribution_lists(new) == expected, kind
    assert set(FACT_COLUMNS) <= set(facts[0])
