"""Rows as Arrow tables typed by the store's DDL (schemas/clickhouse.sql).

The sink writes each table's rows as one Arrow table (`INSERT ... FORMAT Arrow`,
clickhouse-connect's `insert_arrow`, the same call for embedded chdb and for a
ClickHouse server). Each table's Arrow schema is read once from the DDL, not kept
by hand: `LowCardinality` columns become dictionary arrays, `Nullable` ones nullable
fields, `DateTime64(3, tz)` millisecond timestamps in that zone, `Array`, `Map`,
`Enum`, `Decimal` their Arrow counterparts.

A value its column cannot hold is refused while the table is built, in Python, and
named by its column: a number out of the column's range (Arrow checks it), a string
where a number belongs, or a null in a column that is not Nullable (ClickHouse's
Arrow input would otherwise store the column's default silently). The error is a
ValueError, which the sink takes as a refused row (supplymon/refusals.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import orjson
import pyarrow as pa

# The Arrow unit of a DateTime64(precision): times are written in it (epoch ms for the
# DDL's DateTime64(3)).
_TIME_UNITS = {0: "s", 3: "ms", 6: "us", 9: "ns"}
_SCALARS = {
    "UInt8": pa.uint8(), "UInt16": pa.uint16(), "UInt32": pa.uint32(), "UInt64": pa.uint64(),
    "Int8": pa.int8(), "Int16": pa.int16(), "Int32": pa.int32(), "Int64": pa.int64(),
    "Float32": pa.float32(), "Float64": pa.float64(), "Bool": pa.bool_(),
    "String": pa.string(), "UUID": pa.string(), "Date": pa.date32(), "Date32": pa.date32(),
}
_CREATE_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS (?:[\w{}]+\.)?(\w+)\s*\(", re.IGNORECASE)
_NOT_COLUMNS = ("INDEX", "PROJECTION", "CONSTRAINT", "PRIMARY")


class UnknownColumnType(ValueError):
    """The DDL has a column type with no Arrow mapping here (add one to _arrow_type)."""


def _outside_quotes(text: str, start: int = 0):
    """(index, character, depth after it) of `text`'s characters outside quotes, from
    `start`; depth counts the parentheses open."""
    depth, quote = 0, None
    for i in range(start, len(text)):
        char = text[i]
        if quote:
            if char == quote and text[i - 1] != "\\":
                quote = None
            continue
        if char in "'\"`":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        yield i, char, depth


def _split_top_level(text: str, sep: str = ",") -> list[str]:
    """`text` split at `sep` outside parentheses and quotes."""
    parts, start = [], 0
    for i, char, depth in _outside_quotes(text):
        if char == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [part.strip() for part in parts if part.strip()]


def _balanced(text: str, start: int) -> int:
    """Index just past the parenthesis that closes the one at `start`."""
    for i, char, depth in _outside_quotes(text, start):
        if char == ")" and depth == 0:
            return i + 1
    raise ValueError(f"unbalanced parentheses in {text[start:start + 80]!r}")


def _column_type(definition: str) -> tuple[str, str]:
    """`name Type(...) [DEFAULT ...] [CODEC(...)]` -> (name, Type(...))."""
    name, _, rest = definition.partition(" ")
    rest = rest.lstrip()
    match = re.match(r"\w+", rest)
    if not match:
        raise ValueError(f"no type in column definition {definition!r}")
    end = match.end()
    if end < len(rest) and rest[end] == "(":
        end = _balanced(rest, end)
    return name.strip("`"), rest[:end]


def _without_comments(sql: str) -> str:
    """`sql` without its `--` comments (a `--` inside a string literal is kept)."""
    lines = []
    for line in sql.splitlines():
        at = line.find("--")
        while at >= 0 and line[:at].count("'") % 2:
            at = line.find("--", at + 2)
        lines.append(line if at < 0 else line[:at])
    return "\n".join(lines)


def table_columns(statements: Sequence[str]) -> dict[str, dict[str, str]]:
    """Each table's columns and their ClickHouse types, from CREATE TABLE statements."""
    out: dict[str, dict[str, str]] = {}
    for statement in map(_without_comments, statements):
        match = _CREATE_TABLE.search(statement)
        if not match:
            continue
        body = statement[match.end() - 1:_balanced(statement, match.end() - 1)][1:-1]
        columns = out[match.group(1)] = {}
        for definition in _split_top_level(body):
            if definition.split(None, 1)[0].upper() in _NOT_COLUMNS:
                continue
            name, ch_type = _column_type(definition)
            columns[name] = ch_type
    return out


def _arguments(ch_type: str) -> list[str]:
    return _split_top_level(ch_type[ch_type.index("(") + 1:ch_type.rindex(")")])


def _arrow_type(ch_type: str) -> tuple[pa.DataType, bool]:
    """(Arrow type, nullable) of a ClickHouse column type."""
    ch_type = ch_type.strip()
    head = ch_type.split("(", 1)[0].strip()
    if head == "Nullable":
        inner, _ = _arrow_type(_arguments(ch_type)[0])
        return inner, True
    if head == "LowCardinality":
        inner, nullable = _arrow_type(_arguments(ch_type)[0])
        return pa.dictionary(pa.int32(), inner), nullable
    if head in ("DateTime64", "DateTime"):
        args = _arguments(ch_type) if "(" in ch_type else []
        if head == "DateTime":
            precision, zone = 0, args[0] if args else None
        else:
            precision, zone = int(args[0]), args[1] if len(args) > 1 else None
        if precision not in _TIME_UNITS:
            raise UnknownColumnType(f"{ch_type}: only precisions 0, 3, 6, 9 have an Arrow unit")
        return pa.timestamp(_TIME_UNITS[precision], tz=zone.strip("'") if zone else None), False
    if head == "Array":
        inner, nullable = _arrow_type(_arguments(ch_type)[0])
        return pa.list_(pa.field("item", inner, nullable=nullable)), False
    if head == "Map":
        key, value = (_arrow_type(arg) for arg in _arguments(ch_type))
        return pa.map_(key[0], pa.field("value", value[0], nullable=value[1])), False
    if head in ("Enum8", "Enum16", "FixedString"):
        return pa.string(), False  # ClickHouse reads an enum's value by its name
    if head == "Decimal":
        precision, scale = (int(arg) for arg in _arguments(ch_type))
        return (pa.decimal128 if precision <= 38 else pa.decimal256)(precision, scale), False
    if ch_type in _SCALARS:
        return _SCALARS[ch_type], False
    raise UnknownColumnType(f"no Arrow type for the ClickHouse type {ch_type}")


@dataclass(frozen=True)
class ArrowTable:
    """How one table's rows become an Arrow table: its columns written by the worker,
    in order, with their ClickHouse types, and the Arrow schema they make."""

    name: str
    ch_types: tuple[str, ...]
    schema: pa.Schema
    json_columns: frozenset[str]

    def build(self, rows: Sequence[dict]) -> pa.Table:
        """`rows` (dicts with at least the table's columns) as one Arrow table; a value
        its column cannot hold raises ValueError naming the column."""
        # a comprehension per column: the fastest transpose
        return self.build_columns({name: [row[name] for row in rows] for name in self.schema.names})

    def build_columns(self, columns: dict[str, list]) -> pa.Table:
        """Rows given as columns (name -> values, at least the table's columns) as one
        Arrow table; a value its column cannot hold raises ValueError naming the column."""
        arrays = []
        for field, ch_type in zip(self.schema, self.ch_types):
            name = field.name
            values = columns[name]
            if name in self.json_columns:
                values = [orjson.dumps(value).decode() for value in values]
            arrays.append(_column(values, field, ch_type))
        return pa.Table.from_arrays(arrays, schema=self.schema)


def _column(values: list, field: pa.Field, ch_type: str) -> pa.Array:
    try:
        try:
            array = pa.array(values, field.type)
        except pa.ArrowTypeError:
            if not pa.types.is_integer(field.type):
                raise
            # Flags are bools in the rows and UInt8 in the store (True -> 1, as before).
            array = pa.array([int(v) if v.__class__ is bool else v for v in values], field.type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
        raise ValueError(f"column {field.name} ({ch_type}) cannot hold a value: {exc}") from None
    if not field.nullable and array.null_count:
        raise ValueError(f"column {field.name} ({ch_type}) is not Nullable and got a null (row "
                         f"{array.is_null().index(True).as_py()})")
    return array


@lru_cache(maxsize=None)
def arrow_tables() -> dict[str, ArrowTable]:
    """Every written table's ArrowTable, built once from schemas/clickhouse.sql."""
    from supplymon.store import COLUMNS, JSON_COLUMNS, ddl_statements

    ddl = table_columns(ddl_statements())
    out = {}
    for table, columns in COLUMNS.items():
        missing = [c for c in columns if c not in ddl.get(table, {})]
        if missing:
            raise UnknownColumnType(f"{table}: columns {missing} are written but not in schemas/clickhouse.sql")
        fields, ch_types = [], []
        for column in columns:
            arrow_type, nullable = _arrow_type(ddl[table][column])
            fields.append(pa.field(column, arrow_type, nullable=nullable))
            ch_types.append(ddl[table][column])
        out[table] = ArrowTable(table, tuple(ch_types), pa.schema(fields), frozenset(JSON_COLUMNS & set(columns)))
    return out


def to_arrow(table: str, rows: Sequence[dict]) -> pa.Table:
    """`rows` of `table` (see COLUMNS in supplymon/store.py) as an Arrow table."""
    return arrow_tables()[table].build(rows)


def columns_to_arrow(table: str, columns: dict[str, list]) -> pa.Table:
    """Rows of `table` given as columns (supplymon/core/rows.py `Columns.data`) as an
    Arrow table."""
    return arrow_tables()[table].build_columns(columns)
