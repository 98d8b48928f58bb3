"""Intake: what a message must be before it may change anything.

Pure: the wall clock is passed in (`now_ms`). `Intake.admit` decodes and validates
one message (schemas/events.py) and adds the checks that depend on where and when
it is read:

- `too_large`: a message over `max_bytes`, or one a publisher replaced by its
  truncated copy because the broker would not take it (header `supplymon-too-large`,
  the original size): kept as a truncated copy, never decoded;
- `future_timestamp`: stamped more than `max_future_skew` past the wall clock.
  Stream time moves with the latest event of each partition, so one such stamp
  (a wrong clock, a typo in the year, a lie) would pass every open order's
  deadlines at once; refused, it moves nothing. This compares event time with the
  wall clock only to judge the input's validity: no rule reads the wall clock.
  A replay of a simulated future says so (`allow_future`), and the events an
  embedded stack republishes from its own store (header `supplymon-rebuilt`) were
  admitted once already.
"""
from __future__ import annotations

from typing import Iterable, Sequence

from schemas.events import AnyEvent, Invalid, parse_event
from schemas.fast_events import Decoded, decode_columns

TOO_LARGE_HEADER = "supplymon-too-large"
REBUILT_HEADER = "supplymon-rebuilt"
KEPT_BYTES = 4096  # of an oversized message, the start kept in the dead letters


def truncated(raw: bytes, keep: int = KEPT_BYTES) -> bytes:
    """The first `keep` bytes of `raw`, not cutting a UTF-8 character in two."""
    if len(raw) <= keep:
        return raw
    cut = keep
    while cut > 0 and 0x80 <= raw[cut] < 0xC0:  # a continuation byte: back to its start
        cut -= 1
    return raw[:cut]


def header(headers: Iterable | dict | None, name: str) -> bytes | None:
    """A message header's value (Kafka headers come as pairs, or a dict)."""
    if not headers:
        return None
    pairs = headers.items() if isinstance(headers, dict) else headers
    for key, value in pairs:
        if key == name:
            return value if isinstance(value, bytes) else str(value).encode()
    return None


def too_large(raw: bytes, size: int, limit: int, by_publisher: bool = False) -> Invalid:
    over = (f"over what its publisher could send (the limit of {limit:,} bytes, or the broker's)" if by_publisher
            else f"over the limit of {limit:,} bytes")
    return Invalid("too_large", f"a message of {size:,} bytes is {over}; "
                                f"its first {min(size, KEPT_BYTES):,} bytes are kept", None, truncated(raw))


def future_timestamp(event: AnyEvent, now_ms: int, max_skew_ms: int) -> Invalid | None:
    """Refused if stamped more than `max_skew_ms` past `now_ms` (the wall clock)."""
    ahead = event["ts_ms"] - now_ms
    if ahead <= max_skew_ms:
        return None
    return Invalid("future_timestamp",
                   f"ts {event['ts']} is {ahead / 60_000:,.1f} minutes past the wall clock when read "
                   f"(at most {max_skew_ms / 60_000:g} allowed); it moves no time",
                   event["event_id"])


class Intake:
    """The admission rules of one worker (settings and rules fixed at start)."""

    def __init__(self, max_bytes: int, max_future_skew_ms: int, allow_future: bool, trust_rebuilt: bool):
        self.max_bytes = max_bytes
        self.max_future_skew_ms = max_future_skew_ms
        self.allow_future = allow_future
        self.trust_rebuilt = trust_rebuilt

    def admit(self, raw: bytes | None, now_ms: int, headers: Iterable | dict | None = None) -> AnyEvent | Invalid:
        """The event, or why it is refused; never raises."""
        refused = self._oversized(raw, headers)
        if refused is not None:
            return refused
        return self._in_time(parse_event(raw), now_ms, headers)

    def admit_batch(self, messages: Sequence[tuple[bytes | None, Iterable | dict | None]],
                    now_ms: int) -> list[AnyEvent | Invalid]:
        """`admit` for each (value, headers), the lines decoded a batch at a time
        (schemas/fast_events.py, equal to `parse_event` line by line)."""
        admitted = self.admit_columns(messages, now_ms)
        return [admitted.event(i) for i in range(len(admitted))]

    def admit_columns(self, messages: Sequence[tuple[bytes | None, Iterable | dict | None]],
                      now_ms: int, decoded: Decoded | None = None) -> Decoded:
        """`admit_batch`, each accepted line kept as the fast path decoded it (no dict
        per event; schemas/fast_events.py `Decoded`), `Invalid` for each refused one.
        `decoded`: the messages' values as `decode_columns` gives them, one item per
        message, when the caller has decoded them already (the direct replay decodes
        each line once, to route it); the size and time checks are made here all the same."""
        limit, oversized = self.max_bytes, self._oversized
        # (most messages: no header, a usual size; checked inline, no call each)
        items: list = [None if not headers and (raw is None or len(raw) <= limit) else oversized(raw, headers)
                       for raw, headers in messages]
        if items.count(None) == len(items):  # none refused for its size: every message decoded, as given
            if decoded is None:
                decoded = decode_columns([raw for raw, _ in messages])
            items, ts_ms, received_ms = list(decoded.items), decoded.ts_ms, decoded.received_ms
        else:
            todo = [i for i, refused in enumerate(items) if refused is None]
            ts_ms, received_ms = [0] * len(items), [0] * len(items)
            if decoded is None:
                decoded = decode_columns([messages[i][0] for i in todo])
            else:
                decoded = Decoded([decoded.items[i] for i in todo], [decoded.ts_ms[i] for i in todo],
                                  [decoded.received_ms[i] for i in todo])
            for j, i in enumerate(todo):
                items[i], ts_ms[i], received_ms[i] = decoded.items[j], decoded.ts_ms[j], decoded.received_ms[j]
        admitted = Decoded(items, ts_ms, received_ms)
        if not self.allow_future:
            bound = now_ms + self.max_future_skew_ms
            for i in [i for i, ts in enumerate(ts_ms) if ts > bound]:
                if isinstance(items[i], Invalid):
                    continue
                if self.trust_rebuilt and header(messages[i][1], REBUILT_HEADER) is not None:
                    continue
                items[i] = future_timestamp(admitted.event(i), now_ms, self.max_future_skew_ms)
        return admitted

    def _oversized(self, raw: bytes | None, headers: Iterable | dict | None) -> Invalid | None:
        declared = header(headers, TOO_LARGE_HEADER)
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                size = len(raw or b"")
            return too_large(raw or b"", size, self.max_bytes, by_publisher=True)
        if raw is not None and len(raw) > self.max_bytes:
            return too_large(raw, len(raw), self.max_bytes)
        return None

    def _in_time(self, event: AnyEvent | Invalid, now_ms: int, headers: Iterable | dict | None) -> AnyEvent | Invalid:
        if isinstance(event, Invalid) or self.allow_future:
            return event
        if self.trust_rebuilt and header(headers, REBUILT_HEADER) is not None:
            return event
        return future_timestamp(event, now_ms, self.max_future_skew_ms) or event
