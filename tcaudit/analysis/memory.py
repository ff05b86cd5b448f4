"""Loads, stores and atomics of the interpreter: where each pointer kind leads.

``Memory`` is mixed into ``interp.ProgAnalyser``: it needs the interpreter's ``env``
(read-only map contents, where cb[] lives) and ``effect`` (what a subprogram writes
into its caller's frame). The slots themselves are ``frames``'s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from tcaudit.analysis import domain as D
from tcaudit.analysis import frames as F
from tcaudit.analysis import insns as I
from tcaudit.analysis import scalar as S
from tcaudit.analysis.domain import SP, SPS, Far, Ptr, Top, Value
from tcaudit.analysis.frames import CFK, CTXK, Slots
from tcaudit.analysis.scalar import Rng


class MemoryEnv(Protocol):
    """The part of the interpreter's environment memory accesses read."""

    cb_range: tuple[int, int] | None
    varying: Callable[[int], frozenset[int]] | None
    varying_value: Callable[[int, int, int], Value | None] | None

    def rodata(self, map_id: int) -> bytes | None: ...

_STACK_LOAD = "value loaded from stack"
_MEM_LOAD = "value loaded from memory"
_CTX_LOAD = "value loaded from ctx"
_CALLER_LOAD = "value loaded from the caller's stack"


class Memory:
    """The memory operations of one program's analysis."""

    env: MemoryEnv
    effect: F.CfEffect

    def _load(self, addr: Value, off: int, size: int, sx: bool, slots: Slots,
              escaped: bool) -> Value:
        bits = 8 * size
        if type(addr) is SPS:
            acc: Value | None = None
            for o in addr.offs:
                v = F.slot_load(slots, o + off, size, sx, escaped, _STACK_LOAD)
                acc = v if acc is None else D.join(acc, v)
            assert acc is not None
            return acc
        if type(addr) is SP:
            base = addr.off
            if base is None:
                return F.unknown_load(bits, sx, escaped, _STACK_LOAD)
            return F.slot_load(slots, base + off, size, sx, escaped, _STACK_LOAD)
        if type(addr) is Ptr:
            kind, map_id, poff = addr.kind, addr.map_id, addr.off
            if kind == "cframe":
                if poff is None:
                    return F.unknown_load(bits, sx, escaped, _CALLER_LOAD)
                return F.slot_load(slots, CFK + poff + off, size, sx, escaped, _CALLER_LOAD)
            if kind == "ctx":
                rng = self.env.cb_range
                if poff is not None and rng is not None:
                    a = poff + off
                    if rng[0] <= a and a + size <= rng[1]:
                        return F.slot_load(slots, CTXK + a, size, sx, False, _CTX_LOAD)
                return S.sized(bits, _CTX_LOAD, sx)
            reason = f"value loaded from map {map_id}"
            if kind == "mapval" and poff is not None and map_id is not None:
                data = self.env.rodata(map_id)
                a = poff + off
                vary = self.env.varying
                if vary is not None and any(a <= b < a + size for b in vary(map_id)):
                    data = None  # differs between copies of this program (shapes)
                    every = self.env.varying_value
                    if every is not None and not sx:
                        got = every(map_id, a, size)
                        if got is not None:
                            return got
                if data is not None and a >= 0 and a + size <= len(data):
                    x = int.from_bytes(data[a:a + size], "little")
                    if sx:
                        x = S.sext(frozenset((x,)), bits)  # type: ignore[assignment]
                        return x  # type: ignore[return-value]
                    return frozenset((x,))
            return S.sized(bits, reason, sx)
        if type(addr) is Far or type(addr) is Top:
            # may be a caller's frame (a subprogram's argument) or, for Top, this one
            return F.unknown_load(bits, sx, escaped, _MEM_LOAD)
        return S.sized(bits, _MEM_LOAD, sx)  # packet, map value...: scalars

    def _store(self, addr: Value, off: int, size: int, v: Value, slots: Slots) -> None:
        if type(addr) is SPS:
            for o in addr.offs:  # a weak update of each slot it may point to
                old = slots.get(o + off)
                if old is not None and old[0] >= size:
                    prev = old[1] if old[0] == size else F.narrow(old[1], 8 * size)
                    F.slot_store(slots, o + off, size, D.join(prev, v))
                else:
                    F.slot_store(slots, o + off, size, v)
                    del slots[o + off]
            return
        if type(addr) is SP:
            base = addr.off
            if base is None:
                F.clear_frame(slots)
            else:
                F.slot_store(slots, base + off, size, v)
            return
        if type(addr) is Ptr:
            kind, poff = addr.kind, addr.off
            if kind == "cframe":
                if poff is None:
                    self.effect.anywhere = True
                    F.clear_cf(slots)
                else:
                    F.slot_store(slots, CFK + poff + off, size, v)
                    at = (poff + off, size)
                    self.effect.writes.add(at)
                    values = self.effect.values
                    if size < 8:
                        v = F.narrow(v, 8 * size)  # what the slot holds (slot_store's cut)
                    if at not in values:
                        values[at] = v
                    else:
                        seen = values[at]
                        values[at] = None if seen is None else D.join(seen, v)
                return
            if kind != "ctx":
                return  # map values: not tracked (read-only maps cannot be written)
            rng = self.env.cb_range
            if poff is None or rng is None:
                F.clear_ctx(slots)
                return
            a = poff + off
            if a + size <= rng[0] or a >= rng[1]:
                return
            if rng[0] <= a and a + size <= rng[1]:
                if not D.is_scalar(v):
                    v = S.full("a pointer stored in the context")
                F.slot_store(slots, CTXK + a, size, v)
            else:
                F.clear_ctx(slots)
            return
        if type(addr) is Top:
            slots.clear()
            self.effect.anywhere = True
            return
        if type(addr) is Far:
            # it may point into the context, or into a caller's frame
            F.clear_ctx(slots)
            F.clear_cf(slots)
            self.effect.anywhere = True

    def _atomic(self, op: int, dst: int, src: int, off: int, size: int,
                regs: list[Value], slots: Slots, escaped: bool) -> bool:
        if op == I.BPF_LOAD_ACQ:
            regs[dst] = self._load(regs[src], off, size, False, slots, escaped)
            return True
        addr = regs[dst]
        val = regs[src]
        if op == I.BPF_STORE_REL:
            self._store(addr, off, size, val, slots)
            return True
        base = op & 0xF0
        if op not in (I.BPF_XCHG, I.BPF_CMPXCHG) and (
            base not in (I.BPF_ADD, I.BPF_OR, I.BPF_AND, I.BPF_XOR) or op & ~0xF1
        ):
            return False
        old = self._load(addr, off, size, False, slots, escaped)
        wide = size == 8
        if op == I.BPF_XCHG:
            new = val
        elif op == I.BPF_CMPXCHG:
            # the slot takes val when it equals r0: decided when both are one value
            cmp = regs[0]
            if size == 4 and type(cmp) is frozenset:
                cmp = frozenset(x & S.M32 for x in cmp)
            same = one_value(old) and old == cmp
            differ = (type(old) is frozenset and type(cmp) is frozenset and not old & cmp) or (
                one_value(old) and one_value(cmp) and old != cmp
                and type(old) is type(cmp))
            new = val if same else old if differ else D.join(old, val)
        else:
            new = D.alu(base, wide, 0, old, val, False)
        self._store(addr, off, size, new, slots)
        if op == I.BPF_CMPXCHG:
            regs[0] = old
        elif op & I.BPF_FETCH:
            regs[src] = old
        return True

    # -- calls -------------------------------------------------------------------------


    def _invalidate(self, ptr: Value, length: int | None, slots: Slots) -> None:
        """A helper writes (scalars) into [ptr, ptr + length): of this frame, or of the
        caller's. Never into cb[]: a helper's memory argument cannot be the context
        (check_helper_mem_access refuses PTR_TO_CTX), and no helper writes the qdisc cb
        data."""
        t = type(ptr)
        if t is Top or t is Far:
            if t is Top:
                F.clear_frame(slots)
            F.clear_cf(slots)  # it may be a pointer into the caller's frame
            self.effect.anywhere = True
            return
        if t is SPS:
            for o in ptr.offs:  # type: ignore[union-attr]
                self._invalidate(SP(o), length, slots)
            return
        base = 0
        if t is Ptr and ptr.kind == "cframe":  # type: ignore[union-attr]
            low = ptr.off  # type: ignore[union-attr]
            if low is None:
                F.clear_cf(slots)
                self.effect.anywhere = True
                return
            base = CFK
            at = (low, -low if length is None else length)
            self.effect.writes.add(at)
            self.effect.values[at] = None
        elif t is SP:
            low = ptr.off  # type: ignore[union-attr]
            if low is None:
                F.clear_frame(slots)
                return
        else:
            return
        lo = base + low
        hi = base + (0 if length is None else low + length)
        for k in [k for k, (sz, _) in slots.items()
                  if (k < 0 or base) and k >= base - (1 << 16) and k + sz > lo and k < hi]:
            del slots[k]

    def _invalidate_unknown(self, regs: list[Value], slots: Slots,
                            readonly: tuple[int, ...]) -> None:
        for r in (1, 2, 3, 4, 5):
            if r not in readonly:
                self._invalidate(regs[r], None, slots)



def one_value(v: Value) -> bool:
    if type(v) is frozenset:
        return len(v) == 1
    return type(v) is SP and v.off is not None


def helper_length(regs: list[Value], ln: int) -> int | None:
    if ln < 0:
        return -ln
    if ln == 0:
        return None
    v = regs[ln]
    if type(v) is frozenset and v:
        m = max(v)
        return m if m <= 512 else None
    if type(v) is Rng and v.umax <= 512:
        return v.umax
    return None
