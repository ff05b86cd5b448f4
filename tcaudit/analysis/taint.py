"""The dependence pass's abstract state (``dependence``): what each register and stack
slot may hold of the varying constants, as flags that join with OR, and the join.

A state: (flags, origin, frame offset) per register; stack slots {offset: (size,
flags)}; whether an unknown stack slot may hold a tainted value; the cb[] bytes holding
varying values. An *origin* is the load a register's value came from (registers with one
origin are equal, so a test narrows them all), minus an exact value's id, or
``MAPREF`` + the map id of a pointer into a varying read-only map.
"""

from __future__ import annotations

from tcaudit.analysis.domain import Value

T = 1  # may hold (a function of) a varying constant
C = 2  # may be the context pointer
F = 4  # may point into this function's own frame
P = 8  # may point into a caller's frame (a subprogram's pointer argument)
A = 16  # may point into a read-only map whose contents vary between copies
R = 32  # may point into a read-only map whose contents are known (a constant load)
N32 = 64  # not an opaque value at 32 bits (see dependence's docstring)
N64 = 128  # not an opaque value at 64 bits
N8 = 256  # not an opaque value at 8 bits (any byte, zero-extended)
N16 = 512  # not an opaque value at 16 bits
PTRS = C | F | P | A | R
B8 = 1024  # may not fit in 8 bits (a tainted value that fits may be compared)
B16 = 2048  # may not fit in 16 bits
B32 = 4096  # may not fit in 32 bits
BIG = B8 | B16 | B32
PLAIN = N8 | N16 | N32 | N64 | BIG  # an ordinary scalar: not tainted, not a pointer, not opaque
W = 8192
"""A stack slot's flag: on every path, this slot was last written at its known offset
by one store of its size, after anything that may have made the engine forget the
frame (a store at an unknown offset, a call handed a frame pointer). The engine then
knows the slot (frames.slot_store), so a load within it gives what was stored there,
not a spilled frame pointer (``anyx``); never a register's flag."""
FPOFF = 1 << 15
"""A stack slot's flag: it holds a pointer into this frame at a known offset, kept in
the slot's high bits (``FP_BIAS`` + offset) where an exact value keeps its id. A fill
of the whole slot gives that pointer back with its offset, as the engine's does (the
slot holds an ``SP``), so a helper handed it writes only where it points."""
FP_BIAS = 1 << 14
KEEP = T | C | A | R  # what a stack slot remembers of a spilled register
EXACT_SHIFT = 16  # a slot's flags above this: minus the exact id of a spilled exact value
EXACT_MASK = ~((1 << EXACT_SHIFT) - 1)
FA = F | A  # pointers whose offset is followed

MAPREF = 1 << 40  # origin of a pointer into a varying read-only map: MAPREF + its map id

Regs = tuple[int, ...]
Orig = tuple[int | None, ...]
Offs = tuple[int | None, ...]
Slots = dict[int, tuple[int, int]]
Key = tuple[int, tuple[int, ...], bool, frozenset[int]]
State = tuple[Regs, Orig, Offs, Slots, int, frozenset[int]]

OPAQUE = {8: N8 | N16 | BIG, 4: N8 | N16 | N64 | B8 | B16, 2: N8 | N32 | N64 | B8,
          1: N16 | N32 | N64}
"""Flags of a load of that many bytes from memory the engine does not follow."""
BIG_ABOVE = {1: BIG, 2: B16 | B32, 4: B32}
"""The may-not-fit flags a zero-extending load of that many bytes does not have."""


def fits_in(bits: int) -> int:
    """The may-not-fit flags a value at most ``bits`` wide does not have."""
    if bits <= 8:
        return B8 | B16 | B32
    if bits <= 16:
        return B16 | B32
    return B32 if bits <= 32 else 0


def join(a: State, b: State) -> State:
    ra, oa, fa, sa, xa, ca = a
    rb, ob, fb, sb, xb, cb = b
    # most joins meet equal parts: each is compared first (at C speed)
    regs = ra if ra == rb else tuple(x | y for x, y in zip(ra, rb, strict=True))
    orig = oa if oa == ob else tuple(x if x == y else None for x, y in zip(oa, ob, strict=True))
    if fa == fb and ra == rb and not any(r & FA == FA for r in ra):
        offs = fa
    else:
        offs = tuple(
            None if (ra[i] | rb[i]) & FA == FA
            else x if x == y else (x if not rb[i] & FA else y if not ra[i] & FA else None)
            for i, (x, y) in enumerate(zip(fa, fb, strict=True))
        )
    return regs, orig, offs, sa if sa == sb else _join_slots(sa, sb), xa | xb, ca | cb


def _join_slots(sa: Slots, sb: Slots) -> Slots:
    slots = dict(sa)
    for k, e in sb.items():
        old = slots.get(k)
        if old is e or old == e:  # (states copy their slots: mostly the very tuple)
            continue
        s, f = e
        if old is None:
            slots[k] = (s, f & ~W)  # written on one path only
        else:
            same = (s == old[0] and f >> EXACT_SHIFT == old[1] >> EXACT_SHIFT
                    and f & FPOFF == old[1] & FPOFF)
            low = (f | old[1]) & ~EXACT_MASK
            if not same:
                low &= ~FPOFF
            if not (s == old[0] and f & old[1] & W):
                low &= ~W
            slots[k] = (s if s >= old[0] else old[0], low | (f & EXACT_MASK if same else 0))
    if len(slots) != len(sb):
        for k in sa.keys() - sb.keys():
            s, f = slots[k]
            slots[k] = (s, f & ~W)
    return slots


def forget_exact_slots(slots: Slots) -> None:
    """Any slot may have been written: no spilled value is exact, no slot known."""
    for k, (s, f) in list(slots.items()):
        if f & (EXACT_MASK | W | FPOFF):
            slots[k] = (s, f & ~(EXACT_MASK | W | FPOFF))


def forget_exact(fl: list[int], slots: Slots, readonly: tuple[int, ...] = ()) -> None:
    """A call that is handed a pointer into this frame may write any slot (through an
    argument but ``readonly``'s, which it only reads)."""
    if any(fl[r] & F for r in range(1, 6) if r not in readonly):
        forget_exact_slots(slots)


def clobber(fl: list[int], org: list[int | None], fo: list[int | None]) -> None:
    for r in (0, 1, 2, 3, 4, 5, 11):
        fl[r] = PLAIN
        org[r] = None
        fo[r] = None


def to_callee(f: int) -> int:
    """A caller's register as a callee's argument: its frame becomes the caller's."""
    if f & F:
        f = (f & ~F) | P
    return f | PLAIN if f & PTRS else f


Exact = tuple[int, int, Value]
"""A cb[] word that holds an exact varying value: (offset, size, every copy's value)."""
Entry = tuple[frozenset[int], frozenset[Exact]]
"""How a tail call enters a program: the cb[] bytes holding varying values, and which
of them are exact words."""
NO_ENTRY: Entry = (frozenset(), frozenset())

Carried = tuple[tuple[int | None, Entry], ...]
"""What a program's tail calls hand on, per prog array (None: through an array the
pass cannot tell, which stands for every array): each one's ``Entry``."""


def carried_into(out: Carried, map_id: int) -> Entry:
    """What a target in a slot of prog array ``map_id`` is entered with."""
    cb: set[int] = set()
    exact: set[Exact] = set()
    for mid, (c, x) in out:
        if mid is None or mid == map_id:
            cb |= c
            exact |= x
    return frozenset(cb), frozenset(exact)
