"""How two programs of one shape differ: the raw code's immediates, compared lane by
lane (``shapes``), and which of them the engine can treat as a value.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Container, Iterable

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


MAP_REF = -1
"""``diff_kind``: a map reference (the copy's must be its own map at that position)."""
NOT_A_VALUE = -2
"""``diff_kind``: an immediate the engine cannot treat as unknown (the copy is no copy)."""


def diff_kind(insns: tuple[I.Insn, ...], second: set[int] | frozenset[int], p: int) -> int:
    """What a differing immediate at insn ``p`` is: the position that varies (a value:
    an ld_imm64's constant varies at its first half), ``MAP_REF`` or ``NOT_A_VALUE``."""
    first = p - 1 if p in second else p
    ins = insns[first]
    if ins.code == LD_IMM64:
        if ins.src == 0:
            return first
        return MAP_REF if first == p and ins.src in MAP_REFS else NOT_A_VALUE
    return p if value_operand(ins) else NOT_A_VALUE


def immediates(raws: Iterable[bytes], positions: Iterable[int], wide: Container[int]
               ) -> dict[int, frozenset[int]]:
    """Every program's immediate at each position (signed 32 bits; the 64-bit constant,
    unsigned, for the ld_imm64s in ``wide``): one unpack a program."""
    order = sorted(positions)
    fields: list[tuple[int, str]] = []
    for p in order:
        if p in wide:
            fields += [(8 * p + 4, "I"), (8 * p + 12, "I")]
        else:
            fields.append((8 * p + 4, "i"))
    fmt, at = "=", 0
    for offset, code in fields:
        fmt += f"{offset - at}x{code}" if offset > at else code
        at = offset + 4
    layout = struct.Struct(fmt)
    rows = [layout.unpack_from(raw) for raw in raws if len(raw) >= layout.size]
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in fields]
    out: dict[int, frozenset[int]] = {}
    k = 0
    for p in order:
        if p in wide:
            out[p] = frozenset(lo | hi << 32 for lo, hi in zip(columns[k], columns[k + 1],
                                                              strict=True))
            k += 2
        else:
            out[p] = frozenset(columns[k])
            k += 1
    return out
