"""The msgspec fast path (schemas/fast_events.py) gives exactly what the full
validator (schemas/events.py `parse_event`) gives: the same typed dicts, keys in
the same order, and the same dead-letter reasons and details, on valid lines and
on hostile ones, in batches of any size."""
from __future__ import annotations

import json

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pytest

from schemas import fast_events
from schemas.events import MAX_ID, parse_event
from schemas.fast_events import CHUNK, decode_batch

ids = st.text(min_size=1, max_size=MAX_ID)
times = st.builds(
    lambda y, mo, d, h, mi, s, sep, frac, zone: f"{y:04d}-{mo:02d}-{d:02d}{sep}{h:02d}:{mi:02d}:{s:02d}{frac}{zone}",
    st.integers(1970, 2100), st.integers(1, 12), st.integers(1, 28), st.integers(0, 23), st.integers(0, 59),
    st.integers(0, 59), st.sampled_from("Tt "), st.sampled_from(["", ".5", ".123", ".123456789"]),
    st.sampled_from(["Z", "+08:00", "-05:30", "+00:00"]))
common = {"event_id": ids, "ts": times}
FIELDS = {
    "order": {"order_id": ids, "institution_id": ids, "region_code": st.from_regex(r"\A[0-9]{6}\Z"),
              "area": st.sampled_from(["urban", "rural"]), "grassroots": st.booleans(), "distributor_id": ids,
              "manufacturer_id": ids, "product_id": ids, "product_kind": st.sampled_from(["drug", "consumable"]),
              "vbp": st.booleans(), "quantity": st.integers(1, 10**6),
              "unit_price": st.one_of(st.integers(0, 10**6), st.floats(0, 1e9))},
    "response": {"order_id": ids, "distributor_id": ids,
                 "decision": st.sampled_from(["accepted", "partial", "rejected"]),
                 "confirmed_quantity": st.integers(0, 3),
                 "reason": st.sampled_from([None, "out_of_stock", "price", "qualification", "remote_area", "other"])},
    "shipment": {"order_id": ids, "shipment_id": ids, "distributor_id": ids, "quantity": st.integers(1, 10**6)},
    "arrival": {"order_id": ids, "shipment_id": ids, "institution_id": ids, "quantity": st.integers(0, 10**6),
                "received_at": times},
    "tick": {},
}
HOSTILE_VALUES = [None, True, False, 0, -1, 1.0, 1.5, -0.0, 2**32, 2**32 - 1, 2**63, 2**64 + 1, 10**30, 1e300,
                  1e13, 1e13 + 0.5, 10**13, 10**13 + 1, "\u0000", "1899-12-31T23:59:59.999Z", "1900-01-01T00:00:00Z",
                  "2199-12-31T23:59:59.999Z", "2200-01-01T00:00:00Z", "2200-01-01T05:29:59+05:30",
                  "2200-01-01T05:30:00.001+05:30", "1900-01-01T07:59:59+08:00", "", " ", "x" * (MAX_ID + 1),
                  "12345", "1234567", "123456\n", "urban ", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00+08:00",
                  "2026-01-01T00:00:00", "2026-01-01", "2026-01-01T00:00:00z", "2026-01-01t00:00:00Z", [], {}, ["order"], "order", "tick", "accepted", 1e309 * 0]


@st.composite
def events(draw, kind=None):
    kind = kind or draw(st.sampled_from(list(FIELDS)))
    doc = {"event_id": draw(common["event_id"]), "kind": kind, "ts": draw(common["ts"])}
    for name, strategy in FIELDS[kind].items():
        doc[name] = draw(strategy)
    if kind == "response":  # a reason unless accepted; a rejection confirms 0
        if doc["decision"] != "accepted" and doc["reason"] is None:
            doc["reason"] = "other"
        if doc["decision"] == "rejected":
            doc["confirmed_quantity"] = 0
    if draw(st.booleans()):  # an optional reason may be absent rather than null
        if doc.get("reason", 0) is None:
            del doc["reason"]
    return doc


@st.composite
def hostile_lines(draw):
    doc = draw(events())
    names = list(doc) + list(FIELDS["order"]) + ["extra"]
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["drop", "set", "kind", "extra"]))
        name = draw(st.sampled_from(names))
        if action == "drop":
            doc.pop(name, None)
        elif action == "set":
            doc[name] = draw(st.sampled_from(HOSTILE_VALUES))
        elif action == "kind":
            doc["kind"] = draw(st.sampled_from([*FIELDS, "Order", "", None, 1]))
        else:
            doc[name] = draw(st.one_of(st.integers(), st.text(), st.none()))
    raw = dumps(doc)
    mangle = draw(st.sampled_from(["none", "none", "duplicate", "truncate", "not_object", "bad_utf8", "newline",
                                   "empty", "spaces", "two_objects", "pretty", "raw_extra", "raw_value"]))
    if mangle == "duplicate":  # a key twice: the last one counts, as in orjson
        name = draw(st.sampled_from(names))
        value = dumps(draw(st.sampled_from(HOSTILE_VALUES + ["tick", "order", "2026-01-01T00:00:00Z"])))
        raw = raw[:-1] + (b"," if len(raw) > 2 else b"") + orjson.dumps(name) + b":" + value + b"}"
    elif mangle == "raw_value":  # a known field holding what a decoder may refuse
        name = draw(st.sampled_from(names))
        raw = raw[:-1] + (b"," if len(raw) > 2 else b"") + orjson.dumps(name) + b":" + draw(st.sampled_from(RAW_FRAGMENTS)) + b"}"
    elif mangle == "truncate":
        raw = raw[:draw(st.integers(0, max(0, len(raw) - 1)))]
    elif mangle == "not_object":
        raw = dumps(list(doc.values()))
    elif mangle == "bad_utf8":
        raw = raw[:-1] + b',"x":"\xff\xfe"}'
    elif mangle == "newline":
        raw = raw.replace(b",", b",\n", 1)
    elif mangle == "empty":
        raw = b""
    elif mangle == "spaces":
        raw = b"  " + raw + b" \t"
    elif mangle == "two_objects":
        raw = raw + b"\n" + raw
    elif mangle == "pretty":
        raw = json.dumps(doc, indent=2).encode()
    elif mangle == "raw_extra":  # a field nobody reads, holding what a decoder may refuse
        fragment = draw(st.sampled_from(RAW_FRAGMENTS))
        raw = raw[:-1] + (b"," if len(raw) > 2 else b"") + b'"zz":' + fragment + b"}"
    return raw


def dumps(value) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # integers past 64 bits
        return json.dumps(value).encode()


RAW_FRAGMENTS = [rb'"\\ud800"', rb'"\ud800"', rb'"\ud83d\ude00"', b"1e999", b"-1e999", b"NaN", b"Infinity",
                 b"123456789012345678901234567890", b"-0", b"0.0e0", b"[" * 2000 + b"]" * 2000,
                 b"[" * 300 + b"]" * 300, rb'"\u0000"', b"tru", rb'"\x41"', b'"', b"01", b"1.", b".5",
                 b'{"a":1,"a":2}', b'"\xc3\x28"', b"1e308", b"4.9e-324", b"2e-400"]


def same(fast, full) -> bool:
    """Equal, and dicts with their keys in the same order (states are serialized)."""
    if isinstance(full, dict):
        return isinstance(fast, dict) and list(fast.items()) == list(full.items())
    return fast == full


def check(lines: list[bytes | None]) -> None:
    fast = decode_batch(lines)
    assert len(fast) == len(lines)
    for line, got in zip(lines, fast):
        want = parse_event(line)
        assert same(got, want), (line, got, want)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events().map(orjson.dumps), min_size=1, max_size=40))
def test_valid_lines_decode_as_the_full_validator_decodes_them(lines):
    check(lines)
    assert all(isinstance(event, dict) for event in decode_batch(lines))


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(hostile_lines(), events().map(orjson.dumps)), min_size=1, max_size=30))
def test_hostile_lines_get_the_full_validators_answer(lines):
    check(lines)


def simulated_lines() -> list[bytes]:
    from supplymon.simulate import generate
    return [orjson.dumps(event) for event in generate(days=2, orders_per_day=200, seed=3)]


def test_the_simulated_platforms_lines_all_take_the_fast_path(monkeypatch):
    lines = simulated_lines()
    expected = [parse_event(line) for line in lines]
    fallbacks = []
    monkeypatch.setattr(fast_events, "parse_event", lambda raw: fallbacks.append(raw) or parse_event(raw))
    got = decode_batch(lines)
    assert fallbacks == [] and {event["kind"] for event in got} == set(FIELDS)
    assert all(same(g, e) for g, e in zip(got, expected))


@settings(max_examples=50, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events(), min_size=1, max_size=10))
def test_valid_lines_are_not_sent_to_the_full_validator(monkeypatch_docs):
    lines = [orjson.dumps(doc) for doc in monkeypatch_docs]
    original = fast_events.parse_event
    fast_events.parse_event = lambda raw: pytest.fail(f"the fast path refused a valid line: {raw!r}")
    try:
        decode_batch(lines)
    finally:
        fast_events.parse_event = original


def test_every_kind_and_a_chunk_boundary():
    lines = simulated_lines()[:CHUNK + 5]
    lines[CHUNK - 1] = b'{"kind": "order"'  # a bad line at the end of the first chunk
    lines[3] = lines[3].replace(b",", b",\n", 1)  # a line break inside a message
    lines.append(None)
    check(lines)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.one_of(hostile_lines(), events().map(orjson.dumps)),
                          st.sampled_from([None, [], [("supplymon-too-large", b"2000000")],
                                           [("supplymon-too-large", b"x")], [("supplymon-rebuilt", b"1")]])),
                min_size=1, max_size=20),
       st.booleans(), st.booleans())
def test_a_batch_is_admitted_as_each_message_alone(messages, allow_future, trust_rebuilt):
    from supplymon.core.intake import Intake

    intake = Intake(max_bytes=400, max_future_skew_ms=5 * 60_000, allow_future=allow_future,
                    trust_rebuilt=trust_rebuilt)
    now_ms = 1_800_000_000_000  # 2027: some generated stamps are past it
    got = intake.admit_batch(messages, now_ms)
    for (raw, headers), admitted in zip(messages, got):
        assert same(admitted, intake.admit(raw, now_ms, headers))


def test_a_deeply_nested_field_is_the_full_validators_case_not_a_crash():
    # Found by the property above: a line without `kind` makes msgspec read every field
    # looking for the tag, and one nested a thousand levels deep raises RecursionError
    # (not DecodeError); uncaught, it stopped the batch and the agent.
    good = orjson.dumps({"event_id": "t1", "kind": "tick", "ts": "2026-03-01T09:00:00+08:00"})
    nested = b'{"ts":"2026-03-01T09:00:00+08:00","order_id":"O1","zz":' + b"[" * 3000 + b"]" * 3000 + b"}"
    for lines in ([nested], [good, nested, good]):
        assert decode_batch(lines) == [parse_event(line) for line in lines]
    assert decode_batch([nested])[0].reason == "not_json"


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(times, st.sampled_from([v for v in HOSTILE_VALUES if isinstance(v, str)]),
                          st.text(alphabet="0123456789-:T.Z+ z", max_size=34)), min_size=1, max_size=40))
def test_a_batch_of_times_is_parsed_as_each_one_alone(values):
    # usual_times_ms (numpy over the batch's characters) gives `_time_ms`'s value, or
    # leaves the value to it (UNUSUAL), never another value
    from schemas.events import _Reject

    for value, got in zip(values, fast_events.usual_times_ms(values).tolist()):
        if got == fast_events.UNUSUAL:
            continue
        try:
            expected = fast_events._time_ms(value, "ts")
        except _Reject:
            expected = None
        assert got == expected, value


def test_the_usual_times_of_a_batch_are_parsed_at_once():
    values = ["2026-03-01T09:00:00+08:00", "2026-03-01T09:00:00.5Z", "2026-03-01T09:59:59.123456-05:30",
              "2199-12-31T23:59:59.999Z"]
    assert fast_events.usual_times_ms(values).tolist() == [fast_events._time_ms(v, "ts") for v in values]


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events(), min_size=1, max_size=20))
def test_a_lines_fingerprint_is_its_events_content_fingerprint(docs):
    # the columnar flow fingerprints the decoded Struct; the per-event core the dict
    from supplymon.core.columnar_flow import LINE_FINGERPRINT
    from supplymon.core.lifecycle import content_fingerprint

    decoded = fast_events.decode_columns([orjson.dumps(doc) for doc in docs])
    for i, line in enumerate(decoded.items):
        if isinstance(line, dict):
            line = fast_events.as_line(line)
        if type(line) in LINE_FINGERPRINT:
            assert (LINE_FINGERPRINT[type(line)](line, decoded.ts_ms[i], decoded.received_ms[i])
                    == content_fingerprint(decoded.event(i)))
