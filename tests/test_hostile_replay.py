"""Hostile lines mixed into a valid history, end to end (embedded broker, worker,
chdb): the replay exits 0, the valid events' facts, alerts and windowed tables are
exactly those of the clean history, and every hostile line is in the dead letters
with a reason. Hypothesis draws the hostile set; one example (a few dozen lines
of every kind, plus a 5 MB line and a tick stamped 2099), because each example is
two replays of seconds each; tests/test_hostile_intake.py tries many in process."""
from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import orjson
from hypothesis import HealthCheck, Phase, given, settings

from supplymon.core.intake import truncated
from supplymon.simulate import generate
from tests.conftest import sql_rows, supplymon
from tests.hostile import Hostile, hostile_lines, huge
from tests.test_end_to_end import ALERTS_SQL, DAILY_SQL, FACT_SQL

EVENTS = list(generate(days=3, orders_per_day=120, seed=17))
FIVE_MB = huge(EVENTS, 10_000, 5 * 1024 * 1024)
TICK_2099 = Hostile(orjson.dumps({"event_id": "tick-2099", "kind": "tick", "ts": "2099-01-01T00:00:00+08:00"}),
                    frozenset({"future_timestamp"}))
DEAD_SQL = "SELECT reason, detail, original FROM supplymon.dead_letters FINAL"
_clean: list = []  # the clean history's rows, replayed once


def replay(lines: list[bytes], data: Path) -> list[list[dict]]:
    history = data.parent / f"{data.name}.jsonl"
    history.write_bytes(b"".join(line + b"\n" for line in lines))
    result = supplymon("replay", str(history), "--embedded", "--data-dir", str(data))
    assert result.returncode == 0, result.stderr[-3000:]
    return [sql_rows(data, sql) for sql in (FACT_SQL, ALERTS_SQL, DAILY_SQL, DEAD_SQL)]


def mixed(hostile: list[Hostile]) -> list[bytes]:
    """The valid history with the hostile lines spread through it; a duplicate right
    after the event it contradicts."""
    lines = [orjson.dumps(e) for e in EVENTS]
    first = {}
    for i, event in enumerate(EVENTS):
        first.setdefault(event["event_id"], i)
    placed: dict[int, list[bytes]] = {}
    for n, h in enumerate(hostile):
        at = first[h.after] if h.after else (n * 7919) % len(lines)
        placed.setdefault(at, []).append(h.line)
    out = []
    for i, line in enumerate(lines):
        out.append(line)
        out.extend(placed.get(i, ()))
    return out


def expected_original(line: bytes) -> str:
    kept = truncated(line) if len(line) > 1_000_000 else line
    return kept.decode("utf-8", "replace")


# No shrinking: each attempt is two replays; a failure reports its lines as drawn.
@settings(max_examples=1, deadline=None, database=None, phases=[Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(hostile_lines(EVENTS, 40, 60))
def test_hostile_lines_change_nothing_of_the_valid_history(hostile):
    hostile = hostile + [FIVE_MB, TICK_2099, huge(EVENTS, 10_001, 1_200_000)]
    with tempfile.TemporaryDirectory(prefix="supplymon-hostile-") as tmp:
        if not _clean:
            _clean.extend(replay([orjson.dumps(e) for e in EVENTS], Path(tmp) / "clean"))
        facts, alerts, daily, dead = replay(mixed(hostile), Path(tmp) / "hostile")
    clean_facts, clean_alerts, clean_daily, clean_dead = _clean
    assert clean_dead == [] and clean_facts and clean_alerts
    assert facts == clean_facts
    assert alerts == clean_alerts
    assert daily == clean_daily
    # Every hostile line is one dead letter (a refused tick too: it is not fanned out
    # to every input partition to be refused there 16 times), with a reason it may
    # have, and nothing else is.
    assert Counter(d["original"] for d in dead) == Counter(expected_original(h.line) for h in hostile)
    allowed = {expected_original(h.line): h.reasons for h in hostile}
    assert all(d["reason"] in allowed[d["original"]] for d in dead), [
        (d["original"][:200], d["reason"]) for d in dead if d["reason"] not in allowed[d["original"]]][:5]
    big = next(d for d in dead if d["original"] == expected_original(FIVE_MB.line))
    assert big["reason"] == "too_large" and f"{len(FIVE_MB.line):,} bytes" in big["detail"]
    assert len(FIVE_MB.line) > 5_000_000 and len(big["original"].encode()) <= 4096


def test_a_line_over_what_the_broker_takes_is_a_dead_letter_and_the_replay_goes_on(tmp_path):
    """A line the replay's own limit lets through but the producer (1 MiB requests)
    refuses: sent as its truncated copy instead, dead-lettered, the rest stored."""
    events = EVENTS[:200]
    big = huge(events, 0, 1_500_000).line
    history = tmp_path / "h.jsonl"
    history.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events[:100]) + big + b"\n"
                        + b"".join(orjson.dumps(e) + b"\n" for e in events[100:]))
    data = tmp_path / "data"
    result = supplymon("replay", str(history), "--embedded", "--data-dir", str(data), "--max-line-bytes", "3000000")
    assert result.returncode == 0, result.stderr[-3000:]
    (dead,) = sql_rows(data, DEAD_SQL)
    assert dead["reason"] == "too_large" and f"{len(big):,} bytes" in dead["detail"]
    assert dead["original"] == truncated(big).decode()
    stored = sql_rows(data, "SELECT event_id FROM supplymon.events_raw FINAL")
    assert {s["event_id"] for s in stored} == {e["event_id"] for e in events}
