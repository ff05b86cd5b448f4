"""A tiny eBPF assembler for tests.

Registers are ``R0``..``R10`` (:class:`Reg`); a plain int operand is an
immediate. Jump and call targets are either raw offsets (int) or label names
(str) resolved by :func:`asm`::

    asm(mov(R0, 0), jmp("eq", R1, 2, "out"), mov(R0, 2), Label("out"), exit_())
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from tcaudit.analysis import insns as I
from tcaudit.analysis.closure import ProgramCode
from tcaudit.analysis.insns import Insn


@dataclass(frozen=True)
class Reg:
    n: int


R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = (Reg(i) for i in range(11))

ALU_OPS = {
    "add": I.BPF_ADD,
    "sub": I.BPF_SUB,
    "mul": I.BPF_MUL,
    "div": I.BPF_DIV,
    "sdiv": I.BPF_DIV,
    "or": I.BPF_OR,
    "and": I.BPF_AND,
    "lsh": I.BPF_LSH,
    "rsh": I.BPF_RSH,
    "mod": I.BPF_MOD,
    "smod": I.BPF_MOD,
    "xor": I.BPF_XOR,
    "mov": I.BPF_MOV,
    "arsh": I.BPF_ARSH,
}
JMP_OPS = {
    "eq": I.BPF_JEQ,
    "gt": I.BPF_JGT,
    "ge": I.BPF_JGE,
    "set": I.BPF_JSET,
    "ne": I.BPF_JNE,
    "sgt": I.BPF_JSGT,
    "sge": I.BPF_JSGE,
    "lt": I.BPF_JLT,
    "le": I.BPF_JLE,
    "slt": I.BPF_JSLT,
    "sle": I.BPF_JSLE,
}
SIZES = {1: I.BPF_B, 2: I.BPF_H, 4: I.BPF_W, 8: I.BPF_DW}
ATOMIC_OPS = {
    "add": I.BPF_ADD,
    "or": I.BPF_OR,
    "and": I.BPF_AND,
    "xor": I.BPF_XOR,
    "xchg": I.BPF_XCHG,
    "cmpxchg": I.BPF_CMPXCHG,
    "load_acq": I.BPF_LOAD_ACQ,
    "store_rel": I.BPF_STORE_REL,
}

# Helper ids (enum bpf_func_id) used by tests.
HELPERS: Mapping[int, str] = {
    1: "bpf_map_lookup_elem",
    2: "bpf_map_update_elem",
    5: "bpf_ktime_get_ns",
    7: "bpf_user_rnd_u32",  # BPF_FUNC_get_prandom_u32, as kallsyms names it
    12: "bpf_tail_call",
    23: "bpf_redirect",
    26: "bpf_skb_load_bytes",
    152: "bpf_redirect_neigh",
    155: "bpf_redirect_peer",
}
BPF_FUNC = {name[4:]: imm for imm, name in HELPERS.items()}


@dataclass(frozen=True)
class Label:
    name: str


@dataclass(frozen=True)
class _Ref:
    """An instruction whose off (or imm) is the distance to a label."""

    insn: Insn
    label: str
    field: str  # "off" or "imm"
    extra: int = 0  # added to the relative distance (for pseudo-call imm/off pairs)


Item = Insn | _Ref | Label | Iterable["Item"]


def _ins(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> Insn:
    if not -(1 << 15) <= off < (1 << 15):
        raise ValueError(f"off out of range: {off}")
    imm = ((imm + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
    return Insn(code, dst, src, off, imm)


def _alu(op: str, dst: Reg, src: Reg | int, wide: bool, off: int = 0) -> Insn:
    cls = I.BPF_ALU64 if wide else I.BPF_ALU
    code = ALU_OPS[op]
    if op in ("sdiv", "smod"):
        off = 1
    if isinstance(src, Reg):
        return _ins(cls | code | I.BPF_X, dst.n, src.n, off, 0)
    return _ins(cls | code | I.BPF_K, dst.n, 0, off, src)


def alu(op: str, dst: Reg, src: Reg | int, *, w32: bool = False, off: int = 0) -> Insn:
    """Any ALU op by name: add sub mul div sdiv or and lsh rsh mod smod xor mov arsh."""
    return _alu(op, dst, src, not w32, off)


def mov(dst: Reg, src: Reg | int) -> Insn:
    return _alu("mov", dst, src, True)


def mov32(dst: Reg, src: Reg | int) -> Insn:
    return _alu("mov", dst, src, False)


def movsx(dst: Reg, src: Reg, bits: int, *, w32: bool = False) -> Insn:
    return _alu("mov", dst, src, not w32, bits)


def add(dst: Reg, src: Reg | int) -> Insn:
    return _alu("add", dst, src, True)


def sub(dst: Reg, src: Reg | int) -> Insn:
    return _alu("sub", dst, src, True)


def lsh(dst: Reg, src: Reg | int) -> Insn:
    return _alu("lsh", dst, src, True)


def and_(dst: Reg, src: Reg | int) -> Insn:
    return _alu("and", dst, src, True)


def neg(dst: Reg, *, w32: bool = False) -> Insn:
    return _ins((I.BPF_ALU if w32 else I.BPF_ALU64) | I.BPF_NEG, dst.n)


def end(dst: Reg, bits: int, to: str = "be") -> Insn:
    """Byte swap: to="le"/"be" (BPF_ALU|BPF_END) or "swap" (BPF_ALU64, bswap)."""
    if to == "swap":
        return _ins(I.BPF_ALU64 | I.BPF_END, dst.n, 0, 0, bits)
    src_bit = I.BPF_X if to == "be" else I.BPF_K
    return _ins(I.BPF_ALU | I.BPF_END | src_bit, dst.n, 0, 0, bits)


def ld_imm64(dst: Reg, value: int, *, src: int = 0, imm2: int | None = None) -> list[Insn]:
    value &= (1 << 64) - 1
    lo = value & 0xFFFFFFFF
    hi = value >> 32 if imm2 is None else imm2 & 0xFFFFFFFF
    return [
        _ins(I.BPF_LD | I.BPF_IMM | I.BPF_DW, dst.n, src, 0, lo),
        _ins(0, 0, 0, 0, hi),
    ]


def ld_map(dst: Reg, map_id: int) -> list[Insn]:
    """ld_imm64 with src_reg BPF_PSEUDO_MAP_FD and imm = map id (xlated form)."""
    return ld_imm64(dst, map_id, src=I.BPF_PSEUDO_MAP_FD, imm2=0)


def ld_map_value(dst: Reg, map_id: int, off: int = 0) -> list[Insn]:
    """ld_imm64 with src_reg BPF_PSEUDO_MAP_VALUE: imm = map id, 2nd imm = offset."""
    return ld_imm64(dst, map_id, src=I.BPF_PSEUDO_MAP_VALUE, imm2=off)


def ldx(size: int, dst: Reg, src: Reg, off: int, *, sx: bool = False) -> Insn:
    mode = I.BPF_MEMSX if sx else I.BPF_MEM
    return _ins(I.BPF_LDX | mode | SIZES[size], dst.n, src.n, off)


def stx(size: int, dst: Reg, off: int, src: Reg) -> Insn:
    """*(size *)(dst + off) = src"""
    return _ins(I.BPF_STX | I.BPF_MEM | SIZES[size], dst.n, src.n, off)


def st(size: int, dst: Reg, off: int, imm: int) -> Insn:
    """*(size *)(dst + off) = imm"""
    return _ins(I.BPF_ST | I.BPF_MEM | SIZES[size], dst.n, 0, off, imm)


def atomic(size: int, op: str, dst: Reg, off: int, src: Reg, *, fetch: bool = False) -> Insn:
    imm = ATOMIC_OPS[op]
    if fetch:
        imm |= I.BPF_FETCH
    return _ins(I.BPF_STX | I.BPF_ATOMIC | SIZES[size], dst.n, src.n, off, imm)


def ld_abs(size: int, imm: int) -> Insn:
    return _ins(I.BPF_LD | I.BPF_ABS | SIZES[size], 0, 0, 0, imm)


def ld_ind(size: int, src: Reg, imm: int) -> Insn:
    return _ins(I.BPF_LD | I.BPF_IND | SIZES[size], 0, src.n, 0, imm)


def _target(insn: Insn, target: int | str, fld: str) -> Insn | _Ref:
    if isinstance(target, str):
        return _Ref(insn, target, fld)
    return replace(insn, **{fld: target})


def jmp(cond: str, dst: Reg, src: Reg | int, target: int | str) -> Insn | _Ref:
    if isinstance(src, Reg):
        insn = _ins(I.BPF_JMP | JMP_OPS[cond] | I.BPF_X, dst.n, src.n)
    else:
        insn = _ins(I.BPF_JMP | JMP_OPS[cond] | I.BPF_K, dst.n, 0, 0, src)
    return _target(insn, target, "off")


def jmp32(cond: str, dst: Reg, src: Reg | int, target: int | str) -> Insn | _Ref:
    if isinstance(src, Reg):
        insn = _ins(I.BPF_JMP32 | JMP_OPS[cond] | I.BPF_X, dst.n, src.n)
    else:
        insn = _ins(I.BPF_JMP32 | JMP_OPS[cond] | I.BPF_K, dst.n, 0, 0, src)
    return _target(insn, target, "off")


def ja(target: int | str) -> Insn | _Ref:
    return _target(_ins(I.BPF_JMP | I.BPF_JA), target, "off")


def gotol(target: int | str) -> Insn | _Ref:
    return _target(_ins(I.BPF_JMP32 | I.BPF_JA), target, "imm")


def may_goto(target: int | str) -> Insn | _Ref:
    return _target(_ins(I.BPF_JMP | I.BPF_JCOND), target, "off")


def call(helper: int | str) -> Insn:
    imm = BPF_FUNC[helper] if isinstance(helper, str) else helper
    return _ins(I.BPF_JMP | I.BPF_CALL, 0, 0, 0, imm)


def tail_call() -> Insn:
    return call(I.BPF_FUNC_TAIL_CALL)


def pseudo_call(target: int | str, *, jit: bool = False, index: int = 1) -> Insn | _Ref:
    """bpf-to-bpf call. Raw form: imm = relative target. ``jit=True`` gives the
    xlated form of JIT-compiled programs: off = relative target, imm = subprog index."""
    insn = _ins(I.BPF_JMP | I.BPF_CALL, 0, I.BPF_PSEUDO_CALL, 0, index if jit else 0)
    return _target(insn, target, "off" if jit else "imm")


def kfunc_call(btf_id: int) -> Insn:
    return _ins(I.BPF_JMP | I.BPF_CALL, 0, I.BPF_PSEUDO_KFUNC_CALL, 0, btf_id)


def exit_() -> Insn:
    return _ins(I.BPF_JMP | I.BPF_EXIT)


def _flatten(items: Iterable[Item], out: list[Insn | _Ref | Label]) -> None:
    for it in items:
        if isinstance(it, Insn | _Ref | Label):
            out.append(it)
        else:
            _flatten(it, out)


def asm_with_labels(*items: Item) -> tuple[tuple[Insn, ...], dict[str, int]]:
    """Assemble and also return label -> instruction index."""
    flat: list[Insn | _Ref | Label] = []
    _flatten(items, flat)
    labels: dict[str, int] = {}
    pc = 0
    for it in flat:
        if isinstance(it, Label):
            if it.name in labels:
                raise ValueError(f"duplicate label {it.name}")
            labels[it.name] = pc
        else:
            pc += 1
    out: list[Insn] = []
    for it in flat:
        if isinstance(it, Label):
            continue
        if isinstance(it, _Ref):
            rel = labels[it.label] - len(out) - 1 + it.extra
            out.append(replace(it.insn, **{it.field: rel}))
        else:
            out.append(it)
    return tuple(out), labels


def asm(*items: Item) -> tuple[Insn, ...]:
    return asm_with_labels(*items)[0]


def program(
    *items: Item,
    prog_id: int | None = None,
    name: str = "test",
    func_labels: Iterable[str] = (),
) -> ProgramCode:
    """A ProgramCode whose func_starts are 0 plus the given labels."""
    code, labels = asm_with_labels(*items)
    starts = (0, *sorted(labels[n] for n in func_labels))
    return ProgramCode(prog_id=prog_id, name=name, insns=code, func_starts=starts)


class FakeSource:
    """A CodeSource over dicts (for tests)."""

    def __init__(
        self,
        programs: Mapping[int, ProgramCode] | None = None,
        arrays: Mapping[int, Mapping[int, int]] | None = None,
        helpers: Mapping[int, str] = HELPERS,
    ) -> None:
        self.programs = dict(programs or {})
        self.arrays = dict(arrays or {})
        self.helpers = dict(helpers)
        self.program_reads = 0

    def helper_name(self, imm: int) -> str | None:
        return self.helpers.get(imm)

    def prog_array(self, map_id: int) -> Mapping[int, int] | None:
        return self.arrays.get(map_id)

    def program(self, prog_id: int) -> ProgramCode | None:
        self.program_reads += 1
        return self.programs.get(prog_id)


# ---- additions: r11, speculation barriers, callbacks -----------------------

R11 = Reg(11)
"""The kernel's scratch register BPF_REG_AX (verifier rewrites, constant blinding)."""

BPF_NOSPEC = 0xC0
"""BPF_ST mode of the speculation barrier (include/linux/filter.h BPF_ST_NOSPEC)."""


def nospec() -> Insn:
    """BPF_ST|BPF_NOSPEC (code 0xc2): a speculation barrier, a no-op for the program."""
    return _ins(I.BPF_ST | BPF_NOSPEC)


def ld_func(dst: Reg, target: int | str) -> list[Insn | _Ref]:
    """ld_imm64 with src_reg BPF_PSEUDO_FUNC: imm = relative insn index of a callback."""
    first = _ins(I.BPF_LD | I.BPF_IMM | I.BPF_DW, dst.n, I.BPF_PSEUDO_FUNC)
    return [_target(first, target, "imm"), _ins(0)]


def blinded_mov(dst: Reg, value: int, rnd: int) -> list[Insn]:
    """What JIT constant blinding makes of ``dst = value``: r11 = value ^ rnd;
    r11 ^= rnd; dst = r11 (kernel/bpf/core.c bpf_jit_blind_insn)."""
    return [
        _alu("mov", R11, value ^ rnd, True),
        _alu("xor", R11, rnd, True),
        _alu("mov", dst, R11, True),
    ]


def blinded_alu(op: str, dst: Reg, value: int, rnd: int, *, w32: bool = False) -> list[Insn]:
    """Blinded ``dst op= value``: r11 = value ^ rnd; r11 ^= rnd; dst op= r11."""
    return [
        _alu("mov", R11, value ^ rnd, not w32),
        _alu("xor", R11, rnd, not w32),
        _alu(op, dst, R11, not w32),
    ]
