"""Whether a program's answer can depend on the immediates that differ between copies.

A CNI compiles one datapath per endpoint with that endpoint's constants (its id, its
addresses, its ifindex) as immediates or in a read-only map, so a node holds hundreds of
programs of one *shape* that differ only there (``shapes``). The engine analyses one
copy with those immediates unknown (``Prepared(..., unknown=...)``), which is sound for
every copy by construction. This module decides whether that answer is also the one a
copy's own analysis would give: a forward pass over the code that follows the *taint*
of the varying constants through registers, stack slots and subprogram calls, and says
"depends" when a tainted value could reach anything the engine's answer is made of:

* r0 at an exit (of any function: each one's values are reported), a
  ``bpf_tail_call`` index or map, a ``bpf_throw`` cookie;
* a store into the context outside ``cb[]``, or through a pointer that may lead into a
  caller's frame; a load or store at a tainted address (a tainted ``cb[]`` byte is
  followed: loads from it are tainted, and so is the tail-call target's entry state,
  see ``shapes``);
* a helper length the engine reads, a program with callbacks;
* a conditional jump, except ``==``/``!=`` between a tainted value and an *opaque* one
  (a full-width load from packet or map memory that no test has narrowed, at the jump's
  width): whatever the constant, both sides of such a jump are feasible and the engine
  learns nothing but the constant itself (the opaque value and every register linked
  to it become tainted); and except a jump that compares an *exact* varying value with
  an immediate and that the engine decides for the set of every copy's value (the
  operand :func:`prepare.operand_hull` gives the shared analysis): each copy's own
  analysis decides it the same way, and never follows the other side, so neither does
  this pass (``decisions``). An exact value is a mov or store immediate that
  differs between copies, copied between registers, spilled and filled (8 bytes, or
  4 when every value fits) or through a ``cb[]`` word (also into a tail-call target:
  the entry's exact words travel with its tainted bytes).

The frame is followed as the engine keeps it (``frames``): a slot last written whole at
a known offset on every path (``taint.W``) is known to the engine, so a fill of it gives
what was stored there, a spilled frame pointer with its offset included
(``taint.FPOFF``: a helper handed it writes only where it points); fewer than 8 bytes
of the frame are always a number. Only other loads may give back a frame pointer spilled
anywhere (the engine's "escaped" mode, ``anyx``).

Anything this pass does not understand is "depends": the caller then analyses the copy
on its own, so the worst case is the old speed, never a different answer.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping

from tcaudit.analysis import assembly as AS
from tcaudit.analysis import helpers as H
from tcaudit.analysis import insns as I
from tcaudit.analysis.decisions import Depends, jump
from tcaudit.analysis.domain import Ptr, Value
from tcaudit.analysis.exact import ExactValues
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
    K_SLOT2,
    K_ST,
    K_STX,
    K_TAILCALL,
    NREGS,
    Prepared,
    block_constant,
    block_map,
)
from tcaudit.analysis.scalar import M32, M64
from tcaudit.analysis.taint import (
    B8,
    B16,
    BIG_ABOVE,
    EXACT_MASK,
    EXACT_SHIFT,
    FP_BIAS,
    FPOFF,
    KEEP,
    MAPREF,
    N8,
    N16,
    N32,
    N64,
    OPAQUE,
    PLAIN,
    PTRS,
    A,
    C,
    Carried,
    Exact,
    F,
    Key,
    P,
    R,
    Regs,
    Slots,
    State,
    T,
    W,
    clobber,
    fits_in,
    forget_exact,
    forget_exact_slots,
    join,
    to_callee,
)

MAX_STATES = 200_000


class _Pass(ExactValues):
    def __init__(
        self,
        prep: Prepared,
        varying: frozenset[int],
        abstract_maps: Mapping[int, frozenset[int]],
        known_rodata: Callable[[int], bool],
        helper_name: Callable[[int], str | None],
        entry_cb: frozenset[int] = frozenset(),
        cb_range: tuple[int, int] | None = None,
        values: Mapping[int, frozenset[int]] | None = None,
        hulls: Mapping[int, Value] | None = None,
        entry_exact: frozenset[Exact] = frozenset(),
        seen_cb: Mapping[int, tuple[int, int | None]] | None = None,
        map_value: Callable[[int, int, int], Value | None] | None = None,
    ) -> None:
        self.map_value = map_value
        self.values = values or {}
        self.entry_cb = frozenset(entry_cb)
        # exact varying values: id (negative, kept in ``org``) -> every copy's value;
        # -(pc + 1) for the immediate at pc, further ids for the entry's exact words
        self.exact: dict[int, Value] = {-(pc + 1): v for pc, v in (hulls or {}).items()}
        # cb[] words stored with a tainted value anywhere in the program (flow-
        # insensitive): offset -> (size, exact id, or None when not one exact value)
        # (``seen_cb``: what an earlier run found, so a load that ran before a later store
        # made its word inexact sees that store now; ``stale``: a word a load took for
        # exact stopped being exact in this run, which then runs again)
        self.cbx: dict[int, tuple[int, int | None]] = dict(seen_cb or {})
        self.cbx_out: dict[int | None, set[Exact]] = {}  # per prog array (taint.Carried)
        self.used: set[int] = set()
        self.stale = False
        for k, (off, size, v) in enumerate(sorted(entry_exact, key=lambda e: e[:2])):
            eid = -(prep.n + 2 + k)
            self.exact[eid] = v
            self._note_cb(off, size, eid)
        self.derived: dict[tuple[int, int], int | None] = {}  # (exact id, pc) -> id
        self.fields: dict[tuple[int, int, int], int | None] = {}  # (map, offset, size)
        self.next_id = -(prep.n + 2 + len(entry_exact))
        self.cbt: set[int] = set()  # cb[] bytes holding varying values, here
        self.cb_out: dict[int | None, set[int]] = {}  # ... at its tail calls, per array
        self.cb_range = cb_range
        self.prep = prep
        self.varying = varying
        self.abstract_maps = abstract_maps
        self.varying_bytes = frozenset().union(*abstract_maps.values())
        self.known_rodata = known_rodata
        self.helper_name = helper_name
        self.memo: dict[Key, tuple[int, frozenset[int]]] = {}
        self.active: set[Key] = set()
        self.work = 0

    def _state(self, fl: list[int], org: list[int | None], fo: list[int | None],
               slots: Slots, anyx: int) -> State:
        return (tuple(fl), tuple(org), tuple(fo), slots, anyx, frozenset(self.cbt))

    def function(self, start: int, args: Regs, caller_tainted: bool, is_main: bool,
                 cbt: frozenset[int]) -> tuple[int, frozenset[int]]:
        """Flags of r0 at the function's exits (0 when it never returns) and the cb[]
        bytes holding varying values there."""
        key = (start, args, caller_tainted, cbt)
        done = self.memo.get(key)
        if done is not None:
            return done
        if key in self.active:
            raise Depends("recursive bpf-to-bpf call")
        self.active.add(key)
        try:
            ret = self._run(start, args, caller_tainted, is_main, cbt)
        finally:
            self.active.discard(key)
        self.memo[key] = ret
        return ret

    def _run(self, start: int, args: Regs, caller_tainted: bool, is_main: bool,
             cbt: frozenset[int]) -> tuple[int, frozenset[int]]:
        prep = self.prep
        ops = prep.ops
        leader = prep.leader
        n = prep.n
        regs0 = [PLAIN] * NREGS
        if is_main:
            regs0[1] = C | PLAIN
        else:
            for r in range(1, 6):
                regs0[r] = args[r - 1]
        regs0[10] = F | PLAIN
        offs0: list[int | None] = [None] * NREGS
        offs0[10] = 0
        states: dict[int, State] = {
            start: (tuple(regs0), (None,) * NREGS, tuple(offs0), {}, 0, cbt)
        }
        cb_exit: set[int] = set()
        queue = [start]
        queued = {start}
        ret = 0

        def merge(tpc: int, st: State) -> None:
            if not 0 <= tpc < n or ops[tpc][0] == K_SLOT2:
                raise Depends(f"jump to invalid instruction index {tpc}")
            old = states.get(tpc)
            if old is None:
                new = st
            else:
                new = join(old, st)
                if new == old:
                    return
            states[tpc] = new
            if tpc not in queued:
                queued.add(tpc)
                heapq.heappush(queue, tpc)

        while queue:
            # lowest index first, as the engine does: forward code is followed once,
            # each block after every block that jumps to it
            pc = heapq.heappop(queue)
            queued.discard(pc)
            r0, o0, f0, s0, any0, c0 = states[pc]
            self.cbt = set(c0)
            fl = list(r0)
            org = list(o0)
            fo = list(f0)
            slots = dict(s0)
            anyx = any0
            free: AS.Free = {}  # values assembled from opaque loads, in this block
            while True:
                self.work += 1
                if self.work > MAX_STATES:
                    raise Depends("too much code to follow")
                if pc >= n:
                    raise Depends("execution falls off the end")
                kind, op, dst, src, off, imm, _kval, wide, tgt = ops[pc]
                var = pc in self.varying
                if free and kind not in (K_LDX, K_MOV, K_ALU, K_ST, K_STX, K_NOP):
                    free.clear()
                if kind == K_MOV:
                    if free:
                        AS.on_mov(free, dst, src, wide, off)
                    if src < 0:
                        fl[dst] = ((T | PLAIN) & ~self._fits_all(pc, 64 if wide else 32)
                                   if var else PLAIN)
                        org[dst] = -(pc + 1) if var and -(pc + 1) in self.exact else None
                    elif wide and off == 0:
                        fl[dst], org[dst], fo[dst] = fl[src], org[src], fo[src]
                    elif not wide and off == 0:  # zero-extending copy: low half kept
                        fl[dst] = (fl[src] & (T | N8 | N16 | N32 | B8 | B16)) | N64
                        o = org[src]
                        org[dst] = o if o is None or o >= 0 or self._fits(o, 4) else None
                    else:  # movsx
                        fl[dst] = (fl[src] & T) | PLAIN
                        org[dst] = None
                elif kind == K_ALU:
                    s = ((T if var else 0) if src < 0 else fl[src]) & (T | PTRS)
                    d = fl[dst]
                    fl[dst] = (d & (T | PTRS)) | s | PLAIN
                    if not (d | s) & PTRS:
                        # how wide the result can be: a mask's width, 32 bits for ALU32
                        # (zero-extended): a masked constant fits a narrower opaque load
                        top = 64 if wide else 32
                        if op == I.BPF_AND and src < 0 and not var:
                            top = min(top, (imm & (M64 if wide else M32)).bit_length())
                        fl[dst] &= ~fits_in(top)
                    o = org[dst]
                    org[dst] = None
                    if o is not None and o < 0 and src < 0 and not var and not d & PTRS:
                        org[dst] = self._derived(o, pc, op, wide, off, _kval)
                    if (d & (F | A) and src < 0 and not var and wide
                            and op in (I.BPF_ADD, I.BPF_SUB)):
                        k = imm if op == I.BPF_ADD else -imm
                        fo[dst] = None if fo[dst] is None else fo[dst] + k  # type: ignore[operator]
                    else:
                        fo[dst] = None
                    whole = AS.opaque(AS.on_alu(free, op, dst, src, imm, wide, var)
                                      ) if dst in free else None
                    if whole is not None:  # every w-bit number, like one w-bit load
                        fl[dst], org[dst] = whole, pc
                elif kind in (K_NEG, K_END):
                    fl[dst] = (fl[dst] & T) | PLAIN
                    org[dst] = None
                elif kind == K_LDX:
                    fl[dst], org[dst], fo[dst] = self._load(
                        pc, fl, fo, slots, anyx, caller_tainted, src, off, imm, op, org[src])
                    AS.on_load(free, dst, fl[dst] if op != I.BPF_MEMSX else PLAIN, imm)
                elif kind in (K_ST, K_STX):
                    v = ((T | PLAIN) if var else PLAIN) if src < 0 else fl[src]
                    if src < 0:
                        ex = -(pc + 1) if var and -(pc + 1) in self.exact else None
                    else:
                        ex = org[src] if (org[src] or 0) < 0 else None
                    anyx = self._store(pc, fl, fo, slots, anyx, dst, off, imm, v, ex,
                                       fo[src] if src >= 0 else None)
                elif kind == K_ATOMIC:
                    b = fl[dst]
                    if b & T:
                        raise Depends(f"atomic at a tainted address (insn {pc})")
                    v = fl[src]
                    got = PLAIN
                    if b & F:
                        got |= self._slot_flags(fo[dst], off, imm, slots, anyx)
                        anyx = self._store(pc, fl, fo, slots, anyx, dst, off, imm, v | got)
                        forget_exact_slots(slots)  # what the engine keeps of it: not followed
                    elif b & (C | P) and v & T:
                        raise Depends(f"tainted value stored by an atomic (insn {pc})")
                    if op & I.BPF_FETCH or op in (I.BPF_XCHG, I.BPF_CMPXCHG, I.BPF_LOAD_ACQ):
                        r = 0 if op == I.BPF_CMPXCHG else src
                        fl[r] = (got & T) | PLAIN
                        org[r] = None
                        fo[r] = None
                elif kind == K_LDIMM:
                    if src == 0:
                        fl[dst] = (T | PLAIN) & ~self._fits_all(pc, 64) if var else PLAIN
                    elif src == I.BPF_PSEUDO_MAP_VALUE:
                        mid = imm & 0xFFFFFFFF
                        if mid in self.abstract_maps:
                            fl[dst] = A | PLAIN
                            org[dst] = MAPREF + mid  # which map (for exact field loads)
                            fo[dst] = _kval.off if type(_kval) is Ptr else None
                            pc += 2
                            if pc >= n or leader[pc]:
                                merge(pc, self._state(fl, org, fo, slots, anyx))
                                break
                            continue
                        elif self.known_rodata(mid):
                            fl[dst] = R | PLAIN
                        else:
                            fl[dst] = PLAIN
                    elif src == I.BPF_PSEUDO_FUNC:
                        raise Depends("a callback function")
                    else:
                        fl[dst] = PLAIN
                    org[dst] = -(pc + 1) if var and src == 0 and -(pc + 1) in self.exact else None
                    fo[dst] = None
                    pc += 2
                    if pc >= n or leader[pc]:
                        merge(pc, self._state(fl, org, fo, slots, anyx))
                        break
                    continue
                elif kind == K_JCOND:
                    taken, falls = jump(pc, op, wide, dst, src, var, fl, org, _kval,
                                        self.exact, self.values)
                    st = self._state(fl, org, fo, slots, anyx)
                    if taken:
                        merge(tgt, st)
                    if falls:
                        merge(pc + 1, st)
                    break
                elif kind == K_JA:
                    merge(tgt, self._state(fl, org, fo, slots, anyx))
                    break
                elif kind == K_MAYGOTO:
                    st = self._state(fl, org, fo, slots, anyx)
                    merge(tgt, st)
                    merge(pc + 1, st)
                    break
                elif kind == K_EXIT:
                    if fl[0] & T:  # every function's exits are in the answer
                        raise Depends(f"a varying constant reaches r0 at the exit at insn {pc}")
                    ret |= fl[0]
                    cb_exit |= self.cbt
                    break
                elif kind in (K_CALL, K_TAILCALL):
                    name = "bpf_tail_call" if kind == K_TAILCALL else self.helper_name(imm)
                    if kind == K_TAILCALL or H.tail_call_helper(imm, name):
                        if (fl[2] | fl[3]) & T:
                            raise Depends(f"a varying constant picks a tail call (insn {pc})")
                        arr = block_map(self.prep, pc, 2)
                        self.cb_out.setdefault(arr, set()).update(self.cbt)
                        self._carry_exact(arr)
                    elif H.has_callbacks(name):
                        raise Depends("a helper with callbacks")
                    else:
                        c = H.contract(name)
                        for p_arg, ln in c.writes if c is not None else ():
                            if ln > 0 and fl[ln] & T:
                                raise Depends(f"a varying helper length (insn {pc})")
                            if fl[p_arg] & T:  # (like a store at a tainted address)
                                raise Depends(f"a helper writes at a tainted address "
                                              f"(insn {pc})")
                        if c is None:  # (the engine: Memory._invalidate_unknown)
                            ro = H.READONLY_ARGS.get(H.short_name(name) or "", ())
                            if any(fl[r] & T and fl[r] & F for r in range(1, 6)
                                   if r not in ro):
                                raise Depends(f"a helper given a tainted frame pointer "
                                              f"(insn {pc})")
                            forget_exact(fl, slots, ro)
                        else:
                            for p_arg, ln in c.writes:
                                if fl[p_arg] & F:
                                    self._forget_written(pc, slots, fo[p_arg], ln)
                    clobber(fl, org, fo)
                elif kind == K_KFUNC:
                    if fl[1] & T:
                        raise Depends(f"a varying constant reaches a kfunc (insn {pc})")
                    forget_exact(fl, slots)
                    clobber(fl, org, fo)
                elif kind == K_PCALL:
                    if anyx & F and any(fl[r] & F for r in range(1, 6)):
                        # it could load the spilled pointer and write through it
                        raise Depends(f"a subprogram given a frame a frame pointer was "
                                      f"spilled to (insn {pc})")
                    tainted_frame = bool(anyx & (T | A)) or any(
                        f & (T | A) for _s, f in slots.values())
                    cargs = tuple(to_callee(fl[r]) for r in range(1, 6))
                    got, after = self.function(tgt, cargs, tainted_frame or caller_tainted,
                                               False, frozenset(self.cbt))
                    self.cbt = set(after)
                    forget_exact(fl, slots)
                    clobber(fl, org, fo)
                    fl[0] = (got & T) | PLAIN
                elif kind == K_LDABS:
                    t = fl[src] & T if op == I.BPF_IND else 0
                    clobber(fl, org, fo)
                    fl[0] = t | OPAQUE.get(imm, PLAIN)
                    org[0] = pc
                elif kind != K_NOP:
                    raise Depends(f"unsupported instruction at insn {pc}")
                pc += 1
                if leader[pc]:
                    merge(pc, self._state(fl, org, fo, slots, anyx))
                    break
        return ret, frozenset(cb_exit)

    # -- memory -------------------------------------------------------------------------

    def _load(self, pc: int, fl: list[int], fo: list[int | None], slots: Slots, anyx: int,
              caller_tainted: bool, src: int, off: int, size: int,
              mode: int, src_org: int | None = None
              ) -> tuple[int, int | None, int | None]:
        """The loaded value's flags, origin and frame offset (a spilled frame pointer)."""
        b = fl[src]
        if b & T:
            raise Depends(f"a load at a tainted address (insn {pc})")
        got = 0
        exact = None
        if b & F:
            slot = self._slot_flags(fo[src], off, size, slots, anyx)
            # fewer than 8 bytes of the frame are a number to the engine, whatever the
            # slot holds (frames.slot_load, unknown_load), never a pointer
            got |= slot if size == 8 else slot & T
            base = fo[src]
            if (b & PTRS == F and base is not None and size in (4, 8) and not anyx & T
                    and mode != I.BPF_MEMSX):
                lo = base + off
                spill = slots.get(lo)
                if (spill is not None and spill[0] == size and spill[1] & W
                        and spill[1] >> EXACT_SHIFT
                        and not any(k != lo and k < lo + size and lo < k + sz
                                    for k, (sz, _f) in slots.items())):
                    code = spill[1] >> EXACT_SHIFT
                    if not spill[1] & FPOFF:
                        exact = -code  # a spilled exact value, filled
                    elif b & PTRS == F and size == 8 and got & PTRS == F:
                        # the spilled frame pointer, at its offset
                        return got | PLAIN, None, code - FP_BIAS
        if b & C and self.cbt and any(off <= x < off + size for x in self.cbt):
            got |= T  # cb[] bytes a varying value was stored to (here or before a tail call)
            word = self.cbx.get(off)
            if (word is not None and word[0] == size and word[1] is not None
                    and all(x in self.cbt for x in range(off, off + size))
                    and not b & (F | P | A | R) and mode != I.BPF_MEMSX):
                exact = word[1]
                self.used.add(off)
        if b & P:  # the caller's frame: what it may hold
            got |= C | R | ((T | A) if caller_tainted else 0)
        if b & A:
            at = fo[src]
            if at is None or any(at + off <= x < at + off + size for x in self.varying_bytes):
                got |= T
        if b & PTRS == A and got & T and mode != I.BPF_MEMSX:
            # a varying read-only map field: every copy's value when the engine has it
            # (the same hook gives it to the shared analysis), and zero-extended, it
            # fits in its size
            exact = None
            if (self.map_value is not None and src_org is not None and src_org >= MAPREF
                    and fo[src] is not None):
                exact = self._field(src_org - MAPREF, fo[src] + off, size)  # type: ignore[operator]
            return got | (PLAIN & ~BIG_ABOVE.get(size, 0)), exact, None
        if b & PTRS:
            cb = self.cb_range
            if (b & PTRS == C and cb is not None and mode != I.BPF_MEMSX
                    and (off + size <= cb[0] or off >= cb[1])):
                # a context field outside cb[]: the engine knows only its width
                # (memory.py), so it is opaque like a packet load
                return got | OPAQUE.get(size, PLAIN), pc, None
            return got | PLAIN, exact, None
        # packet, map value or other kernel memory: a full-width value the engine
        # knows nothing about (sign-extended ones are not zero-extended: not followed)
        if mode == I.BPF_MEMSX and size < 8:
            return got | PLAIN, None, None
        return got | OPAQUE.get(size, PLAIN), pc, None

    @staticmethod
    def _slot_flags(base: int | None, off: int, size: int, slots: Slots, anyx: int) -> int:
        """What a load from the frame may give: the flags of the slots it may read, and
        of ``anyx`` (a spilled frame pointer among them, see ``_store``)."""
        if base is None:
            got = anyx
            for _s, f in slots.values():
                got |= f
            return got & (KEEP | F)
        lo = base + off
        got = 0
        known = False
        for k, (s, f) in slots.items():
            if k < lo + size and lo < k + s:
                got |= f
                known = known or (f & W != 0 and k <= lo and lo + size <= k + s)
        # within a slot the engine knows (W): what was stored there, not a spilled
        # frame pointer from elsewhere
        got |= anyx & ~F if known else anyx
        return got & (KEEP | F)

    def _store(self, pc: int, fl: list[int], fo: list[int | None], slots: Slots, anyx: int,
               dst: int, off: int, size: int, v: int, exact: int | None = None,
               vfo: int | None = None) -> int:
        """``vfo``: the stored value's frame offset, when it is a pointer into this frame
        at a known one."""
        b = fl[dst]
        if b & T:
            raise Depends(f"a store at a tainted address (insn {pc})")
        if v & P:
            raise Depends(f"a pointer into a caller's frame stored to memory (insn {pc})")
        if v & F and b & F:
            # a pointer into this frame spilled to it: from here on any stack load may
            # give it back, at an offset not followed (the engine's "escaped" mode). The
            # verifier makes a pointer loaded from the context or a map value a scalar,
            # so a frame pointer stored anywhere else never comes back as one.
            anyx |= F
        if b & C and v & T and not b & (P | A | R):
            cb = self.cb_range
            if cb is None or (off < cb[1] and cb[0] < off + size
                              and not (cb[0] <= off and off + size <= cb[1])):
                raise Depends(f"a varying constant stored into the context (insn {pc})")
            if cb[0] <= off < cb[1]:  # (outside: a field the engine does not keep)
                self.cbt.update(range(off, off + size))  # carried into tail calls
                self._note_cb(off, size, exact if exact is not None and (
                    size == 8 or self._fits(exact, size)) else None)
        elif b & C and not b & (P | A | R):
            self.cbt.difference_update(range(off, off + size))  # overwritten
        elif b & (C | P | A | R) and v & T:
            raise Depends(f"a varying constant stored outside the stack (insn {pc})")
        if b & F:
            keep = v & (KEEP | F)
            base = fo[dst]
            if base is None or b & (P | A | R | C):
                forget_exact_slots(slots)  # it may overwrite any slot
            if base is None:
                return anyx | keep
            lo = base + off
            for k in [k for k, (s, _f) in slots.items() if k < lo + size and lo < k + s]:
                s, f = slots[k]
                if lo <= k and k + s <= lo + size:
                    del slots[k]  # wholly overwritten
                else:  # partly: the old flags stay (conservative), the value is another
                    slots[k] = (s, f & ~(EXACT_MASK | W | FPOFF))
            code = -exact if exact is not None and keep & T and (
                size == 8 or (size == 4 and self._fits(exact, 4))) else 0
            # a store at one known offset of this frame alone: the engine knows the slot
            known = 0 if b & (P | A | R | C) else W
            if code == 0 and known and size == 8 and vfo is not None and v & PTRS == F:
                known |= FPOFF
                code = FP_BIAS + vfo
            if keep or known:
                slots[lo] = (size, keep | known | code << EXACT_SHIFT)
        return anyx

    # -- jumps --------------------------------------------------------------------------

    def _forget_written(self, pc: int, slots: Slots, base: int | None, ln: int) -> None:
        """A helper at pc writes the frame from ``base`` on: spilled exact values it may
        overwrite are exact no more, and the engine knows those slots no more. Its
        length: -N bytes, or argument ``ln``'s value when a mov immediate sets it in the
        call's own block, else up to the frame top. With a length known, the slots it
        overlaps are gone, as the engine drops them (``Memory._invalidate``): what they
        held, varying or not, is read back as any number."""
        if base is None:
            forget_exact_slots(slots)
            return
        size = (-ln if ln < 0 else block_constant(self.prep, pc, ln, self.varying)
                if ln > 0 else None)
        hi = 0 if size is None else base + size
        for k, (sz, f) in list(slots.items()):
            if k < hi and base < k + sz:
                if size is not None:
                    del slots[k]
                elif f & (EXACT_MASK | W | FPOFF):
                    slots[k] = (sz, f & ~(EXACT_MASK | W | FPOFF))


def depends(
    prep: Prepared,
    varying: frozenset[int],
    abstract_maps: Mapping[int, frozenset[int]],
    *,
    known_rodata: Callable[[int], bool],
    helper_name: Callable[[int], str | None],
    entry_cb: frozenset[int] = frozenset(),
    cb_range: tuple[int, int] | None = None,
    values: Mapping[int, frozenset[int]] | None = None,
    hulls: Mapping[int, Value] | None = None,
    entry_exact: frozenset[Exact] = frozenset(),
    map_value: Callable[[int, int, int], Value | None] | None = None,
) -> tuple[str | None, Carried]:
    """Why the program's answer may depend on the varying immediates (the insn indexes
    in ``varying``) and the varying bytes of read-only maps (``abstract_maps``: map id
    -> byte offsets) and the context bytes ``entry_cb`` (cb[] bytes a varying value
    was stored to before the tail call that enters this program); None when it cannot.
    Also: the context bytes varying values may be in when the program tail-calls, per
    prog array (``taint.Carried``: a tail call's array is the map load before it).
    ``values``: every copy's immediate (signed 32 bits) at each varying position, or
    an ld_imm64's 64-bit constant, which lets a constant be compared with a narrower
    load; ``hulls``: the operand the
    shared analysis uses at a varying position (:func:`prepare.operand_hull`), which
    makes the value exact; ``entry_exact``: the exact words among ``entry_cb``;
    ``map_value``: every copy's value of a varying read-only map field (the hook the
    shared analysis gets, ``Env.varying_value``), which makes a load of it exact."""
    if not varying and not abstract_maps and not entry_cb:
        return None, ()
    if prep.has_callbacks:
        return "a callback function", ()
    seen: dict[int, tuple[int, int | None]] = {}
    for _run in range(4):
        run = _Pass(prep, varying, abstract_maps, known_rodata, helper_name, entry_cb,
                    cb_range, values, hulls, entry_exact, seen, map_value)
        try:
            run.function(0, (), False, True, frozenset(entry_cb))
        except Depends as why:
            return str(why), ()
        if not run.stale:
            return None, tuple(sorted(
                ((mid, (frozenset(cb), frozenset(run.cbx_out.get(mid, ()))))
                 for mid, cb in run.cb_out.items() if cb),
                key=lambda e: -1 if e[0] is None else e[0]))
        seen = run.cbx
    return "cb[] words whose values keep changing", ()
