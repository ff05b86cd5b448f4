"""Known bits ("tnums"): a value whose bits are known where the mask is 0.

Pure transcriptions of kernel/bpf/tnum.c (tnum_range, tnum_add, tnum_sub, tnum_and,
tnum_or, tnum_xor, tnum_mul) on Python ints in the u64 range, and the join of two
tnums (a bit stays known where both agree).
"""

from __future__ import annotations

M64 = (1 << 64) - 1

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


