"""Values the dependence pass sees assembled from opaque loads, a few bits at a time.

A compiler reads a field it may not load in one go (an unaligned address, a packed
struct: an ARP header's target address at byte 38 of the frame) as bytes, and puts
them together: ``r2 = *(u8 *)(r1 + 39); r2 <<= 8; r3 = *(u8 *)(r1 + 38); r2 |= r3``.
The engine knows such a value exactly as it knows one load of the whole width: each
byte is every number below 256 (a tnum with eight unknown bits), a shift moves the
unknown bits, and an OR of values whose unknown bits do not overlap has their union
(``arith``: tnum_or, bounds from the tnum). Four bytes put together are every 32-bit
number, so an ``==`` with a varying constant has both sides feasible in every copy's
analysis, as with a 4-byte load (``decisions``), and the engine learns nothing on
either side but the constant itself.

Followed within one basic block, as a table ``Free``: register -> the bit interval
``[lo, hi)`` its value is every number of (zero elsewhere). A load the pass calls
opaque starts one at ``[0, 8 * size)``; a shift left by a constant moves it (if it
stays within the operation's width); an OR of two registers whose intervals touch
joins them; anything else that writes the register ends it. An interval ``[0, w)``
for w = 8, 16, 32 or 64 is the value of an opaque w-bit load (``opaque``).
"""

from __future__ import annotations

from tcaudit.analysis import insns as I
from tcaudit.analysis.taint import N8, N16, N32, N64, OPAQUE, PTRS, T

Free = dict[int, tuple[int, int]]

_NOT_OPAQUE = {8: N8, 16: N16, 32: N32, 64: N64}


def on_load(free: Free, dst: int, flags: int, size: int) -> None:
    """``dst`` was loaded (``size`` bytes) and has ``flags``."""
    bits = 8 * size
    if not flags & (T | PTRS | _NOT_OPAQUE.get(bits, N8)):
        free[dst] = (0, bits)
    else:
        free.pop(dst, None)


def on_mov(free: Free, dst: int, src: int, wide: bool, off: int) -> None:
    """``dst = src``: a copy, or the low 32 bits zero-extended (``w_dst = w_src``)."""
    got = free.get(src) if src >= 0 and off == 0 else None
    if got is not None and (wide or got[1] <= 32):
        free[dst] = got
    else:
        free.pop(dst, None)


def on_alu(free: Free, op: int, dst: int, src: int, imm: int, wide: bool,
           var: bool) -> tuple[int, int] | None:
    """``dst op= src`` (or ``imm``, ``var``: an immediate that varies): the interval
    of the result, or None (and ``dst`` leaves the table)."""
    got = free.pop(dst, None)
    if got is None:
        return None
    width = 64 if wide else 32
    lo, hi = got
    if op == I.BPF_LSH and src < 0 and not var:
        k = imm & (width - 1)
        if hi + k <= width:
            free[dst] = (lo + k, hi + k)
    elif op == I.BPF_OR and 0 <= src != dst and src in free:
        slo, shi = free[src]
        if (shi == lo or hi == slo) and max(hi, shi) <= width:
            free[dst] = (min(lo, slo), max(hi, shi))
    return free.get(dst)


def opaque(interval: tuple[int, int] | None) -> int | None:
    """The flags of an opaque load of the interval's width when it starts at bit 0
    and is a load's width, else None."""
    if interval is None or interval[0] != 0 or interval[1] not in _NOT_OPAQUE:
        return None
    return OPAQUE[interval[1] // 8]
