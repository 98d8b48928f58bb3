"""Running the columnar `OrderFlow` and the per-event `ReferenceOrderFlow` side by
side on the same batches, and what of their outputs must be equal (for tests)."""
from __future__ import annotations

import orjson

from supplymon.core.columnar_flow import OrderFlow, decode_state
from supplymon.core.flow import BatchOutput, Partition, Record, ReferenceOrderFlow
from supplymon.core.order_table import event_hash
from supplymon.settings import Settings


def _sorted(rows: list[dict]) -> list[bytes]:
    return sorted(orjson.dumps(row, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS) for row in rows)


def state_meaning(raw: bytes | None):
    """A snapshot as what it means: seen ids as hashes, absent counters as zero."""
    if raw is None:
        return None
    state = decode_state(raw)
    state["seen"] = [s if isinstance(s, int) else event_hash(s) for s in state["seen"]]
    for name in ("ships", "qty", "arrs"):
        state.setdefault(name, 0)
    state.setdefault("sg", [-1, -1])
    if "pend" in state:
        for event in state["pend"]:
            event["src"] = list(event["src"])
    return state


def meaning(out: BatchOutput) -> dict:
    """What a batch's output says, independent of the order rows or orders were visited in."""
    return {
        "rows": {table: _sorted(out.rows.dicts(table)) for table in out.rows.by_table},
        "alerts": _sorted(out.alerts),
        "dead": sorted((key or b"", raw, tuple(sorted(headers.items()))) for key, raw, headers in out.dead),
        "dead_reasons": dict(out.dead_reasons),
        "duplicates": out.duplicates,
        "signals": out.signals,
        "marks": out.marks,
        "kinds": dict(out.kinds),
        "misplaced": {f"{tp.topic}:{tp.partition}": n for tp, n in out.misplaced.items()},
        "watermark": out.watermark,
    }


class SideBySide:
    """The two flows over the same assigned partitions; the reference's states kept
    as its shell keeps them (snapshots written back)."""

    def __init__(self, settings: Settings, inputs: list[Partition]):
        self.inputs = inputs
        self.reference = ReferenceOrderFlow.from_settings(settings, trust_rebuilt=True)
        self.columnar = OrderFlow.from_settings(settings, trust_rebuilt=True)
        self.reference.restore(inputs, ())
        self.columnar.restore(inputs, ())
        self.states: dict[str, bytes] = {}

    def step(self, records: list[Record], now_ms: int, decoded=None) -> tuple[BatchOutput, BatchOutput]:
        """Both flows over one batch; the columnar one given `decoded` (the records'
        values as the direct replay's router decodes them), the reference decoding them."""
        expected = self.reference.process(records, self.inputs, self.states.get, now_ms)
        for order_id, snapshot in expected.snapshots.items():
            if snapshot is None:
                self.states.pop(order_id, None)
            else:
                self.states[order_id] = snapshot
        got = self.columnar.process(records, self.inputs, lambda order_id: None, now_ms, decoded)
        return expected, got

    def assert_same(self, records: list[Record], now_ms: int, decoded=None) -> tuple[BatchOutput, BatchOutput]:
        expected, got = self.step(records, now_ms, decoded)
        want, have = meaning(expected), meaning(got)
        for name in want:
            assert have[name] == want[name], name
        # every state the reference changed, the columnar flow gives with the same meaning,
        # for the same changelog partition (its order's input partition)
        for order_id, snapshot in expected.snapshots.items():
            assert state_meaning(got.snapshots.get(order_id)) == state_meaning(snapshot), order_id
            assert got.partitions[order_id] == expected.partitions[order_id], order_id
        return expected, got
