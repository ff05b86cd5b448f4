"""The abstract values of registers and stack slots, and the operations on them.

A value is one of:

* a scalar (``scalar.Scalar``): a set of at most ``CAP`` 64-bit constants, or bounds
  with known bits (``Rng``). A ``Rng`` also stands for pointers to memory whose loads
  the verifier types as scalars (packet, map values, kernel memory): a store through
  them cannot change this frame or the context;
* ``Far(reason)``: anything but a pointer into the current frame: it may be the
  context or a pointer into a caller's frame (a spilled pointer reloaded from a
  forgotten slot, a subprogram's argument), so a store through it may change cb[];
* ``SP(off)``: a pointer into the current function's stack frame, r10 + off (off None
  when not one constant);
* ``Ptr(kind, map_id, off)``: a pointer the analysis follows: the context (``ctx``, the
  kernel's ``struct sk_buff`` after the verifier's rewrite), a map (``map``, from
  ld_imm64 of a map id) or a map value (``mapval``, ld_imm64 of a value address);
* ``Top(reason)``: anything, including a pointer into the current frame.

Soundness rests on where a frame pointer can come from: r10 itself, arithmetic on it,
or a load of a stack slot (or of memory reached through an unknown pointer) after some
frame pointer was stored to memory. The interpreter keeps a per-function "escaped" flag
for the last case (``Frame.escaped``) and re-runs the function when it flips; loads then
give ``Top`` instead of a scalar. The verifier turns every pointer loaded from a map
value or the context into a scalar, so those loads never give a frame pointer.
"""

from __future__ import annotations

from typing import NamedTuple

from tcaudit.analysis import arith as AR
from tcaudit.analysis import memo
from tcaudit.analysis import refine as RF
from tcaudit.analysis import scalar as S
from tcaudit.analysis.scalar import Rng, Scalar


class SP(NamedTuple):
    """Pointer into the current function's stack frame: r10 + off."""

    off: int | None


class SPS(NamedTuple):
    """Pointer into the current frame at one of a few constant offsets (a join of
    ``SP``s, or r10 plus a small set of constants)."""

    offs: frozenset[int]


SP_SET_CAP = 8
"""Most offsets an ``SPS`` keeps; more become ``SP(None)``."""


class Ptr(NamedTuple):
    """A pointer the analysis follows: ctx, a map, or a map value (+ byte offset)."""

    kind: str  # "ctx" | "map" | "mapval"
    map_id: int | None
    off: int | None


class Far(NamedTuple):
    """Anything but a pointer into the current frame (may be the context)."""

    reason: str


class Top(NamedTuple):
    """Anything, including a pointer into the current stack frame."""

    reason: str


Value = frozenset[int] | Rng | SP | SPS | Ptr | Far | Top

SP0 = SP(0)
SPX = SP(None)
CTX = Ptr("ctx", None, 0)
UNINIT = S.full("uninitialized register")
CLOBBER = S.full("register clobbered by a call")
ZERO: frozenset[int] = frozenset((0,))
MIXED = Top("register may hold a stack pointer or another value")


def is_scalar(v: Value) -> bool:
    t = type(v)
    return t is frozenset or t is Rng


def may_be_frame(v: Value) -> bool:
    t = type(v)
    return t is SP or t is Top or t is SPS


def frame_offsets(v: Value) -> frozenset[int] | None:
    """The offsets of a frame pointer (SP or SPS); None when not one of a few constants."""
    if type(v) is SP:
        return None if v.off is None else frozenset((v.off,))
    if type(v) is SPS:
        return v.offs
    return None


def sp_of(offs: frozenset[int] | set[int]) -> Value:
    if len(offs) == 1:
        for o in offs:
            return SP(o)
    if len(offs) > SP_SET_CAP:
        return SPX
    return SPS(frozenset(offs))


def reason_of(v: Value) -> str:
    t = type(v)
    if t is Rng or t is Top or t is Far:
        return v.reason  # type: ignore[union-attr]
    if t is SP or t is SPS:
        return "a stack pointer"
    if t is Ptr:
        return f"a pointer to {_ptr_words(v)}"  # type: ignore[arg-type]
    return "unknown"


def _ptr_words(p: Ptr) -> str:
    if p.kind == "ctx":
        return "the context"
    if p.kind == "map":
        return f"map {p.map_id}"
    return f"a value of map {p.map_id}"


def as_scalar(v: Value) -> Scalar:
    """A non-frame value seen as a number (pointers become unknown scalars)."""
    if type(v) is frozenset or type(v) is Rng:
        return v
    return S.full(reason_of(v))


def join(a: Value, b: Value) -> Value:
    """Least upper bound."""
    if a is b or a == b:
        return a
    ta = type(a)
    tb = type(b)
    if (ta is frozenset or ta is Rng) and (tb is frozenset or tb is Rng):
        return S.join(a, b)  # type: ignore[arg-type]
    if ta is Top:
        return a
    if tb is Top:
        return b
    if ta is SP or tb is SP or ta is SPS or tb is SPS:
        oa = frame_offsets(a)
        ob = frame_offsets(b)
        if oa is not None and ob is not None:
            return sp_of(oa | ob)
        if (ta is SP or ta is SPS) and (tb is SP or tb is SPS):
            return SPX
        return MIXED
    if type(a) is Ptr and type(b) is Ptr and a.kind == b.kind and a.map_id == b.map_id:
        return Ptr(a.kind, a.map_id, None)
    if ta is Far:
        return a
    if tb is Far:
        return b
    if (type(a) is Ptr and a.kind == "ctx") or (type(b) is Ptr and b.kind == "ctx"):
        return Far("the context or another value")
    ra = as_scalar(a)
    rb = as_scalar(b)
    reason = ra.reason if type(ra) is Rng else rb.reason if type(rb) is Rng else "pointer"
    return S.full(reason)


def widen(old: Value, new: Value) -> Value:
    if new == old:
        return new
    if is_scalar(old) and is_scalar(new):
        return S.widen(old, new)  # type: ignore[arg-type]
    return join(old, new)


_ALUS = memo.table()
_BRANCHES = memo.table()


def alu(op: int, wide: bool, off: int, a: Value, b: Value, same: bool) -> Value:
    """``a op b``; ``same`` when both operands are one register (``x ^ x`` is 0)."""
    ta = type(a)
    tb = type(b)
    if (ta is frozenset or ta is Rng) and (tb is frozenset or tb is Rng):
        key = (op, wide, off, a, b, same)
        try:
            return _ALUS[key]  # type: ignore[no-any-return]
        except KeyError:
            pass
        r = AR.same_reg(op, wide, a) if same else None  # type: ignore[arg-type]
        if r is None:
            r = AR.alu(op, wide, off, a, b, "arithmetic")  # type: ignore[arg-type]
        return memo.store(_ALUS, key, r)
    if same and op in (AR.SUB, AR.XOR):
        return ZERO
    if ta is Far or tb is Far:
        # the verifier allows only add/sub of a scalar on a pointer: anything else on a
        # value that may be the context is a number
        if wide and op in (AR.ADD, AR.SUB) and not (may_be_frame(a) or may_be_frame(b)):
            return a if ta is Far else b
        if may_be_frame(a) or may_be_frame(b):
            return MIXED
        return S.full(reason_of(a if ta is Far else b))
    if wide and op in (AR.ADD, AR.SUB) and type(a) is SPS:
        if type(b) is frozenset and len(b) * len(a.offs) <= SP_SET_CAP:
            sign = 1 if op == AR.ADD else -1
            return sp_of({o + sign * S.s64(x) for o in a.offs for x in b})
        a = SPX
        ta = SP
    if (wide and op == AR.ADD and type(a) is SP and a.off is not None
            and type(b) is frozenset and 1 < len(b) <= SP_SET_CAP):
        base = a.off
        return sp_of({base + S.s64(x) for x in b})
    if wide and op in (AR.ADD, AR.SUB):
        c = _single(b)
        if type(a) is SP or type(a) is Ptr:
            p_off = a.off
            if c is not None and p_off is not None:
                d = S.s64(c)
                n = p_off + d if op == AR.ADD else p_off - d
                return Ptr(a.kind, a.map_id, n) if type(a) is Ptr else SP(n)
            if tb is SP or tb is Top or tb is SPS:
                return S.full("difference of pointers") if ta is SP and op == AR.SUB else MIXED
            if tb is Ptr:
                return MIXED if ta is SP else S.full("pointer arithmetic")
            return Ptr(a.kind, a.map_id, None) if type(a) is Ptr else SPX
        if tb is SP or tb is SPS:
            return SPX if op == AR.ADD and ta is not Top else MIXED
        if ta is Top or tb is Top:
            return a if ta is Top else b
        if type(b) is Ptr:
            if op == AR.ADD:
                return Ptr(b.kind, b.map_id, None)
            return S.full("pointer arithmetic")
    if ta is SPS:
        a = SPX
        ta = SP
    if tb is SPS:
        b = SPX
        tb = SP
    if ta is Top or tb is Top or ta is SP or tb is SP:
        # any other operation on a frame pointer gives a number the verifier would
        # refuse to use as a pointer, except 64-bit add/sub handled above
        if wide and op in (AR.AND, AR.OR, AR.XOR, AR.MOV):
            return MIXED
        return S.full("arithmetic on a pointer")
    return AR.alu(op, wide, off, as_scalar(a), as_scalar(b), "arithmetic on a pointer")


def _single(v: Value) -> int | None:
    if type(v) is frozenset and len(v) == 1:
        for x in v:
            return x
    return None


def mov_x(v: Value, wide: bool, off: int) -> Value:
    """mov32 / movsx of a register value (not the plain 64-bit copy)."""
    if wide:
        if off in (8, 16, 32):
            return S.sext(as_scalar(v), off)
        return S.full("address space cast")  # off 1: arena cast
    if off in (8, 16):
        return S.trunc32(S.sext(as_scalar(v), off))
    return S.trunc32(as_scalar(v))


def neg(v: Value, wide: bool) -> Value:
    return AR.neg(as_scalar(v), wide, "negation")


def end(v: Value, wide: bool, to_be: bool, bits: int) -> Value:
    if bits not in (16, 32, 64):
        return S.full("invalid byte swap")
    return AR.byteswap(as_scalar(v), bits, wide or to_be, "byte swap")


Side = tuple[Value | None, Value | None]


def branch(op: int, wide: bool, a: Value, b: Value) -> tuple[Side, Side]:
    """(taken, not taken): refined (dst, src); None marks an infeasible side."""
    if (type(a) is frozenset or type(a) is Rng) and (type(b) is frozenset or type(b) is Rng):
        key = (op, wide, a, b)
        try:
            return _BRANCHES[key]  # type: ignore[no-any-return]
        except KeyError:
            pass
        return memo.store(_BRANCHES, key, RF.branch(op, wide, a, b))
    if op == RF.JEQ and wide:
        # a pointer equal to a constant is that number (e.g. NULL checks)
        if is_scalar(b) and not may_be_frame(a):
            return (b, b), (a, b)
        if is_scalar(a) and not may_be_frame(b):
            return (a, a), (a, b)
    if op == RF.JNE and wide:
        if is_scalar(b) and not may_be_frame(a):
            return (a, b), (b, b)
        if is_scalar(a) and not may_be_frame(b):
            return (a, b), (a, a)
    return (a, b), (a, b)
