"""The memory an abstract state knows: stack slots, context bytes, the caller's frame.

One dict per state maps a key to (size, value):

* the current function's frame: keys are r10-relative offsets (negative);
* the context's ``cb[]`` bytes: ``CTXK + offset in struct sk_buff``;
* in a subprogram, the caller's frame as the callee sees it through the pointers it was
  given: ``CFK + caller's r10-relative offset``. A call hands the callee a copy of the
  caller's frame (its frame pointers turned into ``Ptr("cframe")``); the callee's writes
  there are recorded (``CfEffect``) and applied to the caller's frame when it returns.

Loads of a slot nothing is known of give a frame pointer only once one escaped to
memory (see ``domain``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tcaudit.analysis import arith as AR
from tcaudit.analysis import domain as D
from tcaudit.analysis import scalar as S
from tcaudit.analysis.domain import SP, SPS, Ptr, Top, Value
from tcaudit.analysis.scalar import Rng

CTXK = 1 << 20
"""Key base of context (sk_buff) bytes; frame keys are negative."""
CFK = 1 << 22
"""Key base of the caller's frame, seen from a subprogram (offsets are negative)."""
CFBASE = CFK - (1 << 16)

Slots = dict[int, tuple[int, Value]]
CbState = tuple[tuple[int, int, Value], ...]
"""Known context bytes: (sk_buff offset, size, value), sorted."""
CfState = tuple[tuple[int, int, Value], ...]
"""Known caller-frame bytes: (caller's r10 offset, size, value), sorted."""


@dataclass
class CfEffect:
    """What a subprogram may have written into its caller's frame."""

    writes: set[tuple[int, int]] = field(default_factory=set)
    """(caller offset, size) ranges written through pointers the callee was given."""
    values: dict[tuple[int, int], Value | None] = field(default_factory=dict)
    """The join of every value stored to each range by a plain store (None: written by
    a helper or an atomic, value unknown)."""
    anywhere: bool = False
    """Written through a pointer that may point anywhere outside the callee's frame."""


def is_cf(k: int) -> bool:
    return k >= CFBASE


def unknown_load(bits: int, sx: bool, escaped: bool, reason: str) -> Value:
    """A load of a slot nothing is known of: a frame pointer only once one escaped, a
    spilled context pointer (Far) when 8 bytes wide, else a number."""
    if bits == 64:
        return Top(reason) if escaped else D.Far(reason)
    return S.sized(bits, reason, sx)

def slot_load(slots: Slots, a: int, size: int, sx: bool, escaped: bool, reason: str) -> Value:
    bits = 8 * size
    ent = slots.get(a)
    shift = 0
    if ent is None or ent[0] < size:
        ent = None
        for k in range(a - 7, a):
            e = slots.get(k)
            if e is not None and k + e[0] >= a + size:
                ent = e
                shift = (a - k) * 8
                break
    if ent is None:
        return unknown_load(bits, sx, escaped, reason)
    esz, v = ent
    if esz == size and shift == 0:
        if sx and size < 8 and D.is_scalar(v):
            return S.sext(v, bits)  # type: ignore[arg-type]
        return v
    if type(v) is frozenset:
        m = (1 << bits) - 1
        out = frozenset((x >> shift) & m for x in v)
        return S.sext(out, bits) if sx else out
    if type(v) is Rng and shift == 0:
        t = AR.byteswap(v, bits, False, reason)
        return S.sext(t, bits) if sx else t
    return S.sized(bits, reason, sx)

def narrow_join(sa: int, a: Value, sb: int, b: Value) -> tuple[int, Value]:
    """Join of two entries of different sizes at one slot: their common low bytes."""
    size = min(sa, sb)
    bits = 8 * size
    na = narrow(a, bits) if sa > size else a
    nb = narrow(b, bits) if sb > size else b
    return size, D.join(na, nb)

def narrow(v: Value, bits: int) -> Value:
    if type(v) is frozenset:
        m = (1 << bits) - 1
        return frozenset(x & m for x in v)
    if type(v) is Rng:
        return AR.byteswap(v, bits, False, v.reason)
    return S.sized(bits, "part of a pointer")

def slot_store(slots: Slots, a: int, size: int, v: Value) -> None:
    ent = slots.get(a)
    if ent is None or ent[0] != 8 or size != 8:
        end = a + size
        for k in range(a - 7, end):
            e = slots.get(k)
            if e is not None and k + e[0] > a:
                del slots[k]
                if k < a and e[0] == 8 and a - k == 4:
                    # the low half of a wider entry stays known (little-endian)
                    slots[k] = (4, narrow(e[1], 32))
    if size < 8:
        bits = 8 * size
        if type(v) is frozenset:
            m = (1 << bits) - 1
            v = frozenset(x & m for x in v)
        elif type(v) is Rng:
            v = AR.byteswap(v, bits, False, v.reason)
        else:
            v = S.sized(bits, "part of a pointer")
    slots[a] = (size, v)

def clear_frame(slots: Slots) -> None:
    for k in [k for k in slots if k < 0]:
        del slots[k]

def clear_ctx(slots: Slots) -> None:
    for k in [k for k in slots if CTXK <= k < CFBASE]:
        del slots[k]

def cb_state(slots: Slots) -> CbState:
    return tuple(sorted((k - CTXK, sz, v) for k, (sz, v) in slots.items() if CTXK <= k < CFBASE))

def set_cb(slots: Slots, cb: CbState | None) -> None:
    clear_ctx(slots)
    for off, sz, v in cb or ():
        slots[CTXK + off] = (sz, v)

def cb_join_slots(acc: CbState | None, slots: Slots) -> CbState:
    cur = cb_state(slots)
    if acc is None:
        return cur
    return cb_join(acc, cur)

def cb_join(a: CbState, b: CbState) -> CbState:
    """The cb bytes known in both states, their values joined."""
    old = {(off, sz): v for off, sz, v in a}
    out = []
    for off, sz, v in b:
        o = old.get((off, sz))
        if o is not None:
            out.append((off, sz, D.join(o, v)))
    return tuple(out)


def clear_cf(slots: Slots) -> None:
    for k in [k for k in slots if k >= CFBASE]:
        del slots[k]


def cf_state(slots: Slots) -> CfState:
    return tuple(sorted((k - CFK, sz, v) for k, (sz, v) in slots.items() if k >= CFBASE))


def cf_join_slots(acc: CfState | None, slots: Slots) -> CfState:
    cur = cf_state(slots)
    return cur if acc is None else cb_join(acc, cur)


def to_callee(v: Value) -> Value:
    """A value of the caller's frame or registers as its callee sees it."""
    t = type(v)
    if t is SP:
        return Ptr("cframe", None, v.off)  # type: ignore[union-attr]
    if t is SPS:
        return Ptr("cframe", None, None)
    if t is Ptr and v.kind == "cframe":  # type: ignore[union-attr]
        return D.Far("a pointer into an outer frame")
    return v


def to_caller(v: Value) -> Value:
    """A value the callee left (in the caller's frame or r0) as the caller sees it."""
    t = type(v)
    if t is Ptr and v.kind == "cframe":  # type: ignore[union-attr]
        return SP(v.off)  # type: ignore[union-attr]
    if t is SP or t is SPS:
        return S.full("a pointer into a returned function's frame")
    if t is D.Far:
        return Top(v.reason)  # type: ignore[union-attr]
    return v


def snapshot(slots: Slots) -> CfState:
    """The caller's frame, for its callee."""
    return tuple(sorted((k, sz, to_callee(v)) for k, (sz, v) in slots.items() if k < 0))


def apply_effect(slots: Slots, effect: CfEffect, cf_out: CfState | None) -> None:
    """The caller's frame after a call: the callee's writes replace what they cover."""
    if effect.anywhere:
        clear_frame(slots)
        return
    if not effect.writes:
        return
    known = {(off, sz): v for off, sz, v in cf_out or ()}
    before = dict(slots)
    for off, size in sorted(effect.writes):
        for k in [k for k, (sz, _) in slots.items() if k < 0 and k < off + size and k + sz > off]:
            del slots[k]
    for (off, size), v in known.items():
        if any(w_off <= off and off + size <= w_off + w_sz for w_off, w_sz in effect.writes):
            slots[off] = (size, to_caller(v))
    # a range the callee wrote on some paths only: the old value or one it stored, when
    # nothing else it wrote overlaps that range
    for (off, size), stored in effect.values.items():
        old = before.get(off)
        if (off, size) in known or stored is None or old is None or old[0] != size:
            continue
        if any((w_off, w_sz) != (off, size) and w_off < off + size and off < w_off + w_sz
               for w_off, w_sz in effect.writes):
            continue
        slots[off] = (size, D.join(old[1], to_caller(stored)))


def widen_state(old: CbState, new: CbState) -> CbState:
    """Values of known bytes that keep growing jump to their bounds' extremes."""
    before = {(off, sz): v for off, sz, v in old}
    out = []
    for off, sz, v in new:
        o = before.get((off, sz))
        if o is None:
            continue
        if o != v and D.is_scalar(o) and D.is_scalar(v):
            ro = S.as_rng(o)._replace(parts=())  # type: ignore[arg-type]
            rv = S.as_rng(v)._replace(parts=())  # type: ignore[arg-type]
            v = S.widen(ro, rv)
        out.append((off, sz, v))
    return tuple(out)


def join_slots(a: Slots, b: Slots) -> Slots:
    """The slots known in both states (a wider entry on one side supplies the part the
    other side knows as a narrower one), their values joined."""
    out: Slots = {}
    shared = 0
    for k, ent in a.items():
        e = b.get(k)
        if e is None:
            e = _cover(b, k, ent[0])
            if e is None:
                continue
        else:
            shared += 1
            if e == ent:
                out[k] = ent
                continue
        sz, v = ent
        out[k] = (sz, D.join(v, e[1])) if e[0] == sz else narrow_join(sz, v, e[0], e[1])
    if shared < len(b):  # some of b's slots are not a's keys: a wider entry may hold them
        for k, (sz, v) in b.items():
            if k in a or k in out:
                continue
            e = _cover(a, k, sz)
            if e is not None:
                out[k] = (sz, D.join(e[1], v))
    return out


def _cover(slots: Slots, k: int, size: int) -> tuple[int, Value] | None:
    """[k, k + size) cut out of a wider entry that holds it, if one does."""
    for j in range(k - 7, k):
        e = slots.get(j)
        if e is not None and j + e[0] >= k + size:
            bits = 8 * size
            shift = 8 * (k - j)
            v = e[1]
            if type(v) is frozenset:
                return size, frozenset((x >> shift) & ((1 << bits) - 1) for x in v)
            return size, S.sized(bits, "part of a wider value")
    return None


MAX_SUMMARIES = 24
"""Growths of a summary before it becomes "nothing known"."""
WIDEN_SUMMARIES = 4
"""Growths after which a summary's growing values are widened (so it settles)."""


class Summaries:
    """Entry states past the first few, joined into one per key: the state each later
    entry is analysed with, which includes its own. Growing values are widened after
    WIDEN_SUMMARIES growths, and after MAX_SUMMARIES nothing is known any more, which
    covers every state. Used for tail-call targets (cb) and subprograms (cb, caller
    frame)."""

    def __init__(self) -> None:
        self._state: dict[object, tuple[CbState, ...]] = {}
        self._growths: dict[object, int] = {}

    def add(self, key: object, parts: tuple[CbState, ...]) -> tuple[CbState, ...]:
        old = self._state.get(key)
        if old is None:
            new = parts
        else:
            new = tuple(cb_join(o, p) for o, p in zip(old, parts, strict=True))
        if new != old:
            grown = self._growths.get(key, 0) + 1
            self._growths[key] = grown
            if grown > MAX_SUMMARIES:
                new = tuple(() for _ in parts)
            elif grown > WIDEN_SUMMARIES and old is not None:
                new = tuple(widen_state(o, n) for o, n in zip(old, new, strict=True))
            self._state[key] = new
        return new
