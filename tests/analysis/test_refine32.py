"""Signed JMP32 comparisons of zero-extended 32-bit values, and the 32-bit views that
carry a helper's 0 or -errno (trunc32, sext): every concrete value lands on the side
the kernel's comparison sends it to, and the errno shape keeps its two parts."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tcaudit.analysis import refine as RF
from tcaudit.analysis import scalar as S

M32 = (1 << 32) - 1
OPS = {RF.JSGT: lambda a, b: a > b, RF.JSGE: lambda a, b: a >= b,
       RF.JSLT: lambda a, b: a < b, RF.JSLE: lambda a, b: a <= b}


def s32(x: int) -> int:
    x &= M32
    return x - (1 << 32) if x >> 31 else x


@st.composite
def u32_values(draw: st.DrawFn) -> tuple[S.Scalar, list[int]]:
    """A zero-extended 32-bit value (a sign-extended s32 range truncated, as `w8 = w0`
    makes one) and some of its members."""
    lo = draw(st.integers(-(1 << 31), (1 << 31) - 1))
    hi = draw(st.integers(lo, min(lo + draw(st.sampled_from([0, 5, 300, 1 << 20, 1 << 32])),
                                  (1 << 31) - 1)))
    wide = S.norm(lo, hi, 0, (1 << 64) - 1, 0, (1 << 64) - 1, "r")
    assert wide is not None
    v = S.trunc32(wide)
    members = {lo & M32, hi & M32, draw(st.integers(lo, hi)) & M32}
    if lo < 0 <= hi:
        members |= {0, M32}
    return v, sorted(members)


@settings(max_examples=400, deadline=None)
@given(u32_values(), st.sampled_from(sorted(OPS)), st.integers(-(1 << 31), (1 << 31) - 1))
def test_signed_jmp32_sends_each_value_to_its_side(
        value: tuple[S.Scalar, list[int]], op: int, c: int) -> None:
    v, members = value
    for x in members:
        assert S.contains(v, x)
    b = frozenset({c & M32})
    (at, _bt), (af, _bf) = RF.branch(op, False, v, b)
    for x in members:
        side = at if OPS[op](s32(x), c) else af
        assert side is not None and S.contains(side, x), (x, side)


def test_an_errno_in_a_w_register_keeps_its_two_parts() -> None:
    ret = S.norm(-4095, 0, 0, (1 << 64) - 1, 0, (1 << 64) - 1, "errno")
    assert ret is not None
    w = S.trunc32(ret)
    assert not S.contains(w, 1) and not S.contains(w, (1 << 31))
    assert S.contains(w, 0) and S.contains(w, M32 - 4094)
    (neg, _), (nonneg, _) = RF.branch(RF.JSLT, False, w, frozenset({0}))
    assert nonneg == frozenset({0})
    assert neg is not None and S.s32_ranges(neg) == [(-4095, -1)]
    assert S.sext(w, 32) == S.sext(S.trunc32(S.sext(w, 32)), 32)
