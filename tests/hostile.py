"""Hypothesis strategies for hostile input lines, built from a valid history's events.

Every line drawn must be refused (each kind of line says the dead-letter reasons it
may get): wrong types, out-of-range values, far past and far future times, huge
and deeply nested documents, invalid UTF-8, conflicting duplicates. Used in process
against the intake (many examples) and mixed into a valid history end to end.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import orjson
from hypothesis import strategies as st

from schemas.limits import MAX_ID, UINT32_MAX

ID_FIELDS = ("order_id", "institution_id", "distributor_id", "manufacturer_id", "product_id", "shipment_id")
INT_FIELDS = ("quantity", "confirmed_quantity")
BOOL_FIELDS = ("grassroots", "vbp")
ENUM_FIELDS = ("area", "product_kind", "decision", "region_code")
TIME_FIELDS = ("ts", "received_at")
# Past the wall clock (by years, whenever the tests run), within what the store holds.
FUTURE_YEARS = st.integers(datetime.now(timezone.utc).year + 2, 2199)


@dataclass(frozen=True)
class Hostile:
    line: bytes
    reasons: frozenset[str]  # the dead-letter reasons it may get
    after: str | None = None  # an event_id it must follow in the file (a duplicate of it)


def pick(options: list, n: int) -> st.SearchStrategy:
    """One of `options`, rotated by the line's number `n`: even the simplest example
    Hypothesis draws (its first) then varies from line to line."""
    return st.integers(0, len(options) - 1).map(lambda i: options[(i + n * 7) % len(options)])


def _iso(year: int, month: int = 6, day: int = 15) -> str:
    return f"{year:04d}-{month:02d}-{day:02d}T08:00:00+08:00"


def _line(doc) -> bytes:
    return orjson.dumps(doc)


not_a_string = st.one_of(st.integers(-2**63, 2**63 - 1), st.booleans(), st.none(), st.floats(allow_nan=False,
                         allow_infinity=False), st.lists(st.integers(-2**63, 2**63 - 1), max_size=3), st.just({"a": 1}))
not_an_int = st.one_of(st.text(max_size=5), st.booleans(), st.none(), st.floats(0.1, 1e6).filter(
    lambda f: f != int(f)), st.lists(st.integers(-2**63, 2**63 - 1), max_size=2))
not_a_bool = st.one_of(st.integers(0, 1), st.sampled_from(["true", "false", "yes"]), st.none())
not_a_time = st.one_of(st.text(max_size=12), st.integers(-2**63, 2**63 - 1), st.none(), st.sampled_from([
    "2026-03-01 08:00:00", "2026-03-01T08:00:00", "2026-13-01T08:00:00Z", "2026-02-30T08:00:00Z",
    "yesterday", "2026-03-01T25:00:00+08:00"]))


@st.composite
def wrong_type(draw, events: list[dict], n: int) -> Hostile:
    event = dict(draw(pick(events, n)), event_id=f"hostile-{n}")
    fields = [f for f in event if f not in ("event_id", "kind")]
    name = draw(pick(fields, n))
    if name in ID_FIELDS:
        value = draw(st.one_of(not_a_string, st.just(""), st.just("x" * (MAX_ID + 1))))
    elif name in INT_FIELDS:
        value = draw(not_an_int)
    elif name in BOOL_FIELDS:
        value = draw(not_a_bool)
    elif name in TIME_FIELDS:
        value = draw(not_a_time)
    elif name in ENUM_FIELDS:
        value = draw(st.one_of(st.sampled_from(["URBAN", "pill", "maybe", "12345", "1234567"]), not_a_string))
    elif name == "unit_price":
        value = draw(st.one_of(st.text(max_size=4), st.booleans(), st.none(), st.just([1.0])))
    else:  # reason
        value = draw(st.one_of(st.sampled_from(["because", ""]), st.integers(-2**63, 2**63 - 1)))
        if event.get("decision") == "accepted":
            event["decision"] = "partial"  # so that the reason is checked
    event[name] = value
    return Hostile(_line(event), frozenset({"bad_field", "bad_time", "missing_field", "unknown_kind"}))


@st.composite
def out_of_range(draw, events: list[dict], n: int) -> Hostile:
    event = dict(draw(pick([e for e in events if e["kind"] == "order"], n)), event_id=f"hostile-{n}")
    name, value = draw(st.one_of(
        st.tuples(st.just("quantity"), st.one_of(st.integers(UINT32_MAX + 1, 2**63 - 1), st.integers(-2**63, 0))),
        st.tuples(st.just("unit_price"), st.one_of(st.floats(1.01e13, 1e300), st.floats(-1e300, -0.01))),
        st.tuples(st.just("order_id"), st.text(min_size=MAX_ID + 1, max_size=400)),
    ))
    event[name] = value
    return Hostile(_line(event), frozenset({"bad_field"}))


@st.composite
def far_time(draw, events: list[dict], n: int) -> Hostile:
    """Far past (before what the store holds) or far future (refused at intake)."""
    event = dict(draw(pick(events, n)), event_id=f"hostile-{n}")
    future = draw(st.booleans())
    year = draw(FUTURE_YEARS if future else st.integers(1, 1899))
    event["ts"] = _iso(year, draw(st.integers(1, 12)), draw(st.integers(1, 28)))
    if event["kind"] == "tick":
        event["event_id"] = f"tick-hostile-{n}"
    return Hostile(_line(event), frozenset({"future_timestamp"} if future else {"bad_field"}))


@st.composite
def deeply_nested(draw, events: list[dict], n: int) -> Hostile:
    depth = draw(st.integers(1100, 20_000))
    if draw(st.booleans()):  # beyond any JSON parser's depth
        inner = "[" * depth + "]" * depth
        return Hostile(f'{{"event_id": "hostile-{n}", "kind": "order", "note": {inner}}}'.encode(),
                       frozenset({"not_json"}))
    event = dict(draw(pick([e for e in events if e["kind"] == "order"], n)), event_id=f"hostile-{n}")
    nested: object = event["quantity"]
    for _ in range(draw(st.integers(1, 200))):
        nested = [nested]
    event["quantity"] = nested
    return Hostile(_line(event), frozenset({"bad_field"}))


@st.composite
def invalid_utf8(draw, events: list[dict], n: int) -> Hostile:
    event = dict(draw(pick(events, n)), event_id=f"hostile-{n}")
    raw = _line(event)
    bad = draw(st.sampled_from([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe9\x85", b"\x80"]))
    at = raw.index(b'"hostile-') + 2  # inside the event_id string
    return Hostile(raw[:at] + bad + raw[at:], frozenset({"not_json"}))


@st.composite
def conflicting_duplicate(draw, events: list[dict], n: int) -> Hostile:
    """An event read again with other content (same event_id), or a second order for an
    order already placed: placed after the event it contradicts."""
    original = draw(pick([e for e in events if e["kind"] != "tick"], n))
    copy = dict(original)
    if original["kind"] == "order" and draw(st.booleans()):
        copy.update(event_id=f"hostile-{n}", quantity=original["quantity"] + draw(st.integers(1, 50)))
        return Hostile(_line(copy), frozenset({"duplicate_order"}), after=original["event_id"])
    field = {"order": "quantity", "response": "distributor_id", "shipment": "quantity",
             "arrival": "quantity"}[original["kind"]]
    if field == "quantity":
        copy[field] = original[field] + draw(st.integers(1, 5))
    else:
        copy[field] = original[field] + "-X"
    return Hostile(_line(copy), frozenset({"conflicting_duplicate"}), after=original["event_id"])


KINDS = (wrong_type, out_of_range, far_time, deeply_nested, invalid_utf8, conflicting_duplicate)


def hostile_line(events: list[dict], n: int) -> st.SearchStrategy[Hostile]:
    return pick([make(events, n) for make in KINDS], n).flatmap(lambda strategy: strategy)


@st.composite
def hostile_lines(draw, events: list[dict], min_size: int, max_size: int) -> list[Hostile]:
    count = draw(st.integers(min_size, max_size))
    return [draw(hostile_line(events, n)) for n in range(count)]


def huge(events: list[dict], n: int, size: int) -> Hostile:
    """A document of about `size` bytes (an order with a long note)."""
    order = next(e for e in events if e["kind"] == "order")
    return Hostile(_line(dict(order, event_id=f"hostile-{n}", note="备注" * (size // 6))), frozenset({"too_large"}))
