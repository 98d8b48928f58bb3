"""The assessment's core (supplymon.core.assessment): scores, verdicts at their
boundaries, the rule settings, and VBP purchase progress."""
from __future__ import annotations

from dataclasses import replace
from datetime import date
from fractions import Fraction

import pytest

from supplymon.core.assessment import (
    Agreement, AssessmentRules, DistributorCounts, assess, assess_all, composite_score, components, progress, verdict,
)
from supplymon.settings import ConfigError, Rules

RULES = AssessmentRules()
# Only the on-time rate counts: score = on-time rate x 100, exactly.
ON_TIME_ONLY = AssessmentRules(weights={"on_time": 1, "response_24h": 0, "fill": 0, "grassroots": 0, "alerts": 0})


def counts(on_time: int, grassroots_on_time: int | None, grassroots: int = 1000, settled: int = 100, **more):
    """A distributor with `settled` orders of which `on_time` on time, plus a separate
    grassroots tally (its rate = grassroots_on_time / grassroots; None: no grassroots order)."""
    g = {} if grassroots_on_time is None else {
        "grassroots_orders": grassroots, "grassroots_settled": grassroots,
        "grassroots_on_time_orders": grassroots_on_time}
    return DistributorCounts("D1", orders=settled, settled=settled, on_time_orders=on_time, **g, **more)


@pytest.mark.parametrize("on_time, grassroots_on_time, expected, reasons", [
    # score 69 with a grassroots rate below 90 % (89.9 %): revoke
    (69, 899, "revoke", ("low_score", "grassroots_below_revoke")),
    # score 69, grassroots exactly 90 %: the silent case (default rectify)
    (69, 900, "rectify", ("low_score", "grassroots_at_least_revoke")),
    # score 69, no grassroots order at all: revoke (not delivering to grassroots counts)
    (69, None, "revoke", ("low_score", "no_grassroots_delivery")),
    # score 70: never revoked for the score; grassroots 69.9 % -> rectify, 70 % -> pass
    (70, 699, "rectify", ("grassroots_below_rectify",)),
    (70, 700, "pass", ("meets_standard",)),
    (70, 899, "pass", ("meets_standard",)),
    (70, None, "pass", ("meets_standard",)),
])
def test_verdict_boundaries(on_time, grassroots_on_time, expected, reasons):
    result = assess(counts(on_time, grassroots_on_time), ON_TIME_ONLY)
    assert result.score == on_time
    assert (result.verdict, result.reasons) == (expected, reasons)


def test_no_order_in_the_period_is_revoked_with_no_score():
    result = assess(DistributorCounts("D9"), RULES)
    assert (result.verdict, result.reasons, result.score, result.orders) == ("revoke", ("no_orders",), None, 0)
    assert "无采购订单" in result.reasons_text


def test_the_silent_case_is_a_rule_setting():
    for choice in ("revoke", "rectify", "pass"):
        rules = replace(ON_TIME_ONLY, low_score_good_grassroots=choice)
        assert assess(counts(60, 950), rules).verdict == choice
    with pytest.raises(ValueError, match="low_score_good_grassroots"):
        AssessmentRules(low_score_good_grassroots="warn")


def test_rates_are_compared_exactly():
    # 63/90 is exactly 70 % (as a float, 0.7000000000000001 or 0.6999... depending on the sum).
    assert verdict(80.0, Fraction(63, 90), 90, RULES) == ("pass", ("meets_standard",))
    assert verdict(80.0, Fraction(62, 90), 90, RULES)[0] == "rectify"
    assert verdict(60.0, Fraction(81, 90), 90, RULES)[0] == "rectify"  # 90 %: not below
    assert verdict(69.9, Fraction(80, 90), 90, RULES)[0] == "revoke"  # 69.9 is "69 and below"


def test_default_weights_give_the_documented_score():
    # 10 orders: 8 on time, 9 answered within 24 h, 95 of 100 answered units confirmed,
    # grassroots 3 of 4 on time, 1 alert (10 per 100 orders: half the alert points).
    c = DistributorCounts("D1", orders=10, settled=10, on_time_orders=8, responded_within_24h=9,
                          answered_quantity=100, confirmed_quantity=95, grassroots_orders=4, grassroots_settled=4,
                          grassroots_on_time_orders=3, alerts=1)
    parts = components(c, RULES)
    assert parts == {"on_time": Fraction(4, 5), "response_24h": Fraction(9, 10), "fill": Fraction(19, 20),
                     "grassroots": Fraction(3, 4), "alerts": Fraction(1, 2)}
    # 35 x 0.8 + 20 x 0.9 + 15 x 0.95 + 20 x 0.75 + 10 x 0.5 = 80.25 exactly: half up.
    assert composite_score(parts, RULES) == 80.3


def test_a_component_with_nothing_to_measure_passes_its_weight_on():
    # No grassroots order, nothing answered (no fill rate): the other three weights (65) make 100.
    c = DistributorCounts("D1", orders=4, settled=4, on_time_orders=2, responded_within_24h=0)
    parts = components(c, RULES)
    assert parts["grassroots"] is None and parts["fill"] is None
    assert composite_score(parts, RULES) == round(100 * (35 * 0.5 + 20 * 0 + 10 * 1) / 65, 1) == 42.3


def test_many_alerts_take_all_the_alert_points_and_no_more():
    c = DistributorCounts("D1", orders=10, settled=10, on_time_orders=10, responded_within_24h=10, alerts=7)
    assert components(c, RULES)["alerts"] == 0


def test_registry_distributors_without_orders_are_listed():
    results = assess_all({"D1": counts(90, 950)}, ["D1", "D2"], RULES)
    assert [(r.distributor_id, r.verdict) for r in results] == [("D1", "pass"), ("D2", "revoke")]


def test_rules_file_assessment_section(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text('[assessment]\nweight_on_time = 50\nweight_alerts = 0\nlow_score_good_grassroots = "pass"\n'
                    'alert_kinds = ["delivery_overdue"]\n[delivery]\nurban_hours = 24\n')
    rules = Rules.load(path).assessment
    assert rules.weights["on_time"] == 50 and rules.weights["alerts"] == 0 and rules.weights["fill"] == 15
    assert rules.low_score_good_grassroots == "pass" and rules.alert_kinds == ("delivery_overdue",)
    assert Rules.load().assessment == AssessmentRules()  # the shipped file says the defaults
    hash(Rules.load())  # settings stay hashable
    for bad, message in (("weight_speed = 3", "unknown key assessment.weight_speed"),
                         ("weight_fill = -1", "weight of fill"),
                         ("revoke_grassroots_below = 90", "fraction"),
                         ('alert_kinds = "delivery_overdue"', "alert_kinds must be a list"),
                         ('low_score_good_grassroots = "maybe"', "low_score_good_grassroots")):
        path.write_text(f"[assessment]\n{bad}\n")
        with pytest.raises(ConfigError, match=message):
            Rules.load(path)


AGREEMENT = Agreement("H1", "P1", 1200, date(2026, 1, 1), date(2026, 12, 31))


def test_vbp_progress_behind_schedule_against_the_time_proportional_target():
    # End of May: 151 of 365 days elapsed -> 496.4 of 1200 due; 496 is behind, 497 is not.
    end_of_may = date(2026, 5, 31)
    behind = progress(AGREEMENT, 496, end_of_may, RULES)
    assert behind.behind_schedule and behind.expected_progress == round(151 / 365, 4)
    assert behind.agreement_month == 5 and not behind.not_started
    assert not progress(AGREEMENT, 497, end_of_may, RULES).behind_schedule
    # A laxer setting: 80 % of the time-proportional target.
    assert not progress(AGREEMENT, 400, end_of_may, replace(RULES, vbp_schedule_ratio=0.8)).behind_schedule


def test_vbp_not_started_from_the_third_month():
    assert not progress(AGREEMENT, 0, date(2026, 2, 28), RULES).not_started
    assert progress(AGREEMENT, 0, date(2026, 3, 31), RULES).not_started
    done = progress(AGREEMENT, 1300, date(2026, 12, 31), RULES)
    assert done.progress == round(1300 / 1200, 4) and not done.behind_schedule
