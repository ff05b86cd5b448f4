"""Property tests: the static analysis against the reference interpreter.

Random programs (straight-line code, forward branches, a bounded loop, a
subprogram, tail calls through a prog array) run on tests/refinterp.py over
random registers, ctx, stack bytes, packet and helper results. Every
concrete return value (low 32 bits, signed) must be in ``possible`` unless
that is None, and every exit the interpreter reaches must be in ``exits``
with the value it saw.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tcaudit.analysis.insns import Insn
from tcaudit.analysis.interp import (
    ProgramCode,
    analyse,
    effective,
    effective_one,
)
from tests.bpfasm import (
    ALU_OPS,
    JMP_OPS,
    R0,
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R7,
    R8,
    R9,
    R10,
    FakeSource,
    Item,
    Label,
    Reg,
    add,
    alu,
    asm_with_labels,
    atomic,
    call,
    end,
    exit_,
    jmp,
    jmp32,
    ld_abs,
    ld_imm64,
    ld_map,
    ld_map_value,
    ldx,
    may_goto,
    mov,
    movsx,
    neg,
    pseudo_call,
    stx,
    tail_call,
)
from tests.bpfasm import (
    st as st_imm,
)
from tests.refinterp import CTX_SIZE, Machine

WRITABLE = [R0, R1, R2, R3, R4, R5, R7, R8]
SOURCES = [R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10]
VERDICTS = [-1, 0, 1, 2, 3, 4, 5, 6, 7, 8]
PROG_ARRAY = 1
MAP = 5

imm32 = st.one_of(
    st.sampled_from([-1, 0, 1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 63, 255, 0x7FFFFFFF, -(1 << 31)]),
    st.integers(-(1 << 31), (1 << 31) - 1),
)
imm64 = st.one_of(
    st.sampled_from([0xFFFFFFFF, 0xFFFFFFFF_FFFFFFFF, 0x1_0000_0002, 7, 1 << 63]),
    st.integers(0, (1 << 64) - 1),
)
regs_w = st.sampled_from(WRITABLE)
regs_s = st.sampled_from(SOURCES)
alu_ops = st.sampled_from(sorted(set(ALU_OPS)))
conds = st.sampled_from(sorted(JMP_OPS))
sizes = st.sampled_from([1, 2, 4, 8])


@dataclass
class Gen:
    """What a program generator may use."""

    draw: st.DrawFn
    ctx_reg: bool = True  # r6 holds ctx (main programs)
    tail_calls: bool = False
    subprog: bool = False
    sub_writes_arg: bool = False
    ld_abs_ok: bool = True
    kinds: tuple[str, ...] = ()  # restrict the item kinds
    uses: set[str] = field(default_factory=set)

    def d(self, strat: st.SearchStrategy[object]) -> object:
        return self.draw(strat)


def stack_off(draw: st.DrawFn, size: int) -> int:
    """Offsets that often hit the same slots (so that stale spills would show)."""
    if draw(st.integers(0, 3)) == 0:
        return draw(st.integers(-64, -size))
    slot = -8 * draw(st.integers(1, 4))
    return slot + size * draw(st.integers(0, 8 // size - 1))


def simple_item(g: Gen, pos: int, n: int, prefix: str) -> list[Item]:
    """One random item at position ``pos`` of ``n`` (jumps go forward only)."""
    draw = g.draw
    kinds = [
        "alu_k", "alu_x", "alu_k", "alu_x", "mov_k", "mov_k", "neg", "end", "movsx",
        "ldimm", "st_stack", "stx_stack", "ldx_stack", "ptr_store", "atomic",
        "helper", "redirect", "load_bytes", "map_value", "lookup", "jump", "jump",
        "exit", "verdict", "verdict", "observe", "fill_r0", "fill_r0",
    ]
    if g.ctx_reg:
        kinds += ["ctx_load", "ctx_load"]
        if g.ld_abs_ok:
            kinds.append("ld_abs")
    if g.tail_calls:
        kinds += ["tail", "tail"]
    if g.subprog:
        kinds += ["pcall", "pcall"]
    kind = draw(st.sampled_from(g.kinds or kinds))
    dst = draw(regs_w)
    if kind == "alu_k":
        return [alu(draw(alu_ops), dst, draw(imm32), w32=draw(st.booleans()))]
    if kind == "alu_x":
        return [alu(draw(alu_ops), dst, draw(regs_s), w32=draw(st.booleans()))]
    if kind == "observe":
        return [mov(R0, draw(st.sampled_from([R1, R2, R3, R4, R5, R7, R8, R9])))]
    if kind == "fill_r0":
        size = draw(sizes)
        return [ldx(size, R0, R10, stack_off(draw, size))]
    if kind == "verdict":
        return [mov(R0, draw(st.sampled_from(VERDICTS)))]
    if kind == "mov_k":
        return [mov(dst, draw(st.sampled_from(VERDICTS)))]
    if kind == "neg":
        return [neg(dst, w32=draw(st.booleans()))]
    if kind == "end":
        to = draw(st.sampled_from(["le", "be", "swap"]))
        return [end(dst, draw(st.sampled_from([16, 32, 64])), to)]
    if kind == "movsx":
        w32 = draw(st.booleans())
        bits = draw(st.sampled_from([8, 16] if w32 else [8, 16, 32]))
        return [movsx(dst, draw(regs_s), bits, w32=w32)]
    if kind == "ldimm":
        return [ld_imm64(dst, draw(imm64))]
    if kind == "st_stack":
        size = draw(sizes)
        return [st_imm(size, R10, stack_off(draw, size), draw(imm32))]
    if kind == "stx_stack":
        size = draw(sizes)
        return [stx(size, R10, stack_off(draw, size), draw(regs_s))]
    if kind == "ldx_stack":
        size = draw(sizes)
        sx = size < 8 and draw(st.booleans())
        return [ldx(size, dst, R10, stack_off(draw, size), sx=sx)]
    if kind == "ptr_store":
        base = draw(st.integers(-64, 0))
        size = draw(sizes)
        off = draw(st.integers(-64 - base, -size - base))
        return [mov(dst, R10), add(dst, base), stx(size, dst, off, draw(regs_s))]
    if kind == "atomic":
        size = draw(st.sampled_from([4, 8]))
        off = -size * draw(st.integers(1, 32 // size))
        op = draw(st.sampled_from(["add", "or", "and", "xor", "xchg", "cmpxchg"]))
        fetch = op in ("xchg", "cmpxchg") or draw(st.booleans())
        return [atomic(size, op, R10, off, draw(st.sampled_from(WRITABLE)), fetch=fetch)]
    if kind == "helper":
        return [call(draw(st.sampled_from([5, 7])))]
    if kind == "redirect":
        return [mov(R1, draw(imm32)), mov(R2, 0), call(draw(st.sampled_from([23, 152, 155])))]
    if kind == "load_bytes":
        low = stack_off(draw, 1)
        ln = draw(st.integers(1, -low))
        return [
            mov(R1, R6), mov(R2, 0), mov(R3, R10), add(R3, low), mov(R4, ln), call(26),
        ]
    if kind == "map_value":
        return [ld_map_value(dst, MAP, draw(st.integers(0, 64))), ldx(4, dst, dst, 0)]
    if kind == "lookup":
        return [
            ld_map(R1, MAP), mov(R2, R10), add(R2, -8), call(1),
            jmp("eq", R0, 0, 1), ldx(draw(sizes), R0, R0, 0),
        ]
    if kind == "ctx_load":
        size = draw(sizes)
        return [ldx(size, dst, R6, draw(st.integers(0, CTX_SIZE - size)))]
    if kind == "ld_abs":
        return [ld_abs(draw(st.sampled_from([1, 2, 4])), draw(st.integers(0, 70)))]
    if kind == "jump":
        target = f"{prefix}{draw(st.integers(pos + 1, n))}"
        if draw(st.integers(0, 9)) == 0:
            return [may_goto(target)]
        fn = jmp if draw(st.booleans()) else jmp32
        src: Reg | int = draw(regs_s) if draw(st.booleans()) else draw(imm32)
        return [fn(draw(conds), draw(regs_s), src, target)]
    if kind == "exit":
        return [exit_()]
    if kind == "tail":
        g.uses.add("tail")
        if not g.ctx_reg or draw(st.booleans()):
            index: list[Item] = [mov(R3, draw(st.integers(0, 4)))]
        else:
            index = [ldx(4, R3, R6, 0), alu("and", R3, 3)]
        after: list[Item] = [mov(R0, draw(st.sampled_from(VERDICTS)))]
        if draw(st.booleans()):
            after = []
        return [mov(R1, R6), ld_map(R2, PROG_ARRAY), *index, tail_call(), *after]
    if kind == "pcall":
        g.uses.add("pcall")
        setup: list[Item] = []
        if g.sub_writes_arg:
            setup = [mov(R1, R10), add(R1, -8 * draw(st.integers(1, 8)))]
        return [*setup, pseudo_call("sub")]
    raise AssertionError(kind)


def body(g: Gen, n: int, prefix: str) -> list[Item]:
    out: list[Item] = []
    for pos in range(n):
        out.append(Label(f"{prefix}{pos}"))
        out += simple_item(g, pos, n, prefix)
    out.append(Label(f"{prefix}{n}"))
    return out


def loop(g: Gen, prefix: str) -> list[Item]:
    """A bounded counter loop on r9 (no generated code writes r9)."""
    draw = g.draw
    count = draw(st.integers(1, 30))
    inner = body(g, draw(st.integers(1, 6)), prefix)
    return [mov(R9, count), Label(f"{prefix}top"), *inner, alu("sub", R9, 1),
            jmp("ne", R9, 0, f"{prefix}top")]


def gen_program(
    g: Gen, *, loops: bool, prog_id: int, name: str
) -> ProgramCode:
    draw = g.draw
    items: list[Item] = [mov(R6, R1), mov(R0, draw(st.sampled_from(VERDICTS)))]
    if draw(st.booleans()):
        items.append(mov(R7, draw(st.sampled_from(VERDICTS))))
    items += body(g, draw(st.integers(0, 14)), "a")
    if loops and draw(st.booleans()):
        items += loop(g, "l")
    items += body(g, draw(st.integers(0, 8)), "b")
    items.append(exit_())
    starts = [0]
    if g.subprog:
        sub = Gen(draw, ctx_reg=False, ld_abs_ok=False, tail_calls=g.tail_calls)
        sub_items: list[Item] = [Label("sub")]
        if g.sub_writes_arg:
            sub_items.append(stx(8, R1, 0, draw(st.sampled_from([R0, R2, R3]))))
        sub_items += body(sub, draw(st.integers(0, 10)), "s")
        sub_items.append(exit_())
        code, labels = asm_with_labels(*items, *sub_items)
        starts.append(labels["sub"])
        return ProgramCode(prog_id, name, code, tuple(starts))
    code, _ = asm_with_labels(*items)
    return ProgramCode(prog_id, name, code, (0,))


@dataclass
class Tree:
    root: ProgramCode
    source: FakeSource


@st.composite
def trees(draw: st.DrawFn, *, tail_calls: bool, subprog: bool, loops: bool) -> Tree:
    want_sub = subprog and draw(st.booleans())
    g = Gen(
        draw,
        tail_calls=tail_calls,
        subprog=want_sub,
        sub_writes_arg=want_sub and draw(st.booleans()),
        ld_abs_ok=not want_sub,
    )
    root = gen_program(g, loops=loops, prog_id=100, name="root")
    programs: dict[int, ProgramCode] = {}
    arrays: dict[int, dict[int, int]] = {}
    if tail_calls:
        slots: dict[int, int] = {}
        for slot in range(draw(st.integers(0, 3))):
            pid = 101 + slot
            tg = Gen(draw, tail_calls=draw(st.booleans()))
            programs[pid] = gen_program(tg, loops=False, prog_id=pid, name=f"t{slot}")
            if draw(st.integers(0, 4)):
                slots[slot] = pid
        if draw(st.integers(0, 5)) == 0:
            slots[draw(st.integers(0, 3))] = 100  # a cycle back to the root
        arrays[PROG_ARRAY] = slots
    programs[100] = root
    return Tree(root, FakeSource(programs=programs, arrays=arrays))


def check_sound(tree: Tree, runs: int = 12) -> None:
    a = analyse(tree.root, tree.source)
    prog_keys = {0: tree.root.insns}
    starts: dict[int, tuple[int, ...]] = {0: tree.root.func_starts}
    for pid, p in tree.source.programs.items():
        prog_keys[pid] = p.insns
        starts[pid] = p.func_starts
    for seed in range(runs):
        m = Machine(prog_keys, tree.source.arrays, random.Random(seed), func_starts=starts)
        r = m.run()
        if a.possible is not None:
            assert r.retval in a.possible, (r.retval, a)
        for key, pc, r0 in r.exits:
            if key != 0 or pc < 0:
                continue
            assert pc in a.exits, (pc, a.exits)
            got = a.exits[pc]
            if got is not None:
                assert r0 in got, (pc, r0, got)


COMMON = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@COMMON
@given(trees(tail_calls=False, subprog=False, loops=False))
def test_straight_and_branching_programs_are_sound(tree: Tree) -> None:
    check_sound(tree)


STACK_KINDS = (
    "st_stack", "stx_stack", "ldx_stack", "fill_r0", "fill_r0", "ptr_store", "atomic",
    "load_bytes", "mov_k", "verdict", "jump", "lookup", "pcall", "helper", "observe",
)


@st.composite
def stack_trees(draw: st.DrawFn) -> Tree:
    """Programs that mostly move constants through the stack."""
    writes_arg = draw(st.booleans())
    g = Gen(draw, subprog=True, sub_writes_arg=writes_arg, ld_abs_ok=False, kinds=STACK_KINDS)
    items: list[Item] = [mov(R6, R1)]
    for slot in range(1, 5):
        items += [st_imm(8, R10, -8 * slot, draw(st.sampled_from(VERDICTS)))]
    items += [mov(r, draw(st.sampled_from(VERDICTS))) for r in (R0, R2, R3, R4, R5, R7, R8)]
    items += body(g, draw(st.integers(1, 16)), "a")
    items += [ldx(8, R0, R10, -8 * draw(st.integers(1, 4))), exit_()]
    sub = Gen(draw, ctx_reg=False, ld_abs_ok=False,
              kinds=tuple(k for k in STACK_KINDS if k != "pcall"))
    sub_items: list[Item] = [Label("sub")]
    if writes_arg:
        sub_items.append(st_imm(8, R1, 0, draw(st.sampled_from(VERDICTS))))
    sub_items += body(sub, draw(st.integers(0, 6)), "s")
    sub_items.append(exit_())
    code, labels = asm_with_labels(*items, *sub_items)
    root = ProgramCode(100, "stack", code, (0, labels["sub"]))
    return Tree(root, FakeSource(programs={100: root}))


@COMMON
@given(stack_trees())
def test_stack_heavy_programs_are_sound(tree: Tree) -> None:
    check_sound(tree)


@COMMON
@given(trees(tail_calls=False, subprog=False, loops=True))
def test_bounded_loops_are_sound(tree: Tree) -> None:
    check_sound(tree)


@COMMON
@given(trees(tail_calls=False, subprog=True, loops=True))
def test_subprograms_are_sound(tree: Tree) -> None:
    check_sound(tree)


@COMMON
@given(trees(tail_calls=True, subprog=True, loops=False))
def test_tail_call_trees_are_sound(tree: Tree) -> None:
    check_sound(tree, runs=8)


# ---------------------------------------------------------------- exactness


@st.composite
def constant_programs(draw: st.DrawFn) -> tuple[Insn, ...]:
    """Programs whose every input is a constant: the analysis must be exact."""
    items: list[Item] = [mov(r, draw(imm32)) for r in (R0, R1, R2, R3, R4, R5, R6, R7, R8, R9)]
    for slot in range(1, 9):
        items.append(stx(8, R10, -8 * slot, draw(st.sampled_from(SOURCES[:10]))))
    n = draw(st.integers(1, 25))
    for pos in range(n):
        items.append(Label(f"c{pos}"))
        kind = draw(st.sampled_from(["alu_k", "alu_x", "neg", "end", "movsx", "ldimm",
                                     "spill", "fill", "jump"]))
        dst = draw(st.sampled_from(SOURCES[:10]))
        if kind == "alu_k":
            items.append(alu(draw(alu_ops), dst, draw(imm32), w32=draw(st.booleans())))
        elif kind == "alu_x":
            src = draw(st.sampled_from(SOURCES[:10]))
            items.append(alu(draw(alu_ops), dst, src, w32=draw(st.booleans())))
        elif kind == "neg":
            items.append(neg(dst, w32=draw(st.booleans())))
        elif kind == "end":
            to = draw(st.sampled_from(["le", "be", "swap"]))
            items.append(end(dst, draw(st.sampled_from([16, 32, 64])), to))
        elif kind == "movsx":
            w32 = draw(st.booleans())
            bits = draw(st.sampled_from([8, 16] if w32 else [8, 16, 32]))
            items.append(movsx(dst, draw(st.sampled_from(SOURCES[:10])), bits, w32=w32))
        elif kind == "ldimm":
            items.append(ld_imm64(dst, draw(imm64)))
        elif kind == "spill":
            items.append(stx(8, R10, -8 * draw(st.integers(1, 8)), dst))
        elif kind == "fill":
            size = draw(sizes)
            off = -8 * draw(st.integers(1, 8)) + draw(st.integers(0, 8 - size))
            items.append(ldx(size, dst, R10, off, sx=size < 8 and draw(st.booleans())))
        else:
            fn = jmp if draw(st.booleans()) else jmp32
            src2: Reg | int = draw(st.sampled_from(SOURCES[:10])) if draw(
                st.booleans()) else draw(imm32)
            items.append(fn(draw(conds), dst, src2, f"c{draw(st.integers(pos + 1, n))}"))
    # fold all 64 bits of every register into the 32-bit return value
    items.append(Label(f"c{n}"))
    for r in (R1, R2, R3, R4, R5, R6, R7, R8, R9):
        items += [alu("mul", R0, 31), alu("xor", R0, r)]
    items += [mov(R1, R0), alu("rsh", R1, 32), alu("xor", R0, R1), exit_()]
    return asm_with_labels(*items)[0]


@settings(max_examples=400, deadline=None)
@given(constant_programs(), st.integers(0, 1000))
def test_constant_programs_are_exact(code: tuple[Insn, ...], seed: int) -> None:
    a = analyse(ProgramCode(1, "c", code), FakeSource())
    r = Machine({0: code}, {}, random.Random(seed)).run()
    assert a.possible == {r.retval}, a


# ---------------------------------------------------------------- effective


def reference_meaning(value: int, mode: str, has_actions: bool) -> set[str]:
    """The tables of shared/reference/tc-semantics.md, written out separately."""
    if mode == "direct-action":
        kept = {0: "accept", 2: "drop", 4: "stolen", 8: "trap", 7: "redirect", -1: "continue"}
        return {kept.get(value, "continue")}
    if mode == "tcx":
        kept = {-1: "continue", 0: "accept", 2: "drop", 7: "redirect"}
        return {kept.get(value, "continue")}
    if value == 0:
        return {"continue"}
    if not has_actions:
        return {"accept"}
    return {"accept", "continue", "drop", "redirect", "stolen", "trap"}


values32 = st.one_of(st.integers(-2, 10), st.integers(-(1 << 31), (1 << 31) - 1))


@settings(max_examples=300, deadline=None)
@given(
    st.frozensets(values32, max_size=12),
    st.sampled_from(["direct-action", "classic", "tcx"]),
    st.booleans(),
)
def test_effective_is_the_union_of_each_value_meaning(
    possible: frozenset[int], mode: str, has_actions: bool
) -> None:
    got = effective(possible, mode, has_actions=has_actions)  # type: ignore[arg-type]
    assert got is not None
    want: set[str] = set()
    for v in possible:
        meaning = reference_meaning(v, mode, has_actions)
        assert set(effective_one(v, mode, has_actions=has_actions)) == meaning  # type: ignore[arg-type]
        want |= meaning
    assert set(got) == want
    assert list(got) == sorted(got)
    assert effective(None, mode) is None  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_effective_of_analysis_covers_concrete_meaning(data: st.DataObject) -> None:
    tree = data.draw(trees(tail_calls=False, subprog=False, loops=False))
    a = analyse(tree.root, tree.source)
    if a.possible is None:
        return
    words = set(effective(a.possible, "direct-action") or ())
    tcx = set(effective(a.possible, "tcx") or ())
    for seed in range(5):
        m = Machine({0: tree.root.insns}, {}, random.Random(seed))
        v = m.run().retval
        assert reference_meaning(v, "direct-action", False) <= words
        assert reference_meaning(v, "tcx", False) <= tcx
