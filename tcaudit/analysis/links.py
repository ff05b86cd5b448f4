"""Registers known to hold a function of another register, so a test on one refines both.

Compilers test a copy of a value rather than the value: for an ``int`` result kept in a
64-bit register, clang emits ``r1 = r8; r1 <<= 32; r2 = r1; r2 s>>= 32; if r2 s< 0``
(sign extension before cpu v4) and then returns r8. The verifier links plain copies by
register id (kernel/bpf/verifier.c find_equal_scalars); this goes one step further and
also follows the 32-bit sign and zero extensions that such idioms build, so that the
test on r2 narrows r8 too. A link is (register, source register, kind) with kind one of
``copy``, ``zext32`` (low 32 bits, zero-extended), ``sext32`` (low 32 bits,
sign-extended) and ``shl32`` (shifted left by 32, the idioms' middle step). A link lives
until either register is written.
"""

from __future__ import annotations

from tcaudit.analysis import refine as RF
from tcaudit.analysis import scalar as S
from tcaudit.analysis.domain import Value, is_scalar
from tcaudit.analysis.scalar import M32, M64, Rng, Scalar

Link = tuple[int, int, str]
Links = frozenset[Link]
NONE: Links = frozenset()

_LSH, _RSH, _ARSH = 0x60, 0x70, 0xC0


def drop(links: Links, reg: int) -> Links:
    """``reg`` was written: every link from or to it ends."""
    if not links:
        return links
    return frozenset(lk for lk in links if lk[0] != reg and lk[1] != reg)


def drop_many(links: Links, regs: tuple[int, ...]) -> Links:
    if not links:
        return links
    return frozenset(lk for lk in links if lk[0] not in regs and lk[1] not in regs)


_AFTER_ZEXT = {"copy": "zext32", "zext32": "zext32", "sext32": "zext32"}
_AFTER_SEXT = {"copy": "sext32", "zext32": "sext32", "sext32": "sext32"}


def on_mov(links: Links, dst: int, src: int, wide: bool, off: int) -> Links:
    """``dst = src`` (64-bit copy), ``w_dst = w_src`` (zext32) or ``movsx`` by 32."""
    if src < 0 or src == dst:
        return drop(links, dst) if src != dst or not wide or off else links
    if wide and off == 0:
        kind, table = "copy", None
    elif not wide and off == 0:
        kind, table = "zext32", _AFTER_ZEXT
    elif wide and off == 32:
        kind, table = "sext32", _AFTER_SEXT
    else:
        return drop(links, dst)
    inherited = []
    for x, s, k in links:
        if x == src and s != dst:
            if table is None:
                inherited.append((dst, s, k))
            elif k in table:
                inherited.append((dst, s, table[k]))
    out = set(drop(links, dst))
    out.add((dst, src, kind))
    out.update(inherited)
    return frozenset(out)


def on_alu(links: Links, op: int, dst: int, src: int, wide: bool, imm: int) -> Links:
    """``dst op= ...``: the shift steps of the extension idioms keep their link."""
    if not links:
        return links
    if not wide or src >= 0 or imm != 32 or op not in (_LSH, _RSH, _ARSH):
        return drop(links, dst)
    kept = []
    for x, s, k in links:
        if x != dst:
            continue
        if op == _LSH and k == "copy":
            kept.append((dst, s, "shl32"))
        elif op == _RSH and k == "shl32":
            kept.append((dst, s, "zext32"))
        elif op == _ARSH and k == "shl32":
            kept.append((dst, s, "sext32"))
    return drop(links, dst) | frozenset(kept)


def _apply(kind: str, x: int) -> int:
    if kind == "copy":
        return x
    if kind == "zext32":
        return x & M32
    if kind == "sext32":
        return (x & M32) - ((x & 0x80000000) << 1) & M64
    return (x << 32) & M64  # shl32


def _identity_on(kind: str, part: Scalar) -> bool:
    """The link's function is the identity on every value of ``part``."""
    if kind == "copy":
        return True
    r = S.as_rng(part)
    if kind == "zext32":
        return r.umax <= M32
    if kind == "sext32":
        return r.smin >= S.S32_MIN and r.smax <= S.S32_MAX
    return False


def refine(source: Value, kind: str, refined: Value) -> Value | None:
    """The source register's value, given that ``kind(source)`` is now ``refined``;
    None when no value of the source is left (the branch side is infeasible)."""
    if not is_scalar(source) or not is_scalar(refined):
        return source
    src: Scalar = source  # type: ignore[assignment]
    ref: Scalar = refined  # type: ignore[assignment]
    if type(src) is frozenset:
        kept = frozenset(x for x in src if S.contains(ref, _apply(kind, x)))
        return kept or None
    parts = src.parts if type(src) is Rng and src.parts else (src,)
    out: list[Scalar] = []
    for p in parts:
        if type(p) is frozenset:
            kp = frozenset(x for x in p if S.contains(ref, _apply(kind, x)))
            if kp:
                out.append(kp)
        elif _identity_on(kind, p):
            m = RF.meet(p, ref)
            if m is not None:
                out.append(m)
        else:
            out.append(p)
    if not out:
        return None
    return S.union(tuple(out))
