"""A small concrete eBPF interpreter: the reference the property tests check
the static analysis against.

It follows kernel/bpf/core.c ___bpf_prog_run for the subset the generators
use: ALU/ALU64 (all ops incl. signed div/mod, movsx, byte swaps), JMP/JMP32,
ld_imm64 (plain and map value), LDX/ST/STX (incl. sign-extending loads) on a
byte-addressed memory of stack frames, ctx and map values, atomics, LD_ABS,
helper calls (random results; helpers with an output buffer fill
[buf, buf+len) with random bytes), bpf-to-bpf calls (own stack frame, r6-r9
preserved), tail calls through prog arrays (at most 33), BPF_ST|BPF_NOSPEC
(a no-op speculation barrier) and exit.

There are 12 registers: r0-r10 and the kernel's scratch register r11
(BPF_REG_AX, used by verifier rewrites and JIT constant blinding), which
behaves as an ordinary register except that it is not preserved across
calls: it holds a random value after a helper call, a bpf-to-bpf call, a
failed tail call or LD_ABS/LD_IND, and at the entry of every function.
Unknown inputs (initial registers, stack bytes, ctx, helper results) come
from a random.Random, so one program can be run on many inputs.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tcaudit.analysis import insns as I
from tcaudit.analysis.insns import Insn

M64 = (1 << 64) - 1
M32 = 0xFFFFFFFF
STACK_SIZE = 512
STACK_BASE = 0x7F00_0000_0000
FRAME_STRIDE = 0x1_0000
CTX_BASE = 0x6000_0000_0000
CTX_SIZE = 256
MAPVAL_BASE = 0x5000_0000_0000
MAPVAL_SIZE = 0x1000
PKT_SIZE = 64
MAX_TAIL_CALLS = 33
NREGS = 12  # r0-r10 and r11 (BPF_REG_AX)
AX = 11
BPF_NOSPEC = 0xC0  # BPF_ST mode of the speculation barrier (code 0xc2)
MAX_BUF = 256
# Helpers with an output buffer: id -> (buffer register, length register).
OUT_BUFFERS: Mapping[int, tuple[int, int]] = {
    20: (2, 3),  # bpf_skb_get_tunnel_key(skb, key, size, flags)
    26: (3, 4),  # bpf_skb_load_bytes(skb, off, to, len)
    68: (3, 4),  # bpf_skb_load_bytes_relative(skb, off, to, len, start_header)
    113: (1, 2),  # bpf_probe_read_kernel(dst, size, unsafe_ptr)
}


class Fault(Exception):
    """The program did something the generators never should (bad address...)."""


def s64(x: int) -> int:
    x &= M64
    return x - (1 << 64) if x >> 63 else x


def s32(x: int) -> int:
    x &= M32
    return x - (1 << 32) if x >> 31 else x


def sext(x: int, bits: int) -> int:
    x &= (1 << bits) - 1
    return x - (1 << bits) if x >> (bits - 1) else x


def bswap(x: int, bits: int) -> int:
    n = bits // 8
    return int.from_bytes((x & ((1 << bits) - 1)).to_bytes(n, "little"), "big")


def alu(op: int, wide: bool, off: int, x: int, y: int) -> int:
    """One ALU op with the kernel's semantics (div by 0 -> 0, mod by 0 -> dst)."""
    bits = 64 if wide else 32
    m = (1 << bits) - 1
    x &= m
    y &= m

    def sg(v: int) -> int:
        return sext(v, bits)

    if op == I.BPF_ADD:
        return (x + y) & m
    if op == I.BPF_SUB:
        return (x - y) & m
    if op == I.BPF_MUL:
        return (x * y) & m
    if op == I.BPF_OR:
        return x | y
    if op == I.BPF_AND:
        return x & y
    if op == I.BPF_XOR:
        return x ^ y
    if op == I.BPF_LSH:
        return (x << (y & (bits - 1))) & m
    if op == I.BPF_RSH:
        return x >> (y & (bits - 1))
    if op == I.BPF_ARSH:
        return (sg(x) >> (y & (bits - 1))) & m
    if op == I.BPF_MOV:
        return y
    if op == I.BPF_DIV:
        if y == 0:
            return 0
        if off == 1:
            a, b = sg(x), sg(y)
            q = abs(a) // abs(b)
            return (-q if (a < 0) != (b < 0) else q) & m
        return x // y
    if op == I.BPF_MOD:
        if y == 0:
            return x
        if off == 1:
            a, b = sg(x), sg(y)
            r = abs(a) % abs(b)
            return (-r if a < 0 else r) & m
        return x % y
    raise Fault(f"bad alu op {op:#x}")


def cond(op: int, wide: bool, x: int, y: int) -> bool:
    bits = 64 if wide else 32
    m = (1 << bits) - 1
    x &= m
    y &= m
    sx, sy = sext(x, bits), sext(y, bits)
    table = {
        I.BPF_JEQ: x == y,
        I.BPF_JNE: x != y,
        I.BPF_JGT: x > y,
        I.BPF_JGE: x >= y,
        I.BPF_JLT: x < y,
        I.BPF_JLE: x <= y,
        I.BPF_JSET: (x & y) != 0,
        I.BPF_JSGT: sx > sy,
        I.BPF_JSGE: sx >= sy,
        I.BPF_JSLT: sx < sy,
        I.BPF_JSLE: sx <= sy,
    }
    if op not in table:
        raise Fault(f"bad jump op {op:#x}")
    return table[op]


@dataclass
class Run:
    """Result of one concrete run."""

    retval: int  # low 32 bits of r0, signed
    exits: list[tuple[int, int, int]] = field(default_factory=list)  # (prog, pc, r0 s32)
    steps: int = 0


class Machine:
    """Runs a tree of programs: ``programs[0]`` is the root."""

    def __init__(
        self,
        programs: Mapping[int, Sequence[Insn]],
        arrays: Mapping[int, Mapping[int, int]],
        rng: random.Random,
        *,
        func_starts: Mapping[int, Sequence[int]] | None = None,
        max_steps: int = 200_000,
    ) -> None:
        self.programs = programs
        self.arrays = arrays
        self.rng = rng
        self.func_starts = func_starts or {}
        self.max_steps = max_steps
        self.mem: dict[int, bytearray] = {}
        self.ctx = bytearray(rng.getrandbits(8) for _ in range(CTX_SIZE))
        self.pkt = bytearray(rng.getrandbits(8) for _ in range(rng.randrange(PKT_SIZE)))
        self.mapvals: dict[int, bytearray] = {}
        self.run_info = Run(0)
        self.tail_calls = 0

    # ---- memory ------------------------------------------------------
    def _region(self, addr: int, size: int) -> tuple[bytearray, int]:
        if addr >= CTX_BASE and addr + size <= CTX_BASE + CTX_SIZE:
            return self.ctx, addr - CTX_BASE
        if STACK_BASE <= addr < STACK_BASE + 64 * FRAME_STRIDE:
            frame = (addr - STACK_BASE) // FRAME_STRIDE
            base = STACK_BASE + frame * FRAME_STRIDE
            buf = self.mem.get(frame)
            if buf is None:
                raise Fault(f"no stack frame {frame}")
            o = addr - base
            if o < 0 or o + size > STACK_SIZE:
                raise Fault(f"stack access out of bounds {o}")
            return buf, o
        if MAPVAL_BASE <= addr < MAPVAL_BASE + 256 * MAPVAL_SIZE:
            mid = (addr - MAPVAL_BASE) // MAPVAL_SIZE
            buf = self.mapvals.setdefault(
                mid, bytearray(self.rng.getrandbits(8) for _ in range(MAPVAL_SIZE))
            )
            o = addr - MAPVAL_BASE - mid * MAPVAL_SIZE
            if o + size > MAPVAL_SIZE:
                raise Fault("map value access out of bounds")
            return buf, o
        raise Fault(f"bad address {addr:#x}")

    def load(self, addr: int, size: int) -> int:
        buf, o = self._region(addr, size)
        return int.from_bytes(buf[o : o + size], "little")

    def store(self, addr: int, size: int, value: int) -> None:
        buf, o = self._region(addr, size)
        buf[o : o + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")

    def new_frame(self, depth: int) -> int:
        self.mem[depth] = bytearray(self.rng.getrandbits(8) for _ in range(STACK_SIZE))
        return STACK_BASE + depth * FRAME_STRIDE + STACK_SIZE

    # ---- helpers -----------------------------------------------------
    def helper(self, imm: int, regs: list[int]) -> int:
        rng = self.rng
        if imm in (23, 152, 155):  # bpf_redirect*: REDIRECT, or SHOT on bad flags
            return rng.choice((2, 7))
        if imm == 7:  # bpf_get_prandom_u32
            return rng.getrandbits(32)
        if imm in OUT_BUFFERS:  # fills [buf, buf + len) with random bytes
            breg, lreg = OUT_BUFFERS[imm]
            ln = regs[lreg] & M32
            if ln > MAX_BUF:
                raise Fault(f"helper {imm} len too big")
            for k in range(ln):
                self.store(regs[breg] + k, 1, rng.getrandbits(8))
            return rng.choice((0, (-14) & M64, (-22) & M64))
        if imm == 1:  # bpf_map_lookup_elem: NULL or a map value
            if rng.random() < 0.3:
                return 0
            return MAPVAL_BASE + (regs[1] & 0xFF) * MAPVAL_SIZE
        return rng.getrandbits(64)

    # ---- execution ---------------------------------------------------
    def _random_regs(self) -> list[int]:
        return [self.rng.getrandbits(64) for _ in range(NREGS)]

    def _clobber(self, regs: list[int]) -> None:
        """What a call leaves in r1-r5 and r11 (r0 is set by the caller)."""
        for k in (1, 2, 3, 4, 5, AX):
            regs[k] = self.rng.getrandbits(64)

    def run(self, init: Sequence[int] | None = None) -> Run:
        """Run the root program; ``init`` gives r0, r2-r9 and optionally r11
        (r1 = ctx, r10 = frame; a missing r11 is random)."""
        regs = self._random_regs() if init is None else list(init)
        while len(regs) < NREGS:
            regs.append(self.rng.getrandbits(64))
        regs[1] = CTX_BASE
        regs[10] = self.new_frame(0)
        self.run_info.retval = s32(self._exec(0, 0, regs, 0))
        return self.run_info

    def _tail(self, prog_key: int, depth: int) -> int:
        """A successful tail call: the target runs in the caller's frame slot and
        its return value goes where the calling function's would have gone (the
        x86 JIT's behaviour, also from subprograms)."""
        regs = self._random_regs()
        regs[1] = CTX_BASE
        regs[10] = self.new_frame(depth)
        return self._exec(prog_key, 0, regs, depth)

    def _call_target(self, prog_key: int, pc: int, insn: Insn) -> int:
        starts = set(self.func_starts.get(prog_key, ()))
        by_off = pc + insn.off + 1
        by_imm = pc + insn.imm + 1
        if insn.off != 0 and (by_off in starts or not starts):
            return by_off
        return by_imm

    def _exec(self, prog_key: int, pc: int, regs: list[int], depth: int) -> int:
        code = self.programs[prog_key]
        info = self.run_info
        while True:
            info.steps += 1
            if info.steps > self.max_steps:
                raise Fault("step limit")
            if not 0 <= pc < len(code):
                raise Fault(f"pc out of range {pc}")
            insn = code[pc]
            c = insn.code
            cls = c & 7
            d, s, off, imm = insn.dst, insn.src, insn.off, insn.imm
            if cls in (I.BPF_ALU, I.BPF_ALU64):
                wide = cls == I.BPF_ALU64
                op = c & 0xF0
                m = M64 if wide else M32
                if op == I.BPF_NEG:
                    regs[d] = (-regs[d]) & m
                elif op == I.BPF_END:
                    if wide or c & I.BPF_X:
                        regs[d] = bswap(regs[d], imm)
                    else:
                        regs[d] = regs[d] & ((1 << imm) - 1)
                elif op == I.BPF_MOV and c & I.BPF_X and off in (8, 16, 32):
                    regs[d] = sext(regs[s], off) & m
                else:
                    src = regs[s] if c & I.BPF_X else imm & M64
                    regs[d] = alu(op, wide, off, regs[d], src)
                pc += 1
            elif cls in (I.BPF_JMP, I.BPF_JMP32):
                wide = cls == I.BPF_JMP
                op = c & 0xF0
                if op == I.BPF_EXIT:
                    info.exits.append((prog_key, pc, s32(regs[0])))
                    return regs[0]
                if op == I.BPF_JA:
                    pc += (off if wide else imm) + 1
                elif op == I.BPF_JCOND:
                    pc += (off + 1) if self.rng.random() < 0.5 else 1
                elif op == I.BPF_CALL:
                    if s == I.BPF_PSEUDO_CALL:
                        target = self._call_target(prog_key, pc, insn)
                        callee = self._random_regs()
                        callee[1:6] = regs[1:6]
                        callee[10] = self.new_frame(depth + 1)
                        regs[0] = self._exec(prog_key, target, callee, depth + 1)
                        self._clobber(regs)
                    elif s == 0 and imm == I.BPF_FUNC_TAIL_CALL:
                        arr = self.arrays.get(regs[2] & M32 if regs[2] < 1 << 32 else -1)
                        idx = regs[3] & M32
                        if (
                            arr is not None
                            and idx in arr
                            and self.tail_calls < MAX_TAIL_CALLS
                        ):
                            self.tail_calls += 1
                            return self._tail(arr[idx], depth)
                        regs[0] = (-2) & M64
                        self._clobber(regs)
                    else:
                        regs[0] = self.helper(imm, regs) & M64
                        self._clobber(regs)
                    pc += 1
                else:
                    y = regs[s] if c & I.BPF_X else imm & M64
                    pc += (off + 1) if cond(op, wide, regs[d], y) else 1
            elif cls == I.BPF_LD:
                mode = c & 0xE0
                if mode == I.BPF_IMM:
                    if s == 0:
                        regs[d] = I.ldimm64_value(insn, code[pc + 1])
                    elif s == I.BPF_PSEUDO_MAP_FD:
                        regs[d] = imm & M32  # a map "pointer": its id
                    elif s == I.BPF_PSEUDO_MAP_VALUE:
                        regs[d] = MAPVAL_BASE + (imm & 0xFF) * MAPVAL_SIZE + code[pc + 1].imm
                    else:
                        raise Fault("unsupported ld_imm64")
                    pc += 2
                else:
                    size = I.SIZE_BYTES[c & 0x18]
                    at = imm if mode == I.BPF_ABS else regs[s] + imm
                    at &= M32
                    self._clobber(regs)
                    if at + size > len(self.pkt):
                        info.exits.append((prog_key, -1, 0))
                        return 0
                    regs[0] = int.from_bytes(self.pkt[at : at + size], "big")
                    pc += 1
            elif cls == I.BPF_LDX:
                size = I.SIZE_BYTES[c & 0x18]
                v = self.load(regs[s] + off, size)
                if c & 0xE0 == I.BPF_MEMSX:
                    v = sext(v, 8 * size) & M64
                regs[d] = v
                pc += 1
            elif cls == I.BPF_ST:
                mode = c & 0xE0
                if mode == BPF_NOSPEC:
                    pass  # speculation barrier: no effect on the architectural state
                elif mode == I.BPF_MEM:
                    self.store(regs[d] + off, I.SIZE_BYTES[c & 0x18], imm & M64)
                else:
                    raise Fault("bad st mode")
                pc += 1
            elif cls == I.BPF_STX:
                size = I.SIZE_BYTES[c & 0x18]
                mode = c & 0xE0
                if mode == I.BPF_MEM:
                    self.store(regs[d] + off, size, regs[s])
                elif mode == I.BPF_ATOMIC:
                    self._atomic(imm, size, regs, d, s, off)
                else:
                    raise Fault("bad stx mode")
                pc += 1
            else:
                raise Fault(f"bad class {cls}")

    def _atomic(self, imm: int, size: int, regs: list[int], d: int, s: int, off: int) -> None:
        m = (1 << (8 * size)) - 1
        if imm == I.BPF_LOAD_ACQ:
            regs[d] = self.load(regs[s] + off, size)
            return
        if imm == I.BPF_STORE_REL:
            self.store(regs[d] + off, size, regs[s])
            return
        addr = regs[d] + off
        old = self.load(addr, size)
        if imm == I.BPF_XCHG:
            self.store(addr, size, regs[s])
            regs[s] = old
            return
        if imm == I.BPF_CMPXCHG:
            if old == regs[0] & m:
                self.store(addr, size, regs[s])
            regs[0] = old
            return
        op = imm & ~I.BPF_FETCH
        new = alu(op, size == 8, 0, old, regs[s]) & m
        self.store(addr, size, new)
        if imm & I.BPF_FETCH:
            regs[s] = old
