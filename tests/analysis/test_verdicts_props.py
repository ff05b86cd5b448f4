"""Property tests: the static analysis against the reference interpreter.

Random programs (straight-line code, forward branches, a bounded loop, a
subprogram, tail calls through a prog array) run on tests/refinterp.py over
random registers, ctx, stack bytes, packet and helper results. Every
concrete return value (low 32 bits, signed) must be covered by the analysis
(``possible``, else ``ranges``) unless it says unknown, and every exit the
interpreter reaches must be in ``exits`` with the value it saw.

The generators also use what real xlated code contains: the kernel's scratch
register r11 (BPF_REG_AX, e.g. from constant blinding) as an ordinary
register, BPF_ST|BPF_NOSPEC barriers, and pointers into the stack frame kept
in the frame itself. The frame of every function that plays with frame
pointers is laid out so that no generated program faults:

* ``[-64, 0)``: verdict slots (``GENERIC``), what ordinary stack items touch;
* ``PTR_SLOTS`` (-72 .. -96): always hold a pointer ``r10 + t`` of the main
  function with ``t`` in ``[-64, -8]`` (set up by the prologue; every later
  write there stores another such pointer), so a reloaded pointer plus an
  offset in ``[0, 8 - size]`` always hits the verdict slots;
* ``[-256, -96)``: scratch space for helper output buffers and stores at a
  computed offset (buffers that reach into ``PTR_SLOTS`` are followed by
  saves that restore the invariant).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from tcaudit.analysis.closure import ProgramCode, analyse
from tcaudit.analysis.insns import Insn, disassemble
from tcaudit.analysis.meaning import effective, effective_one
from tests.bpfasm import (
    ALU_OPS,
    HELPERS,
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
    R11,
    FakeSource,
    Item,
    Label,
    Reg,
    add,
    alu,
    asm_with_labels,
    atomic,
    blinded_alu,
    blinded_mov,
    call,
    end,
    exit_,
    ja,
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
    nospec,
    pseudo_call,
    stx,
    sub,
    tail_call,
)
from tests.bpfasm import (
    st as st_imm,
)
from tests.refinterp import CTX_SIZE, OUT_BUFFERS, Machine

WRITABLE = [R0, R1, R2, R3, R4, R5, R7, R8, R11]
SOURCES = [R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10, R11]
VERDICTS = [-1, 0, 1, 2, 3, 4, 5, 6, 7, 8]
PROG_ARRAY = 1
MAP = 5
GENERIC = tuple(-8 * k for k in range(1, 9))  # verdict slots [-64, 0)
PTR_SLOTS = (-72, -80, -88, -96)
SCRATCH_LOW = -256
SCRATCH_HIGH = PTR_SLOTS[-1]  # scratch is [SCRATCH_LOW, SCRATCH_HIGH)
PTR_REGS = [R0, R1, R2, R3, R4, R5, R7, R8, R11]
FP_HELPERS: Mapping[int, str] = {
    **HELPERS,
    20: "bpf_skb_get_tunnel_key",
    68: "bpf_skb_load_bytes_relative",
    113: "bpf_probe_read_kernel",
}


def covers(a: object, v: int) -> bool:
    """Whether the analysis ``a`` allows the return value ``v`` (unknown allows all)."""
    possible = getattr(a, "possible", None)
    if possible is not None:
        return v in possible
    ranges = getattr(a, "ranges", None)
    if ranges is not None:
        return any(lo <= v <= hi for lo, hi in ranges)
    return True


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
class FpSubs:
    """The subprograms that frame-pointer calls use (fp_trees)."""

    store_arg: int  # sub_store stores a verdict through this argument register
    store_spill: bool  # ... after keeping it in its own frame across a helper call
    ret_arg: int  # sub_ret returns this argument register
    ret_mode: str  # "plain", "keep" (in r9 across code) or "spill" (in its frame)
    save_xchg: bool  # sub_save exchanges *r1 with r2 and returns the old pointer


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
    fp: bool = False  # PTR_SLOTS hold frame pointers: frame-pointer items allowed
    fp_subs: FpSubs | None = None  # sub_store, sub_ret and sub_save exist
    nested: bool = False  # inside a frame-pointer episode (no further episodes)

    def d(self, strat: st.SearchStrategy[object]) -> object:
        return self.draw(strat)


def stack_off(draw: st.DrawFn, size: int) -> int:
    """Offsets that often hit the same slots (so that stale spills would show)."""
    if draw(st.integers(0, 3)) == 0:
        return draw(st.integers(-64, -size))
    slot = -8 * draw(st.integers(1, 4))
    return slot + size * draw(st.integers(0, 8 // size - 1))


# ------------------------------------------------------------ frame pointers


def other_reg(draw: st.DrawFn, *avoid: Reg) -> Reg:
    return draw(st.sampled_from([r for r in PTR_REGS if r not in avoid]))


def ptr_target(draw: st.DrawFn, *, aligned: bool = False) -> int:
    """Where a saved frame pointer points: inside the verdict slots."""
    if aligned or draw(st.booleans()):
        return draw(st.sampled_from(GENERIC))
    return draw(st.integers(-64, -8))


def frame_ptr(g: Gen, reg: Reg, t: int, *avoid: Reg) -> list[Item]:
    """``reg = r10 + t``, computed one of several ways (a temporary not in avoid)."""
    draw = g.draw
    how = draw(st.integers(0, 4))
    if how == 0:
        return [mov(reg, R10), add(reg, t)]
    if how == 1:
        k = draw(st.integers(-16, 16))
        return [mov(reg, R10), add(reg, t - k), add(reg, k)]
    if how == 2:
        return [mov(reg, R10), sub(reg, -t)]
    tmp = other_reg(draw, reg, *avoid)
    if how == 3:
        return [mov(tmp, t), mov(reg, R10), add(reg, tmp)]
    return [ld_imm64(tmp, t), mov(reg, R10), add(reg, tmp)]


def save_ptr(g: Gen, slot: int, val: Reg) -> list[Item]:
    """``*(u64 *)(r10 + slot) = val`` (a frame pointer), one of several ways.
    ``val`` may afterwards hold the slot's old pointer (xchg)."""
    draw = g.draw
    how = draw(st.integers(0, 4))
    if how == 0:
        return [stx(8, R10, slot, val)]
    if how == 1:
        return [atomic(8, "store_rel", R10, slot, val)]
    if how == 2:
        return [atomic(8, "xchg", R10, slot, val)]
    addr = other_reg(draw, val)
    k = draw(st.integers(-16, 16))
    return [*frame_ptr(g, addr, slot - k, val), stx(8, addr, k, val)]


def reload_ptr(g: Gen, slot: int, reg: Reg) -> list[Item]:
    """``reg = *(u64 *)(r10 + slot)``, one of several ways."""
    draw = g.draw
    how = draw(st.integers(0, 2))
    if how == 0:
        return [ldx(8, reg, R10, slot)]
    if how == 1:
        return [atomic(8, "load_acq", reg, slot, R10)]
    addr = draw(st.sampled_from(PTR_REGS))
    k = draw(st.integers(-16, 16))
    return [*frame_ptr(g, addr, slot - k), ldx(8, reg, addr, k)]


def store_through(g: Gen, reg: Reg, *avoid: Reg, exact: bool = False) -> list[Item]:
    """Store a verdict through ``reg`` (= r10 + t, t in [-64, -8]).

    ``exact``: only whole aligned 8-byte stores (reg must point at a GENERIC slot).
    """
    draw = g.draw
    how = draw(st.integers(0, 1 if exact else 3))
    size = 8 if exact else draw(sizes)
    off = 0 if exact else draw(st.integers(0, 8 - size))
    v = draw(st.sampled_from(VERDICTS)) if not exact else draw(imm32)
    if how == 0:
        return [st_imm(size, reg, off, v)]
    val = other_reg(draw, reg, *avoid)
    if how == 1:
        return [mov(val, v), stx(size, reg, off, val)]
    if how == 2:  # an atomic read-modify-write through the pointer
        size = draw(st.sampled_from([4, 8]))
        off = draw(st.integers(0, 8 - size))
        op = draw(st.sampled_from(["add", "or", "and", "xor", "xchg"]))
        fetch = op == "xchg" or draw(st.booleans())
        return [mov(val, v), atomic(size, op, reg, off, val, fetch=fetch)]
    return [mov(val, v), atomic(size, "store_rel", reg, off, val)]


def ptr_prologue(g: Gen) -> list[Item]:
    """Fill every PTR_SLOTS slot with a frame pointer into the verdict slots."""
    out: list[Item] = []
    for slot in PTR_SLOTS:
        r = g.draw(st.sampled_from(PTR_REGS))
        out += [*frame_ptr(g, r, ptr_target(g.draw)), *save_ptr(g, slot, r)]
    return out


def resave_ptrs(g: Gen, low: int, high: int) -> list[Item]:
    """Store fresh frame pointers into the PTR_SLOTS slots that [low, high) overlaps."""
    out: list[Item] = []
    for slot in PTR_SLOTS:
        if slot < high and low < slot + 8:
            r = g.draw(st.sampled_from(PTR_REGS))
            out += [*frame_ptr(g, r, ptr_target(g.draw)), *save_ptr(g, slot, r)]
    return out


def helper_into_buffer(g: Gen, low: int, ln: int) -> list[Item]:
    """A helper that writes ``ln`` random bytes into [r10 + low, r10 + low + ln)."""
    draw = g.draw
    hid = draw(st.sampled_from([26, 68, 20, 113] if g.ctx_reg else [113]))
    breg, lreg = OUT_BUFFERS[hid]
    items: list[Item] = frame_ptr(g, Reg(breg), low)
    if hid != 113:
        items.append(mov(R1, R6))
    if hid in (26, 68):
        items.append(mov(R2, draw(st.integers(0, 64))))
    items.append(mov(Reg(lreg), ln))
    if hid == 68:
        items.append(mov(R5, draw(st.integers(0, 1))))
    elif hid == 20:
        items.append(mov(R4, 0))
    elif hid == 113:
        items.append(mov(R3, draw(imm32)))
    return [*items, call(hid)]


def fp_helper(g: Gen, below: int) -> list[Item]:
    """A helper whose buffer ends at or below ``below`` (in the scratch and
    pointer area); PTR_SLOTS slots it overwrote get fresh pointers after it."""
    draw = g.draw
    top = draw(st.integers(SCRATCH_LOW + 1, below))
    ln = draw(st.integers(1, min(64, top - SCRATCH_LOW)))
    low = top - ln
    return [*helper_into_buffer(g, low, ln), *resave_ptrs(g, low, top)]


def fp_computed_store(g: Gen) -> list[Item]:
    """A store at r10 + base + (bounded register), into the verdict slots or scratch."""
    draw = g.draw
    k = draw(st.sampled_from(PTR_REGS))
    items: list[Item] = []
    src = draw(st.integers(0, 2 if g.ctx_reg else 1))
    if src == 0:
        items += [call(7), mov(k, R0)]
    elif src == 1:
        items.append(ldx(8, k, R10, draw(st.integers(SCRATCH_LOW, SCRATCH_HIGH - 8))))
    else:
        size = draw(sizes)
        items.append(ldx(size, k, R6, draw(st.integers(0, CTX_SIZE - size))))
    mask = draw(st.sampled_from([1, 7, 15, 0x18, 0x38, 0x3F]))
    if draw(st.booleans()):
        items.append(alu("and", k, mask, w32=draw(st.booleans())))
    else:
        items.append(alu("mod", k, mask + 1, w32=draw(st.booleans())))
    size = draw(sizes)
    generic = mask + size <= 64 and draw(st.booleans())
    if generic:
        base = draw(st.integers(-64, -mask - size))
    else:
        base = draw(st.integers(SCRATCH_LOW, SCRATCH_HIGH - mask - size))
    a = other_reg(draw, k)
    if draw(st.booleans()):
        items += [*frame_ptr(g, a, base, k), add(a, k)]
    else:
        items += [mov(a, R10), add(a, k), add(a, base)]
    v = draw(st.sampled_from(VERDICTS))
    if draw(st.booleans()):
        return [*items, st_imm(size, a, 0, v)]
    val = other_reg(draw, a)
    return [*items, mov(val, v), stx(size, a, 0, val)]


def fp_call(g: Gen) -> list[Item]:
    """A bpf-to-bpf call handed a pointer into this frame."""
    draw = g.draw
    fs = g.fp_subs
    assert fs is not None
    g.uses.add("fp_call")
    which = draw(st.sampled_from(["store", "ret", "save"]))
    if which == "save":  # sub_save puts r2 into *r1 (r1 = a PTR_SLOTS slot)
        slot = draw(st.sampled_from(PTR_SLOTS))
        items = [*frame_ptr(g, R1, slot), *frame_ptr(g, R2, ptr_target(draw), R1),
                 pseudo_call("sub_save")]
        if fs.save_xchg:
            items += store_through(g, R0)
        return items
    arg = Reg(fs.store_arg if which == "store" else fs.ret_arg)
    if draw(st.booleans()):
        items = frame_ptr(g, arg, ptr_target(draw))
    else:
        items = reload_ptr(g, draw(st.sampled_from(PTR_SLOTS)), arg)
    items.append(pseudo_call("sub_store" if which == "store" else "sub_ret"))
    if which == "ret":
        items += store_through(g, R0)
        if draw(st.booleans()):
            items += save_ptr(g, draw(st.sampled_from(PTR_SLOTS)), R0)
    return items


def fp_middle(g: Gen, slot: int, prefix: str) -> list[Item]:
    """What runs between saving a pointer to ``slot`` and reloading it."""
    draw = g.draw
    out: list[Item] = []
    parts = ["helper", "computed", "body", "nospec", "blind"]
    if g.fp_subs is not None:
        parts += ["call", "call"]
    for i in range(draw(st.integers(0, 3))):
        part = draw(st.sampled_from(parts))
        if part == "helper":
            out += fp_helper(g, slot)
        elif part == "computed":
            out += fp_computed_store(g)
        elif part == "call":
            out += fp_call(g)
        elif part == "nospec":
            out.append(nospec())
        elif part == "blind":
            out += blinded_mov(draw(regs_w), draw(st.sampled_from(VERDICTS)), draw(imm32))
        else:
            inner = Gen(draw, ctx_reg=g.ctx_reg, tail_calls=g.tail_calls, subprog=g.subprog,
                        sub_writes_arg=g.sub_writes_arg, ld_abs_ok=g.ld_abs_ok, kinds=g.kinds,
                        uses=g.uses, fp=True, fp_subs=g.fp_subs, nested=True)
            out += body(inner, draw(st.integers(1, 4)), f"{prefix}m{i}_")
    return out


def fp_item(g: Gen, kind: str, pos: int, prefix: str) -> list[Item]:
    draw = g.draw
    slot = draw(st.sampled_from(PTR_SLOTS))
    if kind == "fp_save":
        r = draw(st.sampled_from(PTR_REGS))
        return [*frame_ptr(g, r, ptr_target(draw)), *save_ptr(g, slot, r)]
    if kind == "fp_reload_store":
        r = draw(st.sampled_from(PTR_REGS))
        return [*reload_ptr(g, slot, r), *store_through(g, r)]
    if kind == "fp_xchg":  # a saved pointer handed back by xchg
        r = draw(st.sampled_from(PTR_REGS))
        items = frame_ptr(g, r, ptr_target(draw))
        if draw(st.booleans()):
            items.append(atomic(8, "xchg", R10, slot, r))
        else:
            addr = other_reg(draw, r)
            k = draw(st.integers(-16, 16))
            items += [*frame_ptr(g, addr, slot - k, r), atomic(8, "xchg", addr, k, r)]
        return [*items, *store_through(g, r)]
    if kind == "fp_cmpxchg":  # ... or by cmpxchg (in r0)
        r = other_reg(draw, R0)
        how = draw(st.integers(0, 2))
        if how == 0:
            items = reload_ptr(g, slot, R0)  # equal: the exchange happens
        elif how == 1:
            items = frame_ptr(g, R0, ptr_target(draw))  # maybe equal
        else:
            items = [mov(R0, draw(imm32))]  # never equal
        items += [*frame_ptr(g, r, ptr_target(draw), R0), atomic(8, "cmpxchg", R10, slot, r)]
        items += store_through(g, R0, r)
        if draw(st.booleans()):
            items += store_through(g, r)
        return [*items, mov(R0, draw(st.sampled_from(VERDICTS)))]
    if kind == "fp_helper":
        return fp_helper(g, -64)
    if kind == "fp_computed_store":
        return fp_computed_store(g)
    if kind == "fp_call":
        return fp_call(g)
    if kind == "fp_episode":
        # save (perhaps on one side of a join only), middle, reload, store through
        a = draw(st.sampled_from(PTR_REGS))
        items = frame_ptr(g, a, ptr_target(draw))
        save = save_ptr(g, slot, a)
        shape = draw(st.integers(0, 2))
        if shape == 0:
            items += save
        else:
            join = f"{prefix}{pos}j"
            fn = jmp if draw(st.booleans()) else jmp32
            src: Reg | int = draw(regs_s) if draw(st.booleans()) else draw(imm32)
            if shape == 1:
                items += [fn(draw(conds), draw(regs_s), src, join), *save, Label(join)]
            else:  # if/else: the other side does something else
                other = f"{prefix}{pos}e"
                items += [fn(draw(conds), draw(regs_s), src, other), *save, ja(join),
                          Label(other), *fp_middle(g, slot, f"{prefix}{pos}o"), Label(join)]
        items += fp_middle(g, slot, f"{prefix}{pos}")
        b = draw(st.sampled_from(PTR_REGS))
        return [*items, *reload_ptr(g, slot, b), *store_through(g, b)]
    raise AssertionError(kind)


FP_KINDS = ("fp_save", "fp_reload_store", "fp_xchg", "fp_cmpxchg", "fp_helper",
            "fp_computed_store")


def simple_item(g: Gen, pos: int, n: int, prefix: str) -> list[Item]:
    """One random item at position ``pos`` of ``n`` (jumps go forward only)."""
    draw = g.draw
    kinds = [
        "alu_k", "alu_x", "alu_k", "alu_x", "mov_k", "mov_k", "neg", "end", "movsx",
        "ldimm", "st_stack", "stx_stack", "ldx_stack", "ptr_store", "atomic",
        "helper", "redirect", "load_bytes", "map_value", "lookup", "jump", "jump",
        "exit", "verdict", "verdict", "observe", "fill_r0", "fill_r0", "nospec", "blind",
    ]
    if g.ctx_reg:
        kinds += ["ctx_load", "ctx_load"]
        if g.ld_abs_ok:
            kinds.append("ld_abs")
    if g.tail_calls:
        kinds += ["tail", "tail"]
    if g.subprog:
        kinds += ["pcall", "pcall"]
    if g.fp:
        kinds += FP_KINDS
        if not g.nested:
            kinds += ["fp_episode", "fp_episode"]
        if g.fp_subs is not None:
            kinds.append("fp_call")
    allowed = g.kinds or kinds
    if g.kinds and g.nested:
        allowed = tuple(k for k in allowed if k != "fp_episode")
    kind = draw(st.sampled_from(allowed))
    if kind.startswith("fp_"):
        return fp_item(g, kind, pos, prefix)
    dst = draw(regs_w)
    if kind == "nospec":
        return [nospec()]
    if kind == "blind":  # JIT constant blinding through r11
        if draw(st.booleans()):
            return blinded_mov(dst, draw(st.sampled_from(VERDICTS)), draw(imm32))
        return blinded_alu(draw(alu_ops), dst, draw(imm32), draw(imm32),
                           w32=draw(st.booleans()))
    if kind == "alu_k":
        return [alu(draw(alu_ops), dst, draw(imm32), w32=draw(st.booleans()))]
    if kind == "alu_x":
        return [alu(draw(alu_ops), dst, draw(regs_s), w32=draw(st.booleans()))]
    if kind == "observe":
        return [mov(R0, draw(st.sampled_from([R1, R2, R3, R4, R5, R7, R8, R9, R11])))]
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
    items: list[Item] = [mov(R6, R1)]
    if g.fp:
        if draw(st.booleans()):
            items += [st_imm(8, R10, s, draw(st.sampled_from(VERDICTS))) for s in GENERIC]
        items += ptr_prologue(g)
    items.append(mov(R0, draw(st.sampled_from(VERDICTS))))
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


def listing(code: ProgramCode, helper_name: object = None) -> str:
    """bpftool-like text of a program, with pcs and subprogram starts marked."""
    names = helper_name if callable(helper_name) else FP_HELPERS.get
    lines = [f"prog {code.prog_id} {code.name} func_starts={code.func_starts}"]
    for pc, text in enumerate(disassemble(code.insns, names, opcodes=True)):
        if text:
            mark = ">" if pc in code.func_starts else " "
            lines.append(f"{mark}{pc:4d}: {text}")
    return "\n".join(lines)


@dataclass
class Tree:
    root: ProgramCode
    source: FakeSource

    def __repr__(self) -> str:
        parts = [listing(self.root)]
        for _pid, p in sorted(self.source.programs.items()):
            if p is not self.root:
                parts.append(listing(p))
        if self.source.arrays:
            parts.append(f"prog arrays: {self.source.arrays}")
        return "Tree(\n" + "\n".join(parts) + "\n)"

    def _repr_pretty_(self, p: object, cycle: bool) -> None:
        p.text(repr(self))  # type: ignore[attr-defined]


@st.composite
def trees(draw: st.DrawFn, *, tail_calls: bool, subprog: bool, loops: bool) -> Tree:
    want_sub = subprog and draw(st.booleans())
    g = Gen(
        draw,
        tail_calls=tail_calls,
        subprog=want_sub,
        sub_writes_arg=want_sub and draw(st.booleans()),
        ld_abs_ok=not want_sub,
        fp=draw(st.integers(0, 2)) == 0,
    )
    root = gen_program(g, loops=loops, prog_id=100, name="root")
    programs: dict[int, ProgramCode] = {}
    arrays: dict[int, dict[int, int]] = {}
    if tail_calls:
        slots: dict[int, int] = {}
        for slot in range(draw(st.integers(0, 3))):
            pid = 101 + slot
            tg = Gen(draw, tail_calls=draw(st.booleans()), fp=draw(st.integers(0, 2)) == 0)
            programs[pid] = gen_program(tg, loops=False, prog_id=pid, name=f"t{slot}")
            if draw(st.integers(0, 4)):
                slots[slot] = pid
        if draw(st.integers(0, 5)) == 0:
            slots[draw(st.integers(0, 3))] = 100  # a cycle back to the root
        arrays[PROG_ARRAY] = slots
    programs[100] = root
    return Tree(root, FakeSource(programs=programs, arrays=arrays, helpers=FP_HELPERS))


FP_BODY_KINDS = (
    "st_stack", "stx_stack", "ldx_stack", "fill_r0", "ptr_store", "atomic", "load_bytes",
    "mov_k", "verdict", "jump", "jump", "helper", "observe", "nospec", "blind", "alu_x",
    "pcall", "ctx_load", *FP_KINDS, *FP_KINDS, "fp_call", "fp_call",
    "fp_episode", "fp_episode", "fp_episode", "fp_episode",
)
SUB_KINDS = ("st_stack", "stx_stack", "ldx_stack", "fill_r0", "ptr_store", "atomic",
             "mov_k", "verdict", "jump", "helper", "observe", "nospec", "blind", "alu_x")


def callee_spill(g: Gen, reg: Reg, prefix: str) -> list[Item]:
    """Keep ``reg`` (a pointer into the caller's frame) in this frame's slot -72
    across a helper writing below it and some code; reload it into ``reg``."""
    draw = g.draw
    top = draw(st.integers(SCRATCH_LOW + 1, -72))
    ln = draw(st.integers(1, min(64, top - SCRATCH_LOW)))
    nox = Gen(draw, ctx_reg=False, ld_abs_ok=False, kinds=SUB_KINDS)
    return [*save_ptr(g, -72, reg), *helper_into_buffer(g, top - ln, ln),
            *body(nox, draw(st.integers(0, 4)), prefix), *reload_ptr(g, -72, reg)]


def fp_subprograms(draw: st.DrawFn, fs: FpSubs) -> list[Item]:
    sg = Gen(draw, ctx_reg=False, ld_abs_ok=False, kinds=SUB_KINDS)
    out: list[Item] = [Label("sub_store")]
    arg = Reg(fs.store_arg)
    if fs.store_spill:
        out += callee_spill(sg, arg, "ks")
    out += [*store_through(sg, arg), *body(sg, draw(st.integers(0, 4)), "ss"), exit_()]
    out.append(Label("sub_ret"))
    arg = Reg(fs.ret_arg)
    if fs.ret_mode == "keep":
        out += [mov(R9, arg), *body(sg, draw(st.integers(0, 4)), "sr"), mov(R0, R9)]
    elif fs.ret_mode == "spill":
        out += [*callee_spill(sg, arg, "kr"), mov(R0, arg)]
    else:
        out.append(mov(R0, arg))
    out.append(exit_())
    out.append(Label("sub_save"))
    if fs.save_xchg:
        out += [atomic(8, "xchg", R1, 0, R2), mov(R0, R2)]
    else:
        out.append(stx(8, R1, 0, R2))
    out.append(exit_())
    return out


@st.composite
def fp_trees(draw: st.DrawFn) -> Tree:
    """Programs that keep pointers into their frame in the frame and store
    verdicts through them (see the module docstring for the frame layout)."""
    fs = FpSubs(
        store_arg=draw(st.integers(1, 5)),
        store_spill=draw(st.booleans()),
        ret_arg=draw(st.integers(1, 5)),
        ret_mode=draw(st.sampled_from(["plain", "keep", "spill"])),
        save_xchg=draw(st.booleans()),
    )
    writes_arg = draw(st.booleans())
    g = Gen(draw, subprog=True, sub_writes_arg=writes_arg, ld_abs_ok=False,
            kinds=FP_BODY_KINDS, fp=True, fp_subs=fs)
    items: list[Item] = [mov(R6, R1)]
    items += [st_imm(8, R10, s, draw(st.sampled_from(VERDICTS))) for s in GENERIC]
    items += ptr_prologue(g)
    items += [mov(r, draw(st.sampled_from(VERDICTS))) for r in WRITABLE]
    items += body(g, draw(st.integers(1, 10)), "a")
    items += [ldx(8, R0, R10, draw(st.sampled_from(GENERIC))), exit_()]
    sub_g = Gen(draw, ctx_reg=False, ld_abs_ok=False, kinds=SUB_KINDS)
    sub_items: list[Item] = [Label("sub")]
    if writes_arg:
        sub_items.append(st_imm(8, R1, 0, draw(st.sampled_from(VERDICTS))))
    sub_items += [*body(sub_g, draw(st.integers(0, 4)), "s"), exit_()]
    code, labels = asm_with_labels(*items, *sub_items, *fp_subprograms(draw, fs))
    starts = (0, *sorted(labels[k] for k in ("sub", "sub_store", "sub_ret", "sub_save")))
    root = ProgramCode(100, "fp", code, starts)
    return Tree(root, FakeSource(programs={100: root}, helpers=FP_HELPERS))


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
        assert covers(a, r.retval), (
            r.retval, a.possible, getattr(a, "ranges", None), a.reason, seed)
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


@COMMON
@given(fp_trees())
def test_frame_pointers_kept_in_the_frame_are_sound(tree: Tree) -> None:
    check_sound(tree)


# ---------------------------------------------------------------- exactness


@st.composite
def constant_programs(draw: st.DrawFn, *, rewrites: bool = False) -> tuple[Insn, ...]:
    """Programs whose every input is a constant: the analysis must be exact.

    ``rewrites``: also what the kernel's rewrites put into xlated code: r11 as
    an ordinary register, JIT constant blinding through r11, and BPF_NOSPEC.
    """
    cregs = SOURCES[:10] + ([R11] if rewrites else [])
    items: list[Item] = [mov(r, draw(imm32)) for r in cregs if r != R10]
    for slot in range(1, 9):
        items.append(stx(8, R10, -8 * slot, draw(st.sampled_from(cregs))))
    kinds = ["alu_k", "alu_x", "neg", "end", "movsx", "ldimm", "spill", "fill", "jump"]
    if rewrites:
        kinds += ["blind_mov", "blind_alu", "nospec", "alu_x"]
    n = draw(st.integers(1, 25))
    for pos in range(n):
        items.append(Label(f"c{pos}"))
        kind = draw(st.sampled_from(kinds))
        dst = draw(st.sampled_from(cregs))
        if kind == "alu_k":
            items.append(alu(draw(alu_ops), dst, draw(imm32), w32=draw(st.booleans())))
        elif kind == "alu_x":
            src = draw(st.sampled_from(cregs))
            items.append(alu(draw(alu_ops), dst, src, w32=draw(st.booleans())))
        elif kind == "neg":
            items.append(neg(dst, w32=draw(st.booleans())))
        elif kind == "end":
            to = draw(st.sampled_from(["le", "be", "swap"]))
            items.append(end(dst, draw(st.sampled_from([16, 32, 64])), to))
        elif kind == "movsx":
            w32 = draw(st.booleans())
            bits = draw(st.sampled_from([8, 16] if w32 else [8, 16, 32]))
            items.append(movsx(dst, draw(st.sampled_from(cregs)), bits, w32=w32))
        elif kind == "ldimm":
            items.append(ld_imm64(dst, draw(imm64)))
        elif kind == "spill":
            items.append(stx(8, R10, -8 * draw(st.integers(1, 8)), dst))
        elif kind == "fill":
            size = draw(sizes)
            off = -8 * draw(st.integers(1, 8)) + draw(st.integers(0, 8 - size))
            items.append(ldx(size, dst, R10, off, sx=size < 8 and draw(st.booleans())))
        elif kind == "blind_mov":
            items += blinded_mov(dst, draw(imm32), draw(imm32))
        elif kind == "blind_alu":
            items += blinded_alu(draw(alu_ops), dst, draw(imm32), draw(imm32),
                                 w32=draw(st.booleans()))
        elif kind == "nospec":
            items.append(nospec())
        else:
            fn = jmp if draw(st.booleans()) else jmp32
            src2: Reg | int = draw(st.sampled_from(cregs)) if draw(
                st.booleans()) else draw(imm32)
            items.append(fn(draw(conds), dst, src2, f"c{draw(st.integers(pos + 1, n))}"))
    # fold all 64 bits of every register into the 32-bit return value
    items.append(Label(f"c{n}"))
    for r in cregs[1:]:
        items += [alu("mul", R0, 31), alu("xor", R0, r)]
    items += [mov(R1, R0), alu("rsh", R1, 32), alu("xor", R0, R1), exit_()]
    return asm_with_labels(*items)[0]


@settings(max_examples=400, deadline=None)
@given(constant_programs(), st.integers(0, 1000))
def test_constant_programs_are_exact(code: tuple[Insn, ...], seed: int) -> None:
    note(listing(ProgramCode(1, "c", code)))
    a = analyse(ProgramCode(1, "c", code), FakeSource())
    r = Machine({0: code}, {}, random.Random(seed)).run()
    assert a.possible == {r.retval}, a


@settings(max_examples=300, deadline=None)
@given(constant_programs(rewrites=True), st.integers(0, 1000))
def test_constant_programs_with_r11_blinding_and_nospec_are_exact(
    code: tuple[Insn, ...], seed: int
) -> None:
    note(listing(ProgramCode(1, "c", code)))
    a = analyse(ProgramCode(1, "c", code), FakeSource())
    r = Machine({0: code}, {}, random.Random(seed)).run()
    assert a.possible == {r.retval}, (a.possible, a.reason)


@st.composite
def fp_constant_programs(draw: st.DrawFn) -> tuple[Insn, ...]:
    """Straight-line programs of constants that keep frame pointers in the
    frame and store through them (whole aligned 8-byte slots only): exact."""
    g = Gen(draw)
    items: list[Item] = [st_imm(8, R10, s, draw(imm32)) for s in GENERIC]
    for slot in PTR_SLOTS:
        r = draw(st.sampled_from(PTR_REGS))
        items += [*frame_ptr(g, r, ptr_target(draw, aligned=True)), stx(8, R10, slot, r)]
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["save", "reload_store", "xchg", "cmpxchg", "direct"]))
        slot = draw(st.sampled_from(PTR_SLOTS))
        r = other_reg(draw, R0)
        t = ptr_target(draw, aligned=True)
        if kind == "save":
            items += [*frame_ptr(g, r, t), *save_ptr(g, slot, r)]
        elif kind == "reload_store":
            items += [*reload_ptr(g, slot, r), *store_through(g, r, exact=True)]
        elif kind == "xchg":
            items += [*frame_ptr(g, r, t), atomic(8, "xchg", R10, slot, r),
                      *store_through(g, r, exact=True)]
        elif kind == "cmpxchg":
            if draw(st.booleans()):
                items += reload_ptr(g, slot, R0)
            else:
                items += frame_ptr(g, R0, ptr_target(draw, aligned=True))
            items += [*frame_ptr(g, r, t, R0), atomic(8, "cmpxchg", R10, slot, r),
                      *store_through(g, R0, exact=True)]
        else:
            items.append(st_imm(8, R10, draw(st.sampled_from(GENERIC)), draw(imm32)))
    items.append(mov(R0, 0))
    for s in GENERIC:
        items += [alu("mul", R0, 31), ldx(8, R1, R10, s), alu("xor", R0, R1)]
    items += [mov(R1, R0), alu("rsh", R1, 32), alu("xor", R0, R1), exit_()]
    return asm_with_labels(*items)[0]


@settings(max_examples=200, deadline=None)
@given(fp_constant_programs(), st.integers(0, 1000))
def test_frame_pointer_constant_programs_are_exact(code: tuple[Insn, ...], seed: int) -> None:
    note(listing(ProgramCode(1, "c", code)))
    a = analyse(ProgramCode(1, "c", code), FakeSource())
    r = Machine({0: code}, {}, random.Random(seed)).run()
    assert a.possible == {r.retval}, (a.possible, a.reason)


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
