"""How wide and how coloured the human output may be, decided once per run.

Width (``Layout.width``, in terminal cells):

- ``COLUMNS``, when it is a positive integer, wins (``COLUMNS=100 tcaudit scan | less``);
- else the terminal's own width when stdout is one;
- else :data:`PIPE_WIDTH` (120): files, pipes and CI logs get one fixed, documented width;
- ``--wide``: no limit, every column in full (``Layout(width=None)``).

Nothing is ever laid out narrower than :data:`MIN_WIDTH`; prose is wrapped at
:data:`PROSE_WIDTH` at most.

Colour (``Layout.colour``) only when stdout is a terminal, ``NO_COLOR`` is unset or empty
(no-color.org) and ``TERM`` is not ``dumb``; never in a pipe or a file. Colour only
underlines what the words already say: every coloured word reads the same without it.

Colour reaches the text as markers (:func:`paint`) that the renderers' safety net
(sanitize.safe_text) keeps and :func:`finish` turns into SGR codes or removes. A marker
carries a token drawn when this module is imported, so no name another vendor chose can
forge one (and every control character in a name is escaped before it is placed).
"""

from __future__ import annotations

import os
import re
import secrets
import sys
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, TextIO

PIPE_WIDTH: Final = 120
MIN_WIDTH: Final = 40
PROSE_WIDTH: Final = 88
ELLIPSIS: Final = "…"

STYLES: Final = {"red": "31", "green": "32", "yellow": "33", "bold": "1", "dim": "2"}
_TOKEN: Final = secrets.token_hex(8)
_MARK: Final = re.compile("\x0e" + _TOKEN + r"(\d+(?:;\d+)*)\x0f")
MARK_PATTERN: Final = _MARK  # sanitize.shown_lines leaves these alone


@dataclass(frozen=True)
class Layout:
    """The room the human output has: ``width`` in cells (None: unlimited, ``--wide``)
    and whether it may use colour."""

    width: int | None = PIPE_WIDTH
    colour: bool = False

    @property
    def prose(self) -> int:
        """Where paragraphs wrap."""
        if self.width is None:
            return PROSE_WIDTH
        return min(PROSE_WIDTH, self.width)


PIPED: Final = Layout()  # what a pipe or a file gets, and the renderers' default
WIDE: Final = Layout(width=None)


def detect(
    *,
    wide: bool = False,
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> Layout:
    """The layout for output written to ``stream`` (default stdout) under ``environ``."""
    out = sys.stdout if stream is None else stream
    env = os.environ if environ is None else environ
    try:
        tty = out.isatty()
    except (AttributeError, ValueError):  # closed or not a real file
        tty = False
    colour = tty and not env.get("NO_COLOR") and env.get("TERM") != "dumb"
    if wide:
        return Layout(width=None, colour=colour)
    columns = env.get("COLUMNS", "").strip()
    if columns.isdigit() and int(columns) > 0:
        width = int(columns)
    elif tty:
        try:
            width = os.get_terminal_size(out.fileno()).columns or 80
        except (AttributeError, OSError, ValueError):
            width = 80  # a terminal that does not say: the terminal default
    else:
        width = PIPE_WIDTH
    return Layout(width=max(MIN_WIDTH, width), colour=colour)


def paint(text: str, *styles: str) -> str:
    """``text`` marked to be shown in ``styles`` (red, green, yellow, bold, dim) where
    colour is allowed; the words themselves must carry the meaning."""
    if not text:
        return text
    codes = ";".join(STYLES[s] for s in styles)
    return f"\x0e{_TOKEN}{codes}\x0f{text}\x0e{_TOKEN}0\x0f"


def finish(text: str, colour: bool) -> str:
    """Markers become SGR codes (colour) or nothing."""
    if "\x0e" not in text:
        return text
    if not colour:
        return _MARK.sub("", text)
    return _MARK.sub(lambda m: f"\x1b[{m.group(1)}m", text)


def plain(text: str) -> str:
    """``text`` without markers (to measure or compare it)."""
    return _MARK.sub("", text) if "\x0e" in text else text


def cells(text: str) -> int:
    """How many terminal cells ``text`` takes: wide East Asian characters two, combining
    marks none (markers none)."""
    text = plain(text)
    if text.isascii():
        return len(text)
    return sum(_cell(ch) for ch in text)


def _cell(ch: str) -> int:
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


# the units a shortened name is cut between: an escape written by sanitize.shown() stays
# whole, so "\x1b" is never cut to "\x…"
_UNITS: Final = re.compile(r"\\\\|\\x[0-9a-f]{2}|\\u[0-9a-f]{4}|\\U[0-9a-f]{8}|.", re.S)


def shorten(text: str, width: int, keep: str = "") -> str:
    """``text + keep`` in at most ``width`` cells: ``text`` loses its middle to an
    ellipsis (its start and its end usually tell names apart, the end a little more);
    ``keep`` (a count, a unit) is never cut."""
    if cells(text) + cells(keep) <= width:
        return text + keep
    room = width - cells(keep) - 1
    if room < 1:  # no room for any of the name: the count alone
        return keep
    units = _UNITS.findall(text)
    head: list[str] = []
    used = 0
    for unit in units:  # the start gets the smaller half: the end tells names apart
        if used + cells(unit) > room // 2:
            break
        head.append(unit)
        used += cells(unit)
    tail: list[str] = []
    for unit in reversed(units[len(head) :]):
        if used + cells(unit) > room:
            break
        tail.append(unit)
        used += cells(unit)
    return "".join(head) + ELLIPSIS + "".join(reversed(tail)) + keep


def cut_end(text: str, width: int, keep: str = "") -> str:
    """``text + keep`` in at most ``width`` cells, ``text`` losing its end (prose)."""
    if cells(text) + cells(keep) <= width:
        return text + keep
    room = width - cells(keep) - 1
    if room < 1:
        return keep
    out: list[str] = []
    used = 0
    for unit in _UNITS.findall(text):
        if used + cells(unit) > room:
            break
        out.append(unit)
        used += cells(unit)
    return "".join(out).rstrip() + ELLIPSIS + keep


def wrap(text: str, width: int | None, *, indent: str = "", subsequent: str = "") -> list[str]:
    """``text`` in lines of at most ``width`` cells (None: one line), broken at spaces
    only (a long name stays whole), colour markers measured as nothing."""
    words = text.split()
    if width is None or not words:
        return [indent + " ".join(words)] if words else []
    lines: list[str] = []
    line = indent + words[0]
    for word in words[1:]:
        if cells(line) + 1 + cells(word) > width:
            lines.append(line)
            line = subsequent + word
        else:
            line += " " + word
    lines.append(line)
    return lines


def pad(text: str, width: int, right: bool = False) -> str:
    room = max(width - cells(text), 0)
    return " " * room + text if right else text + " " * room
