"""Conditional jumps in the dependence pass (``dependence``): which ones a varying value
may decide, and which sides the engine follows for every copy.

A jump on a tainted value is "depends" unless the engine learns nothing from it that
differs between copies: an ``==``/``!=`` with an opaque value that has both sides
feasible whatever the constant (``_both_sides``), or a test of an *exact* value (every
copy's value known) that the engine decides alike for all of them. In the last case
only the side the engine follows is followed here: no copy's analysis ever sees the
other, so nothing on it is part of any answer.
"""

from __future__ import annotations

from collections.abc import Mapping

from tcaudit.analysis import domain as D
from tcaudit.analysis import insns as I
from tcaudit.analysis.domain import Value
from tcaudit.analysis.prepare import NREGS
from tcaudit.analysis.taint import B8, B16, B32, N8, N16, N32, N64, PLAIN, PTRS, T


class Depends(Exception):
    """The answer may depend on a varying constant (message: where and why)."""


def jump(pc: int, op: int, wide: bool, dst: int, src: int, var: bool, fl: list[int],
         org: list[int | None], kval: Value, exact: Mapping[int, Value],
         values: Mapping[int, frozenset[int]]) -> tuple[bool, bool]:
    """Whether the conditional jump at ``pc`` may be taken and may fall through, as the
    engine sees it for every copy (both, unless an exact value decides it); raises
    Depends when a varying value may decide it. Registers it narrows lose their origin
    (flags ``fl`` and origins ``org`` are updated); ``var``: its immediate varies;
    ``exact``: every exact value's id -> every copy's value; ``values``: every copy's
    immediate at each varying position."""
    ta = bool(fl[dst] & T)
    tb = var if src < 0 else bool(fl[src] & T)
    if ta and src < 0 and not var and not fl[dst] & PTRS:
        o = org[dst]
        if o is not None and o < 0:
            sides = D.branch(op, wide, exact[o], kval)
            taken, falls = (not (side is None or None in side) for side in sides)
            if not (taken and falls):
                # decided alike for every copy's value: the engine never follows
                # the other side in any of them
                return taken, falls
    narrowed = [dst] if src < 0 else [dst, src]
    if ta or tb:
        if ta and tb:
            raise Depends(f"two varying values compared (insn {pc})")
        other = src if ta else dst
        if other < 0 or op not in (I.BPF_JEQ, I.BPF_JNE):
            raise Depends(f"a varying constant decides a branch (insn {pc})")
        if not _both_sides(fl[other], wide, pc if src < 0 and tb else None,
                           fl[dst] if ta else fl[src], values):
            raise Depends(f"a varying constant decides a branch (insn {pc})")
    add = T if ta or tb else 0
    origins = {org[r] for r in narrowed} - {None}
    for r in range(NREGS):
        if r in narrowed or (org[r] is not None and org[r] in origins):
            fl[r] |= add | PLAIN
            org[r] = None
    return True, True


def _both_sides(f: int, wide: bool, const_pc: int | None, tf: int,
                values: Mapping[int, frozenset[int]]) -> bool:
    """An == or != between a value with flags ``f`` and a varying constant (the
    immediate at ``const_pc``, else a register with flags ``tf``) has both sides
    feasible whatever the constant: the value is every w-bit number (zero-extended)
    and the constant is one at the jump's width, for every copy."""
    if f & PTRS:
        return False
    width = next((w for w, bit in ((64, N64), (32, N32), (16, N16), (8, N8))
                  if not f & bit), 0)
    if width == 0:
        return False
    if width == 64 or (width == 32 and not wide):
        return True
    if const_pc is None:  # a register: its value fits in w bits (zero-extended)
        return not tf & (PTRS | {8: B8, 16: B16, 32: B32}[width])
    consts = values.get(const_pc)
    if not consts:
        return False
    mask = (1 << 64) - 1 if wide else 0xFFFFFFFF
    return all(0 <= (c & mask if not wide else c) < (1 << width) for c in consts)
