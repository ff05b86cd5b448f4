"""Bounded scalars: signed and unsigned 64-bit bounds plus known bits, like the verifier.

A ``Rng`` is the verifier's view of a scalar register (kernel/bpf/verifier.c
``struct bpf_reg_state``: smin/smax, umin/umax and a tnum ``var_off``), kept for values
that are not one of at most ``CAP`` constants. The known-bits arithmetic follows
kernel/bpf/tnum.c; the bounds follow the verifier's ``scalar_min_max_*`` rules and
``reg_bounds_sync``. Everything here is pure and works on Python ints in the u64 /
s64 ranges; a ``Rng`` also carries the reason the value is not exact (shown when the
answer ends up unknown).

Arithmetic on them is in ``arith``, refinement by conditional jumps in ``refine``.
``norm()`` is the one constructor: it syncs the five views, answers None when they
contradict (an infeasible branch side), and turns a range of at most ``CAP`` values
into the exact set of constants.
"""

from __future__ import annotations

from typing import NamedTuple

from tcaudit.analysis import memo
from tcaudit.analysis.tnum import tnum_join, tnum_range

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



# --------------------------------------------------------------------------
# Construction and conversion
# --------------------------------------------------------------------------

Scalar = frozenset[int] | Rng


_NORMS = memo.table()
_JOINS = memo.table()


def norm(
    smin: int, smax: int, umin: int, umax: int, tv: int, tm: int, reason: str
) -> Scalar | None:
    """Sync the views (reg_bounds_sync); None if they contradict; small ranges become
    sets. Memoised (``memo``)."""
    key = (smin, smax, umin, umax, tv, tm, reason)
    try:
        return _NORMS[key]  # type: ignore[no-any-return]
    except KeyError:
        pass
    return memo.store(_NORMS, key, _norm(smin, smax, umin, umax, tv, tm, reason))


def _norm(
    smin: int, smax: int, umin: int, umax: int, tv: int, tm: int, reason: str
) -> Scalar | None:
    for _ in range(2):
        before = (smin, smax, umin, umax, tv, tm)
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
        if (smin, smax, umin, umax, tv, tm) == before:
            break  # nothing changed: a second round would not either
    if umax - umin < CAP or smax - smin < CAP:
        if tnum_range(umin, umax) == (tv, tm) and smin == s64(umin) and smax == s64(umax):
            # every number from umin to umax is in (the common case: a compared load)
            return frozenset(range(umin, umax + 1))
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
    if type(v) is Rng:
        return v
    got = _SET_BOUNDS.get(v)  # type: ignore[arg-type]
    if got is None:
        if len(_SET_BOUNDS) > 4096:
            _SET_BOUNDS.clear()
        got = _SET_BOUNDS[v] = from_set(v)  # type: ignore[index, arg-type]
    return got


_SET_BOUNDS: dict[frozenset[int], Rng] = {}
"""as_rng's memo: the same few sets of constants are converted again and again."""


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
    key = (a, b)
    try:
        return _JOINS[key]  # type: ignore[no-any-return]
    except KeyError:
        pass
    return memo.store(_JOINS, key, _join(a, b))


def _join(a: Scalar, b: Scalar) -> Scalar:
    # fast paths: a value inside the other, and two overlapping plain bounds
    if type(a) is Rng and not a.parts:
        if type(b) is frozenset:
            if all(contains(a, x) for x in b):
                return a
        elif not b.parts and b.smin <= a.smax + 1 and a.smin <= b.smax + 1:  # type: ignore[union-attr]
            return _hull(a, b)
    elif (type(b) is Rng and not b.parts and type(a) is frozenset
          and all(contains(b, x) for x in a)):
        return b
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
    if type(hull) is frozenset:  # at most CAP values in all: the hull is exact enough
        return hull
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
    # known bits below the lowest one just lost stay known (a packed exit code in the
    # low byte survives); from it upwards they go at once, so a counter settles now
    tv, tm = rj.tv, rj.tm
    lost = tm & ~ro.tm
    if lost:
        tm |= M64 & ~((lost & -lost) - 1)
        tv &= ~tm
    reason = rj.reason or "value varies across loop iterations"
    return Rng(smin, smax, umin, umax, tv, tm, reason)


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
    elif r.smin >= S32_MIN and r.smax <= S32_MAX:
        # a sign-extended 32-bit value that crosses zero (a helper's 0 or -errno): its
        # non-negative part and its negative part, each zero-extended
        neg = norm(r.smin, -1, r.smin & M64, M64, 0, M64, r.reason)
        pos = norm(0, r.smax, 0, r.smax, 0, M64, r.reason)
        assert neg is not None and pos is not None
        return union((trunc32(neg), trunc32(pos)))
    elif r.umin >> 32 == r.umax >> 32:
        # every value has the same high word (a 32-bit add that carried out of every
        # operand alike, like w1 += -9 on [16384, 32767]): the low words are in order
        out = norm(0, M32, r.umin & M32, r.umax & M32, r.tv & M32, r.tm & M32, r.reason)
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
    elif lo > 0 or hi < mask:
        # both signs, not every value: the two halves apart ({0} and [-4095, -1] stay
        # two parts, not every 32-bit value)
        low = norm(lo, half - 1, lo, half - 1, 0, M64, r.reason)
        high = norm(-half, hi - 2 * half, 0, M64, 0, M64, r.reason)
        assert low is not None and high is not None
        return union((low, high))
    else:
        out = norm(-half, half - 1, 0, M64, 0, M64, r.reason)
    assert out is not None
    return out
