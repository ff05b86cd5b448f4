"""TC_ACT_* and TCX_* values, and what a program's return values mean where it hangs.

Kernel facts: direct-action cls_bpf keeps OK, SHOT, STOLEN, TRAP, REDIRECT and UNSPEC
and turns every other value into UNSPEC (net/sched/cls_bpf.c cls_bpf_exec_opcode);
classic cls_bpf treats 0 as "no match" and runs the actions otherwise (cls_bpf_classify,
tcf_exts_exec); TCX keeps PASS, DROP and REDIRECT and turns every other value into NEXT
(include/net/tcx.h tcx_action_code).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Literal

from tcaudit.kernel.abi import (
    TC_ACT_NAMES,
    TC_ACT_OK,
    TC_ACT_PIPE,
    TC_ACT_QUEUED,
    TC_ACT_RECLASSIFY,
    TC_ACT_REDIRECT,
    TC_ACT_REPEAT,
    TC_ACT_SHOT,
    TC_ACT_STOLEN,
    TC_ACT_TRAP,
    TC_ACT_UNSPEC,
    TCX_DROP,
    TCX_NAMES,
    TCX_NEXT,
    TCX_PASS,
    TCX_REDIRECT,
)

__all__ = [
    "TCX_DROP", "TCX_NAMES", "TCX_NEXT", "TCX_PASS", "TCX_REDIRECT", "TC_ACT_NAMES",
    "TC_ACT_OK", "TC_ACT_PIPE", "TC_ACT_QUEUED", "TC_ACT_RECLASSIFY", "TC_ACT_REDIRECT",
    "TC_ACT_REPEAT", "TC_ACT_SHOT", "TC_ACT_STOLEN", "TC_ACT_TRAP", "TC_ACT_UNSPEC",
    "Mode", "effective", "effective_one", "effective_ranges", "ranges_text", "verdict_names",
]

Mode = Literal["direct-action", "classic", "tcx"]

_ALL_WORDS = ("accept", "continue", "drop", "redirect", "stolen", "trap")
_DA_WORDS: Mapping[int, str] = MappingProxyType(
    {
        TC_ACT_OK: "accept",
        TC_ACT_SHOT: "drop",
        TC_ACT_STOLEN: "stolen",
        TC_ACT_TRAP: "trap",
        TC_ACT_REDIRECT: "redirect",
        TC_ACT_UNSPEC: "continue",
    }
)
_TCX_WORDS: Mapping[int, str] = MappingProxyType(
    {TCX_NEXT: "continue", TCX_PASS: "accept", TCX_DROP: "drop", TCX_REDIRECT: "redirect"}
)


def effective_one(value: int, mode: Mode, *, has_actions: bool = False) -> tuple[str, ...]:
    """Meaning of one raw return value; see :func:`effective`."""
    if mode == "direct-action":
        return (_DA_WORDS.get(value, "continue"),)
    if mode == "tcx":
        return (_TCX_WORDS.get(value, "continue"),)
    if mode == "classic":
        if value == 0:
            return ("continue",)
        return _ALL_WORDS if has_actions else ("accept",)
    raise ValueError(f"unknown mode {mode!r}")


def effective(
    possible: frozenset[int] | None, mode: Mode, *, has_actions: bool = False
) -> tuple[str, ...] | None:
    """What the possible raw values mean where the program is attached.

    Sorted words from "accept", "continue", "drop", "redirect", "stolen",
    "trap"; None when ``possible`` is None.

    * ``direct-action`` cls_bpf (cls_bpf_exec_opcode): OK -> accept,
      SHOT -> drop, STOLEN -> stolen, TRAP -> trap, REDIRECT -> redirect,
      UNSPEC -> continue, and every other value -> continue.
    * ``classic`` (non-direct-action) cls_bpf (cls_bpf_classify): 0 is "no
      match" -> continue; any other value is a match. With no actions a match
      ends the chain with TC_ACT_OK -> accept. With actions
      (``has_actions=True``) the actions decide, which this function does not
      model: a match then maps to every word (an action may also hand the
      packet on, e.g. one returning UNSPEC), a conservative over-approximation.
    * ``tcx`` (tcx_action_code): NEXT (-1) -> continue, PASS -> accept,
      DROP -> drop, REDIRECT -> redirect, any other value -> continue. Note
      that any value other than TCX_NEXT stops the rest of the TCX list; the
      "other" values reach the clsact filters as NEXT, which is what
      "continue" means here (the packet still reaches tc classifiers), but
      later TCX programs do not see it.
    """
    if possible is None:
        return None
    words: set[str] = set()
    for v in possible:
        words.update(effective_one(v, mode, has_actions=has_actions))
    return tuple(sorted(words))


def verdict_names(
    possible: frozenset[int] | None, mode: Literal["tc", "tcx"] = "tc"
) -> list[str]:
    """Symbolic names of raw values in ascending order, e.g. ["TC_ACT_OK",
    "TC_ACT_SHOT"]; values without a name are given as decimal numbers.
    With ``mode="tcx"`` the TCX_* names are used where they exist. An unknown
    set (None) gives []."""
    if possible is None:
        return []
    names = TCX_NAMES if mode == "tcx" else TC_ACT_NAMES
    return [names.get(v, str(v)) for v in sorted(possible)]



def effective_ranges(
    ranges: Sequence[tuple[int, int]] | None, mode: Mode, *, has_actions: bool = False
) -> tuple[str, ...] | None:
    """:func:`effective` over inclusive ranges of raw values (None when unknown)."""
    if ranges is None:
        return None
    specials = _DA_WORDS if mode == "direct-action" else _TCX_WORDS if mode == "tcx" else {0: ""}
    words: set[str] = set()
    other = False
    total = 0
    for lo, hi in ranges:
        total += hi - lo + 1
        inside = sum(1 for v in specials if lo <= v <= hi)
        if hi - lo + 1 > inside:
            other = True
    for v in specials:
        if any(lo <= v <= hi for lo, hi in ranges):
            words.update(effective_one(v, mode, has_actions=has_actions))
    if other:
        # any value that is not one of the named ones: continue (direct-action, TCX)
        # or a match (classic)
        words.update(effective_one(_OTHER[mode], mode, has_actions=has_actions))
    return tuple(sorted(words))


_OTHER: Mapping[str, int] = MappingProxyType({"direct-action": 1, "tcx": 1, "classic": 1})


def ranges_text(ranges: Sequence[tuple[int, int]]) -> str:
    """``[-4095, 0], 2, 7``: raw values, ranges written out as [lo, hi]."""
    return ", ".join(str(lo) if lo == hi else f"[{lo}, {hi}]" for lo, hi in ranges)
