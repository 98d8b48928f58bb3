"""Rows for the store, by table, in the order they are written (pure).

A table's rows are dicts (`add`), or column batches (`add_columns`: one list per
column, the way the columnar flow builds its raw events and facts, without a dict
per row); the store takes either (supplymon/arrow_schema.py builds its Arrow
table from columns). `table(name)` gives all of a table's rows as one batch of
columns, `dicts(name)` as dicts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

# Written in this order: facts and alerts after the raw events they derive from.
TABLES = ("events_raw", "dead_letters", "order_facts", "alerts", "window_parts")


class Columns:
    """Rows of one table as columns: column name -> list of values, all one length."""

    __slots__ = ("data", "length")

    def __init__(self, data: dict[str, list], length: int | None = None):
        self.data = data
        self.length = length if length is not None else len(next(iter(data.values()), ()))
        if any(len(values) != self.length for values in data.values()):
            raise ValueError("columns of unequal lengths")

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, part: slice) -> "Columns":
        start, stop, _ = part.indices(self.length)
        return Columns({name: values[part] for name, values in self.data.items()}, max(0, stop - start))

    def row(self, i: int) -> dict:
        return {name: values[i] for name, values in self.data.items()}

    def rows(self) -> list[dict]:
        names = list(self.data)
        return [dict(zip(names, values)) for values in zip(*self.data.values())] if names else []

    @classmethod
    def from_rows(cls, rows: list[dict]) -> "Columns":
        names = list(dict.fromkeys(name for row in rows for name in row))
        return cls({name: [row.get(name) for row in rows] for name in names}, len(rows))

    @classmethod
    def concat(cls, batches: Iterable["Columns"]) -> "Columns":
        batches = [batch for batch in batches if len(batch)]
        if len(batches) == 1:
            return batches[0]
        names = list(dict.fromkeys(name for batch in batches for name in batch.data))
        data: dict[str, list] = {name: [] for name in names}
        for batch in batches:
            for name in names:
                values = batch.data.get(name)
                data[name] += values if values is not None else [None] * len(batch)
        return cls(data, sum(len(batch) for batch in batches))


@dataclass
class Rows:
    """Rows for one batch, by table: dicts, and batches of columns."""

    by_table: dict[str, list[dict]] = field(default_factory=lambda: {t: [] for t in TABLES})
    columns: dict[str, list[Columns]] = field(default_factory=lambda: {t: [] for t in TABLES})

    def add(self, table: str, row: dict) -> None:
        self.by_table[table].append(row)

    def add_columns(self, table: str, batch: Columns) -> None:
        if len(batch):
            self.columns[table].append(batch)

    def count(self, table: str) -> int:
        return len(self.by_table[table]) + sum(len(batch) for batch in self.columns[table])

    def __len__(self) -> int:
        return sum(self.count(table) for table in self.by_table)

    def table(self, table: str) -> Columns:
        """All of a table's rows as one batch of columns (dict rows first)."""
        dicts = self.by_table[table]
        batches = self.columns[table]
        if not batches:
            return Columns.from_rows(dicts)
        return Columns.concat(([Columns.from_rows(dicts)] if dicts else []) + batches)

    def dicts(self, table: str) -> list[dict]:
        """All of a table's rows as dicts."""
        return self.by_table[table] + [row for batch in self.columns[table] for row in batch.rows()]

    def clear(self) -> None:
        """Let go of every row (stored: nothing reads them again)."""
        self.by_table = {t: [] for t in self.by_table}
        self.columns = {t: [] for t in self.columns}

    def extend(self, other: "Rows") -> None:
        for table, rows in other.by_table.items():
            self.by_table[table].extend(rows)
        for table, batches in other.columns.items():
            self.columns[table].extend(batches)
