"""Conditional jumps: what each side of a comparison says about both operands.

The verifier's ``reg_set_min_max`` in spirit (kernel/bpf/verifier.c): 64-bit
comparisons narrow signed or unsigned bounds, JEQ intersects, JSET sets or clears known
bits; JMP32 comparisons narrow only where the 32-bit comparison is the 64-bit one.
Sets of constants are filtered exactly; unions are refined part by part.
"""

from __future__ import annotations

from tcaudit.analysis.arith import PAIRWISE_LIMIT, const_of
from tcaudit.analysis.scalar import (
    M32,
    M64,
    S32_MAX,
    S32_MIN,
    Rng,
    Scalar,
    as_rng,
    contains,
    norm,
    s32,
    s64,
    sext,
    trunc32,
    union,
)

JEQ, JGT, JGE, JSET, JNE, JSGT, JSGE, JLT, JLE, JSLT, JSLE = (
    0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0xA0, 0xB0, 0xC0, 0xD0
)
_NEGATE = {JEQ: JNE, JNE: JEQ, JGT: JLE, JLE: JGT, JGE: JLT, JLT: JGE,
           JSGT: JSLE, JSLE: JSGT, JSGE: JSLT, JSLT: JSGE}
_SWAP = {JEQ: JEQ, JNE: JNE, JGT: JLT, JLT: JGT, JGE: JLE, JLE: JGE,
         JSGT: JSLT, JSLT: JSGT, JSGE: JSLE, JSLE: JSGE}


def cmp_const(op: int, wide: bool, x: int, y: int) -> bool:
    if not wide:
        x &= M32
        y &= M32
    if op == JEQ:
        return x == y
    if op == JNE:
        return x != y
    if op == JGT:
        return x > y
    if op == JGE:
        return x >= y
    if op == JLT:
        return x < y
    if op == JLE:
        return x <= y
    if op == JSET:
        return (x & y) != 0
    sx, sy = (s64(x), s64(y)) if wide else (s32(x), s32(y))
    if op == JSGT:
        return sx > sy
    if op == JSGE:
        return sx >= sy
    if op == JSLT:
        return sx < sy
    if op == JSLE:
        return sx <= sy
    raise ValueError(op)


Side = tuple[Scalar | None, Scalar | None]
"""(dst, src) on one side of a jump; None marks that side infeasible."""


def branch(op: int, wide: bool, a: Scalar, b: Scalar) -> tuple[Side, Side]:
    """(taken, not taken) refinements of ``a op b`` (64-bit, or 32-bit for JMP32)."""
    if type(a) is frozenset and type(b) is frozenset and len(a) * len(b) <= PAIRWISE_LIMIT:
        at: set[int] = set()
        bt: set[int] = set()
        af: set[int] = set()
        bf: set[int] = set()
        for x in a:
            for y in b:
                if cmp_const(op, wide, x, y):
                    at.add(x)
                    bt.add(y)
                else:
                    af.add(x)
                    bf.add(y)
        return ((frozenset(at) or None, frozenset(bt) or None),
                (frozenset(af) or None, frozenset(bf) or None))
    if type(b) is Rng and b.parts:
        b = _drop_parts(b)
    if type(a) is Rng and a.parts:
        taken_a: list[Scalar] = []
        taken_b: list[Scalar] = []
        not_a: list[Scalar] = []
        not_b: list[Scalar] = []
        for p in a.parts:
            (pt, qt), (pf, qf) = branch(op, wide, p, b)
            if pt is not None and qt is not None:
                taken_a.append(pt)
                taken_b.append(qt)
            if pf is not None and qf is not None:
                not_a.append(pf)
                not_b.append(qf)
        return ((union(tuple(taken_a)) if taken_a else None,
                 union(tuple(taken_b)) if taken_b else None),
                (union(tuple(not_a)) if not_a else None,
                 union(tuple(not_b)) if not_b else None))
    if op == JSET:
        return _jset(wide, a, b)
    if not wide:
        # JMP32 refines where the 32-bit comparison is the 64-bit one, and a signed one
        # of two zero-extended 32-bit values through their sign-extended views (a
        # helper's -errno moved to a w register and tested with `if w8 s< 0`)
        signed = op in (JSGT, JSGE, JSLT, JSLE)
        if not (_fits32(a, signed) and _fits32(b, signed)):
            if signed and _fits32(a, False) and _fits32(b, False):
                return _signed32(op, a, b)
            return (a, b), (a, b)
    if type(b) is frozenset and len(b) == 1 and type(a) is Rng and const_of(a) is None:
        return _against_constant(op, a, b)
    taken = _refine(op, a, b)
    not_taken = _refine(_NEGATE[op], a, b)
    return taken, not_taken


def _against_constant(op: int, a: Rng, b: frozenset[int]) -> tuple[Side, Side]:
    """``_refine`` of both sides when ``b`` is one constant and ``a`` holds more than
    one value (most jumps of parsing code), with half the work: the constant's own
    refinement is itself on every feasible side (``a`` has a value on each side the
    bounds leave it one, and the constant is compared with that value)."""
    if op in (JEQ, JNE):
        # equal: the constant itself, when ``a`` holds it (what _limit's intersection
        # of the bounds and known bits comes to); not equal: ``a`` without it
        (c,) = b
        eq = b if contains(a, c) else None
        ne = _limit(JNE, a, as_rng(b))
        na, nf = (eq, ne) if op == JEQ else (ne, eq)
    else:
        rb = as_rng(b)
        na = _limit(op, a, rb)
        nf = _limit(_NEGATE[op], a, rb)
    return (na, None if na is None else b), (nf, None if nf is None else b)


def _signed32(op: int, a: Scalar, b: Scalar) -> tuple[Side, Side]:
    """A signed JMP32 comparison of two values whose upper 32 bits are zero: compared
    as their sign-extended low halves (a 64-bit signed comparison of those is the
    32-bit one), each refinement zero-extended back."""
    (at, bt), (af, bf) = branch(op, True, sext(a, 32), sext(b, 32))

    def back(v: Scalar | None) -> Scalar | None:
        return None if v is None else trunc32(v)

    return (back(at), back(bt)), (back(af), back(bf))


def _drop_parts(r: Rng) -> Rng:
    return Rng(r.smin, r.smax, r.umin, r.umax, r.tv, r.tm, r.reason)


def _fits32(v: Scalar, signed: bool) -> bool:
    if type(v) is frozenset:
        if signed:
            return all(S32_MIN <= s64(x) <= S32_MAX for x in v)
        return all(x <= M32 for x in v)
    r: Rng = v  # type: ignore[assignment]
    if signed:
        return r.smin >= S32_MIN and r.smax <= S32_MAX
    return r.umax <= M32


def _refine(op: int, a: Scalar, b: Scalar) -> Side:
    ra, rb = as_rng(a), as_rng(b)
    na = _limit(op, ra, rb)
    nb = _limit(_SWAP[op], rb, ra)
    if na is None or nb is None:
        return None, None
    return _back(a, na), _back(b, nb)


def _limit(op: int, a: Rng, b: Rng) -> Scalar | None:
    """``a`` restricted to the values for which ``a op y`` holds for some y in ``b``."""
    smin, smax, umin, umax = a.smin, a.smax, a.umin, a.umax
    if op == JEQ:
        smin, smax = max(smin, b.smin), min(smax, b.smax)
        umin, umax = max(umin, b.umin), min(umax, b.umax)
        if (a.tv ^ b.tv) & ~(a.tm | b.tm) & M64:
            return None
        tv = (a.tv | b.tv) & M64
        tm = a.tm & b.tm
        return norm(smin, smax, umin, umax, tv & ~tm & M64, tm, a.reason)
    if op == JNE:
        bc = const_of(b)
        if bc is not None:
            if umin == bc:
                umin += 1
            if umax == bc:
                umax -= 1
            sb = s64(bc)
            if smin == sb:
                smin += 1
            if smax == sb:
                smax -= 1
    elif op == JGT:
        umin = max(umin, b.umin + 1)
    elif op == JGE:
        umin = max(umin, b.umin)
    elif op == JLT:
        umax = min(umax, b.umax - 1)
    elif op == JLE:
        umax = min(umax, b.umax)
    elif op == JSGT:
        smin = max(smin, b.smin + 1)
    elif op == JSGE:
        smin = max(smin, b.smin)
    elif op == JSLT:
        smax = min(smax, b.smax - 1)
    elif op == JSLE:
        smax = min(smax, b.smax)
    if umin > umax or smin > smax:
        return None
    return norm(smin, smax, umin, umax, a.tv, a.tm, a.reason)


def _back(orig: Scalar, refined: Scalar) -> Scalar | None:
    """Keep a set a set: its members inside the refined bounds."""
    if type(orig) is frozenset:
        kept = frozenset(x for x in orig if contains(refined, x))
        return kept or None
    return refined


def _jset(wide: bool, a: Scalar, b: Scalar) -> tuple[Side, Side]:
    mask = M64 if wide else M32
    rb = as_rng(b)
    bc = const_of(rb)
    if bc is None:
        return (a, b), (a, b)
    bc &= mask
    ra = as_rng(a)
    # not taken: every bit of the mask is 0
    nt: Scalar | None
    if ra.tv & bc:
        nt = None
    else:
        nt = norm(ra.smin, ra.smax, ra.umin, ra.umax, ra.tv, ra.tm & ~bc & M64, ra.reason)
    # taken: some bit of the mask is 1 (known only for a single bit)
    tk: Scalar | None
    if (ra.tv | ra.tm) & bc == 0:
        tk = None
    elif bc.bit_count() == 1:
        tk = norm(ra.smin, ra.smax, ra.umin, ra.umax, ra.tv | bc, ra.tm & ~bc & M64, ra.reason)
    else:
        tk = a
    if type(a) is frozenset:
        tk = _back(a, tk) if tk is not None else None
        nt = _back(a, nt) if nt is not None else None
    return (tk, b if tk is not None else None), (nt, b if nt is not None else None)


def meet(a: Scalar, b: Scalar) -> Scalar | None:
    """The values in both (an over-approximation of the intersection); None if none."""
    if type(a) is frozenset:
        kept = frozenset(x for x in a if contains(b, x))
        return kept or None
    if type(b) is frozenset:
        kept = frozenset(x for x in b if contains(a, x))
        return kept or None
    ra: Rng = a  # type: ignore[assignment]
    rb: Rng = b  # type: ignore[assignment]
    for whole, other in ((rb, ra), (ra, rb)):
        if whole.parts:
            got = [m for m in (meet(other, p) for p in whole.parts) if m is not None]
            return union(tuple(got)) if got else None
    return _limit(JEQ, ra, rb)

