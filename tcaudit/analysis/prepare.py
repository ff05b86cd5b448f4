"""One program's instructions turned into flat tuples the interpreter dispatches on.

Every instruction the kernel can leave in xlated code gets a kind here; anything else
(reserved opcodes, registers above r11, a truncated ld_imm64) becomes ``K_INVALID``,
which makes that one program "unknown" with the reason, never an exception. r11 is the
kernel's scratch register BPF_REG_AX (include/linux/filter.h), which the verifier's
context-access rewrites, constant blinding and div/mod fix-ups use in xlated code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from tcaudit.analysis import insns as I
from tcaudit.analysis import memo
from tcaudit.analysis import scalar as S
from tcaudit.analysis.domain import Ptr, Value
from tcaudit.analysis.insns import Insn

# Operation kinds of the prepared instruction tuples.
K_INVALID = 0
K_MOV = 1
K_ALU = 2
K_NEG = 3
K_END = 4
K_LDIMM = 5
K_LDX = 6
K_ST = 7
K_STX = 8
K_ATOMIC = 9
K_LDABS = 10
K_JA = 11
K_JCOND = 12
K_CALL = 13
K_PCALL = 14
K_KFUNC = 15
K_EXIT = 16
K_MAYGOTO = 17
K_TAILCALL = 18
K_SLOT2 = 19
K_NOP = 20

NREGS = 12
"""r0-r10 and the kernel's scratch register r11 (BPF_REG_AX)."""

# (kind, op, dst, src (-1 = immediate), off, imm, constant operand, wide, target)
Op = tuple[int, int, int, int, int, int, Value, bool, int]

_EMPTY: frozenset[int] = frozenset()
KERNEL_LOAD = S.full("value loaded from kernel memory")
# Kernel-internal modes (include/linux/filter.h); bpf_insn_prepare_dump turns
# BPF_PROBE_MEM back into BPF_MEM, the others may still show up.
_PROBE_MEM32 = 0xA0
_PROBE_ATOMIC = 0xE0
_PROBE_MODES = frozenset((0x20, 0x40, _PROBE_MEM32))
_NOSPEC = 0xC0  # BPF_ST | BPF_NOSPEC: a speculation barrier (verifier sanitize_*)
_ALU_OPS = frozenset((
    I.BPF_ADD, I.BPF_SUB, I.BPF_MUL, I.BPF_DIV, I.BPF_OR, I.BPF_AND,
    I.BPF_LSH, I.BPF_RSH, I.BPF_MOD, I.BPF_XOR, I.BPF_ARSH,
))
_JCOND_OPS = frozenset((
    I.BPF_JEQ, I.BPF_JGT, I.BPF_JGE, I.BPF_JSET, I.BPF_JNE, I.BPF_JSGT, I.BPF_JSGE,
    I.BPF_JLT, I.BPF_JLE, I.BPF_JSLT, I.BPF_JSLE,
))
_INVALID: Op = (K_INVALID, 0, 0, 0, 0, 0, _EMPTY, False, 0)
_PC_FREE = frozenset((I.BPF_ALU, I.BPF_ALU64, I.BPF_LDX, I.BPF_ST, I.BPF_STX))
"""Instruction classes whose op depends on the instruction alone (no jump target, no
second half): memoised across programs (``memo``)."""
_OPS: dict[Insn, Op] = memo.table()


class Prepared:
    """Per-program precomputed instruction tuples and block leaders."""

    __slots__ = ("callees", "func_starts", "has_callbacks", "leader", "live", "n", "ops")

    def __init__(
        self,
        insns: tuple[Insn, ...],
        func_starts: tuple[int, ...],
        unknown: frozenset[int] = frozenset(),
        hulls: Mapping[int, Value] | None = None,
    ) -> None:
        """``unknown``: indexes of instructions whose immediate operand is analysed as
        any value (the constants that differ between copies of one shape, ``shapes``),
        or as ``hulls[pc]`` when given (every copy's value, :func:`operand_hull`)."""
        n = len(insns)
        self.n = n
        self.func_starts = frozenset(s for s in func_starts if 0 <= s < n)
        ops: list[Op] = []
        leader = [False] * (n + 1)
        leader[0] = True
        for s in self.func_starts:
            leader[s] = True
        has_cb = False
        callees: set[int] = set()
        pc = 0
        ops_of = _OPS
        while pc < n:
            insn = insns[pc]
            if insn.code & 0x07 in _PC_FREE:
                # the op of an instruction that names no other one depends on it alone
                op = ops_of.get(insn)
                if op is None:
                    op = memo.store(ops_of, insn, self._prep(insns, pc))
            else:
                op = self._prep(insns, pc)
            if pc in unknown:
                op = _unknown_operand(op, hulls.get(pc) if hulls else None)
            ops.append(op)
            kind = op[0]
            if kind == K_LDIMM:
                if insns[pc].src == I.BPF_PSEUDO_FUNC:
                    has_cb = True
                ops.append((K_SLOT2, 0, 0, 0, 0, 0, _EMPTY, False, 0))
                pc += 2
                continue
            if kind in (K_JA, K_JCOND, K_MAYGOTO):
                if 0 <= op[8] <= n:
                    leader[op[8]] = True
                leader[pc + 1] = True
            elif kind == K_EXIT:
                leader[pc + 1] = True
            elif kind == K_PCALL and 0 <= op[8] < n:
                leader[op[8]] = True
                callees.add(op[8])
            pc += 1
        self.ops = ops[:n]
        self.leader = leader
        self.has_callbacks = has_cb
        self.callees = frozenset(callees)
        self.live: dict[int, tuple[tuple[int, ...], bool]] | None = None
        """Leaders' liveness (``liveness.leaders_live``), made by the interpreter."""

    def call_target(self, pc: int, insn: Insn) -> int:
        """Callee start of a pseudo-call: raw programs keep pc+imm+1, xlated
        dumps of JIT-compiled programs keep pc+off+1 (imm = subprog index).
        func_info's starts decide when they disagree."""
        by_imm = pc + insn.imm + 1
        by_off = pc + insn.off + 1
        starts = self.func_starts
        if insn.off != 0 and by_off in starts:
            return by_off
        if by_imm in starts:
            return by_imm
        if by_off in starts:
            return by_off
        return by_off if insn.off != 0 else by_imm

    def _prep(self, raw: tuple[Insn, ...], pc: int) -> Op:
        insn = raw[pc]
        code = insn.code
        cls = code & 0x07
        dst, src, off, imm = insn.dst, insn.src, insn.off, insn.imm
        if dst >= NREGS:
            return _INVALID
        if cls in (I.BPF_ALU, I.BPF_ALU64):
            wide = cls == I.BPF_ALU64
            op = code & 0xF0
            is_x = bool(code & I.BPF_X)
            if is_x and src >= NREGS and op not in (I.BPF_NEG, I.BPF_END):
                return _INVALID
            kval: Value = frozenset((imm & imm_mask(code),))
            if op == I.BPF_NEG:
                return (K_NEG, op, dst, -1, off, imm, kval, wide, 0)
            if op == I.BPF_END:
                return (K_END, op, dst, -1, off, imm, kval, wide, int(is_x))
            if op == I.BPF_MOV:
                return (K_MOV, op, dst, src if is_x else -1, off, imm, kval, wide, 0)
            if op in (I.BPF_DIV, I.BPF_MOD) and off not in (0, 1):
                return _INVALID
            if op in _ALU_OPS:
                return (K_ALU, op, dst, src if is_x else -1, off, imm, kval, wide, 0)
            return _INVALID
        if cls in (I.BPF_JMP, I.BPF_JMP32):
            wide = cls == I.BPF_JMP
            op = code & 0xF0
            if op == I.BPF_JA:
                tgt = pc + off + 1 if wide else pc + imm + 1
                return (K_JA, op, 0, 0, off, imm, _EMPTY, wide, tgt)
            if op == I.BPF_EXIT:
                return (K_EXIT, op, 0, 0, 0, 0, _EMPTY, wide, 0)
            if op == I.BPF_CALL:
                if src == I.BPF_PSEUDO_CALL:
                    return (K_PCALL, op, 0, 0, off, imm, _EMPTY, wide, self.call_target(pc, insn))
                if src == I.BPF_PSEUDO_KFUNC_CALL:
                    return (K_KFUNC, op, 0, 0, off, imm, _EMPTY, wide, 0)
                if src == 0:
                    return (K_CALL, op, 0, 0, off, imm, _EMPTY, wide, 0)
                return _INVALID
            if op == I.BPF_TAIL_CALL:
                return (K_TAILCALL, op, 0, 0, off, imm, _EMPTY, wide, 0)
            if op == I.BPF_JCOND:
                if src == 0:
                    return (K_MAYGOTO, op, 0, 0, off, imm, _EMPTY, wide, pc + off + 1)
                return _INVALID
            if op not in _JCOND_OPS:
                return _INVALID
            is_x = bool(code & I.BPF_X)
            if is_x and src >= NREGS:
                return _INVALID
            kv: Value = frozenset((imm & imm_mask(code),))
            return (K_JCOND, op, dst, src if is_x else -1, off, imm, kv, wide, pc + off + 1)
        mode = code & 0xE0
        size = I.SIZE_BYTES[code & 0x18]
        if cls == I.BPF_LDX:
            if src >= NREGS:
                return _INVALID
            if mode == I.BPF_MEM or (mode == I.BPF_MEMSX and size < 8):
                return (K_LDX, mode, dst, src, off, size, _EMPTY, False, 0)
            if mode in _PROBE_MODES:
                # kernel-internal probing loads (BTF pointers, arena): never the stack
                return (K_MOV, I.BPF_MOV, dst, -1, 0, 0, KERNEL_LOAD, True, 0)
            return _INVALID
        if cls in (I.BPF_ST, I.BPF_STX) and mode == _PROBE_MEM32:
            return (K_NOP, 0, 0, 0, 0, 0, _EMPTY, False, 0)  # arena store: not this frame
        if cls == I.BPF_ST:
            if mode == I.BPF_MEM:
                sv: Value = frozenset((imm & imm_mask(code),))
                return (K_ST, mode, dst, -1, off, size, sv, False, 0)
            if mode == _NOSPEC:
                return (K_NOP, 0, 0, 0, 0, 0, _EMPTY, False, 0)
            return _INVALID
        if cls == I.BPF_STX:
            if src >= NREGS:
                return _INVALID
            if mode == I.BPF_MEM:
                return (K_STX, mode, dst, src, off, size, _EMPTY, False, 0)
            if mode in (I.BPF_ATOMIC, _PROBE_ATOMIC):
                return (K_ATOMIC, imm, dst, src, off, size, _EMPTY, False, 0)
            return _INVALID
        # BPF_LD
        if mode == I.BPF_IMM and size == 8:
            second = raw[pc + 1] if pc + 1 < len(raw) else None
            if second is None:
                return _INVALID
            return (K_LDIMM, 0, dst, src, 0, imm, ldimm_value(insn, second), True, 0)
        if mode in (I.BPF_ABS, I.BPF_IND):
            if mode == I.BPF_IND and src >= NREGS:
                return _INVALID
            return (K_LDABS, mode, 0, src, 0, size, _EMPTY, False, 0)
        return _INVALID


def imm_mask(code: int) -> int:
    """The bits of an instruction's (sign-extended) immediate its operand keeps: 32 for
    ALU32 and JMP32, the store's size for BPF_ST, else 64 (``_prep``'s ``kval``)."""
    cls = code & 0x07
    if cls in (I.BPF_ALU, I.BPF_JMP32):
        return S.M32
    if cls == I.BPF_ST and code & 0x18 != I.BPF_DW:
        return (1 << (8 * I.SIZE_BYTES[code & 0x18])) - 1
    return S.M64


def operand_hull(insn: Insn, values: Iterable[int]) -> Value | None:
    """The set of a mov, conditional jump or store immediate over every copy's value
    (signed 32 bits each), or of a 64-bit constant (an ld_imm64 of plain data, every
    copy's 64-bit value), as the engine sees such an operand; None for other
    instructions (their varying operand is analysed as any value)."""
    if insn.code not in _HULL_CODES:
        return None
    mask = imm_mask(insn.code)
    out = {v & mask for v in values}
    return S.make_set(out, _VARYING) if out else None


def _unknown_operand(op: Op, hull: Value | None = None) -> Op:
    """The instruction with its immediate operand replaced by an unknown value of the
    operand's width, or by ``hull`` (both supersets of every copy's constant)."""
    kind, o, dst, src, off, imm, _kval, wide, tgt = op
    if hull is not None and ((kind in (K_MOV, K_JCOND, K_ST) and src < 0)
                             or (kind == K_LDIMM and src == 0)):
        return (kind, o, dst, src, off, imm, hull, wide, tgt)
    if kind in (K_MOV, K_ALU, K_JCOND) and src < 0:
        v: Value = S.full(_VARYING) if wide else S.sized(32, _VARYING)
    elif kind == K_ST:
        v = S.full(_VARYING) if imm == 8 else S.sized(8 * imm, _VARYING)
    elif kind == K_LDIMM and src == 0:
        v = S.full(_VARYING)
    else:
        return op
    if kind == K_ALU:
        imm = 0  # links.on_alu keys on the shift amount: not a known one here
    return (kind, o, dst, src, off, imm, v, wide, tgt)


_VARYING = "a constant that differs between copies of this program"
_HULL_CODES = frozenset(
    {cls | I.BPF_MOV | I.BPF_K for cls in (I.BPF_ALU64, I.BPF_ALU)}
    | {cls | op | I.BPF_K for cls in (I.BPF_JMP, I.BPF_JMP32) for op in _JCOND_OPS}
    | {I.BPF_ST | I.BPF_MEM | size for size in (I.BPF_B, I.BPF_H, I.BPF_W, I.BPF_DW)}
    | {I.BPF_LD | I.BPF_IMM | I.BPF_DW}
)
"""Opcodes of a mov, conditional jump or store with an immediate and of a 64-bit
constant load: the operands that :func:`_unknown_operand` replaces with every copy's
value."""


def ldimm_value(first: Insn, second: Insn) -> Value:
    src = first.src
    mid = first.imm & S.M32
    if src == 0:
        return frozenset((I.ldimm64_value(first, second),))
    if src == I.BPF_PSEUDO_MAP_FD:
        return Ptr("map", mid, 0)
    if src == I.BPF_PSEUDO_MAP_VALUE:
        return Ptr("mapval", mid, second.imm)
    if src == I.BPF_PSEUDO_FUNC:
        return S.full("address of a callback function")
    if src == I.BPF_PSEUDO_BTF_ID:
        return S.full("address of a kernel symbol")
    return S.full(f"map reference {src}:{mid}")


def block_writer(prep: Prepared, pc: int, reg: int) -> int | None:
    """The instruction that last writes ``reg`` in pc's basic block before pc; None
    when none does (or a call, which clobbers r0-r5, or an atomic, which may fetch
    into a register, comes first)."""
    ops, leader = prep.ops, prep.leader
    q = pc - 1
    while q >= 0:
        kind, _o, dst, _src, _off, _imm, _k, _w, _t = ops[q]
        if kind in (K_CALL, K_TAILCALL, K_PCALL, K_KFUNC, K_LDABS, K_ATOMIC):
            return None
        if dst == reg and kind in (K_MOV, K_ALU, K_NEG, K_END, K_LDX, K_LDIMM):
            return q
        if leader[q]:
            return None
        q -= 1
    return None


def block_constant(prep: Prepared, pc: int, reg: int, varying: frozenset[int]) -> int | None:
    """The immediate a mov gives ``reg`` in pc's basic block before pc, with no other
    write to it in between (every path to pc runs that stretch); None when there is
    none, it is negative or it is at a ``varying`` position."""
    q = block_writer(prep, pc, reg)
    if q is None:
        return None
    kind, _o, _dst, src, _off, imm, _k, _w, _t = prep.ops[q]
    return imm if kind == K_MOV and src < 0 and q not in varying and imm >= 0 else None


def block_map(prep: Prepared, pc: int, reg: int) -> int | None:
    """The map ``reg`` points to at pc: a map load in pc's basic block before pc, with
    only register copies in between (``r6 = map[id:7]; ...; r2 = r6``); None when
    there is none (a tail call's prog array as loaded just before it)."""
    q = block_writer(prep, pc, reg)
    while q is not None:
        kind, _o, _dst, src, off, _imm, kval, wide, _t = prep.ops[q]
        if kind == K_LDIMM:
            return kval.map_id if type(kval) is Ptr and kval.kind == "map" else None
        if kind != K_MOV or src < 0 or not wide or off or prep.leader[q]:
            return None  # (a copy that starts the block: its source is set elsewhere)
        q = block_writer(prep, q, src)  # a copy: where it came from
    return None
