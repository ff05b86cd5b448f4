"""eBPF instruction decoder and bpftool-like disassembler.

Pure Python, no kernel access. Covers the whole eBPF instruction set as the
kernel documents it (Documentation/bpf/standardization/instruction-set.rst):
ALU/ALU64 (incl. signed div/mod, movsx, byte swaps), JMP/JMP32 (incl. gotol
and may_goto), LD (ld_imm64 and its pseudo sources, legacy LD_ABS/LD_IND),
LDX/ST/STX (incl. sign-extending loads), atomics, calls and exit.

The text follows the kernel's own printer, kernel/bpf/disasm.c
(print_bpf_insn), which bpftool uses for `bpftool prog dump xlated`; map
references use bpftool's print_imm form (`map[id:N]`, `map[id:N][0]+OFF`)
because kernel/bpf/syscall.c bpf_insn_prepare_dump puts map ids into the
xlated dump.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from tcaudit.analysis import memo
from tcaudit.kernel.abi import BPF_FUNC_TAIL_CALL as BPF_FUNC_TAIL_CALL

__all__ = [
    "Insn",
    "decode",
    "disassemble",
    "encode",
    "format_insn",
    "insn_class",
    "is_ldimm64",
    "ldimm64_value",
]

# Instruction classes (low 3 bits of code).
BPF_LD = 0x00
BPF_LDX = 0x01
BPF_ST = 0x02
BPF_STX = 0x03
BPF_ALU = 0x04
BPF_JMP = 0x05
BPF_JMP32 = 0x06
BPF_ALU64 = 0x07

# Load/store sizes.
BPF_W = 0x00
BPF_H = 0x08
BPF_B = 0x10
BPF_DW = 0x18
SIZE_BYTES = {BPF_W: 4, BPF_H: 2, BPF_B: 1, BPF_DW: 8}

# Load/store modes.
BPF_IMM = 0x00
BPF_ABS = 0x20
BPF_IND = 0x40
BPF_MEM = 0x60
BPF_MEMSX = 0x80
BPF_ATOMIC = 0xC0

# Source operand.
BPF_K = 0x00
BPF_X = 0x08

# ALU operations.
BPF_ADD = 0x00
BPF_SUB = 0x10
BPF_MUL = 0x20
BPF_DIV = 0x30
BPF_OR = 0x40
BPF_AND = 0x50
BPF_LSH = 0x60
BPF_RSH = 0x70
BPF_NEG = 0x80
BPF_MOD = 0x90
BPF_XOR = 0xA0
BPF_MOV = 0xB0
BPF_ARSH = 0xC0
BPF_END = 0xD0

# Jump operations.
BPF_JA = 0x00
BPF_JEQ = 0x10
BPF_JGT = 0x20
BPF_JGE = 0x30
BPF_JSET = 0x40
BPF_JNE = 0x50
BPF_JSGT = 0x60
BPF_JSGE = 0x70
BPF_CALL = 0x80
BPF_EXIT = 0x90
BPF_JLT = 0xA0
BPF_JLE = 0xB0
BPF_JSLT = 0xC0
BPF_JSLE = 0xD0
BPF_JCOND = 0xE0  # may_goto when src_reg == 0
BPF_TAIL_CALL = 0xF0  # kernel-internal; bpf_insn_prepare_dump turns it back into call 12

# Atomic operations (imm of BPF_STX|BPF_ATOMIC).
BPF_FETCH = 0x01
BPF_XCHG = 0xE0 | BPF_FETCH
BPF_CMPXCHG = 0xF0 | BPF_FETCH
BPF_LOAD_ACQ = 0x100
BPF_STORE_REL = 0x110

# ld_imm64 src_reg values.
BPF_PSEUDO_MAP_FD = 1
BPF_PSEUDO_MAP_VALUE = 2
BPF_PSEUDO_BTF_ID = 3
BPF_PSEUDO_FUNC = 4
BPF_PSEUDO_MAP_IDX = 5
BPF_PSEUDO_MAP_IDX_VALUE = 6

# call src_reg values.
BPF_PSEUDO_CALL = 1
BPF_PSEUDO_KFUNC_CALL = 2


_STRUCT = struct.Struct("<BBhi")
_DECODED: dict[bytes, Insn] = memo.table()
_DECODED_LIMIT = 1 << 18
"""Distinct instructions remembered by decode() before it starts again."""

_ALU_OPS = {
    BPF_ADD: "+=",
    BPF_SUB: "-=",
    BPF_MUL: "*=",
    BPF_DIV: "/=",
    BPF_OR: "|=",
    BPF_AND: "&=",
    BPF_LSH: "<<=",
    BPF_RSH: ">>=",
    BPF_MOD: "%=",
    BPF_XOR: "^=",
    BPF_MOV: "=",
    BPF_ARSH: "s>>=",
}
_JMP_OPS = {
    BPF_JEQ: "==",
    BPF_JGT: ">",
    BPF_JGE: ">=",
    BPF_JSET: "&",
    BPF_JNE: "!=",
    BPF_JSGT: "s>",
    BPF_JSGE: "s>=",
    BPF_JLT: "<",
    BPF_JLE: "<=",
    BPF_JSLT: "s<",
    BPF_JSLE: "s<=",
}
_ATOMIC_ALU = {BPF_ADD: "add", BPF_AND: "and", BPF_OR: "or", BPF_XOR: "xor"}
_SIZE_NAMES = {BPF_W: "u32", BPF_H: "u16", BPF_B: "u8", BPF_DW: "u64"}
_SX_NAMES = {BPF_W: "s32", BPF_H: "s16", BPF_B: "s8", BPF_DW: "s64"}


@dataclass(frozen=True, slots=True)
class Insn:
    """One 8-byte instruction slot.

    ``imm`` is signed 32-bit and ``off`` signed 16-bit, as in struct bpf_insn.
    The second slot of an ld_imm64 is an Insn of its own (code 0) whose imm
    holds the upper 32 bits of the constant.
    """

    code: int
    dst: int
    src: int
    off: int
    imm: int


def decode(raw: bytes) -> tuple[Insn, ...]:
    """Decode little-endian struct bpf_insn records, one Insn per 8-byte slot.

    Raises ValueError when the length is not a multiple of 8.
    """
    if len(raw) % 8:
        raise ValueError(f"instruction bytes not a multiple of 8: {len(raw)}")
    # one object per distinct instruction: a node's copies of one datapath (one per
    # endpoint) repeat the same instructions hundreds of times, and a scan keeps every
    # program's code (30 real Cilium endpoints: 760,000 instructions)
    seen = _DECODED
    out = []
    for at in range(0, len(raw), 8):
        chunk = raw[at:at + 8]
        insn = seen.get(chunk)
        if insn is None:
            code, regs, off, imm = _STRUCT.unpack(chunk)
            insn = memo.store(seen, chunk, Insn(code, regs & 0x0F, regs >> 4, off, imm),
                              _DECODED_LIMIT)
        out.append(insn)
    return tuple(out)


def encode(insns: Iterable[Insn]) -> bytes:
    """Inverse of decode (little-endian struct bpf_insn records)."""
    pack = _STRUCT.pack
    return b"".join(
        pack(i.code, (i.src << 4) | (i.dst & 0x0F), i.off, i.imm) for i in insns
    )


def insn_class(code: int) -> int:
    """The BPF_CLASS of an opcode."""
    return code & 0x07


def is_ldimm64(insn: Insn) -> bool:
    """True for the first slot of a 16-byte ld_imm64 (BPF_LD|BPF_IMM|BPF_DW)."""
    return insn.code == (BPF_LD | BPF_IMM | BPF_DW)


def ldimm64_value(first: Insn, second: Insn | None) -> int:
    """The unsigned 64-bit constant of an ld_imm64 pair."""
    hi = (second.imm & 0xFFFFFFFF) if second is not None else 0
    return (hi << 32) | (first.imm & 0xFFFFFFFF)


def _r(reg: int, wide: bool) -> str:
    return f"{'r' if wide else 'w'}{reg}"


def _mem(size: int, reg: int, off: int) -> str:
    return f"*({_SIZE_NAMES[size]} *)(r{reg} {off:+d})"


def _default_helper_name(imm: int) -> str | None:
    return "bpf_tail_call" if imm == BPF_FUNC_TAIL_CALL else None


def format_insn(
    insns: Sequence[Insn],
    pc: int,
    helper_name: Callable[[int], str | None] = _default_helper_name,
) -> str:
    """bpftool-style text of the instruction at ``pc`` (without the code prefix)."""
    insn = insns[pc]
    code = insn.code
    cls = code & 0x07
    if cls in (BPF_ALU, BPF_ALU64):
        return _format_alu(insn, cls == BPF_ALU64)
    if cls in (BPF_JMP, BPF_JMP32):
        return _format_jmp(insn, pc, cls == BPF_JMP, helper_name)
    if cls == BPF_STX:
        return _format_stx(insn)
    if cls == BPF_ST:
        if code & 0xE0 == BPF_MEM:
            return f"{_mem(code & 0x18, insn.dst, insn.off)} = {insn.imm}"
        return _invalid(code)
    if cls == BPF_LDX:
        mode = code & 0xE0
        size = code & 0x18
        if mode == BPF_MEM:
            return f"r{insn.dst} = {_mem(size, insn.src, insn.off)}"
        if mode == BPF_MEMSX and size != BPF_DW:
            return f"r{insn.dst} = *({_SX_NAMES[size]} *)(r{insn.src} {insn.off:+d})"
        return _invalid(code)
    # BPF_LD
    mode = code & 0xE0
    size = code & 0x18
    if mode == BPF_IMM and size == BPF_DW:
        second = insns[pc + 1] if pc + 1 < len(insns) else None
        return f"r{insn.dst} = {_format_imm64(insn, second, pc)}"
    if mode == BPF_ABS:
        return f"r0 = *({_SIZE_NAMES[size]} *)skb[{insn.imm}]"
    if mode == BPF_IND:
        return f"r0 = *({_SIZE_NAMES[size]} *)skb[r{insn.src} + {insn.imm}]"
    return _invalid(code)


def _invalid(code: int) -> str:
    return f"invalid insn (0x{code:02x})"


def _format_imm64(first: Insn, second: Insn | None, pc: int) -> str:
    src = first.src
    hi_imm = second.imm if second is not None else 0
    if src == BPF_PSEUDO_MAP_FD:
        return f"map[id:{first.imm & 0xFFFFFFFF}]"
    if src == BPF_PSEUDO_MAP_VALUE:
        return f"map[id:{first.imm & 0xFFFFFFFF}][0]+{hi_imm & 0xFFFFFFFF}"
    if src == BPF_PSEUDO_MAP_IDX:
        return f"map[idx:{first.imm & 0xFFFFFFFF}]"
    if src == BPF_PSEUDO_MAP_IDX_VALUE:
        return f"map[idx:{first.imm & 0xFFFFFFFF}][0]+{hi_imm & 0xFFFFFFFF}"
    if src == BPF_PSEUDO_BTF_ID:
        return f"btf_id[{first.imm & 0xFFFFFFFF}]"
    if src == BPF_PSEUDO_FUNC:
        return f"func[pc{first.imm:+d}]"
    return f"0x{ldimm64_value(first, second):x}"


def _format_alu(insn: Insn, wide: bool) -> str:
    code = insn.code
    op = code & 0xF0
    is_x = bool(code & BPF_X)
    d = insn.dst
    if op == BPF_END:
        if wide:
            return f"r{d} = bswap{insn.imm} r{d}"
        return f"r{d} = {'be' if is_x else 'le'}{insn.imm} r{d}"
    if op == BPF_NEG:
        return f"{_r(d, wide)} = -{_r(d, wide)}"
    if op not in _ALU_OPS:
        return _invalid(code)
    text = _ALU_OPS[op]
    if op == BPF_MOV and is_x and wide and insn.off == 1:
        imm = insn.imm & 0xFFFFFFFF
        return f"r{d} = addr_space_cast(r{insn.src}, {imm >> 16}, {imm & 0xFFFF})"
    if op in (BPF_DIV, BPF_MOD) and insn.off == 1:
        text = "s" + text
    if is_x:
        cast = f"(s{insn.off})" if op == BPF_MOV and insn.off in (8, 16, 32) else ""
        return f"{_r(d, wide)} {text} {cast}{_r(insn.src, wide)}"
    return f"{_r(d, wide)} {text} {insn.imm}"


def _format_jmp(
    insn: Insn, pc: int, wide: bool, helper_name: Callable[[int], str | None]
) -> str:
    code = insn.code
    op = code & 0xF0
    if op == BPF_JA:
        if wide:
            return f"goto pc{insn.off:+d}"
        return f"gotol pc{insn.imm:+d}"
    if op == BPF_EXIT:
        return "exit"
    if op == BPF_CALL:
        if insn.src == BPF_PSEUDO_CALL:
            rel = insn.off if insn.off != 0 else insn.imm
            return f"call pc{rel:+d}"
        if insn.src == BPF_PSEUDO_KFUNC_CALL:
            return f"call kernel-function#{insn.imm}"
        name = helper_name(insn.imm)
        if name is None and insn.imm == BPF_FUNC_TAIL_CALL:
            name = "bpf_tail_call"
        return f"call {name or 'unknown'}#{insn.imm}"
    if op == BPF_TAIL_CALL:
        return "tail_call"
    if op == BPF_JCOND:
        if insn.src == 0:
            return f"may_goto pc{insn.off:+d}"
        return _invalid(code)
    if op not in _JMP_OPS:
        return _invalid(code)
    lhs = _r(insn.dst, wide)
    rhs = _r(insn.src, wide) if code & BPF_X else f"0x{insn.imm & 0xFFFFFFFF:x}"
    return f"if {lhs} {_JMP_OPS[op]} {rhs} goto pc{insn.off:+d}"


def _format_stx(insn: Insn) -> str:
    code = insn.code
    mode = code & 0xE0
    size = code & 0x18
    if mode == BPF_MEM:
        return f"{_mem(size, insn.dst, insn.off)} = r{insn.src}"
    if mode != BPF_ATOMIC or size not in (BPF_W, BPF_DW, BPF_B, BPF_H):
        return _invalid(code)
    wide = size == BPF_DW
    sfx = "64" if wide else ""
    ptr = f"({_SIZE_NAMES[size]} *)(r{insn.dst} {insn.off:+d})"
    imm = insn.imm
    base = imm & ~BPF_FETCH
    if imm == BPF_LOAD_ACQ:
        return f"r{insn.dst} = load_acquire(({_SIZE_NAMES[size]} *)(r{insn.src} {insn.off:+d}))"
    if imm == BPF_STORE_REL:
        return f"store_release({ptr}, r{insn.src})"
    if size not in (BPF_W, BPF_DW):
        return _invalid(code)
    if imm == BPF_XCHG:
        return f"{_r(insn.src, wide)} = atomic{sfx}_xchg({ptr}, {_r(insn.src, wide)})"
    if imm == BPF_CMPXCHG:
        return (
            f"{_r(0, wide)} = atomic{sfx}_cmpxchg({ptr}, {_r(0, wide)}, "
            f"{_r(insn.src, wide)})"
        )
    if base in _ATOMIC_ALU and imm & ~0xF1 == 0:
        if imm & BPF_FETCH:
            return (
                f"{_r(insn.src, wide)} = atomic{sfx}_fetch_{_ATOMIC_ALU[base]}({ptr}, "
                f"{_r(insn.src, wide)})"
            )
        return f"lock *{ptr} {_ALU_OPS[base]} r{insn.src}"
    return _invalid(code)


def disassemble(
    insns: Sequence[Insn],
    helper_name: Callable[[int], str | None] = _default_helper_name,
    *,
    opcodes: bool = False,
) -> list[str]:
    """One text line per instruction slot, in bpftool's xlated syntax.

    The second slot of an ld_imm64 gets "". With ``opcodes=True`` each line
    starts with the opcode in parentheses, as bpftool prints it: ``(b7) r0 = 0``.
    """
    out: list[str] = []
    pc = 0
    n = len(insns)
    while pc < n:
        insn = insns[pc]
        text = format_insn(insns, pc, helper_name)
        out.append(f"({insn.code:02x}) {text}" if opcodes else text)
        if is_ldimm64(insn) and pc + 1 < n:
            out.append("")
            pc += 2
        else:
            pc += 1
    return out
