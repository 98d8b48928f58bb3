"""The bureau's periodic assessment (chifeng-2025) and monthly VBP monitoring
(ganzhou-2023 §二(三)): scores, verdicts and purchase progress from aggregated
facts. No I/O: the shell (supplymon.assess) aggregates the stored facts in SQL and
hands the counts in here.

Verdicts (chifeng-2025 §四, contract section 3):
- `revoke`: no order in the period; or a score of 69 or less (below
  `revoke_score_below`, 70) with a grassroots delivery rate below 90 %, a
  distributor that delivered no grassroots order at all included;
- `rectify`: a score of 70 or more with a grassroots delivery rate below 70 %;
- a score of 69 or less with a grassroots rate of 90 % or more, on which the
  notice is silent: `low_score_good_grassroots` (default `rectify`);
- `pass` otherwise.
Rates are compared exactly (as fractions), so 63/90 is 70 %, not 69.99...%.
"""
from __future__ import annotations

import calendar
import math
from dataclasses import dataclass, field
from datetime import date
from fractions import Fraction
from typing import Mapping, Sequence

VERDICTS = ("revoke", "rectify", "pass")
# Components of the composite score, in the order reports show them.
COMPONENTS = ("on_time", "response_24h", "fill", "grassroots", "alerts")
DEFAULT_WEIGHTS = {"on_time": 35.0, "response_24h": 20.0, "fill": 15.0, "grassroots": 20.0, "alerts": 10.0}
# Alerts that speak of a distributor's own service (not of an institution's late
# confirmation, a manufacturer's pricing or distributor count).
DEFAULT_ALERT_KINDS = ("response_overdue", "response_escalation", "delivery_overdue",
                       "low_delivery_rate", "remote_refusal", "short_supply")

REASON_TEXT = {
    "no_orders": "考核期内无采购订单 (no order in the period)",
    "low_score": "综合得分 {score} 低于 {score_line} 分 (score below {score_line})",
    "no_grassroots_delivery": "未参与基层医疗机构订单配送 (no grassroots order delivered)",
    "grassroots_below_revoke": "基层配送率 {grassroots} 未达 {revoke_line} (grassroots delivery rate below {revoke_line})",
    "grassroots_at_least_revoke": "基层配送率 {grassroots} 达到 {revoke_line} (grassroots delivery rate at least {revoke_line})",
    "grassroots_below_rectify": "基层配送率 {grassroots} 低于 {rectify_line} (grassroots delivery rate below {rectify_line})",
    "meets_standard": "综合得分与基层配送率达标 (score and grassroots delivery rate meet the standard)",
}


class AssessmentRuleError(ValueError):
    """An [assessment] setting supplymon cannot run with."""


@dataclass(frozen=True)
class AssessmentRules:
    # Not hashed (a dict), so that the settings holding these rules stay hashable.
    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS), hash=False)
    # Alerts per 100 orders at which the alerts component gives no points (linear from 0).
    alerts_per_100_for_zero: float = 20.0
    alert_kinds: tuple[str, ...] = DEFAULT_ALERT_KINDS
    revoke_score_below: float = 70.0
    revoke_grassroots_below: float = 0.9
    rectify_grassroots_below: float = 0.7
    low_score_good_grassroots: str = "rectify"
    # VBP (ganzhou-2023 §二(二),(三)): behind schedule when purchased / agreed is below
    # this share of the period's elapsed time (序时进度); 1.0 = strictly time-proportional.
    vbp_schedule_ratio: float = 1.0
    # From this month of the agreement on, a product not bought at all is flagged (未进院).
    vbp_entry_check_month: int = 3

    def __post_init__(self) -> None:
        unknown = set(self.weights) - set(COMPONENTS)
        if unknown:
            raise AssessmentRuleError(f"unknown score components {sorted(unknown)} (known: {', '.join(COMPONENTS)})")
        for name, weight in self.weights.items():
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
                raise AssessmentRuleError(f"weight of {name} must be a number >= 0, got {weight!r}")
        if sum(self.weights.values()) <= 0:
            raise AssessmentRuleError("the score weights must not all be 0")
        if self.low_score_good_grassroots not in VERDICTS:
            raise AssessmentRuleError(
                f"low_score_good_grassroots must be one of {', '.join(VERDICTS)}, got {self.low_score_good_grassroots!r}")
        for name in ("revoke_grassroots_below", "rectify_grassroots_below"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 < value <= 1:
                raise AssessmentRuleError(f"{name} is a fraction (0.9 = 90 %), got {value!r}")
        if not 0 < self.revoke_score_below <= 100:
            raise AssessmentRuleError(f"revoke_score_below must be in (0, 100], got {self.revoke_score_below!r}")
        if self.alerts_per_100_for_zero <= 0 or self.vbp_schedule_ratio <= 0:
            raise AssessmentRuleError("alerts_per_100_for_zero and vbp_schedule_ratio must be positive")
        if int(self.vbp_entry_check_month) != self.vbp_entry_check_month or self.vbp_entry_check_month < 1:
            raise AssessmentRuleError(f"vbp_entry_check_month must be a whole month >= 1, got {self.vbp_entry_check_month!r}")

    @classmethod
    def from_section(cls, body: Mapping) -> "AssessmentRules":
        """The rules file's [assessment] section: weight_<component> keys, the rest by name."""
        values: dict = {}
        weights = dict(DEFAULT_WEIGHTS)
        names = {f for f in cls.__dataclass_fields__ if f != "weights"}
        for key, value in body.items():
            if key.startswith("weight_") and key[7:] in COMPONENTS:
                weights[key[7:]] = value
            elif key == "alert_kinds":
                if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
                    raise AssessmentRuleError(f"alert_kinds must be a list of alert kinds, got {value!r}")
                values[key] = tuple(value)
            elif key in names:
                values[key] = value
            else:
                raise AssessmentRuleError(f"unknown key assessment.{key}")
        return cls(weights=weights, **values)


@dataclass(frozen=True)
class DistributorCounts:
    """A distributor's orders in the period, aggregated from `order_facts` (and `alerts`)."""

    distributor_id: str
    orders: int = 0
    settled: int = 0  # on_time known (delivered, late, undelivered or rejected)
    on_time_orders: int = 0
    responded_within_24h: int = 0
    answered_quantity: int = 0  # ordered quantity of answered orders
    confirmed_quantity: int = 0
    grassroots_orders: int = 0
    grassroots_settled: int = 0
    grassroots_on_time_orders: int = 0
    alerts: int = 0


@dataclass(frozen=True)
class Assessment:
    distributor_id: str
    orders: int
    open_orders: int
    components: dict[str, float | None]  # each in [0, 1]; None: nothing to measure
    on_time_rate: float | None
    grassroots_orders: int
    grassroots_delivery_rate: float | None
    alerts: int
    alerts_per_100_orders: float | None
    score: float | None  # 0-100, one decimal; None with no order
    verdict: str
    reasons: tuple[str, ...]
    reasons_text: str


def _rate(part: int, whole: int) -> Fraction | None:
    return Fraction(part, whole) if whole else None


def components(c: DistributorCounts, rules: AssessmentRules) -> dict[str, Fraction | float | None]:
    """Each component in [0, 1] (None when the distributor gives it nothing to measure)."""
    alerts = None
    if c.orders:
        alerts = max(Fraction(0), 1 - Fraction(100 * c.alerts, c.orders) / Fraction(str(rules.alerts_per_100_for_zero)))
    return {
        "on_time": _rate(c.on_time_orders, c.settled),
        "response_24h": _rate(c.responded_within_24h, c.orders),
        "fill": _rate(c.confirmed_quantity, c.answered_quantity),
        "grassroots": _rate(c.grassroots_on_time_orders, c.grassroots_settled),
        "alerts": alerts,
    }


def composite_score(parts: Mapping[str, Fraction | float | None], rules: AssessmentRules) -> float | None:
    """100 x the weighted mean of the components that can be measured (a missing one's
    weight goes to the others), computed exactly and rounded half up to one decimal."""
    weighted = [(Fraction(str(rules.weights.get(name, 0))), Fraction(value))
                for name, value in parts.items() if value is not None]
    total = sum(w for w, _ in weighted)
    if not total:
        return None
    tenths = 1000 * sum(w * v for w, v in weighted) / total
    return math.floor(tenths + Fraction(1, 2)) / 10


def verdict(score: float | None, grassroots_rate: Fraction | None, orders: int,
            rules: AssessmentRules) -> tuple[str, tuple[str, ...]]:
    """The verdict and its reason codes (see the module docstring)."""
    if not orders or score is None:
        return "revoke", ("no_orders",)
    revoke_line = Fraction(str(rules.revoke_grassroots_below))
    if score < rules.revoke_score_below:
        if grassroots_rate is None:
            return "revoke", ("low_score", "no_grassroots_delivery")
        if grassroots_rate < revoke_line:
            return "revoke", ("low_score", "grassroots_below_revoke")
        return rules.low_score_good_grassroots, ("low_score", "grassroots_at_least_revoke")
    if grassroots_rate is not None and grassroots_rate < Fraction(str(rules.rectify_grassroots_below)):
        return "rectify", ("grassroots_below_rectify",)
    return "pass", ("meets_standard",)


def _percent(value) -> str:
    return "—" if value is None else f"{100 * float(value):.1f}%"


def describe(reasons: Sequence[str], score: float | None, grassroots: Fraction | None, rules: AssessmentRules) -> str:
    line = f"{rules.revoke_score_below:g}"
    return "；".join(REASON_TEXT[code].format(
        score=score, score_line=line, grassroots=_percent(grassroots),
        revoke_line=_percent(rules.revoke_grassroots_below), rectify_line=_percent(rules.rectify_grassroots_below))
        for code in reasons)


def assess(c: DistributorCounts, rules: AssessmentRules) -> Assessment:
    parts = components(c, rules)
    score = composite_score(parts, rules) if c.orders else None
    grassroots = parts["grassroots"]
    result, reasons = verdict(score, grassroots, c.orders, rules)
    return Assessment(
        distributor_id=c.distributor_id, orders=c.orders, open_orders=c.orders - c.settled,
        components={k: None if v is None else float(v) for k, v in parts.items()},
        on_time_rate=None if parts["on_time"] is None else float(parts["on_time"]),
        grassroots_orders=c.grassroots_orders,
        grassroots_delivery_rate=None if grassroots is None else float(grassroots),
        alerts=c.alerts, alerts_per_100_orders=round(100 * c.alerts / c.orders, 2) if c.orders else None,
        score=score, verdict=result, reasons=reasons, reasons_text=describe(reasons, score, grassroots, rules))


def assess_all(counts: Mapping[str, DistributorCounts], registry: Sequence[str],
               rules: AssessmentRules) -> list[Assessment]:
    """Every distributor of the registry and of the facts; one with no order in the
    period gets empty counts (and `revoke`)."""
    ids = sorted(set(registry) | set(counts))
    return [assess(counts.get(d) or DistributorCounts(d), rules) for d in ids]


# --- Monthly VBP monitoring (ganzhou-2023 §二(二),(三)) ---------------------------

def month_bounds(month: str) -> tuple[date, date]:
    """'2026-05' -> (2026-05-01, 2026-05-31)."""
    try:
        year, mon = (int(x) for x in month.split("-"))
        first = date(year, mon, 1)
    except ValueError:
        raise ValueError(f"a month looks like 2026-05, got {month!r}") from None
    return first, date(year, mon, calendar.monthrange(year, mon)[1])


@dataclass(frozen=True)
class Agreement:
    institution_id: str
    product_id: str
    agreed_quantity: int
    period_from: date
    period_to: date


@dataclass(frozen=True)
class Progress:
    agreement: Agreement
    purchased_quantity: int  # from period_from through the month's end
    progress: float  # purchased / agreed
    expected_progress: float  # 序时进度: elapsed share of the agreement period
    behind_schedule: bool
    not_started: bool  # nothing bought by the entry-check month (未进院)
    agreement_month: int  # 1 = the agreement's first month


def _months_between(start: date, end: date) -> int:
    return (end.year - start.year) * 12 + end.month - start.month + 1


def progress(agreement: Agreement, purchased: int, month_end: date, rules: AssessmentRules) -> Progress:
    """Purchase progress at the end of a month against the agreed volume.

    Expected progress (序时进度) is the elapsed share of the agreement's days through
    the month's end (capped at 1). Behind schedule: progress below
    `vbp_schedule_ratio` x expected progress."""
    days = (agreement.period_to - agreement.period_from).days + 1
    elapsed = min(days, max(0, (month_end - agreement.period_from).days + 1))
    expected = elapsed / days
    done = purchased / agreement.agreed_quantity
    month_no = _months_between(agreement.period_from, month_end)
    return Progress(
        agreement=agreement, purchased_quantity=purchased, progress=round(done, 4),
        expected_progress=round(expected, 4),
        behind_schedule=Fraction(purchased, agreement.agreed_quantity)
        < Fraction(str(rules.vbp_schedule_ratio)) * Fraction(elapsed, days),
        not_started=purchased == 0 and month_no >= rules.vbp_entry_check_month,
        agreement_month=month_no)
