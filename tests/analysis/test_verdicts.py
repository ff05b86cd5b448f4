"""Precision and soundness tests of the verdict analysis on hand-written programs."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tcaudit.analysis import helpers as H
from tcaudit.analysis.closure import Analysis, ProgramCode, analyse
from tcaudit.analysis.insns import Insn
from tcaudit.analysis.meaning import (
    TC_ACT_OK,
    TC_ACT_REDIRECT,
    TC_ACT_SHOT,
    TC_ACT_UNSPEC,
    effective,
    effective_ranges,
    verdict_names,
)
from tests.bpfasm import (
    HELPERS,
    R0,
    R1,
    R2,
    R3,
    R4,
    R6,
    R7,
    R8,
    R9,
    R10,
    FakeSource,
    Item,
    Label,
    add,
    alu,
    and_,
    atomic,
    call,
    end,
    exit_,
    ja,
    jmp,
    jmp32,
    kfunc_call,
    ld_abs,
    ld_func,
    ld_imm64,
    ld_map,
    ld_map_value,
    ldx,
    lsh,
    may_goto,
    mov,
    mov32,
    movsx,
    neg,
    program,
    pseudo_call,
    st,
    stx,
    tail_call,
)
from tests.refinterp import Machine

PROG_ARRAY = 167


def run(*items: Item, src: FakeSource | None = None, **kw: object) -> Analysis:
    return analyse(program(*items), src or FakeSource(), **kw)  # type: ignore[arg-type]


def possible(*items: Item, src: FakeSource | None = None) -> frozenset[int] | None:
    return run(*items, src=src).possible


def concrete(prog: ProgramCode, src: FakeSource, runs: int = 200) -> set[int]:
    """Return values the reference interpreter sees over random inputs."""
    programs: dict[int, tuple[Insn, ...]] = {0: prog.insns}
    starts = {0: prog.func_starts}
    for pid, p in src.programs.items():
        programs[pid] = p.insns
        starts[pid] = p.func_starts
    seen = set()
    for seed in range(runs):
        m = Machine(programs, src.arrays, random.Random(seed), func_starts=starts)
        seen.add(m.run().retval)
    return seen


# ------------------------------------------------------------- constants


def test_constant_return() -> None:
    a = run(mov(R0, 2), exit_())
    assert a.possible == {2}
    assert a.reason is None
    assert dict(a.exits) == {1: frozenset({2})}
    assert a.tail_calls == () and a.prog_arrays == ()


def test_minus_one_both_ways() -> None:
    assert possible(ld_imm64(R0, 0xFFFFFFFF), exit_()) == {-1}
    assert possible(mov(R0, -1), exit_()) == {-1}
    assert possible(mov32(R0, -1), exit_()) == {-1}
    # upper 32 bits do not matter
    assert possible(ld_imm64(R0, 0x1234_5678_0000_0007), exit_()) == {7}


def test_shift_pattern() -> None:
    a = run(
        mov(R6, R1),
        ldx(4, R2, R6, 0),
        mov(R0, 1),
        jmp("gt", R2, 100, "keep"),
        mov(R0, 0),
        Label("keep"),
        lsh(R0, 1),
        exit_(),
    )
    assert a.possible == {TC_ACT_OK, TC_ACT_SHOT}


def test_uninitialized_r0_is_unknown() -> None:
    a = run(exit_())
    assert a.possible is None
    assert a.reason == "uninitialized register"


def test_a_32_bit_add_that_carries_out_of_every_value_keeps_its_bounds() -> None:
    """``w1 += -9`` on [16384, 16639] is [16375, 16630] (the add carries out of bit 31
    for every value alike), so ``w1 > 1`` always holds: a real datapath's test of an
    identity against reserved ranges (Cilium 1.16's ``identity - 9 > 1``)."""
    assert possible(ldx(4, R2, R1, 76), ldx(1, R3, R2, 0), alu("or", R3, 0x4000),
                    alu("add", R3, -9, w32=True), jmp32("gt", R3, 1, "out"),
                    mov(R0, TC_ACT_SHOT), exit_(), Label("out"), mov(R0, TC_ACT_OK),
                    exit_()) == {TC_ACT_OK}


def test_alu_ops_on_constants() -> None:
    assert possible(mov(R0, 10), alu("sub", R0, 13), exit_()) == {-3}
    assert possible(mov(R0, 7), alu("mul", R0, 6), exit_()) == {42}
    assert possible(mov(R0, -7), alu("sdiv", R0, 2), exit_()) == {-3}
    assert possible(mov(R0, -7), alu("smod", R0, 2), exit_()) == {-1}
    assert possible(mov(R0, 7), alu("div", R0, 0), exit_()) == {0}
    assert possible(mov(R0, 7), alu("mod", R0, 0), exit_()) == {7}
    assert possible(mov(R0, -8), alu("arsh", R0, 2), exit_()) == {-2}
    assert possible(mov(R0, -8), alu("rsh", R0, 60), exit_()) == {15}
    assert possible(mov(R0, 5), alu("xor", R0, 3), exit_()) == {6}
    assert possible(mov(R0, 5), neg(R0), exit_()) == {-5}
    assert possible(mov(R0, 0x0201), end(R0, 16, "be"), exit_()) == {0x0102}
    assert possible(ld_imm64(R0, 0x1_0000_0203), end(R0, 16, "le"), exit_()) == {0x0203}
    assert possible(mov(R0, 0x80), movsx(R0, R0, 8), exit_()) == {-128}
    assert possible(mov(R1, -1), mov32(R0, R1), alu("rsh", R0, 28), exit_()) == {15}
    # 32-bit ops zero-extend: (u32)-1 >> 28 in 64-bit = 15
    assert possible(mov32(R0, -1), alu("rsh", R0, 28), exit_()) == {15}


def test_masks_of_unknown_values() -> None:
    base = [call(5)]
    assert possible(*base, and_(R0, 1), exit_()) == {0, 1}
    assert possible(*base, and_(R0, 6), exit_()) == {0, 2, 4, 6}
    assert possible(*base, alu("rsh", R0, 62), exit_()) == {0, 1, 2, 3}
    assert possible(*base, alu("mod", R0, 3), exit_()) == {0, 1, 2}
    assert possible(*base, alu("arsh", R0, 63), exit_()) == {0, -1}
    assert possible(*base, alu("arsh", R0, 30, w32=True), exit_()) == {-2, -1, 0, 1}
    assert possible(*base, and_(R0, 0xFF), exit_()) is None


# ------------------------------------------------------------- registers and stack


def test_verdict_in_callee_saved_register_across_helpers() -> None:
    a = run(
        mov(R6, R1),
        mov(R7, TC_ACT_REDIRECT),
        call(5),
        mov(R1, R6),
        call(5),
        mov(R0, R7),
        exit_(),
    )
    assert a.possible == {TC_ACT_REDIRECT}


def test_helpers_clobber_r1_to_r5() -> None:
    a = run(mov(R3, 2), call(5), mov(R0, R3), exit_())
    assert a.possible is None
    assert a.reason is not None and "clobbered" in a.reason


def test_verdict_spilled_and_reloaded() -> None:
    a = run(
        mov(R2, TC_ACT_SHOT),
        stx(8, R10, -8, R2),
        mov(R2, 0),
        call(5),
        ldx(8, R0, R10, -8),
        exit_(),
    )
    assert a.possible == {TC_ACT_SHOT}


def test_spill_through_copied_frame_pointer_and_st() -> None:
    a = run(
        mov(R3, R10),
        add(R3, -16),
        st(4, R3, 4, TC_ACT_REDIRECT),
        ldx(4, R0, R10, -12),
        exit_(),
    )
    assert a.possible == {TC_ACT_REDIRECT}


def test_sub_slot_loads() -> None:
    prog: list[Item] = [ld_imm64(R1, 0x1122334455667788), stx(8, R10, -8, R1)]
    assert possible(*prog, ldx(4, R0, R10, -4), exit_()) == {0x11223344}
    assert possible(*prog, ldx(2, R0, R10, -8), exit_()) == {0x7788}
    assert possible(*prog, ldx(1, R0, R10, -7), exit_()) == {0x77}
    assert possible(*prog, ldx(1, R0, R10, -1, sx=False), exit_()) == {0x11}
    assert possible(
        mov(R1, -2), stx(8, R10, -8, R1), ldx(1, R0, R10, -8, sx=True), exit_()
    ) == {-2}


def test_partial_overwrite_invalidates_spill() -> None:
    a = run(mov(R1, 2), stx(8, R10, -8, R1), st(1, R10, -6, 9), ldx(8, R0, R10, -8), exit_())
    assert a.possible is None


def test_atomic_on_slot_is_exact() -> None:
    a = run(
        mov(R1, 2), stx(8, R10, -8, R1), mov(R2, 1),
        atomic(8, "add", R10, -8, R2), ldx(8, R0, R10, -8), exit_(),
    )
    assert a.possible == {3}
    b = run(
        mov(R1, 2), stx(8, R10, -8, R1), mov(R0, 1),
        atomic(8, "add", R10, -8, R0, fetch=True), exit_(),
    )
    assert b.possible == {2}


def test_helper_writing_stack_buffer_invalidates_only_above_pointer() -> None:
    prologue = [
        mov(R6, R1),
        mov(R2, TC_ACT_SHOT),
        stx(8, R10, -16, R2),  # overwritten by the helper below
        mov(R2, TC_ACT_OK),
        stx(8, R10, -24, R2),  # below the buffer: kept
        mov(R1, R6),
        mov(R2, 0),
        mov(R3, R10),
        add(R3, -16),
        mov(R4, 8),
        call(26),  # bpf_skb_load_bytes(skb, 0, r10-16, 8)
    ]
    assert possible(*prologue, ldx(8, R0, R10, -16), exit_()) is None
    assert possible(*prologue, ldx(8, R0, R10, -24), exit_()) == {TC_ACT_OK}


def test_map_lookup_key_pointer_does_not_invalidate() -> None:
    a = run(
        mov(R2, TC_ACT_SHOT),
        stx(8, R10, -8, R2),
        st(4, R10, -16, 0),
        ld_map(R1, 5),
        mov(R2, R10),
        add(R2, -16),
        call(1),
        ldx(8, R0, R10, -8),
        exit_(),
    )
    assert a.possible == {TC_ACT_SHOT}


def test_map_value_load_is_unknown_with_map_id() -> None:
    a = run(ld_map_value(R1, 298, 8), ldx(4, R0, R1, 0), exit_())
    assert a.possible is None
    assert a.reason == "value loaded from map 298"
    assert dict(a.exits) == {3: None}


def test_map_lookup_value_is_unknown_with_map_id() -> None:
    a = run(
        st(4, R10, -4, 0),
        ld_map(R1, 42),
        mov(R2, R10),
        add(R2, -4),
        call(1),
        jmp("eq", R0, 0, "miss"),
        ldx(4, R0, R0, 0),
        exit_(),
        Label("miss"),
        mov(R0, TC_ACT_UNSPEC),
        exit_(),
    )
    assert a.possible is None
    assert a.reason == "value loaded from memory"
    assert a.exits[10] == {-1}


def test_ctx_and_packet_loads_are_unknown() -> None:
    a = run(ldx(4, R0, R1, 0), exit_())
    assert a.possible is None and a.reason == "value loaded from ctx"
    b = run(ldx(4, R2, R1, 76), ldx(1, R0, R2, 0), exit_())
    assert b.ranges == ((0, 255),) and b.reason == "more than 64 values, see ranges"


def test_other_helper_is_unknown_with_name() -> None:
    a = run(call(5), exit_())
    assert a.possible is None
    assert a.reason == "return value of helper bpf_ktime_get_ns"
    b = analyse(program(call(4242), exit_()), FakeSource())
    assert b.reason == "return value of helper #4242"


def test_helper_contracts_are_named_as_the_kernel_names_the_helpers() -> None:
    """The engine knows a helper by the kallsyms name of the xlated call's target: a
    contract under a name no function has never applies (``fib_lookup`` did not: the
    tc helper is ``bpf_skb_fib_lookup``, and real Calico came out unknown)."""
    names = {line.split()[2] for line in Path("/proc/kallsyms").read_text().splitlines()
             if len(line.split()) >= 3}
    assert "bpf_skb_fib_lookup" in names  # the machine's kallsyms was read
    assert sorted(k for k in H._TABLE if f"bpf_{k}" not in names) == []


def test_a_fib_lookup_result_returned_has_the_helpers_range() -> None:
    """Calico returns ``rc`` on some paths after ``switch (rc)`` of bpf_fib_lookup."""
    src = FakeSource(helpers={**HELPERS, 69: "bpf_skb_fib_lookup"})
    a = run(mov(R6, R1), call(69), mov(R6, R0), mov(R1, R6), jmp32("eq", R1, 7, "done"),
            jmp32("eq", R1, 0, "done"), mov(R0, R6), exit_(), Label("done"),
            mov(R0, TC_ACT_REDIRECT), exit_(), src=src)
    assert a.ranges == ((-4095, 255),)


@pytest.mark.parametrize("helper", [23, 152, 155])
def test_redirect_helpers(helper: int) -> None:
    a = run(mov(R1, 3), mov(R2, 0), call(helper), exit_())
    assert a.possible == {TC_ACT_SHOT, TC_ACT_REDIRECT}
    assert effective(a.possible, "direct-action") == ("drop", "redirect")


def test_kfunc_is_unknown() -> None:
    a = run(kfunc_call(77), exit_())
    assert a.possible is None and a.reason is not None and "kfunc" in a.reason


def test_ld_abs_may_end_the_program_with_zero() -> None:
    assert possible(mov(R6, R1), ld_abs(2, 12), mov(R0, TC_ACT_SHOT), exit_()) == {0, 2}


# ------------------------------------------------------------- branches and loops


def test_branch_refines_unknown_on_equality() -> None:
    a = run(
        call(5),
        jmp("eq", R0, TC_ACT_SHOT, "out"),
        mov(R0, TC_ACT_OK),
        Label("out"),
        exit_(),
    )
    assert a.possible == {TC_ACT_OK, TC_ACT_SHOT}
    b = run(call(5), jmp("ne", R0, 7, "other"), exit_(), Label("other"), mov(R0, 0), exit_())
    assert b.possible == {0, 7}


def test_branch_filters_sets_on_both_sides() -> None:
    a = run(
        call(5),
        and_(R0, 3),
        jmp("gt", R0, 1, "big"),
        exit_(),
        Label("big"),
        add(R0, 10),
        exit_(),
    )
    assert a.possible == {0, 1, 12, 13}
    assert dict(a.exits) == {3: frozenset({0, 1}), 5: frozenset({12, 13})}


def test_infeasible_branch_pruned() -> None:
    a = run(
        mov(R0, 2),
        jmp("ne", R0, 2, "never"),
        exit_(),
        Label("never"),
        call(5),
        exit_(),
    )
    assert a.possible == {2}
    assert 4 not in a.exits


def test_jmp32_compares_low_half() -> None:
    prog = [ld_imm64(R0, 0x1_0000_0002)]
    assert possible(*prog, jmp32("eq", R0, 2, "a"), mov(R0, 5), Label("a"), exit_()) == {2}
    assert possible(*prog, jmp("eq", R0, 2, "a"), mov(R0, 5), Label("a"), exit_()) == {5}


def test_register_register_compare() -> None:
    a = run(
        call(5),
        and_(R0, 3),
        mov(R1, 2),
        jmp("lt", R0, R1, "small"),
        mov(R0, 9),
        Label("small"),
        exit_(),
    )
    assert a.possible == {0, 1, 9}


def test_may_goto_explores_both_sides() -> None:
    assert possible(mov(R0, 1), may_goto("x"), mov(R0, 2), Label("x"), exit_()) == {1, 2}


def test_bounded_loop_reaches_fixpoint() -> None:
    a = run(
        mov(R0, 0),
        mov(R1, 0),
        Label("loop"),
        add(R1, 1),
        jmp("ne", R1, 3, "skip"),
        mov(R0, TC_ACT_REDIRECT),
        Label("skip"),
        jmp("lt", R1, 5, "loop"),
        exit_(),
    )
    assert a.possible == {0, 7}


def test_long_loop_terminates_precisely() -> None:
    a = run(
        mov(R7, TC_ACT_SHOT),
        mov(R9, 1000),
        Label("loop"),
        call(5),
        alu("sub", R9, 1),
        jmp("ne", R9, 0, "loop"),
        mov(R0, R7),
        exit_(),
    )
    assert a.possible == {TC_ACT_SHOT}
    assert a.steps < 5000


def test_growing_loop_widens_to_unknown() -> None:
    a = run(
        mov(R0, 0),
        Label("loop"),
        add(R0, 1),
        call(5),
        mov(R1, R0),
        jmp("ne", R1, 0, "loop"),
        exit_(),
    )
    # r0 is the helper's return at exit; but a loop that grows r0 itself:
    b = run(
        mov(R0, 0),
        Label("loop"),
        add(R0, 1),
        ldx(4, R1, R1, 0),
        jmp("ne", R1, 0, "loop"),
        exit_(),
    )
    assert a.possible == {0}  # r0 == r1 (a copy) and r1 == 0 at the exit
    assert b.possible is None
    assert b.reason is not None


def test_goto_backwards_and_gotol() -> None:
    from tests.bpfasm import gotol

    a = run(mov(R0, 1), gotol("end"), mov(R0, 2), Label("end"), exit_())
    assert a.possible == {1}


def test_step_budget() -> None:
    items = [mov(R0, 0)] + [add(R0, 1) for _ in range(200)] + [exit_()]
    a = run(*items, step_budget=50)
    assert a.possible is None
    assert a.reason == "step budget exhausted"
    assert run(*items).possible == {200}


def test_step_budget_on_endless_loop_in_shape() -> None:
    # a loop the analysis cannot bound must still end (widening), far below budget
    a = run(
        Label("top"),
        call(5),
        jmp("ne", R0, 0, "top"),
        mov(R0, 2),
        exit_(),
    )
    assert a.possible == {2}


# ------------------------------------------------------------- bpf-to-bpf calls


def test_subprogram_return_raw() -> None:
    prog = program(
        mov(R6, 5),
        pseudo_call("f"),
        exit_(),
        Label("f"),
        mov(R6, 9),
        mov(R0, TC_ACT_REDIRECT),
        exit_(),
        func_labels=["f"],
    )
    a = analyse(prog, FakeSource())
    assert a.possible == {7}
    assert set(a.exits) == {2, 5}


def test_subprogram_return_jit_form() -> None:
    prog = program(
        pseudo_call("f", jit=True, index=1),
        exit_(),
        Label("f"),
        mov(R0, TC_ACT_SHOT),
        exit_(),
        func_labels=["f"],
    )
    assert analyse(prog, FakeSource()).possible == {2}
    # imm holds the subprogram index: pc+imm+1 would be wrong (the exit at 1... here pc 2)
    prog2 = program(
        pseudo_call("f", jit=True, index=3),
        mov(R0, 1),
        mov(R0, 1),
        mov(R0, 1),
        exit_(),
        Label("f"),
        mov(R0, TC_ACT_SHOT),
        exit_(),
        func_labels=["f"],
    )
    assert analyse(prog2, FakeSource()).possible == {1}


def test_callee_saved_registers_survive_subprogram() -> None:
    prog = program(
        mov(R7, TC_ACT_OK),
        pseudo_call("f"),
        mov(R0, R7),
        exit_(),
        Label("f"),
        mov(R7, 3),
        mov(R0, 3),
        exit_(),
        func_labels=["f"],
    )
    assert analyse(prog, FakeSource()).possible == {0}


def test_subprogram_writing_caller_stack_through_argument() -> None:
    prog = program(
        mov(R2, 5),
        stx(8, R10, -8, R2),
        mov(R1, R10),
        add(R1, -8),
        pseudo_call("f"),
        ldx(8, R0, R10, -8),
        exit_(),
        Label("f"),
        mov(R2, 9),
        stx(8, R1, 0, R2),
        mov(R0, 0),
        exit_(),
        func_labels=["f"],
    )
    src = FakeSource()
    a = analyse(prog, src)
    assert concrete(prog, src, 5) == {9}
    assert a.possible is None or 9 in a.possible


def test_subprogram_with_unknown_argument() -> None:
    # summaries take the arguments as unknown: sound, imprecise
    prog = program(
        mov(R1, 2), pseudo_call("f"), exit_(),
        Label("f"), mov(R0, R1), exit_(),
        func_labels=["f"],
    )
    assert analyse(prog, FakeSource()).possible is None


# ------------------------------------------------------------- tail calls


def tail(index: int | None) -> list[Item]:
    body: list[Item] = [mov(R1, R6), ld_map(R2, PROG_ARRAY)]
    if index is None:
        body += [ldx(4, R3, R6, 0)]
    else:
        body += [mov(R3, index)]
    return [*body, tail_call()]


def returning(value: int, prog_id: int) -> ProgramCode:
    return program(mov(R0, value), exit_(), prog_id=prog_id, name=f"ret{value}")


def test_tail_call_constant_index() -> None:
    src = FakeSource(
        programs={11: returning(TC_ACT_OK, 11), 12: returning(TC_ACT_REDIRECT, 12)},
        arrays={PROG_ARRAY: {0: 11, 1: 12}},
    )
    root = program(mov(R6, R1), *tail(1), mov(R0, TC_ACT_SHOT), exit_(), prog_id=10)
    a = analyse(root, src)
    assert a.possible == {TC_ACT_SHOT, TC_ACT_REDIRECT}
    assert a.reason == "tail calls via prog array 167 (2 slots)"
    assert a.prog_arrays == (PROG_ARRAY,)
    (tc,) = a.tail_calls
    assert tc.map_id == PROG_ARRAY and tc.index == 1 and tc.targets == (12,)
    assert tc.analyses[0] is not None and tc.analyses[0].possible == {7}
    assert concrete(root, src, 20) <= a.possible


def test_tail_call_variable_index_takes_every_slot() -> None:
    src = FakeSource(
        programs={11: returning(TC_ACT_OK, 11), 12: returning(TC_ACT_REDIRECT, 12)},
        arrays={PROG_ARRAY: {0: 11, 1: 12}},
    )
    root = program(mov(R6, R1), *tail(None), mov(R0, TC_ACT_SHOT), exit_(), prog_id=10)
    a = analyse(root, src)
    assert a.possible == {0, 2, 7}
    assert a.tail_calls[0].index is None
    assert a.tail_calls[0].targets == (11, 12)
    assert effective(a.possible, "direct-action") == ("accept", "drop", "redirect")


def test_tail_call_empty_slot_only_falls_through() -> None:
    src = FakeSource(programs={11: returning(0, 11)}, arrays={PROG_ARRAY: {0: 11}})
    root = program(mov(R6, R1), *tail(5), mov(R0, TC_ACT_UNSPEC), exit_(), prog_id=10)
    a = analyse(root, src)
    assert a.possible == {-1}
    assert a.tail_calls[0].targets == ()


def test_tail_call_fallthrough_r0_is_unknown() -> None:
    src = FakeSource(programs={11: returning(0, 11)}, arrays={PROG_ARRAY: {0: 11}})
    a = analyse(program(mov(R6, R1), *tail(0), exit_()), src)
    assert a.possible is None
    assert a.reason is not None and "bpf_tail_call" in a.reason


def test_tail_call_cycle_terminates() -> None:
    a_prog = program(mov(R6, R1), *tail(1), mov(R0, TC_ACT_OK), exit_(), prog_id=21)
    b_prog = program(mov(R6, R1), *tail(0), mov(R0, TC_ACT_SHOT), exit_(), prog_id=22)
    self_loop = program(mov(R6, R1), *tail(2), mov(R0, TC_ACT_REDIRECT), exit_(), prog_id=23)
    src = FakeSource(
        programs={21: a_prog, 22: b_prog, 23: self_loop},
        arrays={PROG_ARRAY: {0: 21, 1: 22, 2: 23}},
    )
    a = analyse(a_prog, src)
    assert a.possible == {0, 2}
    inner = a.tail_calls[0].analyses[0]
    assert inner is not None and inner.possible == {0, 2}
    assert inner.tail_calls[0].analyses == (None,)  # cycle back to 21
    s = analyse(self_loop, src)
    assert s.possible == {7}
    assert concrete(a_prog, src, 10) <= {0, 2}


def test_tail_call_depth_limit() -> None:
    programs = {}
    arrays = {}
    for i in range(40):
        programs[100 + i] = program(
            mov(R6, R1),
            mov(R1, R6),
            ld_map(R2, 500 + i),
            mov(R3, 0),
            tail_call(),
            mov(R0, i),
            exit_(),
            prog_id=100 + i,
        )
        arrays[500 + i] = {0: 101 + i}
    src = FakeSource(programs=programs, arrays=arrays)
    a = analyse(programs[100], src)
    # the root and 33 tail calls run; the 34th tail call fails and falls through
    assert a.possible == frozenset(range(34))
    assert concrete(programs[100], src, 3) == {33}


def test_unreadable_prog_array_is_unknown() -> None:
    src = FakeSource()
    a = analyse(program(mov(R6, R1), *tail(0), mov(R0, 2), exit_()), src)
    assert a.possible is None
    assert a.reason == f"prog array {PROG_ARRAY} unreadable"


def test_unreadable_target_is_unknown() -> None:
    src = FakeSource(arrays={PROG_ARRAY: {0: 99}})
    a = analyse(program(mov(R6, R1), *tail(0), mov(R0, 2), exit_()), src)
    assert a.possible is None
    assert a.reason is not None and "99" in a.reason
    assert a.tail_calls[0].analyses == (None,)


def test_tail_call_through_unknown_map() -> None:
    a = run(mov(R6, R1), ldx(8, R2, R6, 0), mov(R3, 0), tail_call(), mov(R0, 2), exit_())
    assert a.possible is None
    assert a.reason is not None and "unknown map" in a.reason


def test_tail_call_recognised_by_name_too() -> None:
    src = FakeSource(
        programs={11: returning(TC_ACT_REDIRECT, 11)},
        arrays={PROG_ARRAY: {0: 11}},
        helpers={999: "bpf_tail_call"},
    )
    root = program(
        mov(R6, R1), mov(R1, R6), ld_map(R2, PROG_ARRAY), mov(R3, 0), call(999),
        mov(R0, 2), exit_(),
    )
    assert analyse(root, src).possible == {2, 7}


def test_tail_call_from_subprogram_returns_to_caller() -> None:
    src = FakeSource(
        programs={11: returning(TC_ACT_REDIRECT, 11)}, arrays={PROG_ARRAY: {0: 11}}
    )
    sub = [Label("f"), mov(R6, R1), *tail(0), mov(R0, TC_ACT_SHOT), exit_()]
    uses = program(pseudo_call("f"), exit_(), *sub, func_labels=["f"])
    ignores = program(pseudo_call("f"), mov(R0, 1), exit_(), *sub, func_labels=["f"])
    a = analyse(uses, src)
    assert a.possible == {2, 7}
    assert a.tail_calls[0].in_subprogram
    assert analyse(ignores, src).possible == {1}
    assert concrete(uses, src, 5) <= {2, 7}
    assert concrete(ignores, src, 5) == {1}


def test_budget_covers_tail_call_targets() -> None:
    big = program(mov(R0, 0), *[add(R0, 0) for _ in range(300)], exit_(), prog_id=11)
    src = FakeSource(programs={11: big}, arrays={PROG_ARRAY: {0: 11}})
    root = program(mov(R6, R1), *tail(0), mov(R0, 2), exit_())
    assert analyse(root, src).possible == {0, 2}
    assert analyse(root, src, step_budget=100).reason == "step budget exhausted"


# ------------------------------------------------------------- a Cilium-like tree


def filler(rng: random.Random, n: int, tag: str) -> list[Item]:
    """Verdict-neutral code: arithmetic on r7-r9, spills to slots -32..-64,
    helper calls, ctx loads through r6 and forward branches."""
    out: list[Item] = []
    count = 0
    k = 0
    while count < n:
        choice = rng.randrange(6)
        if choice == 0:
            out += [ldx(4, R7, R6, 4 * rng.randrange(20)), add(R7, rng.randrange(100))]
            count += 2
        elif choice == 1:
            slot = -8 * rng.randrange(4, 9)
            out += [stx(8, R10, slot, R7), ldx(8, R8, R10, slot)]
            count += 2
        elif choice == 2:
            out += [mov(R1, R6), call(5), mov(R9, R0)]
            count += 3
        elif choice == 3:
            lbl = f"{tag}_{k}"
            k += 1
            out += [
                jmp("gt", R7, rng.randrange(1000), lbl),
                alu("xor", R8, R7),
                and_(R8, 0xFF),
                Label(lbl),
            ]
            count += 3
        elif choice == 4:
            out += [mov(R8, rng.randrange(1 << 20)), alu("mul", R8, 3), alu("rsh", R8, 2)]
            count += 3
        else:
            out += [mov(R2, R7), alu("or", R2, 1), mov(R9, R2)]
            count += 3
    return out


def test_cilium_like_tree() -> None:
    rng = random.Random(7)
    # slot 0: "from-container" policy: OK or SHOT by a verdict kept on the stack
    policy = program(
        mov(R6, R1),
        mov(R2, TC_ACT_OK),
        stx(8, R10, -8, R2),
        *filler(rng, 500, "p"),
        jmp("lt", R7, 50, "allow"),
        mov(R2, TC_ACT_SHOT),
        stx(8, R10, -8, R2),
        Label("allow"),
        *filler(rng, 200, "p2"),
        ldx(8, R0, R10, -8),
        exit_(),
        prog_id=11,
        name="tail_policy",
    )
    # slot 1: redirect via helper, in a subprogram; SHOT when the neighbour is unknown
    redirect = program(
        mov(R6, R1),
        *filler(rng, 400, "r"),
        pseudo_call("do_redirect"),
        stx(8, R10, -8, R0),
        *filler(rng, 100, "r2"),
        ldx(8, R0, R10, -8),
        exit_(),
        Label("do_redirect"),
        mov(R1, 4),
        mov(R2, 0),
        call(23),
        exit_(),
        prog_id=12,
        name="tail_redirect",
        func_labels=["do_redirect"],
    )
    # slot 2: nat: goes on to the policy program; SHOT if that tail call fails
    nat = program(
        mov(R6, R1),
        *filler(rng, 400, "n"),
        *tail(0),
        mov(R0, TC_ACT_SHOT),
        exit_(),
        prog_id=13,
        name="tail_nat",
    )
    root = program(
        mov(R6, R1),
        *filler(rng, 400, "root"),
        ldx(4, R7, R6, 16),
        jmp("eq", R7, 0x0800, "ipv4"),
        jmp("eq", R7, 0x86DD, "ipv6"),
        mov(R0, TC_ACT_OK),
        exit_(),
        Label("ipv4"),
        *tail(2),
        mov(R0, TC_ACT_SHOT),
        exit_(),
        Label("ipv6"),
        *tail(1),
        mov(R0, TC_ACT_SHOT),
        exit_(),
        prog_id=10,
        name="cil_from_container",
    )
    src = FakeSource(
        programs={11: policy, 12: redirect, 13: nat},
        arrays={PROG_ARRAY: {0: 11, 1: 12, 2: 13}},
    )
    total = sum(len(p.insns) for p in (root, policy, redirect, nat))
    assert total > 2000
    a = analyse(root, src)
    assert a.possible == {TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT}
    assert a.reason == "tail calls via prog array 167 (3 slots)"
    assert effective(a.possible, "direct-action") == ("accept", "drop", "redirect")
    by_target = {tc.targets: tc for tc in a.tail_calls}
    nat_a = by_target[(13,)].analyses[0]
    assert nat_a is not None and nat_a.possible == {0, 2}
    redir_a = by_target[(12,)].analyses[0]
    assert redir_a is not None and redir_a.possible == {2, 7}
    assert concrete(root, src, 50) <= a.possible


# ------------------------------------------------------------- meaning


def test_effective_direct_action() -> None:
    assert effective(frozenset({0}), "direct-action") == ("accept",)
    assert effective(frozenset({-1, 1, 3, 5, 6, 99}), "direct-action") == ("continue",)
    assert effective(frozenset({2, 4, 7, 8}), "direct-action") == (
        "drop", "redirect", "stolen", "trap",
    )
    assert effective(None, "direct-action") is None
    assert effective(frozenset(), "tcx") == ()


def test_effective_classic() -> None:
    assert effective(frozenset({0}), "classic") == ("continue",)
    assert effective(frozenset({0, -1, 5}), "classic") == ("accept", "continue")
    assert effective(frozenset({1}), "classic", has_actions=True) == (
        "accept", "continue", "drop", "redirect", "stolen", "trap",
    )


def test_effective_tcx() -> None:
    assert effective(frozenset({-1}), "tcx") == ("continue",)
    assert effective(frozenset({0, 2, 7}), "tcx") == ("accept", "drop", "redirect")
    assert effective(frozenset({1, 4, 8}), "tcx") == ("continue",)


def test_effective_rejects_bad_mode() -> None:
    with pytest.raises(ValueError):
        effective(frozenset({0}), "bogus")  # type: ignore[arg-type]


def test_verdict_names() -> None:
    assert verdict_names(frozenset({7, 0, -1, 42})) == [
        "TC_ACT_UNSPEC", "TC_ACT_OK", "TC_ACT_REDIRECT", "42",
    ]
    assert verdict_names(frozenset({-1, 2}), "tcx") == ["TCX_NEXT", "TCX_DROP"]
    assert verdict_names(None) == []


def test_invalid_code_is_unknown() -> None:
    a = analyse(
        ProgramCode(None, "bad", (Insn(0xFF, 0, 0, 0, 0), Insn(0x95, 0, 0, 0, 0))),
        FakeSource(),
    )
    assert a.possible is None and a.reason is not None and "unsupported" in a.reason
    b = analyse(ProgramCode(None, "empty", ()), FakeSource())
    assert b.possible is None
    c = run(mov(R0, 1), ja(5), exit_())
    assert c.possible is None and c.reason is not None and "invalid" in c.reason
    d = run(mov(R0, 1))
    assert d.possible is None and d.reason is not None and "falls off" in d.reason


def test_jump_into_second_slot_of_ld_imm64_is_invalid() -> None:
    a = run(mov(R0, 1), jmp("eq", R1, 0, 1), ld_imm64(R0, 5), exit_())
    assert a.possible is None


def test_unused_registers_in_tests() -> None:
    # keep imports honest (R4, R8, R9 used in helpers above)
    assert {R4.n, R8.n, R9.n} == {4, 8, 9}


# ------------------------------------------------------------- soundness corner cases


def sound(prog: ProgramCode, src: FakeSource | None = None, runs: int = 40) -> Analysis:
    """Analyse and check every concrete return over random inputs is covered."""
    src = src or FakeSource()
    a = analyse(prog, src)
    seen = concrete(prog, src, runs)
    if a.possible is not None:
        assert seen <= a.possible, (seen, a.possible)
    return a


def test_signed_compare_and_shift_on_constants() -> None:
    assert possible(
        mov(R0, -1), jmp("sgt", R0, 0, "pos"), mov(R0, 2), exit_(), Label("pos"), mov(R0, 3),
        exit_(),
    ) == {2}
    assert possible(
        mov(R0, -1), jmp("gt", R0, 0, "pos"), mov(R0, 2), exit_(), Label("pos"), mov(R0, 3),
        exit_(),
    ) == {3}
    assert possible(mov32(R0, -8), alu("arsh", R0, 1, w32=True), exit_()) == {-4}
    assert possible(mov32(R0, -8), alu("arsh", R0, 1, w32=True), alu("rsh", R0, 32),
                    exit_()) == {0}


def test_cmpxchg_writes_old_value_to_r0() -> None:
    prog = program(
        mov(R1, 2), stx(8, R10, -8, R1), mov(R0, 5), mov(R2, 9),
        atomic(8, "cmpxchg", R10, -8, R2), exit_(),
    )
    a = sound(prog)
    assert a.possible is None or 2 in a.possible


def test_xchg_writes_old_value_to_src() -> None:
    prog = program(
        mov(R1, 2), stx(8, R10, -8, R1), mov(R2, 9),
        atomic(8, "xchg", R10, -8, R2), mov(R0, R2), exit_(),
    )
    a = sound(prog)
    assert a.possible is None or 2 in a.possible


def test_jmp32_equality_does_not_fix_upper_bits() -> None:
    prog = program(
        call(5),
        jmp32("ne", R0, 2, "out"),
        alu("rsh", R0, 32),
        exit_(),
        Label("out"),
        mov(R0, 0),
        exit_(),
    )
    assert sound(prog).possible is None


def test_store_through_joined_stack_pointers() -> None:
    prog = program(
        mov(R6, R1),
        mov(R2, TC_ACT_SHOT),
        stx(8, R10, -16, R2),
        stx(8, R10, -8, R2),
        mov(R1, R10),
        add(R1, -8),
        ldx(4, R3, R6, 0),
        jmp("gt", R3, 0x7FFFFFFF, "keep"),
        add(R1, -8),
        Label("keep"),
        mov(R4, TC_ACT_OK),
        stx(8, R1, 0, R4),
        ldx(8, R0, R10, -16),
        exit_(),
    )
    a = sound(prog)
    assert a.possible is None or a.possible >= {0, 2}


def test_spill_of_pointer_keeps_pointer() -> None:
    # a stack pointer spilled and filled is still a stack pointer: stores through it count
    prog = program(
        mov(R1, R10),
        add(R1, -16),
        stx(8, R10, -8, R1),
        mov(R2, TC_ACT_SHOT),
        stx(8, R10, -16, R2),
        ldx(8, R3, R10, -8),
        st(8, R3, 0, TC_ACT_REDIRECT),
        ldx(8, R0, R10, -16),
        exit_(),
    )
    assert sound(prog).possible == {7}


def test_kernel_internal_probe_loads_are_unknown() -> None:
    probe_ldx = Insn(0x01 | 0x20 | 0x18, 0, 1, 0, 0)  # BPF_LDX|BPF_PROBE_MEM|BPF_DW
    arena_st = Insn(0x02 | 0xA0 | 0x18, 1, 0, 0, 5)  # BPF_ST|BPF_PROBE_MEM32|BPF_DW
    code = (*program(mov(R0, 2), stx(8, R10, -8, R0)).insns, arena_st, probe_ldx,
            *program(ldx(8, R1, R10, -8), exit_()).insns)
    a = analyse(ProgramCode(None, "probe", code), FakeSource())
    assert a.possible is None and a.reason == "value loaded from kernel memory"
    code2 = (*code[:-2], *program(ldx(8, R0, R10, -8), exit_()).insns)
    assert analyse(ProgramCode(None, "probe", code2), FakeSource()).possible == {2}


# ------------------------------------------------------------- engine v2 semantics

THROW_HELPERS = {**HELPERS, 9001: "bpf_throw"}


def test_bpf_throw_returns_the_cookie() -> None:
    # bpf_throw ends the whole program with the cookie (default exception callback),
    # even from a subprogram
    prog = program(
        pseudo_call("f"),
        mov(R0, TC_ACT_OK),
        exit_(),
        Label("f"),
        mov(R1, TC_ACT_SHOT),
        kfunc_call(9001),
        mov(R0, 5),
        exit_(),
        func_labels=["f"],
    )
    a = analyse(prog, FakeSource(helpers=THROW_HELPERS))
    assert a.possible == {TC_ACT_SHOT}  # f never returns: the code after the call is dead


def test_bpf_throw_with_an_exception_callback_uses_its_return() -> None:
    # a function nothing calls may be the exception callback: it gets the cookie in r1
    prog = program(
        mov(R1, 3),
        kfunc_call(9001),
        mov(R0, TC_ACT_OK),
        exit_(),
        Label("cb"),
        mov(R0, R1),
        add(R0, 4),
        exit_(),
        func_labels=["cb"],
    )
    a = analyse(prog, FakeSource(helpers=THROW_HELPERS))
    assert a.possible == {3, 7}  # the default (the cookie) or the callback's r1 + 4


def test_ld_abs_failure_in_a_subprogram_returns_zero_to_the_caller() -> None:
    # the failed load returns 0 from the subprogram only; the caller maps 0 to SHOT
    prog = program(
        mov(R6, R1),
        pseudo_call("f"),
        jmp("eq", R0, 0, "zero"),
        mov(R0, TC_ACT_OK),
        exit_(),
        Label("zero"),
        mov(R0, TC_ACT_SHOT),
        exit_(),
        Label("f"),
        ld_abs(1, 12),
        mov(R0, 1),
        exit_(),
        func_labels=["f"],
    )
    a = analyse(prog, FakeSource())
    assert a.possible == {TC_ACT_OK, TC_ACT_SHOT}


def test_no_reachable_exit_is_unknown() -> None:
    a = run(Label("top"), mov(R0, 1), jmp("eq", R0, 1, "top"), exit_())
    assert a.possible is None and a.ranges is None
    assert a.reason == "no exit is reachable"


def test_more_than_64_values_become_ranges() -> None:
    a = run(call(5), and_(R0, 0x7F), add(R0, 100), exit_())
    assert a.possible is None
    assert a.ranges == ((100, 227),)
    assert a.reason == "more than 64 values, see ranges"


def test_a_bound_covering_every_32_bit_value_is_unknown() -> None:
    a = run(call(5), exit_())
    assert a.possible is None and a.ranges is None
    assert a.reason == "return value of helper bpf_ktime_get_ns"


def test_errno_range_and_constants_stay_apart() -> None:
    # a helper's 0-or-errno joined with {2, 7} at one exit: no STOLEN (4) in between
    a = run(
        mov(R1, R1),
        call(26),  # skb_load_bytes: 0 or a negative errno
        jmp("eq", R0, 0, "ok"),
        ja("out"),
        Label("ok"),
        mov(R1, 3),
        mov(R2, 0),
        call(23),  # redirect: SHOT or REDIRECT
        Label("out"),
        exit_(),
    )
    assert a.ranges == ((-4095, -1), (2, 2), (7, 7))
    assert effective_ranges(a.ranges, "direct-action") == ("continue", "drop", "redirect")


def test_sign_extended_copy_refines_the_original() -> None:
    # clang's `(int)ret < 0` test on a copy; the original register is returned
    a = run(
        call(26),
        mov(R6, R0),
        mov(R1, R6),
        lsh(R1, 32),
        alu("arsh", R1, 32),
        jmp("slt", R1, 0, "err"),
        mov(R0, R6),
        exit_(),
        Label("err"),
        mov(R0, TC_ACT_SHOT),
        exit_(),
    )
    assert a.possible == {TC_ACT_OK, TC_ACT_SHOT}


def test_an_engine_exception_is_one_program_unknown_verdict(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tcaudit.analysis import attach, closure
    from tcaudit.model import Entry, Program

    class Code:
        def cache_key(self, prog_id: int) -> str:
            return f"k{prog_id}"

        def program(self, prog_id: int) -> ProgramCode:
            return program(mov(R0, 0), exit_())

        def error(self, prog_id: int) -> None:
            return None

    def boom(*_a: object, **_k: object) -> Analysis:
        raise IndexError("list index out of range")

    monkeypatch.setattr(closure, "analyse", boom)  # (attach imports it when first needed)
    analyser = attach.VerdictAnalyser(Code())  # type: ignore[arg-type]
    prog = Program(id=7, name="x", tag="00", type="sched_cls", insns=2, maps=(),
                   holders=(), btf_id=None, loaded_at=None, uid=None)
    entry = Entry(pref=1, handle=1, chain=0, protocol="all", kind="bpf", direct_action=True,
                  filter_name="x", program=prog)
    v = analyser.verdict(entry)
    assert v.possible is None and v.effective is None and v.ranges is None
    assert v.reason == "internal error: IndexError: list index out of range"
    assert analyser.internal_errors == [
        "program 7: verdict analysis failed (internal error: IndexError: list index out "
        "of range); its verdict is unknown"
    ]


def test_snapshot_verdicts_read_back_with_ranges() -> None:
    from tcaudit.inventory.snapshot import _verdict

    new = _verdict({"possible": None, "ranges": [[-4095, 0], [7, 7]],
                    "effective": ["accept", "continue", "redirect"], "basis": "static",
                    "reason": "more than 64 values, see ranges"})
    assert new is not None and new.ranges == ((-4095, 0), (7, 7))
    assert new.may_return(-14) is True and new.may_return(2) is False
    # a snapshot written before ranges existed: derived from possible, merged
    old = _verdict({"possible": [-1, 0, 2], "effective": ["accept", "continue", "drop"],
                    "basis": "static", "reason": None})
    assert old is not None and old.ranges == ((-1, 0), (2, 2))
    unknown = _verdict({"possible": None, "effective": None, "basis": "static",
                        "reason": "value loaded from ctx"})
    assert unknown is not None and unknown.ranges is None and unknown.may_return(0) is None


def test_union_whose_hull_is_a_few_constants() -> None:
    # regression: a union of bounds (not normalised, as widening leaves them) and a set
    # whose hull is at most 64 values used to be turned into a set of the bounds' fields
    from tcaudit.analysis import scalar as S

    wide = S.Rng(0, S.S64_MAX, 0, S.M64, 0, 15, "loop")
    out = S.union((wide, frozenset(range(16, 32))))
    assert all(isinstance(x, int) for x in out) if isinstance(out, frozenset) else True
    assert S.contains(out, 3) and S.contains(out, 20)


# ------------------------------------------------------------- review counterexamples
# Each was a confirmed unsound answer (kernel or reference interpreter) in a review of
# the engine; the expected sets are the kernel's.

REVIEW_HELPERS = {**HELPERS, 65912: "bpf_throw", 181: "bpf_loop"}


def _review(prog: ProgramCode, **kw: object) -> Analysis:
    return analyse(prog, FakeSource(helpers=REVIEW_HELPERS, **kw))  # type: ignore[arg-type]


def test_review_tail_call_from_a_subprogram_returns_its_writes() -> None:
    tgt = program(mov(R0, 2), exit_(), prog_id=2)
    p = program(
        mov(R2, R10), add(R2, -8), st(8, R10, -8, 7), pseudo_call("sub"),
        ldx(8, R0, R10, -8), exit_(),
        Label("sub"), mov(R6, R2), st(8, R6, 0, 0),
        ld_map(R2, 5), mov(R3, 0), tail_call(),
        st(8, R6, 0, -1), mov(R0, 0), exit_(), func_labels=["sub"], prog_id=1,
    )
    a = _review(p, programs={1: p, 2: tgt}, arrays={5: {0: 2}})
    assert a.possible is None or {0, -1} <= a.possible


def test_review_escape_restart_keeps_a_callee_throw() -> None:
    p = program(
        pseudo_call("sub"), stx(8, R10, -8, R10), mov(R0, -1), exit_(),
        Label("sub"), call(7), jmp("set", R0, 1, "throw"), mov(R0, 0), exit_(),
        Label("throw"), mov(R1, 0), kfunc_call(65912), mov(R0, 0), exit_(),
        func_labels=["sub"],
    )
    a = _review(p)
    assert a.possible is None or {0, -1} <= a.possible


def test_review_load_acquire_ends_the_links_of_its_destination() -> None:
    p = program(
        call(7), and_(R0, 2), mov(R6, R0),
        call(7), and_(R0, 2), stx(8, R10, -8, R0),
        mov(R2, R6), atomic(8, "load_acq", R2, -8, R10),
        jmp("eq", R2, 2, "out"), mov(R6, 9), Label("out"), mov(R0, R6), exit_(),
    )
    a = _review(p)
    assert a.possible is None or {0, 2, 9} <= a.possible


def test_review_throw_keeps_the_effect_of_the_current_function() -> None:
    p = program(
        st(8, R10, -8, -1), mov(R2, R10), add(R2, -8), pseudo_call("sub"),
        ldx(8, R0, R10, -8), exit_(),
        Label("sub"), mov(R6, R2), call(7), jmp("set", R0, 1, "write"),
        mov(R1, 3), kfunc_call(65912), exit_(),
        Label("write"), st(8, R6, 0, 0), mov(R0, 0), exit_(),
        Label("handler"), mov(R0, 5), exit_(), func_labels=["sub", "handler"],
    )
    a = _review(p)
    assert a.possible is None or {0, 3} <= a.possible


def test_review_narrow_store_into_the_caller_is_cut_to_its_size() -> None:
    p = program(
        st(2, R10, -8, 7), mov(R1, R10), add(R1, -8), pseudo_call("sub"),
        ldx(2, R0, R10, -8), exit_(),
        Label("sub"), mov(R6, R1), call(7), jmp("set", R0, 1, "B"),
        mov(R2, 0x10000), stx(2, R6, 0, R2), mov(R0, 0), exit_(),
        Label("B"), mov(R1, 1), ld_func(R2, "cb"), mov(R3, 0), mov(R4, 0), call(181),
        mov(R0, 0), exit_(),
        Label("cb"), mov(R0, 1), exit_(), func_labels=["sub", "cb"],
    )
    a = _review(p)
    assert a.possible is None or 0 in a.possible


def test_widening_a_slot_cut_out_of_a_wider_one() -> None:
    # a loop whose body overwrites the upper half of an 8-byte slot on some paths: the
    # join cuts the half out of the wider entry, and widening must cope with the new key
    prog = program(
        st(8, R10, -16, 0),
        mov(R6, 0),
        Label("loop"),
        jmp("gt", R6, 100, "out"),
        add(R6, 1),
        call(5),
        jmp("eq", R0, 0, "skip"),
        stx(4, R10, -12, R6),
        Label("skip"),
        ja("loop"),
        Label("out"),
        ldx(4, R0, R10, -12),
        exit_(),
    )
    a = sound(prog)  # analyse() has no guard here: an exception fails the test
    assert a.possible is None or 0 in a.possible
