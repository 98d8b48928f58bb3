"""Rows for the store, by table, in the order they are written (pure)."""
from __future__ import annotations

from dataclasses import dataclass, field

# Written in this order: facts and alerts after the raw events they derive from.
TABLES = ("events_raw", "dead_letters", "order_facts", "alerts", "window_parts")


@dataclass
class Rows:
    """Rows for one batch, by table."""

    by_table: dict[str, list[dict]] = field(default_factory=lambda: {t: [] for t in TABLES})

    def add(self, table: str, row: dict) -> None:
        self.by_table[table].append(row)

    def __len__(self) -> int:
        return sum(len(rows) for rows in self.by_table.values())

    def extend(self, other: "Rows") -> None:
        for table, rows in other.by_table.items():
            self.by_table[table].extend(rows)
