"""Memo tables of the pure scalar operations (bounds sync, join, ALU, branch refinement).

Real parsing code asks the same questions over and over: one analysis of the bench's
endpoint tree (22 programs, 23,656 instructions) syncs bounds about 25,000 times for
about 400 distinct inputs and joins about 39,000 pairs of which 4,600 are distinct. The
functions memoised here depend only on their arguments (immutable values: frozensets
and ``Rng`` tuples, reasons included), so a remembered answer is the answer: results
are identical with or without the tables, only faster. Each table holds at most
``LIMIT`` entries and starts again when full, so memory stays bounded on any input.
"""

from __future__ import annotations

from typing import Any, TypeVar

V = TypeVar("V")

LIMIT = 1 << 16
"""Entries per table before it is emptied."""

_TABLES: list[dict[Any, Any]] = []


def table() -> dict[Any, Any]:
    """A new memo table, emptied by :func:`forget`."""
    t: dict[Any, Any] = {}
    _TABLES.append(t)
    return t


def store(table: dict[Any, Any], key: Any, value: V, limit: int | None = None) -> V:
    """Remember ``value`` under ``key`` (the table starts again when full at ``limit``,
    default ``LIMIT`` as it is now); returns it. Lookups stay inline at each caller: a
    hit costs no call."""
    if len(table) >= (LIMIT if limit is None else limit):
        table.clear()
    table[key] = value
    return value


def forget() -> None:
    """Empty every table (benchmarks start each repetition this way)."""
    for t in _TABLES:
        t.clear()
