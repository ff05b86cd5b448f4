"""The room the human output has (output/layout.py) and how tables fit it (table.py)."""

from __future__ import annotations

import io
import os
import re

import pytest

from tcaudit.output.layout import (
    MIN_WIDTH,
    PIPE_WIDTH,
    Layout,
    cells,
    cut_end,
    detect,
    finish,
    paint,
    plain,
    shorten,
)
from tcaudit.output.sanitize import shown, shown_lines
from tcaudit.output.table import Cell, Column, draw, fit_note


class Tty(io.StringIO):
    """A terminal stand-in: isatty, and a file descriptor whose size is asked for."""

    def __init__(self, fd: int | None = None) -> None:
        super().__init__()
        self.fd = fd

    def isatty(self) -> bool:
        return True

    def fileno(self) -> int:
        if self.fd is None:
            raise io.UnsupportedOperation("no fd")
        return self.fd


def test_width_comes_from_columns_then_the_terminal_then_the_fixed_pipe_width() -> None:
    pipe = io.StringIO()
    assert detect(stream=pipe, environ={}) == Layout(width=PIPE_WIDTH, colour=False)
    assert PIPE_WIDTH == 120
    assert detect(stream=pipe, environ={"COLUMNS": "100"}).width == 100  # COLUMNS wins
    assert detect(stream=Tty(), environ={"COLUMNS": "200"}).width == 200
    assert detect(stream=Tty(), environ={}).width == 80  # a tty that cannot say its size
    for junk in ("", "0", "-5", "wide", "12.5"):
        assert detect(stream=pipe, environ={"COLUMNS": junk}).width == PIPE_WIDTH
    assert detect(stream=pipe, environ={"COLUMNS": "10"}).width == MIN_WIDTH
    assert detect(stream=pipe, environ={"COLUMNS": "100"}, wide=True).width is None


def test_the_terminal_size_is_asked_of_the_terminal_itself() -> None:
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    try:
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 137, 0, 0))
        assert detect(stream=Tty(follower), environ={}).width == 137
        assert detect(stream=Tty(follower), environ={"COLUMNS": "90"}).width == 90
    finally:
        os.close(leader)
        os.close(follower)


def test_colour_only_on_a_terminal_without_no_color_or_a_dumb_term() -> None:
    assert detect(stream=Tty(), environ={}).colour is True
    assert detect(stream=Tty(), environ={}, wide=True).colour is True
    assert detect(stream=io.StringIO(), environ={}).colour is False  # piped
    assert detect(stream=Tty(), environ={"NO_COLOR": "1"}).colour is False
    assert detect(stream=Tty(), environ={"NO_COLOR": ""}).colour is True  # no-color.org
    assert detect(stream=Tty(), environ={"TERM": "dumb"}).colour is False


def test_paint_marks_colour_that_finish_applies_or_removes() -> None:
    text = f"state: {paint('FAIL', 'red', 'bold')} now"
    assert finish(text, colour=False) == "state: FAIL now"
    assert finish(text, colour=True) == "state: \x1b[31;1mFAIL\x1b[0m now"
    assert plain(text) == "state: FAIL now" and cells(text) == len("state: FAIL now")
    # the net keeps the markers and escapes everything else, a forged marker included
    forged = "\x0e" + "0" * 16 + "31\x0f"
    assert shown_lines(text + forged) == text + "\\x0e" + "0" * 16 + "31\\x0f"


def test_names_are_shortened_in_the_middle_and_prose_at_its_end() -> None:
    name = "cil_from_container-lxc12345"
    assert shorten(name, 40) == name
    short = shorten(name, 12)
    assert short == "cil_f…c12345" and cells(short) == 12
    assert shorten(name, 12, keep=" +9") == "cil_…2345 +9"
    assert shorten(name, 3, keep=" +249") == " +249"  # the count is never cut
    assert cut_end("keep classifier_priority 10: no classifier", 20) == "keep classifier_pri…"
    # an escape written by shown() is never cut in two
    escaped = shown("a\x1bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\x07z")
    for width in range(3, len(escaped)):
        cut = shorten(escaped, width)
        assert cells(cut) <= width
        head, _, tail = cut.partition("…")
        assert head in ("", "a", "a\\x1b") or head.startswith("a\\x1bb"), head
        assert tail == "" or escaped.endswith(tail)
    # wide characters take two cells
    assert cells("名前") == 4 and cells(shorten("名前名前名前名前", 7)) <= 7


COLUMNS = (
    Column("interface", shrink=9),
    Column("pref", right=True),
    Column("filter name", shrink=11, soft=16, drop=2),
    Column("verdict"),
    Column("held by", shrink=7, drop=1),
)
ROWS = [
    ["lxc1", 1, "cil_from_container-lxc1", "accept|drop|redirect", "cilium-agent[1007]"],
    ["", 10, "classifier_ingress_security3_4026531992_2115", "continue", "system-probe[21]"],
]


def test_a_table_that_fits_is_drawn_in_full() -> None:
    drawn = draw(COLUMNS, ROWS, Layout(width=None))
    headers = ["interface", "pref", "filter name", "verdict", "held by"]
    assert re.split(r"\s{2,}", drawn.lines[0]) == headers
    assert drawn.lines[1].startswith("---------  ----  ------")
    assert drawn.lines[3].endswith("system-probe[21]")
    assert "     1  " in drawn.lines[2]  # numbers on the right
    assert drawn.dropped == () and not drawn.shortened
    assert fit_note([drawn], Layout(width=None)) is None


@pytest.mark.parametrize("width", [40, 60, 80, 100, 200])
def test_a_table_fits_its_width_and_says_what_it_left_out(width: int) -> None:
    drawn = draw(COLUMNS, ROWS, Layout(width=width))
    assert max(cells(line) for line in drawn.lines) <= width
    note = fit_note([drawn], Layout(width=width))
    if width >= 110:
        assert drawn.dropped == () and note is None
    else:
        assert note is not None and f"To fit {width} columns" in note and "--wide" in note
        for header in drawn.dropped:
            assert header in note
    # optional columns go in their rank order, never an essential one
    order = ["held by", "filter name"]
    assert set(drawn.dropped) == set(order[: len(drawn.dropped)])
    assert "verdict" in drawn.lines[0] and "accept|drop|redirect" in drawn.text


def test_shortening_comes_before_dropping_only_down_to_the_soft_floor() -> None:
    at_80 = draw(COLUMNS, ROWS, Layout(width=80))  # the filter name down to 16: enough
    assert at_80.dropped == () and at_80.shortened
    at_70 = draw(COLUMNS, ROWS, Layout(width=70))  # not enough: held by goes first
    assert at_70.dropped == ("held by",) and at_70.shortened
    assert any("…" in line and line.endswith("992_2115  continue") for line in at_70.lines)


def test_a_styled_cell_keeps_its_alignment() -> None:
    rows = [[Cell("!!", ("red",)), "a"], ["", "b"]]
    columns = (Column("!"), Column("x"))
    drawn = draw(columns, rows, Layout(width=None))
    assert finish(drawn.text, colour=False) == "!   x\n--  -\n!!  a\n    b"
    assert "\x1b[31m!!\x1b[0m  a" in finish(drawn.text, colour=True)
