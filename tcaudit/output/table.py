"""Tables for people that fit the room they have (layout.py).

A table is drawn in the look of ``tabulate``'s "simple" format (a header, a rule of
dashes, two spaces between columns, numbers on the right). When its natural width does
not fit ``Layout.width``, in this order:

1. columns with a ``soft`` floor (long names, prose) are shortened down to it: a name
   loses its middle to an ellipsis (its start and end usually tell names apart), prose
   its end;
2. optional columns (``Column.drop``) are left out, the lowest rank first, each time
   starting again from the natural widths;
3. every column that may be shortened goes down to its ``shrink`` floor, the one with
   the most room to give first.

Several tables can share one :class:`Fit` (``fit`` over all their rows, then ``render``
each), so the tables of one output have the same columns at the same widths.

What was left out is reported (:func:`fit_note`), never silent; ``--wide``
(``Layout(width=None)``) draws every column in full.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

from tcaudit.output.layout import Layout, cells, cut_end, pad, paint, shorten

GAP: Final = 2
T = TypeVar("T")


@dataclass(frozen=True)
class Column:
    header: str
    right: bool = False  # numbers
    shrink: int | None = None  # narrowest it may be shortened to; None: never shortened
    soft: int | None = None  # how far it is shortened before optional columns go
    # (None: not before them)
    drop: int | None = None  # optional: left out when nothing else fits, lowest first
    cut: str = "middle"  # where a shortened value loses cells: "middle" (names), "end" (prose)


@dataclass(frozen=True)
class Cell:
    text: str
    style: tuple[str, ...] = ()  # layout.paint styles
    keep: str = ""  # a suffix shortening never cuts (a count)


CellLike = str | int | Cell
Rows = Sequence[Sequence[CellLike]]


@dataclass(frozen=True)
class Fit:
    """Which columns a table shows and how wide each is (several tables can share one,
    so the namespaces of a scan line up)."""

    visible: tuple[int, ...]
    widths: tuple[int, ...]
    natural: tuple[int, ...]

    @property
    def dropped(self) -> tuple[int, ...]:
        return tuple(i for i in range(len(self.widths)) if i not in self.visible)

    @property
    def shortened(self) -> bool:
        return any(self.widths[i] < self.natural[i] for i in self.visible)


@dataclass(frozen=True)
class Drawn:
    lines: tuple[str, ...]
    dropped: tuple[str, ...]  # headers left out
    shortened: bool

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def _cell(value: CellLike) -> Cell:
    if isinstance(value, Cell):
        return value
    return Cell(str(value))


def fit(columns: Sequence[Column], rows: Rows, layout: Layout, *, indent: int = 0) -> Fit:
    """The columns and widths ``rows`` get in ``layout.width`` (less ``indent``)."""
    natural = [cells(c.header) for c in columns]
    for row in rows:
        for i, value in enumerate(row):
            cell = _cell(value)
            natural[i] = max(natural[i], cells(cell.text) + cells(cell.keep))
    budget = None if layout.width is None else layout.width - indent
    visible, widths = _fit(columns, natural, budget)
    return Fit(tuple(visible), tuple(widths), tuple(natural))


def render(columns: Sequence[Column], rows: Rows, fitted: Fit, *, indent: int = 0) -> Drawn:
    """``rows`` under ``columns`` as ``fitted`` says."""
    margin = " " * indent
    widths = fitted.widths
    head = [pad(columns[i].header, widths[i], columns[i].right) for i in fitted.visible]
    lines = [
        (margin + "  ".join(head)).rstrip(),
        margin + "  ".join("-" * widths[i] for i in fitted.visible),
    ]
    for row in rows:
        parts = []
        for i in fitted.visible:
            cell = _cell(row[i])
            text = (shorten if columns[i].cut == "middle" else cut_end)(
                cell.text, widths[i], cell.keep
            )
            room = " " * max(widths[i] - cells(text), 0)
            body = paint(text, *cell.style) if cell.style else text
            parts.append(room + body if columns[i].right else body + room)
        lines.append((margin + "  ".join(parts)).rstrip())
    dropped = tuple(columns[i].header for i in fitted.dropped)
    return Drawn(tuple(lines), dropped, fitted.shortened)


def draw(columns: Sequence[Column], rows: Rows, layout: Layout, *, indent: int = 0) -> Drawn:
    """``rows`` under ``columns``, fitted to ``layout.width`` (less ``indent``)."""
    return render(columns, rows, fit(columns, rows, layout, indent=indent), indent=indent)


def _total(visible: Sequence[int], widths: Sequence[int]) -> int:
    return sum(widths[i] for i in visible) + GAP * (len(visible) - 1)


def _fit(
    columns: Sequence[Column], natural: Sequence[int], budget: int | None
) -> tuple[list[int], list[int]]:
    visible = list(range(len(columns)))
    widths = list(natural)
    if budget is None or _total(visible, widths) <= budget:
        return visible, widths
    optional = sorted((c.drop, i) for i, c in enumerate(columns) if c.drop is not None)
    floors = [
        min(natural[i], max(c.shrink, cells(c.header))) if c.shrink is not None else natural[i]
        for i, c in enumerate(columns)
    ]
    soft = [
        min(natural[i], max(floors[i], c.soft)) if c.soft is not None else natural[i]
        for i, c in enumerate(columns)
    ]
    while True:
        widths = list(natural)
        _shrink(visible, widths, soft, budget)
        if _total(visible, widths) <= budget:
            return visible, widths
        if not optional:
            break
        visible.remove(optional.pop(0)[1])
    _shrink(visible, widths, floors, budget)
    return visible, widths


def _shrink(visible: Sequence[int], widths: list[int], floors: Sequence[int], budget: int) -> None:
    """Take cells from the widest shortenable column until the row fits or none is left."""
    excess = _total(visible, widths) - budget
    while excess > 0:
        candidates = [i for i in visible if widths[i] > floors[i]]
        if not candidates:
            return
        widest = max(candidates, key=lambda i: (widths[i] - floors[i], -i))
        others = [widths[i] - floors[i] for i in candidates if i != widest]
        room = widths[widest] - floors[widest]
        step = max(1, min(excess, room - max(others, default=0)))
        widths[widest] -= step
        excess -= step


def fit_note(drawn: Iterable[Drawn], layout: Layout) -> str | None:
    """One line saying what the tables left out to fit, or None."""
    dropped: list[str] = []
    shortened = False
    for table in drawn:
        dropped += [h for h in table.dropped if h not in dropped]
        shortened = shortened or table.shortened
    if not dropped and not shortened:
        return None
    parts = []
    if dropped:
        parts.append(f"columns left out: {', '.join(dropped)}")
    if shortened:
        parts.append("long values shortened (…)")
    return f"To fit {layout.width} columns: {'; '.join(parts)}. --wide shows everything in full."


def collapse(
    items: Sequence[T], key: Callable[[T], Hashable | None], at_least: int
) -> list[list[T]]:
    """``items`` in groups of alike ones (the same ``key``), in the order each group
    first appears; a group smaller than ``at_least``, or whose key is None (never to be
    hidden among others), is split into single items in their own places."""
    groups: dict[Hashable, list[T]] = {}
    for item in items:
        k = key(item)
        if k is not None:
            groups.setdefault(k, []).append(item)
    out: list[list[T]] = []
    placed: set[int] = set()
    for item in items:
        k = key(item)
        members = groups.get(k, []) if k is not None else []
        if len(members) >= at_least:
            if id(members) not in placed:
                placed.add(id(members))
                out.append(members)
        else:
            out.append([item])
    return out

