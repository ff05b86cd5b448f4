"""Which registers, and whether the stack frame, a block leader's state still needs.

The interpreter joins states at every block leader. A register no path from there reads
before writing it, or a frame no path reads at all, cannot change any answer, so the
interpreter forgets it where it joins: the states it joins then differ less, and a drop
handler every check of a program jumps to (it stores a code into ``cb[]`` and
tail-calls) joins only the few registers it reads, not the whole state.

Classic backward liveness over the program's basic blocks (computed once per
program, when the interpreter first joins), conservative where it must be: a block that
falls off the end or holds an instruction the interpreter cannot run keeps everything
live; every instruction that may read memory through a pointer (loads, atomics, helper,
kfunc and bpf-to-bpf calls, LD_ABS) reads the frame, except a tail call, which hands
over only the context (kernel/bpf/core.c: the target gets r1 and a fresh frame).
bpf-to-bpf calls read r1-r5 and leave r6-r9 to the caller. The verifier computes the
same facts to prune its states (kernel/bpf/verifier.c, compute_live_registers).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tcaudit.analysis.prepare import (
    K_ALU,
    K_ATOMIC,
    K_CALL,
    K_END,
    K_EXIT,
    K_JA,
    K_JCOND,
    K_KFUNC,
    K_LDABS,
    K_LDIMM,
    K_LDX,
    K_MAYGOTO,
    K_MOV,
    K_NEG,
    K_NOP,
    K_PCALL,
    K_ST,
    K_STX,
    K_TAILCALL,
    NREGS,
    Op,
)

ALL = (1 << NREGS) - 1
_ARGS = 0b111110  # r1-r5
_CLOBBERED = 0b1000_0011_1111  # r0-r5 and r11
_FP = 1 << 10  # r10 is never forgotten

Live = tuple[tuple[int, ...], bool]
"""(registers a leader's state may forget, whether its frame slots may still be read)."""
EVERYTHING: Live = ((), True)


def leaders_live(ops: Sequence[Op], leader: Sequence[bool],
                 is_tail_call: Callable[[int], bool]) -> dict[int, Live]:
    """Every block leader's liveness; ``is_tail_call(imm)`` tells a helper call that is
    bpf_tail_call (its id is not fixed in xlated code)."""
    n = len(ops)
    starts = [pc for pc in range(n) if leader[pc]]
    index = {pc: k for k, pc in enumerate(starts)}
    gen: list[int] = []
    kill: list[int] = []
    reads_frame: list[bool] = []
    succs: list[tuple[int, ...]] = []
    unknown = len(starts)  # successor index meaning "anything may follow"
    for k, start in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else n
        g = 0
        w = 0
        frame = False
        nxt: tuple[int, ...] = ()
        pc = start
        while pc < end:
            kind, _op, dst, src, _off, imm, _kval, _wide, tgt = ops[pc]
            reads = 0
            writes = 0
            step = 1
            if kind == K_MOV:
                reads = 1 << src if src >= 0 else 0
                writes = 1 << dst
            elif kind == K_ALU:
                reads = 1 << dst | (1 << src if src >= 0 else 0)
                writes = 1 << dst
            elif kind in (K_NEG, K_END):
                reads = writes = 1 << dst
            elif kind == K_LDIMM:
                writes = 1 << dst
                step = 2
            elif kind == K_LDX:
                reads = 1 << src
                writes = 1 << dst
                frame = True
            elif kind == K_ST:
                reads = 1 << dst
            elif kind == K_STX:
                reads = 1 << dst | 1 << src
            elif kind == K_ATOMIC:
                reads = 1 | 1 << dst | 1 << src  # cmpxchg reads r0 too
                frame = True
            elif kind == K_NOP:
                pass
            elif kind in (K_CALL, K_TAILCALL, K_PCALL, K_KFUNC):
                reads = _ARGS
                writes = _CLOBBERED
                if not (kind == K_TAILCALL or (kind == K_CALL and is_tail_call(imm))):
                    frame = True
            elif kind == K_LDABS:
                reads = 1 << 6 | (1 << src if src >= 0 else 0)
                writes = _CLOBBERED
                frame = True
            elif kind == K_EXIT:
                g |= 1 & ~w
                nxt = ()
                break
            elif kind == K_JA:
                nxt = (index.get(tgt, unknown),)
                break
            elif kind in (K_JCOND, K_MAYGOTO):
                if kind == K_JCOND:
                    g |= (1 << dst | (1 << src if src >= 0 else 0)) & ~w
                nxt = (index.get(tgt, unknown), index.get(pc + 1, unknown))
                break
            else:  # invalid, or the second half of an ld_imm64 jumped into
                g = ALL
                frame = True
                nxt = ()
                break
            g |= reads & ~w
            w |= writes
            pc += step
        else:
            nxt = (index.get(pc, unknown),) if pc < n else (unknown,)
        gen.append(g)
        kill.append(w)
        reads_frame.append(frame)
        succs.append(nxt)
    live_in = [0] * (len(starts) + 1)
    frame_in = [False] * (len(starts) + 1)
    live_in[unknown] = ALL
    frame_in[unknown] = True
    changed = True
    while changed:
        changed = False
        for k in range(len(starts) - 1, -1, -1):
            out = 0
            fout = reads_frame[k]
            for s in succs[k]:
                out |= live_in[s]
                fout = fout or frame_in[s]
            li = gen[k] | (out & ~kill[k])
            if li != live_in[k] or fout != frame_in[k]:
                live_in[k] = li
                frame_in[k] = fout
                changed = True
    out_map: dict[int, Live] = {}
    for k, pc in enumerate(starts):
        li = live_in[k] | _FP
        dead = _DEAD.get(li)
        if dead is None:
            dead = _DEAD[li] = tuple(r for r in range(NREGS) if not li >> r & 1)
        out_map[pc] = (dead, frame_in[k])
    return out_map


_DEAD: dict[int, tuple[int, ...]] = {}
"""Live-register mask -> the registers it leaves out (at most 2^12 entries)."""
