"""What intake costs per event (`python -m bench.intake`): decoding and validating
(schemas/events.py, with the store's bounds), the intake's added checks (size,
future stamp: supplymon/core/intake.py) and the content fingerprint the order state
keeps to tell a repeat from a conflicting duplicate. The same generated history as
the pipeline bench; the best of a few rounds, in microseconds per event."""
from __future__ import annotations

import argparse
import time

import orjson

from schemas.events import parse_event
from supplymon.core.intake import Intake
from supplymon.core.lifecycle import content_fingerprint
from supplymon.settings import Rules
from supplymon.simulate import generate


def best_us(action, items, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for item in items:
            action(item)
        best = min(best, time.perf_counter() - started)
    return best / len(items) * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    lines = [orjson.dumps(e) for e in generate(days=args.days, orders_per_day=3000, seed=1)]
    intake = Intake(1_000_000, Rules().ms("max_future_skew_minutes"), allow_future=False, trust_rebuilt=False)
    now = int(time.time() * 1000)
    events = [e for e in map(parse_event, lines) if e["kind"] != "tick"]
    print(f"{len(lines):,} events")
    print(f"parse_event (decode + validate):  {best_us(parse_event, lines, args.rounds):.2f} us/event")
    print(f"Intake.admit (+ size, future):    {best_us(lambda raw: intake.admit(raw, now), lines, args.rounds):.2f} us/event")
    print(f"content_fingerprint:              {best_us(content_fingerprint, events, args.rounds):.2f} us/event")


if __name__ == "__main__":
    main()
