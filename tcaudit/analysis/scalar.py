"""Bounded scalars: signed and unsigned 64-bit bounds plus known bits, like the verifier.

A ``Rng`` is the verifier's view of a scalar register (kernel/bpf/verifier.c
``struct bpf_reg_state``: smin/smax, umin/umax and a tnum ``var_off``), kept for values
that are not one of at most ``CAP`` constants. The known-bits arithmetic follows
kernel/bpf/tnum.c; the bounds follow the verifier's ``scalar_min_max_*`` rules and
``reg_bounds_sync``. Everything here is pure and works on Python ints in the u64 /
s64 ranges; a ``Rng`` also carries the reason the value is not exact (shown when the
answer ends up unknown).

``norm()`` is the one constructor: it syncs the five views, answers None when they
contradict (an infeasible branch side), and turns a range of at most ``CAP`` values
into the exact set of constants.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

M64 = (1 << 64) - 1
M32 = 0xFFFFFFFF
S64_MIN = -(1 << 63)
S64_MAX = (1 << 63) - 1
S32_MIN = -(1 << 31)
S32_MAX = (1 << 31) - 1
CAP = 64
"""Largest set of constants kept exactly; larger sets become bounds."""


class Rng(NamedTuple):
    """A scalar within [smin, smax] (signed), [umin, umax] (unsigned) and tnum (tv, tm).

    ``tm`` has a 1 for every unknown bit; bits of ``tv`` under ``tm`` are 0.

    ``parts``, when not empty, says more: the value is in one of them (at most
    ``MAX_PARTS`` disjoint sets or bounds; the fields above are their hull). Joins make
    them, so that {0} joined with [1000, 1200] is not [0, 1200]; an operation that does
    not look at them works on the hull, which is sound.
    """

    smin: int
    smax: int
    umin: int
    umax: int
    tv: int
    tm: int
    reason: str
    parts: tuple[frozenset[int] | Rng, ...] = ()


def s64(x: int) -> int:
    x &= M64
    return x - (1 << 64) if x >> 63 else x


def s32(x: int) -> int:
    x &= M32
    return x - (1 << 32) if x & 0x80000000 else x


def full(reason: str) -> Rng:
    """Any 64-bit scalar (or a pointer outside the current frame)."""
    return Rng(S64_MIN, S64_MAX, 0, M64, 0, M64, reason)


def sized(bits: int, reason: str, signed: bool = False) -> Rng:
    """A value loaded from ``bits``-wide memory: zero- or sign-extended."""
    if bits >= 64:
        return full(reason)
    if signed:
        lo = -(1 << (bits - 1))
        hi = (1 << (bits - 1)) - 1
        return Rng(lo, hi, 0, M64, 0, M64, reason)
    top = (1 << bits) - 1
    return Rng(0, top, 0, top, 0, top, reason)


def is_full(r: Rng) -> bool:
    return r.tm == M64 and r.smin == S64_MIN and r.smax == S64_MAX and r.umin == 0 and r.umax == M64


# --------------------------------------------------------------------------
# tnum (kernel/bpf/tnum.c)
# --------------------------------------------------------------------------


def tnum_range(lo: int, hi: int) -> tuple[int, int]:
    chi = lo ^ hi
    bits = chi.bit_length()
    if bits > 63:
        return 0, M64
    delta = (1 << bits) - 1
    return lo & ~delta & M64, delta


def tnum_add(av: int, am: int, bv: int, bm: int) -> tuple[int, int]:
    sm = (am + bm) & M64
    sv = (av + bv) & M64
    sigma = (sm + sv) & M64
    chi = sigma ^ sv
    mu = chi | am | bm
    return sv & ~mu & M64, mu


def tnum_sub(av: int, am: int, bv: int, bm: int) -> tuple[int, int]:
    dv = (av - bv) & M64
    alpha = (dv + am) & M64
    beta = (dv - bm) & M64
    chi = alpha ^ beta
    mu = chi | am | bm
    return dv & ~mu & M64, mu


def tnum_and(av: int, am: int, bv: int, bm: int) -> tuple[int, int]:
    alpha = av | am
    beta = bv | bm
    v = av & bv
    return v, alpha & beta & ~v & M64


def tnum_or(av: int, am: int, bv: int, bm: int) -> tuple[int, int]:
    v = av | bv
    mu = am | bm
    return v, mu & ~v & M64


def tnum_xor(av: int, am: int, bv: int, bm: int) -> tuple[int, int]:
    v = av ^ bv
    mu = am | bm
    return v & ~mu & M64, mu


def tnum_mul(av: int, am: int, bv: int, bm: int) -> tuple[int, int]:
    acc_v = (av * bv) & M64
    acc_m = (0, 0)
    while av or am:
        if av & 1:
            acc_m = tnum_add(acc_m[0], acc_m[1], 0, bm)
        elif am & 1:
            acc_m = tnum_add(acc_m[0], acc_m[1], 0, bv | bm)
        av >>= 1
        am >>= 1
        bv = (bv << 1) & M64
        bm = (bm << 1) & M64
    return tnum_add(acc_v, 0, acc_m[0], acc_m[1])


def tnum_join(av: int, am: int, bv: int, bm: int) -> tuple[int, int]:
    mu = am | bm | (av ^ bv)
    return av & ~mu & M64, mu


# --------------------------------------------------------------------------
# Construction and conversion
# --------------------------------------------------------------------------

Scalar = frozenset[int] | Rng


def norm(
    smin: int, smax: int, umin: int, umax: int, tv: int, tm: int, reason: str
) -> Scalar | None:
    """Sync the views (reg_bounds_sync); None if they contradict; small ranges become sets."""
    for _ in range(2):
        # known bits -> unsigned bounds
        if umin < tv:
            umin = tv
        hi = tv | tm
        if umax > hi:
            umax = hi
        # known bits -> signed bounds
        if tm >> 63:
            lo_s = s64(tv | (1 << 63))
            hi_s = s64((tv | tm) & ~(1 << 63))
        else:
            lo_s = s64(tv)
            hi_s = s64(tv | tm)
        if smin < lo_s:
            smin = lo_s
        if smax > hi_s:
            smax = hi_s
        # signed <-> unsigned, when the signed range does not cross the sign boundary
        if smin >= 0 or smax < 0:
            a, b = smin & M64, smax & M64
            if umin < a:
                umin = a
            if umax > b:
                umax = b
        if umax <= S64_MAX or umin > S64_MAX:
            a, b = s64(umin), s64(umax)
            if smin < a:
                smin = a
            if smax > b:
                smax = b
        if smin > smax or umin > umax:
            return None
        # bounds -> known bits
        rv, rm = tnum_range(umin, umax)
        if (tv ^ rv) & ~(tm | rm) & M64:
            return None
        nv = (tv | rv) & M64
        nm = tm & rm
        tv, tm = nv & ~nm & M64, nm
    if umax - umin < CAP or smax - smin < CAP:
        if umax - umin <= smax - smin:
            cands = range(umin, umax + 1)
            vals = frozenset(
                x for x in cands if (x & ~tm) == tv and smin <= s64(x) <= smax
            )
        else:
            vals = frozenset(
                x & M64
                for x in range(smin, smax + 1)
                if (x & M64 & ~tm) == tv and umin <= (x & M64) <= umax
            )
        if not vals:
            return None
        return vals
    return Rng(smin, smax, umin, umax, tv, tm, reason)


def from_set(vals: frozenset[int], reason: str = "") -> Rng:
    """The bounds and known bits of a set of u64 constants (not re-normalised)."""
    umin = min(vals)
    umax = max(vals)
    ss = [s64(x) for x in vals]
    and_all = M64
    or_all = 0
    for x in vals:
        and_all &= x
        or_all |= x
    tm = and_all ^ or_all
    return Rng(min(ss), max(ss), umin, umax, and_all & ~tm & M64, tm, reason)


def as_rng(v: Scalar) -> Rng:
    return v if type(v) is Rng else from_set(v)  # type: ignore[arg-type]


def make_set(vals: frozenset[int] | set[int], reason: str) -> Scalar:
    """A set of constants, as bounds when it has more than CAP values."""
    fs = vals if type(vals) is frozenset else frozenset(vals)
    if len(fs) <= CAP:
        return fs
    r = from_set(fs, reason)
    out = norm(r.smin, r.smax, r.umin, r.umax, r.tv, r.tm, reason)
    assert out is not None
    if type(out) is frozenset:  # cannot happen (more than CAP distinct values)
        return Rng(r.smin, r.smax, r.umin, r.umax, r.tv, r.tm, reason)
    return out


MAX_PARTS = 4


def parts_of(v: Scalar) -> tuple[Scalar, ...]:
    if type(v) is Rng and v.parts:
        return v.parts
    return (v,)


def join(a: Scalar, b: Scalar) -> Scalar:
    """Least upper bound of two scalars: a set union while it stays small, else a union
    of at most MAX_PARTS disjoint parts."""
    if type(a) is frozenset and type(b) is frozenset:
        u = a | b
        return u if len(u) <= CAP else make_set(u, f"more than {CAP} possible values")
    if a == b:
        return a
    return union((*parts_of(a), *parts_of(b)))


def union(items: tuple[Scalar, ...]) -> Scalar:
    """The parts as one value: overlapping bounds merged, constants inside bounds
    dropped, the closest neighbours merged while there are more than MAX_PARTS."""
    sets: set[int] = set()
    rngs: list[Rng] = []
    for p in items:
        if type(p) is frozenset:
            sets |= p
        else:
            rngs.append(p)  # type: ignore[arg-type]
    if not rngs:
        return make_set(sets, f"more than {CAP} possible values")
    rngs.sort(key=lambda r: r.smin)
    merged: list[Rng] = []
    for r in rngs:
        if merged and r.smin <= merged[-1].smax + 1:
            merged[-1] = as_rng(_hull(merged[-1], r))
        else:
            merged.append(r)
    consts = frozenset(x for x in sets if not any(contains(r, x) for r in merged))
    parts: list[Scalar] = list(merged)
    if consts:
        if len(consts) > CAP:
            parts.append(make_set(consts, f"more than {CAP} possible values"))
        else:
            parts.append(consts)
    while len(parts) > MAX_PARTS:
        # merge the two parts whose hull adds the fewest values
        best: tuple[int, int, int] | None = None
        for i in range(len(parts)):
            for j in range(i + 1, len(parts)):
                h = as_rng(_hull(parts[i], parts[j]))
                cost = h.smax - h.smin
                if best is None or cost < best[0]:
                    best = (cost, i, j)
        assert best is not None
        _c, i, j = best
        h2 = _hull(parts[i], parts[j])
        parts = [p for k, p in enumerate(parts) if k not in (i, j)] + [h2]
    if len(parts) == 1:
        return parts[0]
    hull = parts[0]
    for p in parts[1:]:
        hull = _hull(hull, p)
    if type(hull) is frozenset:  # only sets left, no bounds: one set
        return make_set(frozenset().union(*parts), f"more than {CAP} possible values")  # type: ignore[arg-type]
    h = as_rng(hull)
    return Rng(h.smin, h.smax, h.umin, h.umax, h.tv, h.tm, h.reason,
               tuple(sorted(parts, key=lambda p: as_rng(p).smin)))


def _hull(a: Scalar, b: Scalar) -> Scalar:
    """The single interval (with known bits) covering both."""
    if type(a) is frozenset and type(b) is frozenset:
        u = a | b
        if len(u) <= CAP:
            return u
    ra = as_rng(a)
    rb = as_rng(b)
    tv, tm = tnum_join(ra.tv, ra.tm, rb.tv, rb.tm)
    reason = ra.reason or rb.reason
    r = Rng(min(ra.smin, rb.smin), max(ra.smax, rb.smax), min(ra.umin, rb.umin),
            max(ra.umax, rb.umax), tv, tm, reason)
    if r == ra and not ra.parts:
        return a
    out = norm(r.smin, r.smax, r.umin, r.umax, r.tv, r.tm, r.reason)
    return out if out is not None else r


def widen(old: Scalar, new: Scalar) -> Scalar:
    """Join, then push every bound that grew to its extreme (loops terminate)."""
    j = join(old, new)
    if j == old or type(j) is frozenset:
        return j
    ro = as_rng(old)
    rj = as_rng(j)
    smin = rj.smin if rj.smin >= ro.smin else S64_MIN
    smax = rj.smax if rj.smax <= ro.smax else S64_MAX
    umin = rj.umin if rj.umin >= ro.umin else 0
    umax = rj.umax if rj.umax <= ro.umax else M64
    # the known bits are kept: they can only be lost, one at a time (finite height)
    reason = rj.reason or "value varies across loop iterations"
    return Rng(smin, smax, umin, umax, rj.tv, rj.tm, reason)


def contains(v: Scalar, x: int) -> bool:
    x &= M64
    if type(v) is frozenset:
        return x in v
    r: Rng = v  # type: ignore[assignment]
    if not (r.umin <= x <= r.umax and r.smin <= s64(x) <= r.smax and (x & ~r.tm) == r.tv):
        return False
    return not r.parts or any(contains(p, x) for p in r.parts)


def s32_ranges(v: Scalar) -> list[tuple[int, int]] | None:
    """The low 32 bits of ``v`` read as a signed int: sorted disjoint ranges, or None
    when every 32-bit value is possible."""
    if type(v) is frozenset:
        return merge_ranges((s32(x), s32(x)) for x in v)
    r: Rng = v  # type: ignore[assignment]
    if r.parts:
        acc: list[tuple[int, int]] = []
        for p in r.parts:
            pr = s32_ranges(p)
            if pr is None:
                return None
            acc.extend(pr)
        out = merge_ranges(acc)
        return None if out == [(S32_MIN, S32_MAX)] else out
    if r.smin >= S32_MIN and r.smax <= S32_MAX:
        out = [(r.smin, r.smax)]
    elif r.umax <= M32:
        out = _u32_to_s32(r.umin, r.umax)
    else:
        lv = r.tv & M32
        lm = r.tm & M32
        if lm == M32:
            return None
        out = _u32_to_s32(lv, lv | lm)
    if out == [(S32_MIN, S32_MAX)]:
        return None
    return out


def _u32_to_s32(lo: int, hi: int) -> list[tuple[int, int]]:
    if hi <= S32_MAX:
        return [(lo, hi)]
    if lo > S32_MAX:
        return [(lo - (1 << 32), hi - (1 << 32))]
    return [(S32_MIN, hi - (1 << 32)), (lo, S32_MAX)]


def merge_ranges(pairs: object) -> list[tuple[int, int]]:
    """Sorted, disjoint, merged inclusive ranges (adjacent ones joined)."""
    items = sorted(pairs)  # type: ignore[call-overload]
    out: list[tuple[int, int]] = []
    for lo, hi in items:
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def count(ranges: list[tuple[int, int]]) -> int:
    return sum(hi - lo + 1 for lo, hi in ranges)


# --------------------------------------------------------------------------
# 32-bit views
# --------------------------------------------------------------------------


def trunc32(v: Scalar) -> Scalar:
    """The value's low 32 bits, zero-extended (what every ALU32 operand is)."""
    if type(v) is frozenset:
        return frozenset(x & M32 for x in v)
    r: Rng = v  # type: ignore[assignment]
    if r.parts:
        return union(tuple(trunc32(p) for p in r.parts))
    if r.umax <= M32:
        return r
    if r.smin >= S32_MIN and r.smax <= S32_MAX and (r.smin >= 0 or r.smax < 0):
        lo, hi = r.smin & M32, r.smax & M32
        out = norm(0, M32, lo, hi, r.tv & M32, r.tm & M32, r.reason)
    else:
        out = norm(0, M32, 0, M32, r.tv & M32, r.tm & M32, r.reason)
    assert out is not None
    return out


def sext(v: Scalar, bits: int) -> Scalar:
    """Sign-extend the low ``bits`` bits to 64 (movsx, ldsx, s32 views)."""
    mask = (1 << bits) - 1
    half = 1 << (bits - 1)
    if type(v) is frozenset:
        return frozenset(((x & mask) - ((x & mask) & half) * 2) & M64 for x in v)
    r: Rng = v  # type: ignore[assignment]
    if r.parts:
        return union(tuple(sext(p, bits) for p in r.parts))
    if r.umax <= mask:
        lo, hi = r.umin, r.umax
    elif -half <= r.smin and r.smax < half:
        return r
    else:
        lo, hi = 0, mask
    if hi < half:
        out = norm(lo, hi, lo, hi, r.tv & mask, r.tm & mask, r.reason)
    elif lo >= half:
        out = norm(lo - 2 * half, hi - 2 * half, 0, M64, 0, M64, r.reason)
    else:
        out = norm(-half, half - 1, 0, M64, 0, M64, r.reason)
    assert out is not None
    return out


# --------------------------------------------------------------------------
# Arithmetic (kernel/bpf/core.c ___bpf_prog_run semantics)
# --------------------------------------------------------------------------

ADD, SUB, MUL, DIV, OR, AND, LSH, RSH, NEG, MOD, XOR, MOV, ARSH = (
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0, 0xB0, 0xC0
)
_PAIRWISE_LIMIT = 256


def alu_const(op: int, wide: bool, off: int, x: int, y: int) -> int:
    """One ALU operation on constants, 64-bit or 32-bit (zero-extended result)."""
    if wide:
        mask, shift, signed = M64, 63, s64
    else:
        mask, shift, signed = M32, 31, s32
        x &= M32
        y &= M32
    if op == ADD:
        return (x + y) & mask
    if op == SUB:
        return (x - y) & mask
    if op == MUL:
        return (x * y) & mask
    if op == OR:
        return x | y
    if op == AND:
        return x & y
    if op == XOR:
        return x ^ y
    if op == LSH:
        return (x << (y & shift)) & mask
    if op == RSH:
        return x >> (y & shift)
    if op == ARSH:
        return (signed(x) >> (y & shift)) & mask
    if op == DIV:
        if y == 0:
            return 0
        if off == 1:
            return _sdiv(signed(x), signed(y)) & mask
        return x // y
    if op == MOD:
        if y == 0:
            return x
        if off == 1:
            return _smod(signed(x), signed(y)) & mask
        return x % y
    if op == MOV:
        return y
    raise ValueError(op)


def _sdiv(x: int, y: int) -> int:
    q = abs(x) // abs(y)
    return -q if (x < 0) != (y < 0) else q


def _smod(x: int, y: int) -> int:
    r = abs(x) % abs(y)
    return -r if x < 0 else r


def alu(op: int, wide: bool, off: int, a: Scalar, b: Scalar, reason: str) -> Scalar:
    """``a op b`` on scalars; ``reason`` names why the result is inexact if it is."""
    if type(a) is frozenset and type(b) is frozenset and len(a) * len(b) <= _PAIRWISE_LIMIT:
        return make_set(
            {alu_const(op, wide, off, x, y) for x in a for y in b},
            reason,
        )
    if type(a) is Rng and a.parts:
        return union(tuple(alu(op, wide, off, p, b, reason) for p in a.parts))
    if type(b) is Rng and b.parts:
        return union(tuple(alu(op, wide, off, a, p, reason) for p in b.parts))
    # a few constants against bounds: the join over each constant (exact per constant,
    # e.g. a sign mask {0, -1} & x)
    if type(a) is frozenset and 1 < len(a) <= _DISTRIBUTE and type(b) is Rng:
        return _join_all(alu(op, wide, off, frozenset((x,)), b, reason) for x in a)
    if type(b) is frozenset and 1 < len(b) <= _DISTRIBUTE and type(a) is Rng:
        return _join_all(alu(op, wide, off, a, frozenset((y,)), reason) for y in b)
    if not wide:
        a32 = trunc32(a)
        b32 = trunc32(b)
        if op == ARSH or (off == 1 and op in (DIV, MOD)):
            a64 = sext(a32, 32)
            b64 = sext(b32, 32) if op != ARSH else b32
            res = _alu64(op, off, as_rng(a64), as_rng(b64), reason, shift_mask=31)
        else:
            res = _alu64(op, off, as_rng(a32), as_rng(b32), reason, shift_mask=31)
        return trunc32(res)
    return _alu64(op, off, as_rng(a), as_rng(b), reason, shift_mask=63)


_DISTRIBUTE = 8


def _join_all(items: Iterable[Scalar]) -> Scalar:
    acc: Scalar | None = None
    for r in items:
        acc = r if acc is None else join(acc, r)
    assert acc is not None
    return acc


def same_reg(op: int, wide: bool, a: Scalar) -> Scalar | None:
    """``x op x`` with both operands the same register: exact for sub, xor, and, or."""
    if op in (SUB, XOR):
        return frozenset((0,))
    if op in (AND, OR):
        return a if wide else trunc32(a)
    return None


def _const(r: Rng) -> int | None:
    return r.tv if r.tm == 0 else None


def _alu64(op: int, off: int, a: Rng, b: Rng, reason: str, shift_mask: int) -> Scalar:
    reason = a.reason or b.reason or reason
    smin, smax, umin, umax = S64_MIN, S64_MAX, 0, M64
    tv, tm = 0, M64
    bc = _const(b)
    ac = _const(a)
    if bc is not None and _identity(op, off, bc, a):
        return a
    if ac is not None and op in (ADD, MUL, AND, OR, XOR) and _identity(op, off, ac, b):
        return b
    if op == ADD:
        tv, tm = tnum_add(a.tv, a.tm, b.tv, b.tm)
        lo, hi = a.smin + b.smin, a.smax + b.smax
        if lo >= S64_MIN and hi <= S64_MAX:
            smin, smax = lo, hi
        lo, hi = a.umin + b.umin, a.umax + b.umax
        if hi <= M64:
            umin, umax = lo, hi
    elif op == SUB:
        tv, tm = tnum_sub(a.tv, a.tm, b.tv, b.tm)
        lo, hi = a.smin - b.smax, a.smax - b.smin
        if lo >= S64_MIN and hi <= S64_MAX:
            smin, smax = lo, hi
        if a.umin >= b.umax:
            umin, umax = a.umin - b.umax, a.umax - b.umin
    elif op == MUL:
        tv, tm = tnum_mul(a.tv, a.tm, b.tv, b.tm)
        if a.umax * b.umax <= M64:
            umin, umax = a.umin * b.umin, a.umax * b.umax
        prods = (a.smin * b.smin, a.smin * b.smax, a.smax * b.smin, a.smax * b.smax)
        if min(prods) >= S64_MIN and max(prods) <= S64_MAX:
            smin, smax = min(prods), max(prods)
    elif op == AND:
        tv, tm = tnum_and(a.tv, a.tm, b.tv, b.tm)
        umax = min(a.umax, b.umax)
        if a.smin >= 0 or b.smin >= 0:
            smin = 0
            smax = min(x for x in (a.smax if a.smin >= 0 else S64_MAX,
                                   b.smax if b.smin >= 0 else S64_MAX))
    elif op == OR:
        tv, tm = tnum_or(a.tv, a.tm, b.tv, b.tm)
        umin = max(a.umin, b.umin)
    elif op == XOR:
        tv, tm = tnum_xor(a.tv, a.tm, b.tv, b.tm)
    elif op in (LSH, RSH, ARSH):
        if bc is None:
            if b.umax <= shift_mask:
                return _shift_any(op, a, b, reason)
            return full(reason)
        k = bc & shift_mask
        if op == LSH:
            tv, tm = (a.tv << k) & M64, (a.tm << k) & M64
            if a.umax << k <= M64:
                umin, umax = a.umin << k, a.umax << k
            if a.smin << k >= S64_MIN and a.smax << k <= S64_MAX:
                smin, smax = a.smin << k, a.smax << k
        elif op == RSH:
            tv, tm = a.tv >> k, a.tm >> k
            umin, umax = a.umin >> k, a.umax >> k
        else:
            tv, tm = (s64(a.tv) >> k) & M64, (s64(a.tm) >> k) & M64
            smin, smax = a.smin >> k, a.smax >> k
    elif op == DIV:
        if off == 1:
            m = max(abs(a.smin), abs(a.smax))
            if m <= S64_MAX:
                smin, smax = -m, m
        elif b.umin > 0:
            umin, umax = a.umin // b.umax, a.umax // b.umin
        else:
            umin, umax = 0, a.umax
    elif op == MOD:
        if off == 1:
            m = max(abs(a.smin), abs(a.smax))
            if m <= S64_MAX:
                smin, smax = -m, m
        elif b.umin > 0:
            umin, umax = 0, min(a.umax, b.umax - 1)
        else:
            umin, umax = 0, a.umax
    elif op == MOV:
        return b
    else:
        return full(reason)
    out = norm(smin, smax, umin, umax, tv, tm, reason)
    return out if out is not None else full(reason)


def _identity(op: int, off: int, c: int, x: Rng) -> bool:
    """``x op c == x`` for every x in the value."""
    if op in (ADD, SUB, OR, XOR, LSH, RSH, ARSH):
        return c == 0
    if op == MUL or (op == DIV and off == 0):
        return c == 1
    if op == AND:
        return ((x.tv | x.tm) & ~c & M64) == 0
    return False


def _shift_any(op: int, a: Rng, b: Rng, reason: str) -> Scalar:
    """A shift by a bounded amount: the join over each amount (at most 64)."""
    acc: Scalar | None = None
    for k in range(b.umin, b.umax + 1):
        if (k & ~b.tm) != b.tv:
            continue
        r = _alu64(op, 0, a, Rng(k, k, k, k, k, 0, ""), reason, 63)
        acc = r if acc is None else join(acc, r)
    return acc if acc is not None else full(reason)


def neg(v: Scalar, wide: bool, reason: str) -> Scalar:
    zero = frozenset((0,))
    return alu(SUB, wide, 0, zero, v, reason)


def bswap(x: int, bits: int) -> int:
    n = bits // 8
    return int.from_bytes((x & ((1 << bits) - 1)).to_bytes(n, "little"), "big")


def byteswap(v: Scalar, bits: int, swap: bool, reason: str) -> Scalar:
    """BPF_END: truncate to ``bits`` (le on a little-endian host) or swap the bytes."""
    if type(v) is frozenset:
        if swap:
            return frozenset(bswap(x, bits) for x in v)
        return frozenset(x & ((1 << bits) - 1) for x in v)
    r: Rng = v  # type: ignore[assignment]
    if r.parts:
        return union(tuple(byteswap(p, bits, swap, reason) for p in r.parts))
    mask = (1 << bits) - 1 if bits < 64 else M64
    if not swap:
        if r.umax <= mask:
            return r
        return sized(bits, reason) if bits < 64 else r
    return sized(bits, r.reason or reason) if bits < 64 else full(r.reason or reason)


# --------------------------------------------------------------------------
# Conditional jumps: refine both operands on each side
# --------------------------------------------------------------------------

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
    if type(a) is frozenset and type(b) is frozenset and len(a) * len(b) <= _PAIRWISE_LIMIT:
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
        # JMP32 refines only where the 32-bit comparison is the 64-bit one
        signed = op in (JSGT, JSGE, JSLT, JSLE)
        if not (_fits32(a, signed) and _fits32(b, signed)):
            return (a, b), (a, b)
    taken = _refine(op, a, b)
    not_taken = _refine(_NEGATE[op], a, b)
    return taken, not_taken


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
        bc = _const(b)
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
    bc = _const(rb)
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
