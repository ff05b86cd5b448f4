"""ALU operations on scalars (kernel/bpf/core.c ___bpf_prog_run semantics).

Constants are computed exactly (pairwise while there are few); bounds and known bits
follow the verifier's ``scalar_min_max_*`` rules (kernel/bpf/verifier.c); 32-bit ALU
operations work on the operands' low 32 bits and zero-extend the result.
"""

from __future__ import annotations

from collections.abc import Iterable

from tcaudit.analysis.scalar import (
    M32,
    M64,
    S64_MAX,
    S64_MIN,
    Rng,
    Scalar,
    as_rng,
    full,
    join,
    make_set,
    norm,
    s32,
    s64,
    sext,
    sized,
    trunc32,
    union,
)
from tcaudit.analysis.tnum import tnum_add, tnum_and, tnum_mul, tnum_or, tnum_sub, tnum_xor

ADD, SUB, MUL, DIV, OR, AND, LSH, RSH, NEG, MOD, XOR, MOV, ARSH = (
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0, 0xB0, 0xC0
)
PAIRWISE_LIMIT = 256


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
    if type(a) is frozenset and type(b) is frozenset and len(a) * len(b) <= PAIRWISE_LIMIT:
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


def const_of(r: Rng) -> int | None:
    """The value when every bit is known."""
    return r.tv if r.tm == 0 else None


def _alu64(op: int, off: int, a: Rng, b: Rng, reason: str, shift_mask: int) -> Scalar:
    reason = a.reason or b.reason or reason
    smin, smax, umin, umax = S64_MIN, S64_MAX, 0, M64
    tv, tm = 0, M64
    bc = const_of(b)
    ac = const_of(a)
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


