"""The fast path of event decoding: msgspec Structs (a tagged union on `kind`,
types and bounds checked in C), a batch of lines at a time.

`decode_batch(values)` gives, for each message, exactly what `parse_event` gives
(schemas/events.py): a line the fast path accepts is built into the same typed
dict, keys in the same order; a line it does not accept (bad JSON, a wrong
type, a bound crossed, anything unusual) goes to `parse_event`, which decides
its dead-letter reason and detail. So the fast path must accept no more than the
full validator: its Structs carry the same bounds, and what Structs cannot say
(times with an offset, a rejected response confirming 0, a reason required
unless accepted) is checked after, with the validator's own functions.
tests/test_fast_events.py holds both paths equal on valid and hostile lines.

`decode_columns(values)` is the same decoding without the dicts: the accepted
lines stay Structs beside their parsed times (`Decoded`), for the columnar flow;
`decode_batch` makes the dicts from it.
"""
from __future__ import annotations

import functools
import re
from operator import attrgetter
from typing import Annotated, Literal, Sequence, Union

import msgspec
import numpy as np

from schemas.events import AnyEvent, Invalid, _Reject, parse_event, parse_time
from schemas.limits import MAX_ID, MAX_TS_MS, MAX_UNIT_PRICE, MIN_TS_MS, UINT32_MAX

CHUNK = 512  # lines per decode call

Ident = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID)]
Region = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{6}$")]
Positive = Annotated[int, msgspec.Meta(ge=1, le=UINT32_MAX)]
Count = Annotated[int, msgspec.Meta(ge=0, le=UINT32_MAX)]
Price = Annotated[float, msgspec.Meta(ge=0, le=MAX_UNIT_PRICE)]


# Unknown fields refused (the line goes to the full validator): msgspec skips an
# unknown field's value without checking it as orjson does (1e999, bad escapes).
class _Base(msgspec.Struct, tag_field="kind", forbid_unknown_fields=True):
    event_id: Ident
    ts: str


class OrderLine(_Base, tag="order"):
    order_id: Ident
    institution_id: Ident
    region_code: Region
    area: Literal["urban", "rural"]
    grassroots: bool
    distributor_id: Ident
    manufacturer_id: Ident
    product_id: Ident
    product_kind: Literal["drug", "consumable"]
    vbp: bool
    quantity: Positive
    unit_price: Price


class ResponseLine(_Base, tag="response"):
    order_id: Ident
    distributor_id: Ident
    decision: Literal["accepted", "partial", "rejected"]
    confirmed_quantity: Count
    reason: Union[Literal["out_of_stock", "price", "qualification", "remote_area", "other"], None] = None


class ShipmentLine(_Base, tag="shipment"):
    order_id: Ident
    shipment_id: Ident
    distributor_id: Ident
    quantity: Positive


class ArrivalLine(_Base, tag="arrival"):
    order_id: Ident
    shipment_id: Ident
    institution_id: Ident
    quantity: Count
    received_at: str


class TickLine(_Base, tag="tick"):
    pass


Line = Union[OrderLine, ResponseLine, ShipmentLine, ArrivalLine, TickLine]
_decoder = msgspec.json.Decoder(Line)


# The usual shape of a time; anything else is parsed by the validator's parse_time.
_USUAL_TIME = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,6}))?"
                         r"(Z|[+-][0-9]{2}:[0-9]{2})\Z")


@functools.lru_cache(maxsize=1 << 14)
def _hour_seconds(date: str, hour: str, zone: str, name: str) -> int:
    """Epoch seconds of a whole hour, by the validator's own parse (and its errors)."""
    return parse_time(f"{date}T{hour}:00:00{zone}", name) // 1000


def _time_ms(value: str, name: str) -> int:
    """`parse_time(value, name)`, the same milliseconds (float rounding included:
    `int(datetime.timestamp() * 1000)`), without a datetime per event."""
    usual = _USUAL_TIME.match(value)
    if usual is None:
        return parse_time(value, name)
    date, hour, minute, second, fraction, zone = usual.groups()
    if minute >= "60" or second >= "60":
        return parse_time(value, name)
    seconds = _hour_seconds(date, hour, zone, name) + int(minute) * 60 + int(second)
    micros = seconds * 1_000_000 + (int(fraction.ljust(6, "0")) if fraction else 0)
    ms = int(micros / 1_000_000 * 1000)  # as datetime.timestamp(): total microseconds / 10**6
    if not MIN_TS_MS <= ms < MAX_TS_MS:
        return parse_time(value, name)  # out of the store's range: its refusal
    return ms


UNUSUAL = np.iinfo(np.int64).min  # usual_times_ms: not of the usual shape, or not valid
_DIGITS = (0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18)  # of YYYY-MM-DDTHH:MM:SS
_PUNCT = ((4, "-"), (7, "-"), (10, "T"), (13, ":"), (16, ":"))
_SHORTEST, _LONGEST = 20, 32  # 19 + "Z"; 19 + ".ffffff" + "+hh:mm"
_FRACTION = 10 ** np.arange(5, -1, -1)  # microseconds of fraction digits 20..25


def usual_times_ms(values: Sequence[str]) -> np.ndarray:
    """`_time_ms` of each value, for the whole batch at once (numpy over the
    characters of the values of each length); `UNUSUAL` where a value is not of the
    usual shape or its hour is not valid (those take `_time_ms` one by one, with its
    refusals). The same milliseconds: each distinct (date, hour, zone) by
    `_hour_seconds` (the validator's own parse), the rest as `_time_ms` computes
    them, float rounding included."""
    out = np.full(len(values), UNUSUAL, dtype=np.int64)
    lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
    for length in np.unique(lengths).tolist():
        if _SHORTEST <= length <= _LONGEST:
            at = np.flatnonzero(lengths == length)
            group = list(map(values.__getitem__, at.tolist()))
            text = "".join(group).encode("utf-8", "replace")
            if len(text) == length * len(group):  # ASCII only
                chars = np.frombuffer(text, dtype=np.uint8).reshape(len(group), length)
                out[at] = _usual_of_length(chars, group)
    return out


def _usual_of_length(c: np.ndarray, values: list[str]) -> np.ndarray:
    """usual_times_ms of values all `c.shape[1]` ASCII characters long (c: their bytes)."""
    n, length = c.shape
    out = np.full(n, UNUSUAL, dtype=np.int64)
    d = c.astype(np.int64) - ord("0")
    digit = d <= 9  # uint8 minus '0' below zero wraps far above 9
    digit &= d >= 0
    ok = digit[:, _DIGITS].all(axis=1)
    for pos, char in _PUNCT:
        ok &= c[:, pos] == ord(char)
    zulu = c[:, -1] == ord("Z")
    zone = np.where(zulu, length - 1, length - 6)  # where the zone starts
    rows = np.arange(n)[:, None]
    z = np.minimum(zone[:, None] + np.arange(6)[None, :], length - 1)
    zc, zd, zn = c[rows, z], digit[rows, z], d[rows, z]
    ok &= zulu | (((zc[:, 0] == ord("+")) | (zc[:, 0] == ord("-"))) & zd[:, 1] & zd[:, 2] & (zc[:, 3] == ord(":"))
                  & zd[:, 4] & zd[:, 5])
    # nothing between the seconds and the zone, or "." and 1 to 6 digits
    if length > 20:
        places = np.arange(20, min(length, 26))[None, :]
        in_fraction = places < zone[:, None]
        ok &= (zone == 19) | ((zone >= 21) & (c[:, 19] == ord(".")) & (digit[:, 20:26] | ~in_fraction).all(axis=1))
        ok &= zone <= 26
        fraction = (np.where(in_fraction, d[:, 20:26], 0) * _FRACTION[:places.shape[1]]).sum(axis=1)
    else:
        ok &= zone == 19
        fraction = np.zeros(n, dtype=np.int64)
    minute, second = d[:, 14] * 10 + d[:, 15], d[:, 17] * 10 + d[:, 18]
    ok &= (minute < 60) & (second < 60)
    if not ok.any():
        return out
    # each distinct (date, hour, zone) once through the validator's parse
    key = d[:, 0] * 10 + d[:, 1]
    for pos in (2, 3, 5, 6, 8, 9, 11, 12):
        key = key * 10 + d[:, pos]
    zone_key = np.where(zulu, 0, np.where(zc[:, 0] == ord("-"), 20_000, 10_000)
                        + zn[:, 1] * 1000 + zn[:, 2] * 100 + zn[:, 4] * 10 + zn[:, 5])
    keys = np.where(ok, key * 100_000 + zone_key, -1)
    unique, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    hour_seconds = np.zeros(len(unique), dtype=np.int64)
    valid = unique >= 0
    for k, i in enumerate(first.tolist()):
        if valid[k]:
            value = values[i]
            try:
                hour_seconds[k] = _hour_seconds(value[:10], value[11:13], value[int(zone[i]):], "ts")
            except _Reject:
                valid[k] = False
    ok &= valid[inverse]
    seconds = hour_seconds[inverse] + minute * 60 + second
    ms = np.trunc((seconds * 1_000_000 + fraction) / 1_000_000 * 1000)  # as _time_ms: float rounding
    ok &= (ms >= MIN_TS_MS) & (ms < MAX_TS_MS)
    out[ok] = ms[ok].astype(np.int64)
    return out


def _common(line: _Base, kind: str, ts_ms: int) -> dict:
    return {"event_id": line.event_id, "kind": kind, "ts": line.ts, "ts_ms": ts_ms}


def _order(line: OrderLine, ts_ms: int, received_ms: int) -> dict:
    event = _common(line, "order", ts_ms)
    event.update(order_id=line.order_id, institution_id=line.institution_id, region_code=line.region_code,
                 area=line.area, grassroots=line.grassroots, distributor_id=line.distributor_id,
                 manufacturer_id=line.manufacturer_id, product_id=line.product_id,
                 product_kind=line.product_kind, vbp=line.vbp, quantity=line.quantity,
                 unit_price=line.unit_price)
    return event


def _response(line: ResponseLine, ts_ms: int, received_ms: int) -> dict:
    event = _common(line, "response", ts_ms)
    event.update(order_id=line.order_id, distributor_id=line.distributor_id, decision=line.decision,
                 confirmed_quantity=line.confirmed_quantity, reason=line.reason)
    return event


def _shipment(line: ShipmentLine, ts_ms: int, received_ms: int) -> dict:
    event = _common(line, "shipment", ts_ms)
    event.update(order_id=line.order_id, shipment_id=line.shipment_id, distributor_id=line.distributor_id,
                 quantity=line.quantity)
    return event


def _arrival(line: ArrivalLine, ts_ms: int, received_ms: int) -> dict:
    event = _common(line, "arrival", ts_ms)
    event.update(order_id=line.order_id, shipment_id=line.shipment_id, institution_id=line.institution_id,
                 quantity=line.quantity, received_at=line.received_at, received_ms=received_ms)
    return event


_BUILD = {OrderLine: _order, ResponseLine: _response, ShipmentLine: _shipment, ArrivalLine: _arrival,
          TickLine: lambda line, ts_ms, received_ms: _common(line, "tick", ts_ms)}
KIND_OF = {OrderLine: "order", ResponseLine: "response", ShipmentLine: "shipment", ArrivalLine: "arrival",
           TickLine: "tick"}
LINE_OF = {kind: cls for cls, kind in KIND_OF.items()}


def as_event(line: _Base, ts_ms: int, received_ms: int) -> dict:
    """A line the fast path accepted, as the typed dict `parse_event` gives for it."""
    return _BUILD[type(line)](line, ts_ms, received_ms)


def as_line(event: dict) -> _Base:
    """An event `parse_event` accepted, as the fast path's Struct (the rare line
    msgspec refused and the full validator took)."""
    cls = LINE_OF[event["kind"]]
    return cls(**{name: event[name] for name in cls.__struct_fields__ if name in event})


def _answer_rules(line: _Base) -> bool:
    """What the Structs cannot say of a response: a reason unless accepted, a
    rejection confirming 0."""
    if type(line) is not ResponseLine:
        return True
    if line.decision != "accepted" and line.reason is None:
        return False
    return not (line.decision == "rejected" and line.confirmed_quantity != 0)


def _utf8(raw: bytes) -> bool:
    """msgspec skips the fields it does not know without reading their text; orjson
    refuses invalid UTF-8 anywhere in a message."""
    try:
        raw.decode()
    except UnicodeDecodeError:
        return False
    return True


# What msgspec raises on a line it cannot take; the full validator then gives the
# line its reason. A deeply nested value (an unknown field of a few thousand
# brackets) raises RecursionError, not DecodeError: uncaught, it stopped the agent.
_UNDECODABLE = (msgspec.DecodeError, RecursionError)


def _struct_one(raw: bytes | None) -> _Base | AnyEvent | Invalid:
    if not isinstance(raw, bytes) or not _utf8(raw):
        return parse_event(raw)
    try:
        return _decoder.decode(raw)
    except _UNDECODABLE:
        return parse_event(raw)


def _structs(values: Sequence[bytes | None]) -> list:
    """Each message as its Struct (types and bounds checked, times and the answer
    rules not yet), or `parse_event`'s answer where msgspec did not take it."""
    out: list = []
    for start in range(0, len(values), CHUNK):
        chunk = values[start:start + CHUNK]
        lines = None
        # One call for the chunk when every message is one line; a newline inside a
        # message, a message without a value (or any bad line) sends the chunk message
        # by message. (Joined, the chunk has one newline fewer than messages unless a
        # message holds one.)
        try:
            joined = b"\n".join(chunk)
        except TypeError:
            joined = None
        if joined is not None and joined.count(b"\n") == len(chunk) - 1:
            try:
                lines = _decoder.decode_lines(joined) if _utf8(joined) else None
            except _UNDECODABLE:
                lines = None
        if lines is not None and len(lines) == len(chunk):
            out.extend(lines)
        else:
            out.extend(_struct_one(raw) for raw in chunk)
    return out


class Decoded:
    """A batch of messages decoded: per message, `items[i]` is the fast path's Struct
    (accepted: every check of `parse_event` passed), an event dict `parse_event`
    accepted (a line msgspec did not take), or `Invalid`; `ts_ms[i]` and
    `received_ms[i]` are an accepted event's times (0 where none)."""

    __slots__ = ("items", "ts_ms", "received_ms")

    def __init__(self, items: list, ts_ms: list[int], received_ms: list[int]):
        self.items, self.ts_ms, self.received_ms = items, ts_ms, received_ms

    def __len__(self) -> int:
        return len(self.items)

    def event(self, i: int) -> AnyEvent | Invalid:
        """Message i as `parse_event` gives it."""
        item = self.items[i]
        return as_event(item, self.ts_ms[i], self.received_ms[i]) if isinstance(item, _Base) else item


def decode_columns(values: Sequence[bytes | None]) -> Decoded:
    """Each message decoded and validated, as `parse_event` would, without a dict
    per accepted line; its times parsed for the whole batch at once
    (`usual_times_ms`). Never raises."""
    items = _structs(values)
    n = len(items)
    types = list(map(type, items))
    fast = [i for i, cls in enumerate(types) if cls is not dict and cls is not Invalid]
    arrivals = [i for i, cls in enumerate(types) if cls is ArrivalLine]
    answers = [i for i, cls in enumerate(types) if cls is ResponseLine]
    taken = [i for i, cls in enumerate(types) if cls is dict]
    ts = np.zeros(n, dtype=np.int64)
    received = np.zeros(n, dtype=np.int64)
    ts[fast] = usual_times_ms(list(map(attrgetter("ts"), map(items.__getitem__, fast))))
    received[arrivals] = usual_times_ms(list(map(attrgetter("received_at"), map(items.__getitem__, arrivals))))
    for i in taken:
        ts[i], received[i] = items[i]["ts_ms"], items[i].get("received_ms", 0)
    ts_ms, received_ms = ts.tolist(), received.tolist()
    # the lines left to check one by one: a time of an unusual shape, an answer's rules
    unusual = np.flatnonzero((ts == UNUSUAL) | (received == UNUSUAL)).tolist()
    for i in sorted(set(unusual).union(i for i in answers if not _answer_rules(items[i]))):
        line = items[i]
        try:
            if type(line) is ArrivalLine:  # the validator's order: received_at first
                received_ms[i] = _time_ms(line.received_at, "received_at")
            ts_ms[i] = _time_ms(line.ts, "ts")
            accepted = _answer_rules(line)
        except _Reject:
            accepted = False
        if not accepted:
            items[i] = event = parse_event(values[i])
            ts_ms[i], received_ms[i] = (0, 0) if isinstance(event, Invalid) else (
                event["ts_ms"], event.get("received_ms", 0))
    return Decoded(items, ts_ms, received_ms)


def decode_batch(values: Sequence[bytes | None]) -> list[AnyEvent | Invalid]:
    """Each message decoded and validated, as `parse_event` would; never raises."""
    decoded = decode_columns(values)
    return [decoded.event(i) for i in range(len(decoded))]
