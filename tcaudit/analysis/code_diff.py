"""How two programs of one shape differ: the raw code's immediates, compared lane by
lane (``shapes``), and which of them the engine can treat as a value.
"""

from __future__ import annotations

import re
import struct

from tcaudit.analysis import insns as I

MAX_DIFFS = 512
"""A copy differing in more immediates than this is not treated as a copy."""


def differing(a: bytes, b: bytes) -> list[int] | None:
    """Indexes of the instructions whose immediates differ (same-shape code)."""
    n = len(a) // 8
    if len(b) != len(a):
        return None
    out: set[int] = set()
    for k in range(4, 8):  # each byte lane of the immediates: instruction i at byte i
        x = int.from_bytes(a[k::8], "little") ^ int.from_bytes(b[k::8], "little")
        if x:
            out.update(m.start() for m in _NONZERO.finditer(x.to_bytes(n, "little")))
            if len(out) > MAX_DIFFS:
                return None
    return sorted(i for i in out if i < n)


LD_IMM64 = I.BPF_LD | I.BPF_IMM | I.BPF_DW
LDIMM_OP = re.compile(re.escape(bytes((LD_IMM64,))))
_NONZERO = re.compile(rb"[^\x00]")
MAP_REFS = (I.BPF_PSEUDO_MAP_FD, I.BPF_PSEUDO_MAP_VALUE)


def ld_imm64_value(raw: bytes, p: int) -> int:
    """The 64-bit constant of the ld_imm64 at insn p (its two immediates)."""
    lo, hi = struct.unpack_from("=I4xI", raw, 8 * p + 4)
    return int(lo | hi << 32)


def second_halves(insns: tuple[I.Insn, ...]) -> set[int]:
    out = set()
    pc = 0
    while pc < len(insns):
        if insns[pc].code == I.BPF_LD | I.BPF_IMM | I.BPF_DW:
            out.add(pc + 1)
            pc += 2
        else:
            pc += 1
    return out


def value_operand(ins: I.Insn) -> bool:
    """The immediate is a value the engine can treat as unknown (``prepare``)."""
    cls = ins.code & 0x07
    op = ins.code & 0xF0
    if cls in (I.BPF_ALU, I.BPF_ALU64):
        return not ins.code & I.BPF_X and op not in (I.BPF_NEG, I.BPF_END)
    if cls in (I.BPF_JMP, I.BPF_JMP32):
        return not ins.code & I.BPF_X and op not in (
            I.BPF_JA, I.BPF_CALL, I.BPF_EXIT, I.BPF_JCOND, I.BPF_TAIL_CALL)
    return cls == I.BPF_ST and ins.code & 0xE0 == I.BPF_MEM
