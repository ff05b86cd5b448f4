"""The engine's fast paths give exactly what the general code gives.

Each shortcut taken for speed (issue 12) is checked against an independent oracle on
random inputs: a range turned into its set of constants against brute force over the
concrete numbers, a comparison of a range with one constant against the general
refinement of both operands, and the liveness a join forgets against a reference that
walks every path of small programs.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tcaudit.analysis import insns as I
from tcaudit.analysis import liveness as LV
from tcaudit.analysis import refine as RF
from tcaudit.analysis import scalar as S
from tcaudit.analysis.insns import Insn
from tcaudit.analysis.prepare import Prepared
from tcaudit.analysis.scalar import M64, Rng

_U64 = st.integers(0, M64)
_EDGES = st.sampled_from([0, 1, 0x7F, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 1 << 63, M64])


@st.composite
def _small_bounds(draw: st.DrawFn) -> tuple[int, int, int, int, int, int]:
    """Constraints whose unsigned range holds fewer than CAP numbers (norm makes a set)."""
    base = draw(st.one_of(_U64, _EDGES))
    width = draw(st.integers(0, S.CAP - 1))
    umin = base
    umax = min(M64, base + width)
    smin = draw(st.sampled_from([S.S64_MIN, S.s64(umin), S.s64(umin) + 1, -5]))
    smax = draw(st.sampled_from([S.S64_MAX, S.s64(umax), S.s64(umax) - 1, 5]))
    tm = draw(st.sampled_from([M64, 0xFF, 0xF, 0x3F, 0x30, 0]))
    tv = draw(_U64) & ~tm & M64
    return smin, smax, umin, umax, tv, tm


@settings(max_examples=400, deadline=None)
@given(_small_bounds())
def test_a_small_range_becomes_exactly_its_numbers(b: tuple[int, ...]) -> None:
    smin, smax, umin, umax, tv, tm = b
    want = frozenset(
        x for x in range(umin, umax + 1)
        if smin <= S.s64(x) <= smax and x & ~tm & M64 == tv
    )
    got = S._norm(smin, smax, umin, umax, tv, tm, "r")
    assert got == (want or None)


@st.composite
def _ranges(draw: st.DrawFn) -> Rng:
    """A normalised range of more than CAP values (no parts)."""
    lo = draw(st.one_of(st.integers(0, 300), _EDGES, _U64))
    hi = min(M64, lo + draw(st.one_of(st.integers(S.CAP, 1000), st.integers(S.CAP, M64))))
    lo = min(lo, hi - S.CAP)
    tm = draw(st.sampled_from([M64, 0xFFFF, 0xFF0, 0xFFFFFFFF]))
    r = S.norm(S.S64_MIN, S.S64_MAX, lo, hi, draw(_U64) & ~tm & M64, tm, "r")
    if type(r) is not Rng:  # the known bits leave too few values: no known bits
        r = S.norm(S.S64_MIN, S.S64_MAX, lo, hi, 0, M64, "r")
    assert type(r) is Rng, (lo, hi, r)
    return r


_OPS = [RF.JEQ, RF.JNE, RF.JGT, RF.JGE, RF.JLT, RF.JLE, RF.JSGT, RF.JSGE, RF.JSLT,
        RF.JSLE]


@settings(max_examples=600, deadline=None)
@given(_ranges(), st.one_of(_U64, _EDGES, st.integers(0, 1200)), st.sampled_from(_OPS))
def test_a_range_against_one_constant_is_the_general_refinement(
    a: Rng, c: int, op: int
) -> None:
    b = frozenset((c,))
    # a value of a at each edge and the constant itself are the interesting constants
    for k in (c, a.umin, a.umax, a.smin & M64, a.smax & M64, (a.umin + 1) & M64):
        b = frozenset((k,))
        want = (RF._refine(op, a, b), RF._refine(RF._NEGATE[op], a, b))
        assert RF._against_constant(op, a, b) == want
    assert RF.branch(op, True, a, b) == (RF._refine(op, a, b),
                                         RF._refine(RF._NEGATE[op], a, b))


# -- liveness --------------------------------------------------------------------------

_MOV = I.BPF_ALU64 | I.BPF_MOV | I.BPF_K
_MOVX = I.BPF_ALU64 | I.BPF_MOV | I.BPF_X
_ADDX = I.BPF_ALU64 | I.BPF_ADD | I.BPF_X
_JEQ = I.BPF_JMP | I.BPF_JEQ | I.BPF_X
_LDX = I.BPF_LDX | I.BPF_MEM | I.BPF_DW
_STX = I.BPF_STX | I.BPF_MEM | I.BPF_DW
_EXIT = I.BPF_JMP | I.BPF_EXIT
_CALL = I.BPF_JMP | I.BPF_CALL


@st.composite
def _programs(draw: st.DrawFn) -> tuple[Insn, ...]:
    """Forward-jumping programs over r0-r5 with loads, stores and helper calls."""
    n = draw(st.integers(2, 24))
    code: list[Insn] = []
    for pc in range(n - 1):
        reg = st.integers(0, 5)
        kind = draw(st.sampled_from(["mov", "movx", "add", "jeq", "ldx", "stx", "call"]))
        if kind == "mov":
            code.append(Insn(_MOV, draw(reg), 0, 0, draw(st.integers(0, 3))))
        elif kind == "movx":
            code.append(Insn(_MOVX, draw(reg), draw(reg), 0, 0))
        elif kind == "add":
            code.append(Insn(_ADDX, draw(reg), draw(reg), 0, 0))
        elif kind == "jeq":
            off = draw(st.integers(0, n - pc - 2))
            code.append(Insn(_JEQ, draw(reg), draw(reg), off, 0))
        elif kind == "ldx":
            code.append(Insn(_LDX, draw(reg), draw(st.sampled_from([10, 1, 2, 3])), -8, 0))
        elif kind == "stx":
            code.append(Insn(_STX, draw(st.sampled_from([10, 4])), draw(reg), -8, 0))
        else:
            code.append(Insn(_CALL, 0, 0, 0, draw(st.sampled_from([5, 12]))))
    code.append(Insn(_EXIT, 0, 0, 0, 0))
    return tuple(code)


def _reference(code: tuple[Insn, ...], start: int) -> tuple[int, bool]:
    """Registers read before written on some path from ``start``, and whether some
    path reads the frame: every path walked to its end (the programs are acyclic)."""
    live = 0
    frame = False
    todo = [(start, 0)]
    while todo:
        pc, written = todo.pop()
        while True:
            ins = code[pc]
            reads, writes = 0, 0
            if ins.code == _MOV:
                writes = 1 << ins.dst
            elif ins.code == _MOVX:
                reads, writes = 1 << ins.src, 1 << ins.dst
            elif ins.code == _ADDX:
                reads, writes = 1 << ins.src | 1 << ins.dst, 1 << ins.dst
            elif ins.code == _LDX:
                reads, writes, frame = 1 << ins.src, 1 << ins.dst, True
            elif ins.code == _STX:
                reads = 1 << ins.dst | 1 << ins.src
            elif ins.code == _CALL:
                reads, writes = 0b111110, 0b1000_0011_1111
                frame = frame or ins.imm != 12
            elif ins.code == _JEQ:
                reads = 1 << ins.dst | 1 << ins.src
                todo.append((pc + ins.off + 1, written))
            else:  # exit
                live |= 1 & ~written
                break
            live |= reads & ~written
            written |= writes
            pc += 1
    return live, frame


@settings(max_examples=300, deadline=None)
@given(_programs())
def test_liveness_is_what_every_path_reads(code: tuple[Insn, ...]) -> None:
    prep = Prepared(code, (0,))
    got = LV.leaders_live(prep.ops, prep.leader, lambda imm: imm == 12)
    for pc, (dead, frame) in got.items():
        live, reads_frame = _reference(code, pc)
        assert set(dead) == {r for r in range(12) if not (live | 1 << 10) >> r & 1}
        assert frame == reads_frame
