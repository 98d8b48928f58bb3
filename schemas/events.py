"""The five input event kinds (contract section 1) as typed records, and their validation.

Records are dicts typed by the classes below (TypedDict): the lifecycle keeps an
event's fields as a dict anyway, and building a Faust Record per event, then its
dict, cost more than decoding and checking it (~16 us of ~17 per event).

`parse_event(raw)` turns a message's bytes into a record or an `Invalid` with a
short reason code (a metric label) and a sentence for the dead-letter topic. It
checks what `../shared/contract/events.schema.json` says: types (a bool is not an
int), enums, required fields, bounds, RFC 3339 times with an offset.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, TypedDict, Union

import orjson

from schemas.limits import MAX_ID, MAX_TS_MS, MAX_UNIT_PRICE, MIN_TS_MS, UINT32_MAX

KINDS = ("order", "response", "shipment", "arrival", "tick")
DECISIONS = ("accepted", "partial", "rejected")
REASONS = ("out_of_stock", "price", "qualification", "remote_area", "other")
AREAS = ("urban", "rural")
PRODUCT_KINDS = ("drug", "consumable")
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)
_REGION = re.compile(r"^[0-9]{6}$")


class Event(TypedDict):
    """Fields every event has; `ts_ms` is `ts` as epoch milliseconds (derived)."""

    event_id: str
    kind: str
    ts: str
    ts_ms: int


class Order(Event):
    order_id: str
    institution_id: str
    region_code: str
    area: str
    grassroots: bool
    distributor_id: str
    manufacturer_id: str
    product_id: str
    product_kind: str
    vbp: bool
    quantity: int
    unit_price: float


class Response(Event):
    order_id: str
    distributor_id: str
    decision: str
    confirmed_quantity: int
    reason: str | None


class Shipment(Event):
    order_id: str
    shipment_id: str
    distributor_id: str
    quantity: int


class Arrival(Event):
    order_id: str
    shipment_id: str
    institution_id: str
    quantity: int
    received_at: str
    received_ms: int


class Tick(Event):
    pass


AnyEvent = Union[Order, Response, Shipment, Arrival, Tick]


# Each dead-letter reason's name, Chinese first: the head of every dead letter's
# detail (the people who read the dead letters read Chinese first); the code stays
# the metric label and the `reason` column.
DEAD_LETTER_REASONS: dict[str, tuple[str, str]] = {
    "not_json": ("不是有效的 JSON", "not JSON"),
    "not_object": ("不是 JSON 对象", "not a JSON object"),
    "unknown_kind": ("未知的事件类型", "unknown kind"),
    "missing_field": ("缺少必填字段", "a required field is missing"),
    "bad_time": ("时间格式无效", "bad time"),
    "bad_field": ("字段值无效或超出存储范围", "a value of the wrong type or out of range"),
    "future_timestamp": ("时间戳超前于当前时间", "stamped in the future"),
    "too_large": ("消息过大", "message too large"),
    "duplicate_order": ("订单重复下达", "order placed again"),
    "conflicting_duplicate": ("事件编号重复但内容不同", "same event_id, other content"),
    "inconsistent": ("数量与订单不符", "quantity inconsistent with the order"),
    "orphan": ("找不到对应订单", "no such order"),
}


def dead_letter_detail(reason: str, detail: str) -> str:
    """A dead letter's detail as stored and sent: the reason's Chinese name, then the
    English sentence that gives the particulars."""
    zh, en = DEAD_LETTER_REASONS.get(reason, (reason, reason))
    return f"{zh}（{en}）：{detail}"


@dataclass(frozen=True)
class Invalid:
    """Why a message cannot be used: `reason` is a short code, `detail` a sentence."""

    reason: str
    detail: str
    event_id: str | None = None
    original: bytes | None = None  # what to keep of the message, when not all of it (too_large)


class _Reject(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _shown(value: Any, limit: int = 80) -> str:
    """A value for a dead-letter detail, cut short (the original is kept beside it)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def parse_time(value: Any, name: str) -> int:
    """RFC 3339 with an offset -> epoch milliseconds."""
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise _Reject("bad_time", f"{name} must be an RFC 3339 time with an offset, got {_shown(value)}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _Reject("bad_time", f"{name} is not a valid date-time: {_shown(value)}") from None
    ms = int(moment.timestamp() * 1000)
    if not MIN_TS_MS <= ms < MAX_TS_MS:
        raise _Reject("bad_field", f"{name} must be from 1900 to 2199 (what the store holds), got {_shown(value)}")
    return ms


def _field(doc: dict, name: str, check: Callable[[Any], bool], expected: str) -> Any:
    if name not in doc:
        raise _Reject("missing_field", f"{doc.get('kind')} event lacks required field {name!r}")
    value = doc[name]
    if not check(value):
        raise _Reject("bad_field", f"{name} must be {expected}, got {_shown(value)}")
    return value


def _is_id(v: Any) -> bool:
    return isinstance(v, str) and 0 < len(v) <= MAX_ID


def _is_int(minimum: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and minimum <= v <= UINT32_MAX


def _is_price(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= MAX_UNIT_PRICE


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def _one_of(options: tuple[str, ...]) -> Callable[[Any], bool]:
    return lambda v: v in options


def _ident(doc: dict, name: str) -> str:
    return _field(doc, name, _is_id, f"a string of 1..{MAX_ID} characters")


def _order(doc: dict, common: dict) -> Order:
    return Order(
        **common,
        order_id=_ident(doc, "order_id"),
        institution_id=_ident(doc, "institution_id"),
        region_code=_field(doc, "region_code", lambda v: isinstance(v, str) and bool(_REGION.match(v)), "a 6-digit division code"),
        area=_field(doc, "area", _one_of(AREAS), f"one of {AREAS}"),
        grassroots=_field(doc, "grassroots", _is_bool, "true or false"),
        distributor_id=_ident(doc, "distributor_id"),
        manufacturer_id=_ident(doc, "manufacturer_id"),
        product_id=_ident(doc, "product_id"),
        product_kind=_field(doc, "product_kind", _one_of(PRODUCT_KINDS), f"one of {PRODUCT_KINDS}"),
        vbp=_field(doc, "vbp", _is_bool, "true or false"),
        quantity=_field(doc, "quantity", _is_int(1), f"an integer from 1 to {UINT32_MAX}"),
        unit_price=float(_field(doc, "unit_price", _is_price, f"a number from 0 to {MAX_UNIT_PRICE:.0e}")),
    )


def _response(doc: dict, common: dict) -> Response:
    decision = _field(doc, "decision", _one_of(DECISIONS), f"one of {DECISIONS}")
    confirmed = _field(doc, "confirmed_quantity", _is_int(0), f"an integer from 0 to {UINT32_MAX}")
    reason = doc.get("reason")
    if decision != "accepted" or reason is not None:
        reason = _field(doc, "reason", _one_of(REASONS), f"one of {REASONS}")
    if decision == "rejected" and confirmed != 0:
        raise _Reject("bad_field", f"a rejected response must confirm 0, got {confirmed}")
    return Response(
        **common,
        order_id=_ident(doc, "order_id"),
        distributor_id=_ident(doc, "distributor_id"),
        decision=decision,
        confirmed_quantity=confirmed,
        reason=reason,
    )


def _shipment(doc: dict, common: dict) -> Shipment:
    return Shipment(
        **common,
        order_id=_ident(doc, "order_id"),
        shipment_id=_ident(doc, "shipment_id"),
        distributor_id=_ident(doc, "distributor_id"),
        quantity=_field(doc, "quantity", _is_int(1), f"an integer from 1 to {UINT32_MAX}"),
    )


def _arrival(doc: dict, common: dict) -> Arrival:
    if "received_at" not in doc:
        raise _Reject("missing_field", "arrival event lacks required field 'received_at'")
    received_ms = parse_time(doc["received_at"], "received_at")
    return Arrival(
        **common,
        order_id=_ident(doc, "order_id"),
        shipment_id=_ident(doc, "shipment_id"),
        institution_id=_ident(doc, "institution_id"),
        quantity=_field(doc, "quantity", _is_int(0), f"an integer from 0 to {UINT32_MAX}"),
        received_at=doc["received_at"],
        received_ms=received_ms,
    )


_BUILDERS = {
    "order": _order,
    "response": _response,
    "shipment": _shipment,
    "arrival": _arrival,
    "tick": lambda doc, common: Tick(**common),
}


def parse_event(raw: bytes | str | None) -> AnyEvent | Invalid:
    """Decode and validate one message; never raises."""
    if raw is None:
        return Invalid("not_json", "empty message")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Invalid("not_json", f"not valid JSON (UTF-8): {exc}")
    if not isinstance(doc, dict):
        return Invalid("not_object", f"an event must be a JSON object, got {type(doc).__name__}")
    return validate_doc(doc)


def validate_doc(doc: dict) -> AnyEvent | Invalid:
    """Validate a decoded JSON object; never raises."""
    event_id = doc.get("event_id") if _is_id(doc.get("event_id")) else None
    try:
        return validate(doc)
    except _Reject as exc:
        return Invalid(exc.reason, exc.detail, event_id)


def validate(doc: dict) -> AnyEvent:
    """Validate a decoded event; raises `_Reject` (use `parse_event` from outside)."""
    event_id = _ident(doc, "event_id")
    kind = doc.get("kind")
    if not isinstance(kind, str) or kind not in _BUILDERS:
        raise _Reject("unknown_kind", f"kind must be one of {KINDS}, got {_shown(kind)}")
    if "ts" not in doc:
        raise _Reject("missing_field", f"{kind} event lacks required field 'ts'")
    common = {"event_id": event_id, "kind": kind, "ts": doc["ts"], "ts_ms": parse_time(doc["ts"], "ts")}
    return _BUILDERS[kind](doc, common)
