"""An order's life: its events joined, its deadlines, its fact row and its alerts.

Pure logic, no Faust and no I/O. The state of one order is a small JSON-able dict
(kept in a Faust table by the lifecycle agent). Every function here is a function
of the order's events and of the stream time (watermark) passed in, so the same
events give the same facts and alerts whatever order they were read in, however
fast and however often the worker restarted.

Times are epoch milliseconds. A deadline "passes" when the watermark is strictly
later than it: an answer stamped exactly at the deadline is in time.
"""
from __future__ import annotations

import hashlib
import zlib
from typing import Any

import orjson

from schemas.limits import UINT16_MAX, UINT32_MAX
from supplymon.settings import HOUR_MS, Rules

# Bits of state["passed"]: the deadlines the watermark has gone past.
RESPONSE_DEADLINE = 1
ESCALATION_DEADLINE = 2
DELIVERY_DEADLINE = 4

ORDER_FIELDS = (
    "institution_id", "region_code", "area", "grassroots", "distributor_id",
    "manufacturer_id", "product_id", "product_kind", "vbp", "quantity", "unit_price",
)


class Outcome:
    """What applying an event or advancing time did to one order (one is made per
    event and per deadline: a plain slotted class, cheaper to make than a dataclass)."""

    __slots__ = ("changed", "duplicate", "held", "rejected", "orphans", "purge")

    def __init__(self, changed: bool = False, duplicate: bool = False, held: bool = False,
                 rejected: list[tuple[dict, str, str]] | None = None, orphans: list[dict] | None = None,
                 purge: bool = False):
        self.changed = changed  # the fact row or alerts may differ: write them
        self.duplicate = duplicate
        self.held = held  # kept until its order arrives
        self.rejected = rejected or []  # (event, reason, detail)
        self.orphans = orphans or []  # held events whose order never came
        self.purge = purge  # the state may be dropped

    def merge(self, other: "Outcome") -> None:
        self.changed |= other.changed
        self.rejected.extend(other.rejected)
        self.orphans.extend(other.orphans)
        self.purge |= other.purge


def _beyond_store(state: dict, kind: str, quantity: int) -> str | None:
    """Why the order's fact row could not hold this event's effect (its counts and
    delivered quantity are UInt16 and UInt32 columns), or None."""
    if kind == "shipment" and state.get("ships", 0) >= UINT16_MAX:
        return f"the order already has {UINT16_MAX} shipments, as many as the store counts"
    if kind == "arrival":
        if state.get("arrs", 0) >= UINT16_MAX:
            return f"the order already has {UINT16_MAX} arrivals, as many as the store counts"
        if state.get("qty", 0) + quantity > UINT32_MAX:
            return f"the order's delivered quantity would pass {UINT32_MAX}, more than the store holds"
    return None


def new_state(order_id: str) -> dict:
    return {"oid": order_id, "seen": [], "fp": [], "n": 0, "passed": 0, "alerts": {}}


# An event's content for telling a repeat from a conflicting duplicate: its contract
# fields, times as instants (the same instant written with another offset is the
# same), not what the agent adds (its raw text and source).
_NOT_CONTENT = frozenset({"ts", "received_at", "raw", "src"})


def content_fingerprint(event: dict) -> int:
    fields = {k: v for k, v in event.items() if k not in _NOT_CONTENT}
    return zlib.crc32(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS))


def _earliest(current: int | None, candidate: int) -> int:
    return candidate if current is None or candidate < current else current


def _first(current: list | None, candidate: list) -> list:
    """The earlier of two [ts, event_id, ...] entries; ties go to the smaller event_id."""
    if current is None or candidate[:2] < current[:2]:
        return candidate
    return current


class OrderLifecycle:
    """Applies events and stream time to order states under a set of rules."""

    def __init__(self, rules: Rules):
        self.rules = rules
        self.response_ms = rules.ms("response_overdue_hours")
        self.escalation_ms = rules.ms("response_escalation_hours")
        self.urban_ms = rules.ms("delivery_urban_hours")
        self.rural_ms = rules.ms("delivery_rural_hours")
        self.confirmation_ms = rules.ms("confirmation_late_hours")
        self.orphan_ms = rules.ms("orphan_timeout_hours")
        self.retention_ms = rules.ms("retention_days")

    # -- deadlines -----------------------------------------------------------------
    def response_deadline(self, state: dict) -> int:
        return state["order"]["ordered_at"] + self.response_ms

    def escalation_deadline(self, state: dict) -> int:
        return state["order"]["ordered_at"] + self.escalation_ms

    def delivery_deadline(self, state: dict) -> int:
        order = state["order"]
        return order["ordered_at"] + (self.urban_ms if order["area"] == "urban" else self.rural_ms)

    def _deadlines(self, state: dict) -> tuple[tuple[int, int], ...]:
        return (
            (RESPONSE_DEADLINE, self.response_deadline(state)),
            (ESCALATION_DEADLINE, self.escalation_deadline(state)),
            (DELIVERY_DEADLINE, self.delivery_deadline(state)),
        )

    def purge_at(self, state: dict) -> int:
        return max(self.escalation_deadline(state), self.delivery_deadline(state)) + self.retention_ms

    def next_due(self, state: dict) -> int | None:
        """The next instant at which time alone changes this order (None: never)."""
        if "order" not in state:
            pending = state.get("pend")
            return min(e["ts_ms"] for e in pending) + self.orphan_ms if pending else None
        due, passed = self.purge_at(state), state["passed"]
        for bit, deadline in self._deadlines(state):
            if not passed & bit and deadline < due:
                due = deadline
        return due

    # -- events ----------------------------------------------------------------------
    def apply(self, state: dict, event: dict) -> Outcome:
        """Apply one validated business event (as a dict of its record's fields)."""
        seen, content = state["seen"], content_fingerprint(event)
        if event["event_id"] in seen:
            # A repeat changes nothing; one with other content is refused besides
            # (the first stands). States from before fingerprints were kept have none.
            prints, n = state.get("fp", ()), seen.index(event["event_id"])
            if n < len(prints) and prints[n] != content:
                return Outcome(duplicate=True, rejected=[(event, "conflicting_duplicate", (
                    f"event_id {event['event_id']} was already read with other content; the first stands"))])
            return Outcome(duplicate=True)
        if len(state.setdefault("fp", [])) == len(seen):
            state["fp"].append(content)
        seen.append(event["event_id"])
        if event["kind"] != "order" and "order" not in state:
            state.setdefault("pend", []).append(event)
            return Outcome(held=True)
        outcome = Outcome()
        if event["kind"] == "order":
            if "order" in state:
                outcome.rejected.append((event, "duplicate_order",
                                         f"order {state['oid']} was already placed by another event"))
                return outcome
            state["order"] = {name: event[name] for name in ORDER_FIELDS}
            state["order"]["ordered_at"] = event["ts_ms"]
            state["n"] += 1
            outcome.changed = True
            for held in sorted(state.pop("pend", ()), key=lambda e: (e["ts_ms"], e["event_id"])):
                outcome.merge(self._apply_to_order(state, held))
            return outcome
        return self._apply_to_order(state, event)

    def _apply_to_order(self, state: dict, event: dict) -> Outcome:
        order = state["order"]
        kind = event["kind"]
        quantity = event.get("confirmed_quantity", event.get("quantity", 0))
        if kind in ("response", "shipment") and quantity > order["quantity"]:
            return Outcome(rejected=[(event, "inconsistent",
                                      f"{kind} quantity {quantity} exceeds the ordered {order['quantity']}")])
        beyond = _beyond_store(state, kind, quantity)
        if beyond:
            return Outcome(rejected=[(event, "bad_field", beyond)])
        if kind == "response":
            state["resp"] = _first(state.get("resp"), [
                event["ts_ms"], event["event_id"], event["decision"],
                event["confirmed_quantity"], event.get("reason")])
        elif kind == "shipment":
            state["ship"] = _earliest(state.get("ship"), event["ts_ms"])
            state["ships"] = state.get("ships", 0) + 1
        elif kind == "arrival":
            state["recv"] = _earliest(state.get("recv"), event["received_ms"])
            state["arr"] = _first(state.get("arr"), [event["ts_ms"], event["event_id"]])
            state["qty"] = state.get("qty", 0) + event["quantity"]
            state["arrs"] = state.get("arrs", 0) + 1
            delay = event["ts_ms"] - event["received_ms"]
            if delay > self.confirmation_ms:
                state["late_conf"] = _first(state.get("late_conf"), [
                    event["ts_ms"], event["event_id"], event["institution_id"], event["received_ms"]])
        state["n"] += 1
        return Outcome(changed=True)

    # -- time ------------------------------------------------------------------------
    def advance(self, state: dict, watermark: int) -> Outcome:
        """Let stream time reach `watermark`: deadlines pass, orphans expire."""
        outcome = Outcome()
        if "order" not in state:
            due = self.next_due(state)
            if due is not None and watermark > due:
                outcome.orphans = state.pop("pend")
                outcome.purge = True
            return outcome
        for bit, deadline in self._deadlines(state):
            if watermark > deadline and not state["passed"] & bit:
                state["passed"] |= bit
                outcome.changed = True
        if watermark > self.purge_at(state):
            outcome.purge = True
        return outcome

    # -- results ---------------------------------------------------------------------
    def version(self, state: dict) -> int:
        """Grows with every change and is the same for the same events and deadlines
        passed, whatever path led there: the latest row wins in ClickHouse."""
        return state["n"] * 8 + state["passed"]

    def on_time(self, state: dict) -> int | None:
        resp = state.get("resp")
        if resp is not None and resp[2] == "rejected":
            return 0
        if state.get("recv") is not None:
            return int(state["recv"] <= self.delivery_deadline(state))
        if state["passed"] & DELIVERY_DEADLINE:
            return 0
        return None

    def fact(self, state: dict) -> dict:
        """The `order_facts` row (times in epoch ms)."""
        order = state["order"]
        resp = state.get("resp")
        row = {name: order[name] for name in ORDER_FIELDS}
        row.update(
            order_id=state["oid"],
            ordered_at=order["ordered_at"],
            responded_at=resp[0] if resp else None,
            decision=resp[2] if resp else None,
            confirmed_quantity=resp[3] if resp else None,
            reject_reason=resp[4] if resp else None,
            first_shipped_at=state.get("ship"),
            first_received_at=state.get("recv"),
            first_confirmed_at=state["arr"][0] if state.get("arr") else None,
            delivered_quantity=state.get("qty", 0),
            shipments=state.get("ships", 0),
            arrivals=state.get("arrs", 0),
            deadline_at=self.delivery_deadline(state),
            response_deadline_at=self.response_deadline(state),
            on_time=self.on_time(state),
            response_hours=(resp[0] - order["ordered_at"]) / HOUR_MS if resp else None,
            version=self.version(state),
        )
        return row

    def alerts(self, state: dict) -> list[dict]:
        """The order's alerts as they stand: [{kind, raised_at, resolved_at, ...}]."""
        if "order" not in state:
            return []
        resp = state.get("resp")
        arrival_ts = state["arr"][0] if state.get("arr") else None
        out = []
        for kind, bit, deadline in (
            ("response_overdue", RESPONSE_DEADLINE, self.response_deadline(state)),
            ("response_escalation", ESCALATION_DEADLINE, self.escalation_deadline(state)),
        ):
            if state["passed"] & bit and not (resp and resp[0] <= deadline):
                out.append(_alert(kind, deadline, resp[0] if resp else None))
        deadline = self.delivery_deadline(state)
        rejected_in_time = resp is not None and resp[2] == "rejected" and resp[0] <= deadline
        if (state["passed"] & DELIVERY_DEADLINE and not rejected_in_time
                and not (arrival_ts is not None and arrival_ts <= deadline)):
            out.append(_alert("delivery_overdue", deadline, arrival_ts))
        if state.get("late_conf"):
            ts, _, institution, received = state["late_conf"]
            out.append(_alert("confirmation_late", ts, None, institution_id=institution,
                              hours=round((ts - received) / HOUR_MS, 2)))
        return out

    def changed_alerts(self, state: dict) -> list[dict]:
        """Alerts new or different since last emitted; remembers them as emitted."""
        emitted = state["alerts"]
        out = []
        for alert in self.alerts(state):
            mark = [alert["raised_at"], alert["resolved_at"]]
            if emitted.get(alert["kind"]) != mark:
                emitted[alert["kind"]] = mark
                out.append(alert)
        return out


SEVERITY = {
    "response_overdue": "warning",
    "response_escalation": "critical",
    "delivery_overdue": "warning",
    "confirmation_late": "info",
}


def _alert(kind: str, raised_at: int, resolved_at: int | None, **extra: Any) -> dict:
    return {"kind": kind, "severity": SEVERITY[kind], "raised_at": raised_at,
            "resolved_at": resolved_at, **extra}


def alert_id(kind: str, *subject: str) -> str:
    """Stable: the same alert (kind and subject) always gets the same id."""
    digest = hashlib.blake2b("\x1f".join((kind, *subject)).encode(), digest_size=10)
    return f"{kind}-{digest.hexdigest()}"

