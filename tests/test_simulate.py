"""The simulator's healthy traffic raises no early warning; each scenario raises
exactly the warning its story promises, for its subject, in time.

`tests/warnings_reference.py` feeds a generated history to the pure monitors of
supplymon/core/warnings.py (whose window arithmetic test_warnings.py pins at its
edges) and evaluates once, at its end. No broker, no store.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable

import orjson
import pytest

from supplymon.simulate import SCENARIOS, ScenarioError, Story, generate, min_days
from tests.conftest import supplymon
from tests.reference import HOUR, parse_ms
from tests.warnings_reference import expected_warnings


@dataclass(frozen=True)
class Warned:
    """One episode of an early warning (resolved_at None: still open at the end)."""

    kind: str
    subject: tuple[str, str] | str  # (product, region), (product, city), (manufacturer, city) or distributor
    scope: str  # low_delivery_rate: "all" / "grassroots"; otherwise ""
    raised_at: int
    resolved_at: int | None


def early_warnings(events: Iterable[dict]) -> list[Warned]:
    """The early-warning episodes a whole history raises, evaluated up to its last event."""
    return sorted((Warned(*w) for w in expected_warnings(events)), key=lambda w: (w.raised_at, w.kind))


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def expected(stories: list[Story]) -> set[tuple]:
    return {(s.kind, s.subject, scope) for s in stories for scope in (s.scopes or ("",))}


def assert_told(story: Story, warned: list[Warned]) -> list[Warned]:
    """Each scope of the story raised once, after the story began and by the rule's window."""
    mine = [w for w in warned if (w.kind, w.subject) == (story.kind, story.subject)]
    assert sorted(w.scope for w in mine) == sorted(story.scopes or ("",)), mine
    for w in mine:
        assert ms(story.starts_at) <= w.raised_at <= ms(story.due_by), (story, w)
    return mine


# -- healthy traffic ----------------------------------------------------------------

@pytest.mark.parametrize("seed, days, orders_per_day", [
    (1, 14, 400),
    (2, 16, 600),
    # 6-11 orders a day per product+region: >= 20 answered orders in 72 h, so the fill
    # rate counts; 9 days, so the surge's baseline (>= 7 whole days) is there at the end.
    (3, 9, 1300),
    # 40 days: the 30-day conduct windows fill, healthy price cuts reach every city.
    (4, 40, 500),
])
def test_healthy_traffic_raises_no_early_warning(seed, days, orders_per_day):
    history = generate(days=days, orders_per_day=orders_per_day, seed=seed)
    assert history.stories == []
    assert early_warnings(history) == []


def test_healthy_traffic_has_realistic_noise():
    events = list(generate(days=14, orders_per_day=800, seed=4))
    unique = {e["event_id"]: e for e in events}
    orders = [e for e in unique.values() if e["kind"] == "order"]
    answers: dict[str, dict] = {}
    for e in unique.values():
        if e["kind"] == "response":
            answers.setdefault(e["order_id"], e)
    decisions = Counter((r["decision"], r.get("reason")) for r in answers.values())
    share = {key: n / len(orders) for key, n in decisions.items()}
    # Occasional rejections, mostly small orders for price; partial confirmations for pack
    # sizes; out_of_stock rare.
    assert 0.004 < share[("rejected", "price")] < 0.02
    assert all(r["confirmed_quantity"] == 0 for r in answers.values() if r["decision"] == "rejected")
    assert 0.02 < share[("partial", "other")] < 0.07
    out_of_stock = sum(n for (_, reason), n in decisions.items() if reason == "out_of_stock")
    assert 0 < out_of_stock < 0.002 * len(orders)
    # Late answers (past the 48 h response deadline), unanswered orders, late receipt confirmations.
    at = {o["order_id"]: parse_ms(o["ts"]) for o in orders}
    assert sum(parse_ms(r["ts"]) - at[r["order_id"]] > 48 * HOUR for r in answers.values()) > 10
    assert len(orders) - len(answers) > 10
    confirmed_late = [a for a in unique.values() if a["kind"] == "arrival"
                      and parse_ms(a["ts"]) - parse_ms(a["received_at"]) > 24 * HOUR]
    assert len(confirmed_late) > 20
    # The platform sends a few events twice.
    assert 0.002 < (len(events) - len(unique)) / len(events) < 0.01


def test_demand_is_steady_so_surges_cannot_happen_by_chance():
    """Each day's orders are shared out among the products and regions by demand: a
    product+region's daily orders vary by one around its share of the day's total."""
    events = generate(days=10, orders_per_day=1500, seed=5, noise=False)
    daily = Counter((e["product_id"], e["region_code"], e["ts"][:10]) for e in events if e["kind"] == "order")
    per_subject: dict[tuple, list[int]] = defaultdict(list)
    for (product, region, _), n in daily.items():
        per_subject[(product, region)].append(n)
    for counts in per_subject.values():
        assert len(counts) == 10
        assert max(counts) - min(counts) <= 3, counts  # +-1 around a share of a total varying by ~5 %


def test_same_seed_same_history():
    def history(seed, scenario=None):
        return list(generate(days=3, orders_per_day=200, seed=seed, scenario=scenario))

    assert history(8) == history(8)
    assert history(8, "shortage") == history(8, "shortage")
    assert history(8) != history(9)


# -- scenarios ----------------------------------------------------------------------

def story_orders(story: Story, events: list[dict]) -> set[str]:
    """The orders a story may change: its distributor's or its product+region's orders
    from its start (for price-lag, the cut: its product's everywhere), and new ones."""
    out = set()
    for e in events:
        if e["kind"] != "order":
            continue
        if e["institution_id"] == f"INS{e['region_code']}":  # a far region's hospital: new orders
            out.add(e["order_id"])
        if parse_ms(e["ts"]) < ms(story.starts_at):
            continue
        if story.subject_type == "distributor":
            mine = e["distributor_id"] == story.distributor_id
        elif story.scenario == "price-lag":
            mine = e["product_id"] == story.product_id
        else:
            mine = (e["product_id"], e["region_code"]) == (story.product_id, story.region_code)
        if mine:
            out.add(e["order_id"])
    return out


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_story_leaves_the_rest_of_the_traffic_as_it_was(scenario):
    days = min_days(scenario)
    healthy = list(generate(days=days, orders_per_day=300, seed=6))
    told = generate(days=days, orders_per_day=300, seed=6, scenario=scenario)
    events = list(told)
    (story,) = told.stories
    touched = story_orders(story, events)
    assert touched

    def rest(history):
        return [e for e in history if e.get("order_id") not in touched]

    assert rest(events) == rest(healthy)
    assert [e for e in events if e.get("order_id") in touched] != [e for e in healthy if e.get("order_id") in touched]


def test_shortage_raises_supply_shortage_for_its_product_and_region():
    history = generate(days=8, orders_per_day=500, seed=7, scenario="shortage")
    warned = early_warnings(history)
    (story,) = history.stories
    assert story.kind == "supply_shortage" and story.subject_type == "product_region"
    assert {(w.kind, w.subject, w.scope) for w in warned} == expected(history.stories)
    (w,) = assert_told(story, warned)
    # Four institutions of the region are turned away on the story's first day: the third
    # one's answer raises it within 24 h.
    assert w.raised_at <= ms(story.starts_at + timedelta(hours=24))
    # Resolved once the turned-away orders have left the 72 h window and 24 h passed quietly.
    assert ms(story.ends_at) < w.resolved_at <= ms(story.ends_at + timedelta(hours=72 + 24))


def test_surge_raises_demand_surge_after_a_week_of_history():
    history = generate(days=13, orders_per_day=500, seed=7, scenario="surge")
    warned = early_warnings(history)
    (story,) = history.stories
    assert story.kind == "demand_surge"
    assert story.starts_at >= datetime(2026, 3, 1, tzinfo=story.starts_at.tzinfo) + timedelta(days=8)
    assert {(w.kind, w.subject, w.scope) for w in warned} == expected(history.stories)
    (w,) = assert_told(story, warned)
    # Two days of extra orders; the alert resolves when 24 h have passed without a surge.
    assert ms(story.ends_at) < w.resolved_at <= ms(story.ends_at + timedelta(hours=48))


def test_bad_distributor_raises_low_delivery_rate_overall_and_for_grassroots():
    history = generate(days=6, orders_per_day=500, seed=7, scenario="bad-distributor")
    warned = early_warnings(history)
    (story,) = history.stories
    assert story.kind == "low_delivery_rate" and story.subject == story.distributor_id
    assert {(w.kind, w.subject, w.scope) for w in warned} == expected(history.stories)
    for w in assert_told(story, warned):
        # Measured at a day's end (Asia/Shanghai): a whole number of days from the story's start.
        assert (w.raised_at - ms(story.starts_at)) % (24 * HOUR) == 0
        assert w.raised_at <= ms(story.starts_at + timedelta(days=3))
        assert w.resolved_at is None  # the distributor does not get better


CONDUCT_SCENARIOS = ("third-distributor", "price-lag", "price-split", "price-rise", "remote-refusal", "short-supply")


@pytest.mark.parametrize("scenario", CONDUCT_SCENARIOS)
def test_a_conduct_story_raises_its_alert_alone_and_in_time(scenario):
    history = generate(days=min_days(scenario), orders_per_day=500, seed=7, scenario=scenario)
    warned = early_warnings(history)
    (story,) = history.stories
    assert {(w.kind, w.subject, w.scope) for w in warned} == expected(history.stories)
    (w,) = assert_told(story, warned)
    if story.subject_type == "distributor":  # measured at a day's end
        assert (w.raised_at - ms(story.starts_at)) % (24 * HOUR) == 0


def test_conduct_alerts_resolve_as_their_rules_say():
    history = generate(days=20, orders_per_day=500, seed=7, scenario=("price-split", "price-rise"))
    warned = {w.kind: w for w in early_warnings(history)}
    split, rise = history.stories
    # A second price for 5 days: resolved 7 days after the last dearer order.
    assert ms(split.ends_at) < warned["price_inconsistent"].resolved_at <= ms(split.ends_at + timedelta(days=7))
    # Back at the old price: resolved at the first order at it.
    assert ms(rise.ends_at) <= warned["price_rise"].resolved_at <= ms(rise.ends_at + timedelta(days=1))


def test_all_tells_every_story_on_its_own_subject():
    history = generate(days=min_days("all"), orders_per_day=500, seed=7, scenario="all")
    warned = early_warnings(history)
    assert [s.scenario for s in history.stories] == list(SCENARIOS)
    assert len({s.subject for s in history.stories}) == len(SCENARIOS)
    assert {(w.kind, w.subject, w.scope) for w in warned} == expected(history.stories)
    for story in history.stories:
        assert_told(story, warned)
        # The same subject and start as when the story is told alone.
        (alone,) = generate(days=min_days("all"), orders_per_day=500, seed=7, scenario=story.scenario).stories
        assert (alone.subject, alone.starts_at) == (story.subject, story.starts_at)


def test_scenario_errors_say_what_is_wrong():
    with pytest.raises(ScenarioError, match="unknown scenario 'flood'.*shortage, surge, bad-distributor, third-distributor.*short-supply, all"):
        generate(days=3, scenario="flood")
    with pytest.raises(ScenarioError, match="surge needs at least 10 simulated days"):
        generate(days=5, scenario="surge")
    # A product ordered too rarely to have 8 days of history before the history ends.
    with pytest.raises(ScenarioError, match="surge:"):
        generate(days=10, orders_per_day=10, scenario="surge")


# -- command line -------------------------------------------------------------------

def test_cli_rejects_an_unknown_scenario(data_dir):
    result = supplymon("demo", "--scenario", "flood", "--data-dir", str(data_dir))
    assert result.returncode == 2
    assert "invalid choice: 'flood'" in result.stderr and "bad-distributor" in result.stderr
    assert not data_dir.exists()  # nothing started


def test_cli_demo_refuses_a_run_too_short_for_its_story(data_dir):
    result = supplymon("demo", "--scenario", "surge", "--days", "3", "--data-dir", str(data_dir))
    assert result.returncode == 2
    assert "surge needs at least 10 simulated days (got 3)" in result.stderr
    assert not data_dir.exists()


def test_cli_simulate_writes_the_story_and_says_what_to_expect(tmp_path):
    out = tmp_path / "h.jsonl"
    result = supplymon("simulate", "--days", "2", "--orders-per-day", "200", "--scenario", "shortage",
                       "--out", str(out))
    assert result.returncode == 0, result.stderr
    (story,) = generate(days=2, orders_per_day=200, seed=7, scenario="shortage").stories
    assert f"故事 story shortage: {story.summary_zh}\n    {story.summary}" in result.stdout
    assert (f"预期预警 watch for supply_shortage on 产品 {story.product_id}（{story.region_code}）/ product "
            f"{story.product_id} in region {story.region_code}") in result.stdout
    written = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert f"wrote {len(written):,} events" in result.stdout
    assert written == list(generate(days=2, orders_per_day=200, seed=7, scenario="shortage"))
