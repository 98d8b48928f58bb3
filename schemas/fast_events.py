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
"""
from __future__ import annotations

import functools
import re
from typing import Annotated, Literal, Sequence, Union

import msgspec

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


def _common(line: _Base, kind: str) -> dict:
    return {"event_id": line.event_id, "kind": kind, "ts": line.ts, "ts_ms": _time_ms(line.ts, "ts")}


def _order(line: OrderLine) -> dict:
    event = _common(line, "order")
    event.update(order_id=line.order_id, institution_id=line.institution_id, region_code=line.region_code,
                 area=line.area, grassroots=line.grassroots, distributor_id=line.distributor_id,
                 manufacturer_id=line.manufacturer_id, product_id=line.product_id,
                 product_kind=line.product_kind, vbp=line.vbp, quantity=line.quantity,
                 unit_price=line.unit_price)
    return event


def _response(line: ResponseLine) -> dict | None:
    if line.decision != "accepted" and line.reason is None:
        return None
    if line.decision == "rejected" and line.confirmed_quantity != 0:
        return None
    event = _common(line, "response")
    event.update(order_id=line.order_id, distributor_id=line.distributor_id, decision=line.decision,
                 confirmed_quantity=line.confirmed_quantity, reason=line.reason)
    return event


def _shipment(line: ShipmentLine) -> dict:
    event = _common(line, "shipment")
    event.update(order_id=line.order_id, shipment_id=line.shipment_id, distributor_id=line.distributor_id,
                 quantity=line.quantity)
    return event


def _arrival(line: ArrivalLine) -> dict:
    received_ms = _time_ms(line.received_at, "received_at")  # the validator's order: received_at first
    event = _common(line, "arrival")
    event.update(order_id=line.order_id, shipment_id=line.shipment_id, institution_id=line.institution_id,
                 quantity=line.quantity, received_at=line.received_at, received_ms=received_ms)
    return event


_BUILD = {OrderLine: _order, ResponseLine: _response, ShipmentLine: _shipment, ArrivalLine: _arrival,
          TickLine: lambda line: _common(line, "tick")}


def _build(line: _Base, raw: bytes) -> AnyEvent | Invalid:
    try:
        event = _BUILD[type(line)](line)
    except _Reject:
        event = None
    return event if event is not None else parse_event(raw)


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


def _decode_one(raw: bytes | None) -> AnyEvent | Invalid:
    if not isinstance(raw, bytes) or not _utf8(raw):
        return parse_event(raw)
    try:
        line = _decoder.decode(raw)
    except _UNDECODABLE:
        return parse_event(raw)
    return _build(line, raw)


def decode_batch(values: Sequence[bytes | None]) -> list[AnyEvent | Invalid]:
    """Each message decoded and validated, as `parse_event` would; never raises."""
    out: list[AnyEvent | Invalid] = []
    for start in range(0, len(values), CHUNK):
        chunk = values[start:start + CHUNK]
        lines = None
        # One call for the chunk when every message is one line; a newline inside a
        # message (or any bad line) sends the chunk message by message.
        if all(isinstance(raw, bytes) and b"\n" not in raw for raw in chunk):
            joined = b"\n".join(chunk)
            try:
                lines = _decoder.decode_lines(joined) if _utf8(joined) else None
            except _UNDECODABLE:
                lines = None
        if lines is not None and len(lines) == len(chunk):
            out.extend(_build(line, raw) for line, raw in zip(lines, chunk))
        else:
            out.extend(_decode_one(raw) for raw in chunk)
    return out
