"""Names other vendors chose, made safe to show to a person.

Filter names, program names, interface names, process names and the messages that quote
them are chosen by whoever loaded the program; tcaudit runs as root and prints them to a
terminal, into CI logs (JUnit XML) and into job summaries (markdown). ``shown()`` is the
one helper every human renderer uses (JSON needs none: its encoder escapes; diff and
merge match on the real names, never on these):

- Unicode categories Cc (C0 and C1 controls: ESC, BEL, U+009B CSI, ...), Cf (format
  characters, the bidi overrides and isolates U+202A-U+202E and U+2066-U+2069 among
  them), Zl and Zp (line and paragraph separators) are written as ``\\xNN``, ``\\uNNNN``
  or ``\\UNNNNNNNN``, so a name can neither move the cursor, recolour the terminal,
  reverse the text around it nor start a new line;
- bytes that were not UTF-8 reach us as lone surrogates (the kernel gateways decode
  names with ``errors="surrogateescape"``, so two different names never collapse into
  one U+FFFD): they are written as the original byte, ``\\xNN``;
- a backslash is doubled, so ``\\x1b`` in a name and an escaped ESC look different.

XML 1.0 cannot carry most of these even as character references, and a markdown table
cell breaks on a newline: both formats call ``shown()`` before their own escaping.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from functools import wraps
from typing import Final

from tcaudit.output.layout import MARK_PATTERN, finish

UNSAFE: Final = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def _escape(ch: str) -> str:
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the undecodable byte itself
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def shown(text: str) -> str:
    """``text`` with every control, format, separator and undecodable character escaped
    and backslashes doubled."""
    if text.isascii() and text.isprintable() and "\\" not in text:
        return text  # the common case, at C speed
    return _escaped(text.replace("\\", "\\\\"))


def _escaped(text: str) -> str:
    if text.isascii() and text.isprintable():
        return text
    return "".join(_escape(ch) if unicodedata.category(ch) in UNSAFE else ch for ch in text)


def shown_lines(text: str) -> str:
    """Every line of a rendered text made safe, its line breaks kept.

    The renderers escape each name where they place it with :func:`shown` (a newline in
    a name must not split a table row); this pass is the net under them, so nothing a
    vendor chose reaches a terminal unescaped even through a field a renderer forgot.
    It leaves backslashes alone: the names in ``text`` are already escaped, and the
    colour markers of output/layout.py (which carry a token no name can know).
    """
    if "\x0e" not in text:
        return _lines(text)
    out: list[str] = []
    start = 0
    for mark in MARK_PATTERN.finditer(text):
        out += [_lines(text[start : mark.start()]), mark.group(0)]
        start = mark.end()
    out.append(_lines(text[start:]))
    return "".join(out)


def _lines(text: str) -> str:
    return "\n".join(_escaped(line) for line in text.split("\n"))


def safe_text(render: Callable[..., str]) -> Callable[..., str]:
    """Decorate a text renderer: its result goes through :func:`shown_lines`, then its
    colour markers become colour when its ``layout=`` allows it, else nothing."""

    @wraps(render)
    def wrapper(*args: object, **kwargs: object) -> str:
        layout = kwargs.get("layout")
        colour = bool(getattr(layout, "colour", False))
        return finish(shown_lines(render(*args, **kwargs)), colour)

    return wrapper
