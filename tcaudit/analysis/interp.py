"""The abstract interpreter of one program: every value r0 can hold at each exit.

A worklist over basic blocks in instruction order, joining states at every block
leader (``prepare.Prepared``), with widening after ``WIDEN_AFTER`` changes of a block's
entry state. A state is the 12 registers (r0-r11) and a dict of known memory slots:
the current frame's stack (keys are r10-relative offsets, negative) and the context's
``cb[]`` bytes (keys ``CTXK + offset in struct sk_buff``), which survive helper calls
and tail calls (Cilium hands exit codes to its drop-notify tail call this way).

Kernel facts relied on (kernel/bpf/verifier.c, kernel/bpf/core.c, net/core/filter.c):

* helper calls clobber r0-r5 (and r11) and keep r6-r9; a bpf-to-bpf call gets a new
  frame; a successful tail call never returns, a failed one falls through;
* LD_ABS/LD_IND end the current function with r0 = 0 when the load fails (in a
  subprogram that is a return to the caller, gen_ld_abs / the interpreter's
  LD_ABS handler);
* ``bpf_throw(cookie)`` ends the whole program with the cookie as its return value
  when no exception callback is set (kernel/bpf/helpers.c, bpf_throw);
* the verifier turns every pointer loaded from the context or a map value into a
  scalar, so only stack slots (and memory reached through unknown pointers) can give
  a frame pointer back (see ``domain``).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field

from tcaudit.analysis import domain as D
from tcaudit.analysis import frames as F
from tcaudit.analysis import helpers as H
from tcaudit.analysis import insns as I
from tcaudit.analysis import links as L
from tcaudit.analysis import liveness as LV
from tcaudit.analysis import scalar as S
from tcaudit.analysis.domain import SP, SPS, Ptr, Top, Value
from tcaudit.analysis.memory import Memory, helper_length
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
)

WIDEN_AFTER = 24
"""A block whose entry state changed this often widens the changed values."""
CTXK = F.CTXK
CFK = F.CFK
MAX_CONTEXTS = 8
"""Distinct entry states analysed per subprogram before falling back to a generic one."""

Regs = tuple[Value, ...]
Slots = F.Slots
CbState = F.CbState
CfState = F.CfState

_FAILED_TAIL = S.full("return value of a failed bpf_tail_call")
_PKT_LOAD = "value loaded from packet"


class BudgetExhausted(Exception):
    pass


class _Escaped(Exception):
    """A frame pointer reached memory: the function is analysed again, loads giving Top."""


@dataclass
class Site:
    """A bpf_tail_call site: the prog array, the slot indexes, the cb bytes known there."""

    pc: int
    map_id: int | None
    indexes: tuple[int, ...] | None
    main: bool
    cb: CbState
    candidates: tuple[int, ...] = ()
    """When the map is not known (constant blinding hides it): the prog's maps."""


@dataclass
class Func:
    """What one function (main program or subprogram) does, for its callers."""

    ret: Value | None  # join of r0 over its exits; None = never returns
    exits: dict[int, Value]
    cb_out: CbState | None  # known cb bytes at its exits (join)
    cf_out: CfState | None = None  # known caller-frame bytes at its exits (join)
    effect: F.CfEffect = field(default_factory=F.CfEffect)


@dataclass
class Local:
    """One program analysed on its own (tail calls not followed)."""

    values: list[Value]  # every value the program itself can return
    exits: dict[int, Value]
    sites: list[Site]
    problem: str | None = None


@dataclass
class Env:
    """What the interpreter needs from the tree it is part of (closure._Ctx)."""

    helper_name: Callable[[int], str | None]
    tail_value: Callable[[Site], Value | None]
    rodata: Callable[[int], bytes | None]
    cb_range: tuple[int, int] | None
    budget: list[int] = field(default_factory=lambda: [2_000_000])
    varying: Callable[[int], frozenset[int]] | None = None
    """Bytes of a read-only map that differ between copies (``shapes``): unknown."""
    varying_value: Callable[[int, int, int], Value | None] | None = None
    """(map id, offset, size) -> every copy's value of such bytes, when known (``shapes``);
    without it, or for a sign-extending load, they are unknown."""



class ProgAnalyser(Memory):
    """Analyses one program: its main function and every reachable subprogram."""

    env: Env

    def __init__(self, prep: Prepared, env: Env, entry_cb: CbState = (),
                 map_ids: tuple[int, ...] = ()) -> None:
        self.map_ids = map_ids
        self.prep = prep
        self.env = env
        self.entry_cb = entry_cb
        self.funcs: dict[_FuncKey, Func] = {}
        self.contexts: dict[int, int] = {}
        self.summaries = F.Summaries()
        self.active: set[_FuncKey] = set()
        self.sites: list[Site] = []
        self.extra: list[Value] = []  # values that end the whole program (bpf_throw)
        self.problem: str | None = None

    def run(self) -> Local:
        if self.prep.n == 0:
            return Local([], {}, [], "empty program")
        main = self.function(0, True, (), self.entry_cb, ())
        values: list[Value] = list(self.extra)
        exits: dict[int, Value] = {}
        for f in self.funcs.values():
            for pc, v in f.exits.items():
                old = exits.get(pc)
                exits[pc] = v if old is None else D.join(old, v)
        if main is not None:
            values.extend(main.exits.values())
        sites: dict[tuple[int, int | None, tuple[int, ...] | None, bool, CbState], Site] = {}
        for site in self.sites:
            sites.setdefault((site.pc, site.map_id, site.indexes, site.main, site.cb), site)
        return Local(values, exits, list(sites.values()), self.problem)

    def function(self, start: int, is_main: bool, args: _Args, cb: CbState,
                 cf: CfState) -> Func | None:
        if not is_main and (cb or cf) and (start, args, cb, cf) not in self.funcs:
            seen = self.contexts.get(start, 0)
            if seen >= MAX_CONTEXTS:
                cb, cf = self._summary(start, args, cb, cf)
        key = (start, args, cb, cf)
        done = self.funcs.get(key)
        if done is not None:
            return done
        if key in self.active:
            return None
        if not is_main:
            self.contexts[start] = self.contexts.get(start, 0) + 1
        self.active.add(key)
        try:
            try:
                res = self._run(start, is_main, args, cb, cf, False)
            except _Escaped:
                # what the aborted run found stays: callees it analysed are cached and
                # not run again, so their throws and tail-call sites are only there
                res = self._run(start, is_main, args, cb, cf, True)
        finally:
            self.active.discard(key)
        self.funcs[key] = res
        return res

    # The interpreter loop: one long function on purpose (speed).
    def _run(self, start: int, is_main: bool, args: _Args, cb: CbState, cf: CfState,
             escaped: bool) -> Func:
        prep = self.prep
        ops = prep.ops
        leader = prep.leader
        n = prep.n
        env = self.env
        budget = env.budget
        join = D.join
        escaped = escaped or prep.has_callbacks
        init: list[Value] = [D.UNINIT] * NREGS
        if is_main:
            init[1] = D.CTX
        else:
            arg = D.Far("argument of a subprogram")  # never this frame (see domain)
            for r in range(1, 6):
                given = args[r - 1] if r - 1 < len(args) else None
                init[r] = arg if given is None else given
        init[10] = D.SP0
        slots0: Slots = {CTXK + off: (size, v) for off, size, v in cb}
        for off, size, v in cf:
            slots0[CFK + off] = (size, v)
        self.effect = effect = F.CfEffect()
        states: dict[int, tuple[Regs, Slots, L.Links]] = {start: (tuple(init), slots0, L.NONE)}
        visits: dict[int, int] = {}
        heap = [start]
        queued = {start}
        exits: dict[int, Value] = {}
        ret: Value | None = None
        cb_out: CbState | None = None
        cf_out: CfState | None = None
        cb_unknown = False
        zero_exit = False

        def merge(tpc: int, regs: list[Value], slots: Slots, links: L.Links) -> None:
            if tpc < 0 or tpc >= n or ops[tpc][0] == K_SLOT2:
                self._fail(f"jump to invalid instruction index {tpc}")
                return
            nt = tuple(regs)
            old = states.get(tpc)
            if old is None:
                states[tpc] = (nt, slots, links)
                if tpc not in queued:
                    queued.add(tpc)
                    heapq.heappush(heap, tpc)
                return
            ort, ost, olk = old
            live = prep.live
            if live is None:
                live = prep.live = LV.leaders_live(ops, leader, self._is_tail_call)
            dead, frame = live.get(tpc, LV.EVERYTHING)
            if dead:
                nr = list(nt)
                ol = list(ort)
                for r in dead:
                    nr[r] = ol[r] = D.UNINIT
                nt = tuple(nr)
                ort = tuple(ol)
                if links:
                    links = L.drop_many(links, dead)
            if not frame:
                if slots and min(slots) < 0:
                    slots = {k: e for k, e in slots.items() if k >= 0}
                if ost and min(ost) < 0:
                    ost = {k: e for k, e in ost.items() if k >= 0}
            jl = olk & links if olk is not links else olk
            changed = jl != olk
            jr = ort
            if nt != ort:
                jr = tuple(map(join, ort, nt))
                changed = changed or jr != ort
            js = ost
            if slots is not ost and slots != ost:
                js = F.join_slots(ost, slots)
                changed = changed or js != ost
            if changed:
                c = visits.get(tpc, 0) + 1
                visits[tpc] = c
                if c > WIDEN_AFTER:
                    jr = tuple(map(D.widen, ort, jr))
                    js = {
                        k: (sz, D.widen(ost[k][1], v) if ost.get(k, (0,))[0] == sz else v)
                        for k, (sz, v) in js.items()
                    }
                states[tpc] = (jr, js, jl)
                if tpc not in queued:
                    queued.add(tpc)
                    heapq.heappush(heap, tpc)

        while heap:
            if budget[0] <= 0:
                raise BudgetExhausted
            bpc = heapq.heappop(heap)
            queued.discard(bpc)
            pc = bpc
            rt, st, links = states[pc]
            regs = list(rt)
            # copy on write: a block that stores nothing hands its entry slots on as the
            # same object, and a merge of two paths that both did skips the slot join
            slots = st
            own = False
            steps = 0
            while True:
                if pc >= n:
                    self._fail("execution falls off the end of the program")
                    break
                kind, op, dst, src, off, imm, kval, wide, tgt = ops[pc]
                steps += 1
                if not own and kind in _WRITES_SLOTS:
                    slots = dict(slots)
                    own = True
                if kind == K_MOV:
                    if src < 0:
                        regs[dst] = kval
                        if links:
                            links = L.drop(links, dst)
                    else:
                        if wide and off == 0:
                            regs[dst] = regs[src]
                        else:
                            regs[dst] = D.mov_x(regs[src], wide, off)
                        links = L.on_mov(links, dst, src, wide, off)
                elif kind == K_ALU:
                    if src < 0:
                        regs[dst] = D.alu(op, wide, off, regs[dst], kval, False)
                    else:
                        regs[dst] = D.alu(op, wide, off, regs[dst], regs[src], src == dst)
                    if links:
                        links = L.on_alu(links, op, dst, src, wide, imm)
                elif kind == K_LDX:
                    regs[dst] = self._load(regs[src], off, imm, op == I.BPF_MEMSX, slots, escaped)
                    if links:
                        links = L.drop(links, dst)
                elif kind in (K_STX, K_ST):
                    v = kval if src < 0 else regs[src]
                    if not escaped and D.may_be_frame(v):
                        raise _Escaped
                    self._store(regs[dst], off, imm, v, slots)
                elif kind == K_JCOND:
                    a = regs[dst]
                    b = kval if src < 0 else regs[src]
                    (at, bt), (af, bf) = D.branch(op, wide, a, b)
                    if at is not None and bt is not None:
                        tr = regs.copy()
                        tr[dst] = at
                        if 0 <= src != dst:
                            tr[src] = bt
                        if not links or _follow(tr, links, dst, src):
                            merge(tgt, tr, slots, links)
                    if af is not None and bf is not None:
                        regs[dst] = af
                        if 0 <= src != dst:
                            regs[src] = bf
                        if not links or _follow(regs, links, dst, src):
                            merge(pc + 1, regs, slots, links)
                    break
                elif kind == K_LDIMM:
                    regs[dst] = kval
                    if links:
                        links = L.drop(links, dst)
                    pc += 2
                    if pc >= n or leader[pc]:
                        merge(pc, regs, slots, links)
                        break
                    continue
                elif kind == K_EXIT:
                    v = regs[0]
                    old = exits.get(pc)
                    exits[pc] = v if old is None else join(old, v)
                    ret = v if ret is None else join(ret, v)
                    cb_out = F.cb_join_slots(cb_out, slots)
                    if not is_main:
                        cf_out = F.cf_join_slots(cf_out, slots)
                    break
                elif kind == K_JA:
                    merge(tgt, regs, slots, links)
                    break
                elif kind == K_NOP:
                    pass
                elif kind in (K_CALL, K_TAILCALL):
                    if links:
                        links = L.drop_many(links, _CALL_CLOBBERS)
                    budget[0] -= steps
                    steps = 0
                    name = "bpf_tail_call" if kind == K_TAILCALL else env.helper_name(imm)
                    if kind == K_TAILCALL or H.tail_call_helper(imm, name):
                        extra = self._tail_call(pc, regs, slots, is_main)
                        if extra is not None:
                            ret = extra if ret is None else join(ret, extra)
                        if not is_main:
                            # a successful one returns to our caller from here
                            cb_unknown = True
                            cf_out = F.cf_join_slots(cf_out, slots)
                    else:
                        if H.has_callbacks(name) and not escaped:
                            raise _Escaped
                        self._helper(imm, name, regs, slots)
                elif kind == K_PCALL:
                    if links:
                        links = L.drop_many(links, _CALL_CLOBBERS)
                    budget[0] -= steps
                    steps = 0
                    if not 0 <= tgt < n:
                        self._fail(f"call to invalid instruction index {tgt}")
                        break
                    frame_args = any(D.may_be_frame(regs[r]) for r in range(1, 6))
                    if frame_args and not escaped:
                        raise _Escaped
                    cargs = tuple(_arg_for_callee(regs[r]) for r in range(1, 6))
                    callee = self.function(tgt, False, cargs, F.cb_state(slots),
                                           F.snapshot(slots) if frame_args else ())
                    self.effect = effect  # the callee's run replaced it
                    if callee is None:
                        self._fail("recursive bpf-to-bpf call")
                        break
                    r0 = callee.ret
                    if r0 is None:  # the callee never returns
                        break
                    if frame_args:
                        F.apply_effect(slots, callee.effect, callee.cf_out)
                        r0 = F.to_caller(r0)
                    if callee.effect.anywhere:
                        # it wrote through a pointer that may lead into our caller's frame
                        effect.anywhere = True
                        F.clear_cf(slots)
                    F.set_cb(slots, callee.cb_out)
                    regs[0] = r0
                    regs[1] = regs[2] = regs[3] = regs[4] = regs[5] = regs[11] = D.CLOBBER
                elif kind == K_NEG:
                    regs[dst] = D.neg(regs[dst], wide)
                    if links:
                        links = L.drop(links, dst)
                elif kind == K_END:
                    regs[dst] = D.end(regs[dst], wide, bool(tgt), imm)
                    if links:
                        links = L.drop(links, dst)
                elif kind == K_ATOMIC:
                    if links:
                        links = L.drop_many(links, (0, src, dst))
                    if not escaped and D.may_be_frame(regs[src]) and op != I.BPF_LOAD_ACQ:
                        raise _Escaped
                    if not self._atomic(op, dst, src, off, imm, regs, slots, escaped):
                        self._fail(f"unsupported atomic operation at index {pc}")
                        break
                elif kind == K_MAYGOTO:
                    merge(tgt, regs, slots, links)
                    merge(pc + 1, regs, slots, links)
                    break
                elif kind == K_KFUNC:
                    if links:
                        links = L.drop_many(links, _CALL_CLOBBERS)
                    budget[0] -= steps
                    steps = 0
                    name = env.helper_name(imm)
                    if H.is_throw(name):
                        self._throw(D.as_scalar(regs[1]))
                        break
                    if name is None:  # kallsyms hidden: it may be bpf_throw
                        self._throw(S.full(f"kfunc #{imm} tcaudit cannot name (may throw)"))
                    frame_args = any(D.may_be_frame(regs[r]) for r in range(1, 6))
                    self._invalidate_unknown(regs, slots, ())
                    label = name or f"#{imm}"
                    regs[0] = (Top(f"return value of kfunc {label}") if frame_args
                               else D.Far(f"return value of kfunc {label}"))
                    regs[1] = regs[2] = regs[3] = regs[4] = regs[5] = regs[11] = D.CLOBBER
                elif kind == K_LDABS:
                    if links:
                        links = L.drop_many(links, _CALL_CLOBBERS)
                    # a failed load returns 0 from here, with this state
                    cb_out = F.cb_join_slots(cb_out, slots)
                    if not is_main:
                        cf_out = F.cf_join_slots(cf_out, slots)
                    regs[0] = S.sized(8 * imm, _PKT_LOAD)
                    regs[1] = regs[2] = regs[3] = regs[4] = regs[5] = regs[11] = D.CLOBBER
                    zero_exit = True
                else:
                    self._fail(f"unsupported instruction at index {pc}")
                    break
                pc += 1
                if leader[pc]:
                    merge(pc, regs, slots, links)
                    break
            budget[0] -= steps
            if budget[0] < 0:
                raise BudgetExhausted
        if zero_exit:
            ret = D.ZERO if ret is None else join(ret, D.ZERO)
            if is_main:
                self.extra.append(D.ZERO)
        if cb_unknown:
            cb_out = ()
        return Func(ret, exits, cb_out, cf_out, effect)

    def _summary(self, start: int, args: _Args, cb: CbState,
                 cf: CfState) -> tuple[CbState, CfState]:
        """Past MAX_CONTEXTS entry states, a subprogram is analysed against the join of
        the states since (widened after a few growths, nothing known in the end): each
        call is then covered by an analysis of a state that includes its own."""
        new_cb, new_cf = self.summaries.add((start, args), (cb, cf))
        return new_cb, new_cf

    def _throw(self, cookie: Value) -> None:
        """bpf_throw(cookie) ends the whole program: the default exception callback
        returns the cookie (kernel/bpf/helpers.c bpf_throw); a program's own callback is
        a subprogram nothing calls, given the cookie as r1: each such one is analysed
        (the kernel appends its default callback the same way)."""
        self.extra.append(cookie)
        effect = self.effect
        for start in sorted(self.prep.func_starts - self.prep.callees - {0}):
            handler = self.function(start, False, (cookie,), (), ())
            self.effect = effect
            if handler is None:
                self._fail("bpf_throw inside its own exception callback")
            elif handler.ret is not None:
                self.extra.append(handler.ret)

    def _is_tail_call(self, imm: int) -> bool:
        return H.tail_call_helper(imm, self.env.helper_name(imm))

    def _fail(self, msg: str) -> None:
        if self.problem is None:
            self.problem = msg

    # -- memory ------------------------------------------------------------------------

    def _tail_call(self, pc: int, regs: list[Value], slots: Slots, is_main: bool) -> Value | None:
        r2 = regs[2]
        r3 = regs[3]
        map_id = r2[1] if type(r2) is Ptr and r2[0] == "map" else None
        idx: tuple[int, ...] | None = None
        if type(r3) is frozenset:
            idx = tuple(sorted({x & S.M32 for x in r3}))
        site = Site(pc, map_id, idx, is_main, F.cb_state(slots),
                    self.map_ids if map_id is None else ())
        self.sites.append(site)
        extra = None if is_main else self.env.tail_value(site)
        regs[0] = _FAILED_TAIL
        regs[1] = regs[2] = regs[3] = regs[4] = regs[5] = regs[11] = D.CLOBBER
        return extra

    def _helper(self, imm: int, name: str | None, regs: list[Value], slots: Slots) -> None:
        label = name or f"#{imm}"
        reason = f"return value of helper {label}"
        c = H.contract(name)
        if H.has_callbacks(name):
            slots.clear()  # the callbacks get pointers: our frame, cb[], our caller's
            self.effect.anywhere = True
        if c is not None:
            for p, ln in c.writes:
                self._invalidate(regs[p], helper_length(regs, ln), slots)
            r0: Value = H.returns(c, reason)
        else:
            frame_args = any(D.may_be_frame(regs[r]) for r in range(1, 6))
            if H.is_lookup(name):
                r0 = S.full(f"value returned by {label}")
            elif frame_args and not _readonly_only(name, regs):
                r0 = Top(reason)
            else:
                r0 = S.full(reason)
            self._invalidate_unknown(regs, slots, H.READONLY_ARGS.get(H.short_name(name) or "", ()))
        regs[0] = r0
        regs[1] = regs[2] = regs[3] = regs[4] = regs[5] = regs[11] = D.CLOBBER


_CALL_CLOBBERS = (0, 1, 2, 3, 4, 5, 11)
_WRITES_SLOTS = frozenset((K_STX, K_ST, K_CALL, K_TAILCALL, K_PCALL, K_ATOMIC, K_KFUNC,
                           K_LDABS))
"""Instructions that may change the slots (the others only read them)."""
_Args = tuple[Value | None, ...]
"""What a subprogram's r1-r5 are known to be (ctx, caller-frame pointers), else None."""
_FuncKey = tuple[int, _Args, CbState, CfState]


def _arg_for_callee(v: Value) -> Value | None:
    if v == D.CTX:
        return v
    if type(v) is SP or type(v) is SPS:
        return F.to_callee(v)
    return None


def _follow(regs: list[Value], links: L.Links, dst: int, src: int) -> bool:
    """Carry a jump's refinement of ``dst`` (and ``src``) to the registers they are
    functions of; False when that leaves one with no value (the side is infeasible)."""
    for x, s, kind in links:
        if x == dst or (x == src and src >= 0):
            got = L.refine(regs[s], kind, regs[x])
            if got is None:
                return False
            regs[s] = got
    return True


def _readonly_only(name: str | None, regs: list[Value]) -> bool:
    ro = H.READONLY_ARGS.get(H.short_name(name) or "", ())
    return all(r in ro or not D.may_be_frame(regs[r]) for r in range(1, 6))





















