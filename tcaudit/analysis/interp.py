"""Static verdict analysis: which 32-bit values a tc/TCX BPF program can return.

The analysis is an abstract interpretation of the xlated instructions
(kernel/bpf/syscall.c bpf_insn_prepare_dump: map ids in ld_imm64, tail calls
as ``call 12``, pseudo-call targets in ``off`` for JIT-compiled programs).
Each register r0-r10 and each stack slot addressed through r10 holds one of:

* a small set of 64-bit constants (at most ``CAP`` values),
* a pointer into the current function's stack frame (offset known or not),
* "unknown" with the reason it is unknown (value loaded from map N, return
  value of helper X, ...), a scalar or a pointer outside this frame,
* "anything" (may even be a pointer into this frame).

It is sound first: every value the program can return is in ``possible``,
or ``possible`` is None. The program's return value is r0's low 32 bits read
as a signed int (the kernel stores the u32 result of bpf_prog_run; the tc
code compares it to the signed TC_ACT_* constants).

Kernel facts relied on:

* helper calls clobber r0-r5 and keep r6-r9; bpf-to-bpf calls get a new
  stack frame (kernel/bpf/verifier.c check_helper_call / check_func_call);
* bpf_redirect, bpf_redirect_peer and bpf_redirect_neigh return
  TC_ACT_REDIRECT or TC_ACT_SHOT (net/core/filter.c);
* a successful bpf_tail_call never returns, at most MAX_TAIL_CALL_CNT (33)
  tail calls run in a chain, and a failed one falls through
  (kernel/bpf/core.c ___bpf_prog_run JMP_TAIL_CALL); a tail call made from a
  subprogram returns to that subprogram's caller (x86 JIT);
* LD_ABS/LD_IND end the program with 0 when the access is out of bounds;
* direct-action cls_bpf keeps OK, SHOT, STOLEN, TRAP, REDIRECT and UNSPEC and
  turns every other value into UNSPEC (net/sched/cls_bpf.c
  cls_bpf_exec_opcode); classic cls_bpf treats 0 as "no match" and runs the
  actions otherwise (cls_bpf_classify, tcf_exts_exec);
* TCX keeps PASS, DROP and REDIRECT and turns every other value into NEXT
  (include/net/tcx.h tcx_action_code).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, NamedTuple, Protocol

from tcaudit.analysis import insns as I
from tcaudit.analysis.insns import Insn

__all__ = [
    "CAP",
    "MAX_TAIL_CALL_CNT",
    "TCX_DROP",
    "TCX_NAMES",
    "TCX_NEXT",
    "TCX_PASS",
    "TCX_REDIRECT",
    "TC_ACT_NAMES",
    "TC_ACT_OK",
    "TC_ACT_PIPE",
    "TC_ACT_QUEUED",
    "TC_ACT_RECLASSIFY",
    "TC_ACT_REDIRECT",
    "TC_ACT_REPEAT",
    "TC_ACT_SHOT",
    "TC_ACT_STOLEN",
    "TC_ACT_TRAP",
    "TC_ACT_UNSPEC",
    "Analysis",
    "CodeSource",
    "Mode",
    "ProgramCode",
    "TailCall",
    "analyse",
    "effective",
    "effective_one",
    "verdict_names",
]

TC_ACT_UNSPEC = -1
TC_ACT_OK = 0
TC_ACT_RECLASSIFY = 1
TC_ACT_SHOT = 2
TC_ACT_PIPE = 3
TC_ACT_STOLEN = 4
TC_ACT_QUEUED = 5
TC_ACT_REPEAT = 6
TC_ACT_REDIRECT = 7
TC_ACT_TRAP = 8

TCX_NEXT = -1
TCX_PASS = 0
TCX_DROP = 2
TCX_REDIRECT = 7

TC_ACT_NAMES: Mapping[int, str] = MappingProxyType(
    {
        TC_ACT_UNSPEC: "TC_ACT_UNSPEC",
        TC_ACT_OK: "TC_ACT_OK",
        TC_ACT_RECLASSIFY: "TC_ACT_RECLASSIFY",
        TC_ACT_SHOT: "TC_ACT_SHOT",
        TC_ACT_PIPE: "TC_ACT_PIPE",
        TC_ACT_STOLEN: "TC_ACT_STOLEN",
        TC_ACT_QUEUED: "TC_ACT_QUEUED",
        TC_ACT_REPEAT: "TC_ACT_REPEAT",
        TC_ACT_REDIRECT: "TC_ACT_REDIRECT",
        TC_ACT_TRAP: "TC_ACT_TRAP",
    }
)
TCX_NAMES: Mapping[int, str] = MappingProxyType(
    {TCX_NEXT: "TCX_NEXT", TCX_PASS: "TCX_PASS", TCX_DROP: "TCX_DROP", TCX_REDIRECT: "TCX_REDIRECT"}
)

MAX_TAIL_CALL_CNT = 33
CAP = 16
"""Largest constant set kept for one register; a bigger set becomes unknown."""

_WIDEN_AFTER = 24
"""A block whose entry state changed this often widens changed values."""

_M64 = (1 << 64) - 1
_M32 = 0xFFFFFFFF

Mode = Literal["direct-action", "classic", "tcx"]

# --------------------------------------------------------------------------
# Public data
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ProgramCode:
    """The code of one program as read from the kernel (xlated) or built in tests."""

    prog_id: int | None
    name: str
    insns: tuple[Insn, ...]
    func_starts: tuple[int, ...] = (0,)
    """Subprogram start insn indexes from func_info (may be just (0,) or empty)."""


class CodeSource(Protocol):
    """Where the analysis gets helper names, prog array slots and tail-call targets."""

    def helper_name(self, imm: int) -> str | None:
        """Name of the helper a ``call imm`` (src_reg 0) targets, e.g. "bpf_redirect"."""
        ...

    def prog_array(self, map_id: int) -> Mapping[int, int] | None:
        """Slot index -> prog id of a prog array; None if unreadable or not a prog array."""
        ...

    def program(self, prog_id: int) -> ProgramCode | None:
        """Code of a tail-call target, None if it cannot be read."""
        ...


@dataclass(frozen=True)
class TailCall:
    """One ``bpf_tail_call`` site of a program.

    ``index`` is the constant slot index or None when the index is not one
    constant (then ``indexes`` may still list a small set, else every filled
    slot is a target). ``analyses`` is aligned with ``targets``; an entry is
    None when that target is already being described further up (a cycle),
    lies beyond the kernel's tail-call depth limit, or cannot be read.
    """

    pc: int
    map_id: int | None
    index: int | None
    targets: tuple[int, ...]
    analyses: tuple[Analysis | None, ...]
    indexes: tuple[int, ...] | None = None
    in_subprogram: bool = False


@dataclass(frozen=True)
class Analysis:
    """Result of :func:`analyse` for one program (tail-call targets included)."""

    possible: frozenset[int] | None
    """Every signed 32-bit value the program can return; None = unknown."""
    reason: str | None
    """Why unknown, or what a known answer depends on (prog array contents)."""
    exits: Mapping[int, frozenset[int] | None]
    """Exit insn index (of this program, subprograms included) -> possible
    r0 values there, low 32 bits as signed ints. Exits the analysis never
    reached (dead code, callback functions) are absent."""
    tail_calls: tuple[TailCall, ...]
    prog_arrays: tuple[int, ...]
    """Map ids of the prog arrays the result depends on."""
    steps: int = field(default=0, compare=False)
    """Instructions interpreted (whole tree) to get this result."""


# --------------------------------------------------------------------------
# Abstract values
# --------------------------------------------------------------------------


class _Unk(NamedTuple):
    """Unknown value that is not a pointer into the current stack frame."""

    reason: str
    deref: str | None  # reason given to values loaded through it
    map_id: int | None  # set for a map pointer loaded by ld_imm64


class _SP(NamedTuple):
    """Pointer into the current function's stack frame: r10 + off."""

    off: int | None


class _Top(NamedTuple):
    """Anything, including a pointer into the current stack frame."""

    reason: str


_Value = frozenset[int] | _Unk | _SP | _Top
_Regs = tuple[_Value, ...]
_Stack = dict[int, tuple[int, _Value]]

_CTX_DEREF = "value loaded from ctx"
_CTX = _Unk("context pointer", _CTX_DEREF, None)
_ARG = _Unk("argument of a subprogram", "value loaded from memory", None)
_UNINIT = _Unk("uninitialized register", None, None)
_CLOBBER = _Unk("register clobbered by a call", None, None)
_TOO_MANY = _Unk(f"more than {CAP} possible values", None, None)
_LOOP = _Unk("value varies across loop iterations", None, None)
_STACK_LOAD = _Unk("value loaded from stack", None, None)
_MEM_LOAD = _Unk("value loaded from memory", "value loaded from memory", None)
_PKT_LOAD = _Unk("value loaded from packet", None, None)
_FAILED_TAIL = _Unk("return value of a failed bpf_tail_call", None, None)
_SP0 = _SP(0)
_SPX = _SP(None)
_MIXED = _Top("register may hold a stack pointer or another value")
_REDIRECT_RET = frozenset((TC_ACT_SHOT, TC_ACT_REDIRECT))
_ZERO = frozenset((0,))


def _s32(x: int) -> int:
    x &= _M32
    return x - (1 << 32) if x & 0x80000000 else x


def _s64(x: int) -> int:
    return x - (1 << 64) if x >> 63 else x


def _reason(v: _Value) -> str:
    if type(v) is _Unk or type(v) is _Top:
        return v.reason
    if type(v) is _SP:
        return "returns a stack pointer"
    return "unknown"


def _join(a: _Value, b: _Value) -> _Value:
    """Least upper bound, keeping ``a``'s reason when both are unknown."""
    if a == b:
        return a
    ta = type(a)
    tb = type(b)
    if ta is frozenset and tb is frozenset:
        u = a | b  # type: ignore[operator]
        return u if len(u) <= CAP else _TOO_MANY
    if ta is _Top:
        return a
    if tb is _Top:
        return b
    if ta is _SP or tb is _SP:
        if ta is _SP and tb is _SP:
            return _SPX
        return _MIXED
    if ta is _Unk:
        if tb is _Unk:
            assert isinstance(a, _Unk) and isinstance(b, _Unk)
            deref = a.deref if a.deref == b.deref else "value loaded from memory"
            mid = a.map_id if a.map_id == b.map_id else None
            if deref == a.deref and mid == a.map_id:
                return a
            return _Unk(a.reason, deref, mid)
        assert isinstance(a, _Unk)
        return a if a.map_id is None else _Unk(a.reason, a.deref, None)
    assert isinstance(b, _Unk)
    return b if b.map_id is None else _Unk(b.reason, b.deref, None)


def _join_opt(a: _Value | None, b: _Value | None) -> _Value | None:
    if a is None:
        return b
    if b is None:
        return a
    return _join(a, b)


def _union(a: _Value | None, b: _Value | None) -> _Value | None:
    """Join without the CAP on constant sets (for whole-program return sets)."""
    if isinstance(a, frozenset) and isinstance(b, frozenset):
        return a | b
    return _join_opt(a, b)


def _widen(old: _Value, new: _Value) -> _Value:
    if new == old:
        return new
    if type(new) is frozenset:
        return _LOOP
    if type(new) is _SP:
        return _SPX
    return new


def _project(v: _Value | None) -> frozenset[int] | None:
    """Low 32 bits of r0 as signed ints; None unless v is a constant set."""
    if v is None:
        return frozenset()
    if type(v) is frozenset:
        return frozenset(_s32(x) for x in v)
    return None


# --------------------------------------------------------------------------
# Concrete operations on constants (kernel/bpf/core.c ___bpf_prog_run)
# --------------------------------------------------------------------------


def _alu_c(op: int, wide: bool, off: int, x: int, y: int) -> int:
    """One ALU operation on constants, 64-bit (ALU64) or 32-bit (ALU, zero-extended)."""
    if wide:
        mask, shift, signed = _M64, 63, _s64
    else:
        mask, shift, signed = _M32, 31, _s32
        x &= _M32
        y &= _M32
    if op == I.BPF_ADD:
        return (x + y) & mask
    if op == I.BPF_SUB:
        return (x - y) & mask
    if op == I.BPF_MUL:
        return (x * y) & mask
    if op == I.BPF_OR:
        return x | y
    if op == I.BPF_AND:
        return x & y
    if op == I.BPF_XOR:
        return x ^ y
    if op == I.BPF_LSH:
        return (x << (y & shift)) & mask
    if op == I.BPF_RSH:
        return x >> (y & shift)
    if op == I.BPF_ARSH:
        return (signed(x) >> (y & shift)) & mask
    if op == I.BPF_DIV:
        if y == 0:
            return 0
        if off == 1:
            return _sdiv(signed(x), signed(y)) & mask
        return x // y
    if op == I.BPF_MOD:
        if y == 0:
            return x
        if off == 1:
            return _smod(signed(x), signed(y)) & mask
        return x % y
    if op == I.BPF_MOV:
        return y
    raise ValueError(op)


def _sdiv(x: int, y: int) -> int:
    q = abs(x) // abs(y)
    return -q if (x < 0) != (y < 0) else q


def _smod(x: int, y: int) -> int:
    r = abs(x) % abs(y)
    return -r if x < 0 else r


def _sext(x: int, bits: int) -> int:
    x &= (1 << bits) - 1
    return x - (1 << bits) if x >> (bits - 1) else x


def _bswap(x: int, bits: int) -> int:
    n = bits // 8
    return int.from_bytes((x & ((1 << bits) - 1)).to_bytes(n, "little"), "big")


def _cmp(op: int, wide: bool, x: int, y: int) -> bool:
    if not wide:
        x &= _M32
        y &= _M32
    if op == I.BPF_JEQ:
        return x == y
    if op == I.BPF_JNE:
        return x != y
    if op == I.BPF_JGT:
        return x > y
    if op == I.BPF_JGE:
        return x >= y
    if op == I.BPF_JLT:
        return x < y
    if op == I.BPF_JLE:
        return x <= y
    if op == I.BPF_JSET:
        return (x & y) != 0
    if wide:
        sx, sy = _s64(x), _s64(y)
    else:
        sx, sy = _s32(x), _s32(y)
    if op == I.BPF_JSGT:
        return sx > sy
    if op == I.BPF_JSGE:
        return sx >= sy
    if op == I.BPF_JSLT:
        return sx < sy
    if op == I.BPF_JSLE:
        return sx <= sy
    raise ValueError(op)


def _submasks(mask: int) -> frozenset[int]:
    out = [0]
    bit = 1
    m = mask
    while m:
        if m & 1:
            out += [v | bit for v in out]
        m >>= 1
        bit <<= 1
    return frozenset(out)


def _nonconst_reason(a: _Value, b: _Value) -> str:
    for v in (a, b):
        if isinstance(v, _SP):
            return "arithmetic on a stack pointer"
        if not isinstance(v, frozenset):
            return v.reason
    return "unknown"


def _single(v: _Value) -> int | None:
    if isinstance(v, frozenset) and len(v) == 1:
        for x in v:
            return x
    return None


def _alu(op: int, wide: bool, off: int, a: _Value, b: _Value) -> _Value:
    if isinstance(a, frozenset) and isinstance(b, frozenset):
        if len(a) == 1 and len(b) == 1:
            for x in a:
                for y in b:
                    return frozenset((_alu_c(op, wide, off, x, y),))
        res = frozenset(_alu_c(op, wide, off, x, y) for x in a for y in b)
        return res if len(res) <= CAP else _TOO_MANY
    if wide and op in (I.BPF_ADD, I.BPF_SUB):
        if isinstance(a, _SP):
            c = _single(b)
            if c is not None and a.off is not None:
                d = _s64(c)
                return _SP(a.off + d if op == I.BPF_ADD else a.off - d)
            if isinstance(b, _SP):
                return _Unk("difference of pointers", None, None)
            return _MIXED if isinstance(b, _Top) else _SPX
        if isinstance(b, _SP):
            return _SPX if op == I.BPF_ADD and not isinstance(a, _Top) else _MIXED
        if isinstance(a, _Top):
            return a
        if isinstance(b, _Top):
            return b
        if isinstance(a, _Unk):
            return a if a.map_id is None else _Unk(a.reason, a.deref, None)
        assert isinstance(b, _Unk)
        return _Unk(b.reason, b.deref, None)
    # Result is a scalar: a few cheap exact bounds for common compiler idioms.
    if op == I.BPF_AND:
        mask = _single(b)
        if mask is None:
            mask = _single(a)
        if mask is not None:
            if not wide:
                mask &= _M32
            if mask.bit_count() <= 4:
                return _submasks(mask)
    elif op == I.BPF_RSH:
        sh = _single(b)
        if sh is not None:
            bits = 64 - (sh & 63) if wide else 32 - (sh & 31)
            if bits <= 4:
                return frozenset(range(1 << bits))
    elif op == I.BPF_ARSH:
        sh = _single(b)
        if sh is not None:
            width = 64 if wide else 32
            k = width - (sh & (width - 1))
            if k <= 4:
                m = _M64 if wide else _M32
                return frozenset(v & m for v in range(-(1 << (k - 1)), 1 << (k - 1)))
    elif op == I.BPF_MOD and off == 0:
        dv = _single(b)
        if dv is not None:
            if not wide:
                dv &= _M32
            if 1 <= dv <= CAP:
                return frozenset(range(dv))
    return _Unk(_nonconst_reason(a, b), None, None)


def _mov_x(v: _Value, wide: bool, off: int) -> _Value:
    """mov/mov32/movsx of a register value (not the plain 64-bit copy)."""
    if type(v) is frozenset:
        if wide:
            if off in (8, 16, 32):
                return frozenset(_sext(x, off) & _M64 for x in v)
            return _Unk("address space cast", None, None)
        if off in (8, 16):
            return frozenset(_sext(x, off) & _M32 for x in v)
        return frozenset(x & _M32 for x in v)
    if type(v) is _SP:
        return _Unk("truncated copy of a stack pointer", None, None)
    return _Unk(v.reason, None, None)  # type: ignore[union-attr]


def _neg(v: _Value, wide: bool) -> _Value:
    if type(v) is frozenset:
        m = _M64 if wide else _M32
        return frozenset((-x) & m for x in v)
    return _Unk(_nonconst_reason(v, v), None, None)


def _end(v: _Value, wide: bool, to_be: bool, bits: int) -> _Value:
    if bits not in (16, 32, 64):
        return _Unk("invalid byte swap", None, None)
    if type(v) is frozenset:
        if wide or to_be:
            return frozenset(_bswap(x, bits) for x in v)
        return frozenset(x & ((1 << bits) - 1) for x in v)
    return _Unk(_nonconst_reason(v, v), None, None)


def _branch(
    op: int, wide: bool, a: _Value, b: _Value
) -> tuple[_Value, _Value, _Value, _Value]:
    """(a if taken, b if taken, a if not taken, b if not taken).

    An empty frozenset marks an infeasible side.
    """
    if type(a) is frozenset and type(b) is frozenset:
        if len(b) == 1:
            (y,) = b
            at = frozenset(x for x in a if _cmp(op, wide, x, y))
            return at, b, a - at, b
        ats: set[int] = set()
        bts: set[int] = set()
        afs: set[int] = set()
        bfs: set[int] = set()
        for x in a:
            for y in b:
                if _cmp(op, wide, x, y):
                    ats.add(x)
                    bts.add(y)
                else:
                    afs.add(x)
                    bfs.add(y)
        return frozenset(ats), frozenset(bts), frozenset(afs), frozenset(bfs)
    if wide:
        if op == I.BPF_JEQ:
            if type(b) is frozenset and len(b) == 1:
                return b, b, a, b
            if type(a) is frozenset and len(a) == 1:
                return a, a, a, b
        elif op == I.BPF_JNE:
            if type(b) is frozenset and len(b) == 1:
                return a, b, b, b
            if type(a) is frozenset and len(a) == 1:
                return a, b, a, a
    return a, b, a, b


# --------------------------------------------------------------------------
# Prepared program
# --------------------------------------------------------------------------

# Operation kinds of the prepared instruction tuples.
_K_INVALID = 0
_K_MOV = 1
_K_ALU = 2
_K_NEG = 3
_K_END = 4
_K_LDIMM = 5
_K_LDX = 6
_K_ST = 7
_K_STX = 8
_K_ATOMIC = 9
_K_LDABS = 10
_K_JA = 11
_K_JCOND = 12
_K_CALL = 13
_K_PCALL = 14
_K_KFUNC = 15
_K_EXIT = 16
_K_MAYGOTO = 17
_K_TAILCALL = 18
_K_SLOT2 = 19

# (kind, op, dst, src (-1 = immediate), off, imm, constant operand, wide, target)
_Op = tuple[int, int, int, int, int, int, _Value, bool, int]

_EMPTY: frozenset[int] = frozenset()
_KERNEL_LOAD = _Unk("value loaded from kernel memory", "value loaded from kernel memory", None)
# Kernel-internal modes (include/linux/filter.h); bpf_insn_prepare_dump turns
# BPF_PROBE_MEM back into BPF_MEM, the others may still show up.
_PROBE_MEM32 = 0xA0
_PROBE_ATOMIC = 0xE0
_PROBE_MODES = frozenset((0x20, 0x40, _PROBE_MEM32))

_READONLY_PTR_ARGS: Mapping[str, tuple[int, ...]] = MappingProxyType(
    {
        "map_lookup_elem": (2,),
        "map_lookup_percpu_elem": (2,),
        "map_update_elem": (2, 3),
        "map_delete_elem": (2,),
        "map_push_elem": (2,),
        "redirect_neigh": (2,),
        "skb_store_bytes": (3,),
        "csum_diff": (1, 3),
        "perf_event_output": (4,),
        "skb_output": (4,),
        "ringbuf_output": (2,),
        "trace_printk": (1,),
    }
)
_REDIRECTS = frozenset(("redirect", "redirect_peer", "redirect_neigh"))
_LOOKUPS = frozenset(("map_lookup_elem", "map_lookup_percpu_elem"))


class _Prepared:
    """Per-program precomputed instruction tuples and block leaders."""

    __slots__ = ("code", "func_starts", "has_callbacks", "leader", "n", "ops")

    def __init__(self, code: ProgramCode) -> None:
        self.code = code
        raw = code.insns
        n = len(raw)
        self.n = n
        self.func_starts = frozenset(s for s in code.func_starts if 0 <= s < n)
        ops: list[_Op] = []
        leader = [False] * (n + 1)
        leader[0] = True
        for s in self.func_starts:
            leader[s] = True
        has_cb = False
        pc = 0
        while pc < n:
            op = self._prep(raw, pc)
            ops.append(op)
            kind = op[0]
            if kind == _K_LDIMM:
                if raw[pc].src == I.BPF_PSEUDO_FUNC:
                    has_cb = True
                ops.append((_K_SLOT2, 0, 0, 0, 0, 0, _EMPTY, False, 0))
                pc += 2
                continue
            if kind in (_K_JA, _K_JCOND, _K_MAYGOTO):
                if 0 <= op[8] <= n:
                    leader[op[8]] = True
                leader[pc + 1] = True
            elif kind == _K_EXIT:
                leader[pc + 1] = True
            elif kind == _K_PCALL and 0 <= op[8] < n:
                leader[op[8]] = True
            pc += 1
        self.ops = ops[:n]
        self.leader = leader
        self.has_callbacks = has_cb

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

    def _prep(self, raw: tuple[Insn, ...], pc: int) -> _Op:
        insn = raw[pc]
        code = insn.code
        cls = code & 0x07
        dst, src, off, imm = insn.dst, insn.src, insn.off, insn.imm
        if cls in (I.BPF_ALU, I.BPF_ALU64):
            wide = cls == I.BPF_ALU64
            op = code & 0xF0
            is_x = bool(code & I.BPF_X)
            kval: _Value = frozenset((imm & (_M64 if wide else _M32),))
            if op == I.BPF_NEG:
                return (_K_NEG, op, dst, -1, off, imm, kval, wide, 0)
            if op == I.BPF_END:
                return (_K_END, op, dst, -1, off, imm, kval, wide, int(is_x))
            if op == I.BPF_MOV:
                return (_K_MOV, op, dst, src if is_x else -1, off, imm, kval, wide, 0)
            if op in (I.BPF_DIV, I.BPF_MOD) and off not in (0, 1):
                return (_K_INVALID, 0, 0, 0, 0, 0, _EMPTY, False, 0)
            if op in (
                I.BPF_ADD, I.BPF_SUB, I.BPF_MUL, I.BPF_DIV, I.BPF_OR, I.BPF_AND,
                I.BPF_LSH, I.BPF_RSH, I.BPF_MOD, I.BPF_XOR, I.BPF_ARSH,
            ):
                return (_K_ALU, op, dst, src if is_x else -1, off, imm, kval, wide, 0)
            return (_K_INVALID, 0, 0, 0, 0, 0, _EMPTY, False, 0)
        if cls in (I.BPF_JMP, I.BPF_JMP32):
            wide = cls == I.BPF_JMP
            op = code & 0xF0
            kv: _Value = frozenset((imm & _M64,))
            if op == I.BPF_JA:
                tgt = pc + off + 1 if wide else pc + imm + 1
                return (_K_JA, op, 0, 0, off, imm, _EMPTY, wide, tgt)
            if op == I.BPF_EXIT:
                return (_K_EXIT, op, 0, 0, 0, 0, _EMPTY, wide, 0)
            if op == I.BPF_CALL:
                if src == I.BPF_PSEUDO_CALL:
                    return (_K_PCALL, op, 0, 0, off, imm, _EMPTY, wide,
                            self.call_target(pc, insn))
                if src == I.BPF_PSEUDO_KFUNC_CALL:
                    return (_K_KFUNC, op, 0, 0, off, imm, _EMPTY, wide, 0)
                if src == 0:
                    return (_K_CALL, op, 0, 0, off, imm, _EMPTY, wide, 0)
                return (_K_INVALID, 0, 0, 0, 0, 0, _EMPTY, False, 0)
            if op == I.BPF_TAIL_CALL:
                return (_K_TAILCALL, op, 0, 0, off, imm, _EMPTY, wide, 0)
            if op == I.BPF_JCOND:
                if src == 0:
                    return (_K_MAYGOTO, op, 0, 0, off, imm, _EMPTY, wide, pc + off + 1)
                return (_K_INVALID, 0, 0, 0, 0, 0, _EMPTY, False, 0)
            return (_K_JCOND, op, dst, src if code & I.BPF_X else -1, off, imm, kv, wide,
                    pc + off + 1)
        mode = code & 0xE0
        size = I.SIZE_BYTES[code & 0x18]
        if cls == I.BPF_LDX:
            if mode == I.BPF_MEM or (mode == I.BPF_MEMSX and size < 8):
                return (_K_LDX, mode, dst, src, off, size, _EMPTY, False, 0)
            if mode in _PROBE_MODES:
                # kernel-internal probing loads (BTF pointers, arena): never the stack
                return (_K_MOV, I.BPF_MOV, dst, -1, 0, 0, _KERNEL_LOAD, True, 0)
            return (_K_INVALID, 0, 0, 0, 0, 0, _EMPTY, False, 0)
        if cls in (I.BPF_ST, I.BPF_STX) and mode == _PROBE_MEM32:
            return (_K_JA, 0, 0, 0, 0, 0, _EMPTY, False, pc + 1)  # arena store: no-op here
        if cls == I.BPF_ST:
            if mode == I.BPF_MEM:
                sv: _Value = frozenset((imm & ((1 << (8 * size)) - 1),))
                return (_K_ST, mode, dst, -1, off, size, sv, False, 0)
            return (_K_INVALID, 0, 0, 0, 0, 0, _EMPTY, False, 0)
        if cls == I.BPF_STX:
            if mode == I.BPF_MEM:
                return (_K_STX, mode, dst, src, off, size, _EMPTY, False, 0)
            if mode in (I.BPF_ATOMIC, _PROBE_ATOMIC):
                return (_K_ATOMIC, imm, dst, src, off, size, _EMPTY, False, 0)
            return (_K_INVALID, 0, 0, 0, 0, 0, _EMPTY, False, 0)
        # BPF_LD
        if mode == I.BPF_IMM and size == 8:
            second = raw[pc + 1] if pc + 1 < len(raw) else None
            if second is None:
                return (_K_INVALID, 0, 0, 0, 0, 0, _EMPTY, False, 0)
            return (_K_LDIMM, 0, dst, src, 0, imm, self._ldimm_value(insn, second), True, 0)
        if mode in (I.BPF_ABS, I.BPF_IND):
            return (_K_LDABS, mode, 0, src, 0, imm, _EMPTY, False, 0)
        return (_K_INVALID, 0, 0, 0, 0, 0, _EMPTY, False, 0)

    @staticmethod
    def _ldimm_value(first: Insn, second: Insn) -> _Value:
        src = first.src
        mid = first.imm & _M32
        if src == 0:
            return frozenset((I.ldimm64_value(first, second),))
        if src == I.BPF_PSEUDO_MAP_FD:
            return _Unk(f"pointer to map {mid}", f"value loaded from map {mid}", mid)
        if src == I.BPF_PSEUDO_MAP_VALUE:
            return _Unk(f"pointer into map {mid}", f"value loaded from map {mid}", None)
        if src == I.BPF_PSEUDO_FUNC:
            return _Unk("address of a callback function", "value loaded from code", None)
        if src == I.BPF_PSEUDO_BTF_ID:
            return _Unk("address of a kernel symbol", "value loaded from kernel memory", None)
        return _Unk(f"map reference {src}:{mid}", "value loaded from a map", None)


# --------------------------------------------------------------------------
# Analysis engine
# --------------------------------------------------------------------------


class _BudgetExhausted(Exception):
    pass


@dataclass
class _Site:
    pc: int
    map_id: int | None
    indexes: tuple[int, ...] | None
    main: bool


@dataclass
class _Func:
    ret: _Value | None
    exits: dict[int, _Value]
    implicit_zero: bool


@dataclass
class _Local:
    value: _Value | None
    exits: dict[int, _Value]
    sites: list[_Site]


class _ProgAnalyser:
    """Analyses one program: its main function and every reachable subprogram."""

    def __init__(self, prep: _Prepared, ctx: _Ctx) -> None:
        self.prep = prep
        self.ctx = ctx
        self.funcs: dict[int, _Func] = {}
        self.active: set[int] = set()
        self.sites: list[_Site] = []

    def run(self) -> _Local:
        if self.prep.n == 0:
            return _Local(_Top("empty program"), {}, [])
        main = self.function(0, True)
        value = main.ret if main is not None else _Top("recursive call")
        exits: dict[int, _Value] = {}
        zero = False
        for f in self.funcs.values():
            exits.update(f.exits)
            zero = zero or f.implicit_zero
        if zero:
            value = _union(value, _ZERO)
        return _Local(value, exits, self.sites)

    def function(self, start: int, is_main: bool) -> _Func | None:
        done = self.funcs.get(start)
        if done is not None:
            return done
        if start in self.active:
            return None
        self.active.add(start)
        try:
            res = self._run(start, is_main)
        finally:
            self.active.discard(start)
        self.funcs[start] = res
        return res

    # The interpreter loop: one long function on purpose (speed).
    def _run(self, start: int, is_main: bool) -> _Func:
        prep = self.prep
        ops = prep.ops
        leader = prep.leader
        n = prep.n
        ctx = self.ctx
        join = _join
        init: list[_Value] = [_UNINIT] * 11
        if is_main:
            init[1] = _CTX
        else:
            init[1] = init[2] = init[3] = init[4] = init[5] = _ARG
        init[10] = _SP0
        states: dict[int, tuple[_Regs, _Stack]] = {start: (tuple(init), {})}
        visits: dict[int, int] = {}
        heap = [start]
        queued = {start}
        exits: dict[int, _Value] = {}
        ret: _Value | None = None
        problem: str | None = None
        implicit_zero = False

        def merge(tpc: int, regs: list[_Value], stack: _Stack) -> str | None:
            if tpc < 0 or tpc >= n or ops[tpc][0] == _K_SLOT2:
                return f"jump to invalid instruction index {tpc}"
            nt = tuple(regs)
            old = states.get(tpc)
            if old is None:
                states[tpc] = (nt, stack)
                if tpc not in queued:
                    queued.add(tpc)
                    heapq.heappush(heap, tpc)
                return None
            ort, ost = old
            changed = False
            jr = ort
            if nt != ort:
                jr = tuple(map(join, ort, nt))
                changed = jr != ort
            js = ost
            if stack is not ost and stack != ost:
                js = {}
                for k, (sz, v) in ost.items():
                    e = stack.get(k)
                    if e is not None and e[0] == sz:
                        js[k] = (sz, join(v, e[1]))
                changed = changed or js != ost
            if changed:
                c = visits.get(tpc, 0) + 1
                visits[tpc] = c
                if c > _WIDEN_AFTER:
                    jr = tuple(map(_widen, ort, jr))
                    js = {k: (sz, _widen(ost[k][1], v)) for k, (sz, v) in js.items()}
                states[tpc] = (jr, js)
                if tpc not in queued:
                    queued.add(tpc)
                    heapq.heappush(heap, tpc)
            return None

        while heap:
            if ctx.budget <= 0:
                raise _BudgetExhausted
            bpc = heapq.heappop(heap)
            queued.discard(bpc)
            pc = bpc
            rt, st = states[pc]
            regs = list(rt)
            stack = dict(st)
            steps = 0
            while True:
                if pc >= n:
                    problem = "execution falls off the end of the program"
                    break
                kind, op, dst, src, off, imm, kval, wide, tgt = ops[pc]
                steps += 1
                if kind == _K_MOV:
                    if src < 0:
                        regs[dst] = kval
                    elif wide and off == 0:
                        regs[dst] = regs[src]
                    else:
                        regs[dst] = _mov_x(regs[src], wide, off)
                elif kind == _K_ALU:
                    regs[dst] = _alu(op, wide, off, regs[dst], kval if src < 0 else regs[src])
                elif kind == _K_LDX:
                    regs[dst] = self._load(regs[src], off, imm, op == I.BPF_MEMSX, stack)
                elif kind in (_K_STX, _K_ST):
                    addr = regs[dst]
                    ta = type(addr)
                    if ta is _SP:
                        self._store(addr.off, off, imm,  # type: ignore[union-attr]
                                    kval if src < 0 else regs[src], stack)
                    elif ta is _Top:
                        stack.clear()
                elif kind == _K_JCOND:
                    a = regs[dst]
                    b = kval if src < 0 else regs[src]
                    at, bt, af, bf = _branch(op, wide, a, b)
                    if at:
                        tr = regs.copy()
                        tr[dst] = at
                        if 0 <= src != dst:
                            tr[src] = bt
                        problem = merge(tgt, tr, stack) or problem
                    if af:
                        regs[dst] = af
                        if 0 <= src != dst:
                            regs[src] = bf
                        problem = merge(pc + 1, regs, stack) or problem
                    break
                elif kind == _K_LDIMM:
                    regs[dst] = kval
                    pc += 2
                    if leader[pc]:
                        problem = merge(pc, regs, stack) or problem
                        break
                    continue
                elif kind == _K_EXIT:
                    v = regs[0]
                    old = exits.get(pc)
                    exits[pc] = v if old is None else join(old, v)
                    if ret is None:
                        ret = v
                    elif is_main:
                        ret = _union(ret, v)
                    else:
                        ret = join(ret, v)
                    break
                elif kind == _K_JA:
                    problem = merge(tgt, regs, stack) or problem
                    break
                elif kind in (_K_CALL, _K_TAILCALL):
                    ctx.budget -= steps
                    steps = 0
                    extra = self._helper(pc, imm, kind == _K_TAILCALL, regs, stack, is_main)
                    if extra is not None:
                        ret = extra if ret is None else join(ret, extra)
                elif kind == _K_PCALL:
                    ctx.budget -= steps
                    steps = 0
                    if not 0 <= tgt < n:
                        problem = f"call to invalid instruction index {tgt}"
                        break
                    if _args_may_point_to_stack(regs):
                        stack.clear()
                    callee = self.function(tgt, False)
                    if callee is None:
                        r0: _Value | None = _Top("recursive bpf-to-bpf call")
                    else:
                        r0 = callee.ret
                    if r0 is None:  # the callee never returns
                        break
                    regs[0] = r0
                    regs[1] = regs[2] = regs[3] = regs[4] = regs[5] = _CLOBBER
                elif kind == _K_NEG:
                    regs[dst] = _neg(regs[dst], wide)
                elif kind == _K_END:
                    regs[dst] = _end(regs[dst], wide, bool(tgt), imm)
                elif kind == _K_ATOMIC:
                    self._atomic(op, dst, src, off, imm, regs, stack)
                elif kind == _K_MAYGOTO:
                    problem = merge(tgt, regs, stack) or problem
                    problem = merge(pc + 1, regs, stack) or problem
                    break
                elif kind == _K_KFUNC:
                    self._invalidate_args(regs, stack, ())
                    regs[0] = _Unk(f"return value of kfunc #{imm}", _MEM_LOAD.deref, None)
                    regs[1] = regs[2] = regs[3] = regs[4] = regs[5] = _CLOBBER
                elif kind == _K_LDABS:
                    regs[0] = _PKT_LOAD
                    regs[1] = regs[2] = regs[3] = regs[4] = regs[5] = _CLOBBER
                    implicit_zero = True
                else:
                    problem = f"unsupported instruction at index {pc}"
                    break
                pc += 1
                if leader[pc]:
                    problem = merge(pc, regs, stack) or problem
                    break
            ctx.budget -= steps
            if ctx.budget < 0:
                raise _BudgetExhausted
        if problem is not None:
            ret = _join_opt(_Top(problem), ret)
        return _Func(ret, exits, implicit_zero)

    @staticmethod
    def _load(addr: _Value, off: int, size: int, sx: bool, stack: _Stack) -> _Value:
        ta = type(addr)
        if ta is _SP:
            base = addr.off  # type: ignore[union-attr]
            if base is None:
                return _STACK_LOAD
            a = base + off
            ent = stack.get(a)
            shift = 0
            if ent is None:
                a8 = a & ~7
                ent = stack.get(a8)
                if ent is None or a + size > a8 + ent[0]:
                    return _STACK_LOAD
                shift = (a - a8) * 8
            elif ent[0] < size:
                return _STACK_LOAD
            v = ent[1]
            if type(v) is frozenset:
                if size == 8:
                    return v
                bits = size * 8
                m = (1 << bits) - 1
                if sx:
                    return frozenset((_sext(x >> shift, bits) & _M64) for x in v)
                return frozenset((x >> shift) & m for x in v)
            if size == 8 and shift == 0:
                return v
            if type(v) is _Unk:
                return _Unk(v.reason, None, None)
            return _STACK_LOAD
        if ta is _Unk:
            d = addr.deref  # type: ignore[union-attr]
            if d is None:
                return _MEM_LOAD
            if d == _CTX_DEREF:
                return _Unk(d, "value loaded from packet", None)
            return _Unk(d, "value loaded from memory", None)
        return _MEM_LOAD

    @staticmethod
    def _store(base: int | None, off: int, size: int, v: _Value, stack: _Stack) -> None:
        if base is None:
            stack.clear()
            return
        a = base + off
        ent = stack.get(a)
        if ent is None or ent[0] != 8 or size != 8:
            end = a + size
            for k in range(a - 7, end):
                e = stack.get(k)
                if e is not None and k + e[0] > a:
                    del stack[k]
        if size < 8:
            if type(v) is frozenset:
                m = (1 << (8 * size)) - 1
                v = frozenset(x & m for x in v)
            elif type(v) is _Unk:
                v = _Unk(v.reason, None, None)
            else:
                v = _STACK_LOAD
        stack[a] = (size, v)

    def _atomic(
        self, op: int, dst: int, src: int, off: int, size: int,
        regs: list[_Value], stack: _Stack,
    ) -> None:
        if op == I.BPF_LOAD_ACQ:
            regs[dst] = self._load(regs[src], off, size, False, stack)
            return
        addr = regs[dst]
        if op == I.BPF_STORE_REL:
            if type(addr) is _SP:
                self._store(addr.off, off, size, regs[src], stack)
            elif type(addr) is _Top:
                stack.clear()
            return
        if type(addr) is _SP:
            base = addr.off
            if base is None:
                stack.clear()
            else:
                a = base + off
                for k in range(a - 7, a + size):
                    e = stack.get(k)
                    if e is not None and k + e[0] > a:
                        del stack[k]
        elif type(addr) is _Top:
            stack.clear()
        fetched = _Unk("value fetched by an atomic operation", None, None)
        if op == I.BPF_CMPXCHG:
            regs[0] = fetched
        elif op & I.BPF_FETCH:
            regs[src] = fetched

    def _invalidate_args(
        self, regs: list[_Value], stack: _Stack, readonly: tuple[int, ...]
    ) -> None:
        """A helper may write through a stack pointer argument [ptr, frame top)."""
        if not stack:
            return
        for r in (1, 2, 3, 4, 5):
            v = regs[r]
            tv = type(v)
            if tv is _Top:
                stack.clear()
                return
            if tv is _SP and r not in readonly:
                low = v.off  # type: ignore[union-attr]
                if low is None or self.prep.has_callbacks:
                    stack.clear()
                    return
                for k in [k for k, (sz, _) in stack.items() if k + sz > low]:
                    del stack[k]

    def _helper(
        self, pc: int, imm: int, tail: bool, regs: list[_Value], stack: _Stack, is_main: bool
    ) -> _Value | None:
        ctx = self.ctx
        name = ctx.helper_name(imm)
        extra: _Value | None = None
        if tail or imm == I.BPF_FUNC_TAIL_CALL or name == "bpf_tail_call":
            r2 = regs[2]
            r3 = regs[3]
            map_id = r2.map_id if type(r2) is _Unk else None
            idx = tuple(sorted({x & _M32 for x in r3})) if type(r3) is frozenset else None
            site = _Site(pc, map_id, idx, is_main)
            self.sites.append(site)
            if not is_main:
                extra = ctx.tail_value(site)
            ret: _Value = _FAILED_TAIL
        else:
            label = name or f"#{imm}"
            short = label[4:] if label.startswith("bpf_") else label
            if short in _REDIRECTS:
                ret = _REDIRECT_RET
            elif short in _LOOKUPS and type(regs[1]) is _Unk and regs[1].map_id is not None:
                mid = regs[1].map_id
                ret = _Unk(f"return value of helper {label}", f"value loaded from map {mid}", None)
            else:
                ret = _Unk(f"return value of helper {label}", "value loaded from memory", None)
            self._invalidate_args(regs, stack, _READONLY_PTR_ARGS.get(short, ()))
        regs[0] = ret
        regs[1] = regs[2] = regs[3] = regs[4] = regs[5] = _CLOBBER
        return extra


def _args_may_point_to_stack(regs: list[_Value]) -> bool:
    for r in (1, 2, 3, 4, 5):
        t = type(regs[r])
        if t is _SP or t is _Top:
            return True
    return False


_Key = int | None


class _Ctx:
    """State of one analyse() call: memo tables and the shared step budget."""

    def __init__(self, source: CodeSource, budget: int, root: ProgramCode) -> None:
        self.source = source
        self.budget = budget
        self.start_budget = budget
        self.root = root
        self.root_key: _Key = root.prog_id
        self.helpers: dict[int, str | None] = {}
        self.arrays: dict[int, Mapping[int, int] | None] = {}
        self.codes: dict[int, ProgramCode | None] = {}
        self.locals: dict[_Key, _Local] = {}
        self.active: set[_Key] = set()
        self.closures: dict[_Key, tuple[_Value | None, frozenset[int]]] = {}
        self.built: dict[_Key, Analysis] = {}

    def helper_name(self, imm: int) -> str | None:
        try:
            return self.helpers[imm]
        except KeyError:
            name = self.helpers[imm] = self.source.helper_name(imm)
            return name

    def prog_array(self, map_id: int) -> Mapping[int, int] | None:
        if map_id not in self.arrays:
            arr = self.source.prog_array(map_id)
            self.arrays[map_id] = dict(arr) if arr is not None else None
        return self.arrays[map_id]

    def code(self, key: _Key) -> ProgramCode | None:
        if key == self.root_key:
            return self.root
        assert key is not None
        if key not in self.codes:
            self.codes[key] = self.source.program(key)
        return self.codes[key]

    def local(self, key: _Key) -> _Local | None:
        """Local analysis of one program; None while it is being computed."""
        loc = self.locals.get(key)
        if loc is not None:
            return loc
        if key in self.active:
            return None
        code = self.code(key)
        if code is None:
            loc = _Local(_Unk(f"tail-call target prog {key} unreadable", None, None), {}, [])
        else:
            self.active.add(key)
            try:
                loc = _ProgAnalyser(_Prepared(code), self).run()
            finally:
                self.active.discard(key)
        self.locals[key] = loc
        return loc

    def resolve(self, site: _Site) -> tuple[tuple[int, ...], str | None]:
        """Target prog ids of a tail-call site, and a problem that makes it unknown."""
        if site.map_id is None:
            return (), f"tail call at insn {site.pc} through an unknown map"
        arr = self.prog_array(site.map_id)
        if arr is None:
            return (), f"prog array {site.map_id} unreadable"
        if site.indexes is None:
            return tuple(arr[k] for k in sorted(arr)), None
        return tuple(arr[k] for k in site.indexes if k in arr), None

    def tail_value(self, site: _Site) -> _Value | None:
        """What a tail call from a subprogram returns to the subprogram's caller."""
        targets, problem = self.resolve(site)
        v: _Value | None = _Unk(problem, None, None) if problem else None
        for t in targets:
            v = _join_opt(v, self.closure(t)[0])
        return v

    def closure(self, key: _Key) -> tuple[_Value | None, frozenset[int]]:
        """Return value of a program including its tail-call targets, and the
        prog arrays involved (breadth first, at most MAX_TAIL_CALL_CNT deep)."""
        memo = self.closures.get(key)
        if memo is not None:
            return memo
        dist: dict[_Key, int] = {key: 0}
        order: list[_Key] = [key]
        value: _Value | None = None
        arrays: set[int] = set()
        tainted = False
        i = 0
        while i < len(order):
            node = order[i]
            i += 1
            loc = self.local(node)
            if loc is None:
                tainted = True
                value = _union(value, _Top("tail-call cycle through a subprogram"))
                continue
            value = _union(value, loc.value)
            for site in loc.sites:
                if site.map_id is not None:
                    arrays.add(site.map_id)
                if not site.main:
                    continue
                targets, problem = self.resolve(site)
                if problem is not None:
                    value = _union(value, _Unk(problem, None, None))
                if dist[node] >= MAX_TAIL_CALL_CNT:
                    continue
                for t in targets:
                    if t not in dist:
                        dist[t] = dist[node] + 1
                        order.append(t)
        result = (value, frozenset(arrays))
        if not tainted:
            self.closures[key] = result
        return result

    def build(self, key: _Key, path: frozenset[_Key]) -> Analysis:
        done = self.built.get(key)
        if done is not None:
            return done
        loc = self.local(key)
        assert loc is not None
        value, arrays = self.closure(key)
        possible = _project(value)
        if possible is None:
            assert value is not None
            reason: str | None = _reason(value)
        elif value is None:
            reason = "no exit is reachable"
        else:
            reason = self._depends(arrays)
        inner = path | {key}
        calls: list[TailCall] = []
        for site in loc.sites:
            targets, _problem = self.resolve(site)
            analyses: list[Analysis | None] = []
            for t in targets:
                if t in inner or len(inner) > MAX_TAIL_CALL_CNT or self.code(t) is None:
                    analyses.append(None)
                else:
                    analyses.append(self.build(t, inner))
            idx = site.indexes
            calls.append(
                TailCall(
                    pc=site.pc,
                    map_id=site.map_id,
                    index=idx[0] if idx is not None and len(idx) == 1 else None,
                    targets=targets,
                    analyses=tuple(analyses),
                    indexes=idx,
                    in_subprogram=not site.main,
                )
            )
        res = Analysis(
            possible=possible,
            reason=reason,
            exits=MappingProxyType({pc: _project(v) for pc, v in sorted(loc.exits.items())}),
            tail_calls=tuple(calls),
            prog_arrays=tuple(sorted(arrays)),
            steps=self.start_budget - self.budget,
        )
        self.built[key] = res
        return res

    def _depends(self, arrays: Iterable[int]) -> str | None:
        parts = []
        for mid in sorted(arrays):
            arr = self.prog_array(mid)
            n = len(arr) if arr is not None else 0
            parts.append(f"prog array {mid} ({n} slot{'s' if n != 1 else ''})")
        if not parts:
            return None
        return "tail calls via " + ", ".join(parts)


def analyse(code: ProgramCode, source: CodeSource, *, step_budget: int = 2_000_000) -> Analysis:
    """Possible return values of ``code`` and of every program it tail-calls.

    ``step_budget`` bounds the instructions interpreted over the whole tree;
    running out gives ``possible=None`` with reason "step budget exhausted".
    The result reflects the prog arrays' contents at the time of the call.
    """
    ctx = _Ctx(source, step_budget, code)
    try:
        return ctx.build(ctx.root_key, frozenset())
    except _BudgetExhausted:
        return Analysis(
            possible=None,
            reason="step budget exhausted",
            exits=MappingProxyType({}),
            tail_calls=(),
            prog_arrays=(),
            steps=step_budget - ctx.budget,
        )


# --------------------------------------------------------------------------
# Meaning of raw values where the program is attached
# --------------------------------------------------------------------------

_ALL_WORDS = ("accept", "continue", "drop", "redirect", "stolen", "trap")
_DA_WORDS: Mapping[int, str] = MappingProxyType(
    {
        TC_ACT_OK: "accept",
        TC_ACT_SHOT: "drop",
        TC_ACT_STOLEN: "stolen",
        TC_ACT_TRAP: "trap",
        TC_ACT_REDIRECT: "redirect",
        TC_ACT_UNSPEC: "continue",
    }
)
_TCX_WORDS: Mapping[int, str] = MappingProxyType(
    {TCX_NEXT: "continue", TCX_PASS: "accept", TCX_DROP: "drop", TCX_REDIRECT: "redirect"}
)


def effective_one(value: int, mode: Mode, *, has_actions: bool = False) -> tuple[str, ...]:
    """Meaning of one raw return value; see :func:`effective`."""
    if mode == "direct-action":
        return (_DA_WORDS.get(value, "continue"),)
    if mode == "tcx":
        return (_TCX_WORDS.get(value, "continue"),)
    if mode == "classic":
        if value == 0:
            return ("continue",)
        return _ALL_WORDS if has_actions else ("accept",)
    raise ValueError(f"unknown mode {mode!r}")


def effective(
    possible: frozenset[int] | None, mode: Mode, *, has_actions: bool = False
) -> tuple[str, ...] | None:
    """What the possible raw values mean where the program is attached.

    Sorted words from "accept", "continue", "drop", "redirect", "stolen",
    "trap"; None when ``possible`` is None.

    * ``direct-action`` cls_bpf (cls_bpf_exec_opcode): OK -> accept,
      SHOT -> drop, STOLEN -> stolen, TRAP -> trap, REDIRECT -> redirect,
      UNSPEC -> continue, and every other value -> continue.
    * ``classic`` (non-direct-action) cls_bpf (cls_bpf_classify): 0 is "no
      match" -> continue; any other value is a match. With no actions a match
      ends the chain with TC_ACT_OK -> accept. With actions
      (``has_actions=True``) the actions decide, which this function does not
      model: a match then maps to every word (an action may also hand the
      packet on, e.g. one returning UNSPEC), a conservative over-approximation.
    * ``tcx`` (tcx_action_code): NEXT (-1) -> continue, PASS -> accept,
      DROP -> drop, REDIRECT -> redirect, any other value -> continue. Note
      that any value other than TCX_NEXT stops the rest of the TCX list; the
      "other" values reach the clsact filters as NEXT, which is what
      "continue" means here (the packet still reaches tc classifiers), but
      later TCX programs do not see it.
    """
    if possible is None:
        return None
    words: set[str] = set()
    for v in possible:
        words.update(effective_one(v, mode, has_actions=has_actions))
    return tuple(sorted(words))


def verdict_names(
    possible: frozenset[int] | None, mode: Literal["tc", "tcx"] = "tc"
) -> list[str]:
    """Symbolic names of raw values in ascending order, e.g. ["TC_ACT_OK",
    "TC_ACT_SHOT"]; values without a name are given as decimal numbers.
    With ``mode="tcx"`` the TCX_* names are used where they exist. An unknown
    set (None) gives []."""
    if possible is None:
        return []
    names = TCX_NAMES if mode == "tcx" else TC_ACT_NAMES
    return [names.get(v, str(v)) for v in sorted(possible)]

