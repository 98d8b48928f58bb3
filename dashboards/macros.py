"""Grafana's ClickHouse plugin's query expansion, done the way the plugin does it, so
that a panel's SQL runs the same in Grafana and on the worker's page.

The plugin expands a query in three steps (grafana/clickhouse-datasource):
1. its frontend replaces `$__conditionalAll(cond, $var)`, last one first, by `cond`,
   or by `1=1` when the variable's value is "All" (`$__all`) or empty
   (`applyConditionalAll`);
2. Grafana's template service replaces the variables: `${v:singlequote}` gives
   `'a','b'`, a bare `$v` / `${v}` the plugin's own format (a single value as is,
   several as `'a','b'`); "All" without a custom all-value stands for every option;
3. its backend (sqlds + `pkg/macros/macros.go`) replaces the time macros, with S the
   range's Unix seconds, MS its milliseconds, N the interval in whole seconds (>= 1):
   `$__timeFilter(c)` -> `c >= toDateTime(S) AND c <= toDateTime(S)`,
   `$__timeFilter_ms(c)` -> the same with `fromUnixTimestamp64Milli(MS)`,
   `$__dateFilter(c)` -> `c >= toDate('YYYY-MM-DD') AND c <= toDate('YYYY-MM-DD')` (UTC dates),
   `$__fromTime` / `$__toTime` -> `toDateTime(S)`, `$__fromTime_ms` / `$__toTime_ms` ->
   `fromUnixTimestamp64Milli(MS)`, `$__timeInterval(c)` ->
   `toStartOfInterval(toDateTime(c), INTERVAL N second)`, `$__interval_s` -> N.
Macro arguments are split at commas and trimmed; supplymon's panels pass bare column
names, so every version of the plugin's argument parsing reads them alike.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

ALL = "$__all"  # Grafana's value for "All"


class MacroError(ValueError):
    """A query the plugin would reject, or a variable with no value."""


@dataclass(frozen=True)
class QueryContext:
    """What Grafana sends with a query: the time range, the interval, the variables."""

    time_from: datetime
    time_to: datetime
    interval_seconds: float = 3600
    # name -> selected values ([ALL] for "All"); options: name -> every value (for "All")
    variables: dict[str, list[str]] = field(default_factory=dict)
    options: dict[str, list[str]] = field(default_factory=dict)


# -- step 1: $__conditionalAll ------------------------------------------------------

def _macro_args(text: str, open_paren: int) -> tuple[list[str], int] | None:
    """The arguments of a call whose '(' is at `open_paren`, split at top-level commas
    (untrimmed, as the plugin's getMacroArgs), and the index after its ')'."""
    depth, start, args = 0, open_paren + 1, []
    for i in range(open_paren, len(text)):
        ch = text[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                args.append(text[start:i])
                return args, i + 1
        elif ch == "," and depth == 1:
            args.append(text[start:i])
            start = i + 1
    return None


VARIABLE_REFERENCE = re.compile(r"(?<=\$\{)\w+(?=\})|(?<=\$)\w+")


def apply_conditional_all(sql: str, variables: dict[str, list[str]]) -> str:
    macro = "$__conditionalAll("
    index = sql.rfind(macro)
    while index != -1:
        parsed = _macro_args(sql, index + len(macro) - 1)
        if parsed is None or len(parsed[0]) != 2:
            return sql  # the plugin leaves a malformed call as it is
        (condition, variable), end = parsed
        phrase = condition
        reference = VARIABLE_REFERENCE.search(variable.strip())
        if reference and reference.group(0) in variables:  # an unknown variable keeps the condition
            if variables[reference.group(0)] in ([], [ALL], [""]):
                phrase = "1=1"
        sql = sql[:index] + phrase + sql[end:]
        index = sql.rfind(macro)
    return sql


# -- step 2: template variables -------------------------------------------------------

TEMPLATE_VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")


def _quote(value: str) -> str:
    return "'" + value.replace("'", "\\'") + "'"  # Grafana's singlequote format


def replace_variables(sql: str, ctx: QueryContext) -> str:
    def substitute(match: re.Match) -> str:
        name = match.group(1) or match.group(3)
        fmt = match.group(2)
        if name.startswith("__") or name not in ctx.variables:
            return match.group(0)  # a macro, or not a dashboard variable: left as is
        values = ctx.variables[name]
        if values == [ALL]:
            if name not in ctx.options:
                raise MacroError(f"variable {name!r} is 'All' outside $__conditionalAll and has no options")
            values = ctx.options[name]
        if fmt == "singlequote":
            return ",".join(_quote(v) for v in values)
        if fmt not in (None, "raw"):
            raise MacroError(f"unsupported variable format {fmt!r}")
        if fmt == "raw" or len(values) == 1:
            return ",".join(values)
        return ",".join(_quote(v) for v in values)  # the plugin's format for several values

    return TEMPLATE_VARIABLE.sub(substitute, sql)


# -- step 3: time macros --------------------------------------------------------------

def _seconds(t: datetime) -> int:
    return math.floor(t.timestamp())


def _millis(t: datetime) -> int:
    return math.floor(t.timestamp() * 1000)


def _date(t: datetime) -> str:
    return f"toDate('{t.astimezone(timezone.utc):%Y-%m-%d}')"


def _one(name: str, args: list[str]) -> str:
    if len(args) != 1:
        raise MacroError(f"$__{name}: expected 1 argument, received {len(args)}")
    return args[0]


def _interval(ctx: QueryContext) -> int:
    return int(max(ctx.interval_seconds, 1))


def _between(name: str, low: str, high: str):
    def expand_filter(args: list[str]) -> str:
        column = _one(name, args)
        return f"{column} >= {low} AND {column} <= {high}"
    return expand_filter


def _time_macros(ctx: QueryContext) -> dict:
    s_from, s_to = f"toDateTime({_seconds(ctx.time_from)})", f"toDateTime({_seconds(ctx.time_to)})"
    ms_from = f"fromUnixTimestamp64Milli({_millis(ctx.time_from)})"
    ms_to = f"fromUnixTimestamp64Milli({_millis(ctx.time_to)})"
    return {
        "fromTime": lambda args: s_from,
        "toTime": lambda args: s_to,
        "fromTime_ms": lambda args: ms_from,
        "toTime_ms": lambda args: ms_to,
        "timeFilter": _between("timeFilter", s_from, s_to),
        "timeFilter_ms": _between("timeFilter_ms", ms_from, ms_to),
        "dateFilter": _between("dateFilter", _date(ctx.time_from), _date(ctx.time_to)),
        "timeInterval": lambda args: f"toStartOfInterval(toDateTime({_one('timeInterval', args)}), "
                                     f"INTERVAL {_interval(ctx)} second)",
        "interval_s": lambda args: str(_interval(ctx)),
    }


TIME_MACRO = re.compile(r"\$__(\w+)")


def apply_time_macros(sql: str, ctx: QueryContext) -> str:
    macros = _time_macros(ctx)
    out, pos = [], 0
    for match in TIME_MACRO.finditer(sql):
        if match.start() < pos:
            continue  # inside the arguments of a macro already replaced
        name = match.group(1)
        if name not in macros:
            raise MacroError(f"unknown macro $__{name}")
        end, args = match.end(), []
        if end < len(sql) and sql[end] == "(":
            parsed = _macro_args(sql, end)
            if parsed is None:
                raise MacroError(f"$__{name}: unbalanced parentheses")
            raw, end = parsed
            args = [a.strip() for a in raw] if raw != [""] else []
        out.append(sql[pos:match.start()])
        out.append(macros[name](args))
        pos = end
    out.append(sql[pos:])
    return "".join(out)


def expand(sql: str, ctx: QueryContext) -> str:
    """The SQL the plugin would send to ClickHouse for this panel query."""
    return apply_time_macros(replace_variables(apply_conditional_all(sql, ctx.variables), ctx), ctx)


def macro_arguments(sql: str) -> list[str]:
    """Every argument given to a time macro in `sql` (a check: they must be bare names)."""
    out = []
    for match in TIME_MACRO.finditer(sql):
        end = match.end()
        if match.group(1) != "conditionalAll" and end < len(sql) and sql[end] == "(":
            parsed = _macro_args(sql, end)
            if parsed:
                out.extend(a.strip() for a in parsed[0])
    return out


# Grafana's interval: the range over the panel's data points, rounded to a round step.
ROUND_STEPS = (1, 5, 10, 30, 60, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400)


def interval_for(time_from: datetime, time_to: datetime, max_points: int = 300) -> int:
    raw = max((time_to - time_from).total_seconds() / max_points, 1)
    return next((step for step in ROUND_STEPS if step >= raw), ROUND_STEPS[-1])
