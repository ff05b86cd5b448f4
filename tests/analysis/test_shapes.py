"""Copies of one program shape (one per endpoint) analysed once (tcaudit.analysis.shapes).

Every test compares the shared answer with each copy's own analysis (``shared=None``):
sharing may only make the scan faster, never change an answer. A constant that decides
the verdict (a returned value, a tail-call index, a branch, a read-only map value) makes
the family fall back to analysing each copy on its own.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as hs

from tcaudit.analysis.closure import Analysis, ProgramCode, analyse
from tcaudit.analysis.dependence import depends
from tcaudit.analysis.insns import Insn, encode
from tcaudit.analysis.prepare import Prepared, operand_hull
from tcaudit.analysis.shapes import Shapes
from tests.analysis.test_verdicts_props import fp_trees, trees
from tests.bpfasm import (
    HELPERS,
    R0,
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R7,
    R10,
    FakeSource,
    Item,
    Label,
    add,
    alu,
    and_,
    call,
    exit_,
    jmp,
    jmp32,
    ld_imm64,
    ld_map,
    ld_map_value,
    ldx,
    lsh,
    mov,
    mov32,
    program,
    pseudo_call,
    st,
    stx,
    sub,
)

ARRAY_BASE = 500
HASH = 900  # a map every copy shares (say, the node's policy map)


class CopySource(FakeSource):
    """FakeSource with the raw-code view ``shapes`` reads, and read-only maps."""

    def __init__(self, programs: Mapping[int, ProgramCode], arrays: Mapping[int, Mapping[int, int]],
                 rodata: Mapping[int, bytes] | None = None,
                 helpers: Mapping[int, str] = HELPERS) -> None:
        super().__init__(programs, arrays, helpers)
        self.rodatas = dict(rodata or {})

    def rodata(self, map_id: int) -> bytes | None:
        return self.rodatas.get(map_id)

    def readable(self, prog_id: int) -> bool:
        return prog_id in self.programs

    def raw(self, prog_id: int) -> bytes | None:
        p = self.programs.get(prog_id)
        return encode(p.insns) if p is not None else None

    def map_ids_of(self, prog_id: int) -> tuple[int, ...]:
        p = self.programs.get(prog_id)
        return p.map_ids if p is not None else ()

    def func_starts_of(self, prog_id: int) -> tuple[int, ...]:
        p = self.programs.get(prog_id)
        return p.func_starts if p is not None else (0,)


def both(source: CopySource, roots: list[int]) -> tuple[dict[int, Analysis], dict[int, Analysis],
                                                        Shapes]:
    """Each root analysed on its own, and with the family shared."""
    own = {r: analyse(r, source) for r in roots}
    shapes = Shapes(source)
    shapes.add_trees(roots)
    shared = {r: analyse(r, source, shared=shapes) for r in roots}
    return own, shared, shapes


def same(a: Analysis, b: Analysis) -> None:
    assert (a.possible, a.ranges, a.reason, dict(a.exits)) == (
        b.possible, b.ranges, b.reason, dict(b.exits))
    assert [(t.pc, t.map_id, t.targets) for t in a.tail_calls] == [
        (t.pc, t.map_id, t.targets) for t in b.tail_calls]


# -- an endpoint tree: root parses and tail-calls; targets use the endpoint's constants --

def endpoint_tree(k: int, *, ip: int, ifindex: int, verdict_slot: int = 0,
                  returned: int = 0, limit: int = 5) -> dict[int, ProgramCode]:
    """Copy ``k``: programs 100k+0..2, prog array ARRAY_BASE+k. The endpoint's IP is
    compared with the packet's (32-bit ==), stored on the stack as a map key and its
    ifindex passed to bpf_redirect; ``verdict_slot``, ``returned`` and ``limit`` are
    constants that decide the verdict."""
    arr = ARRAY_BASE + k
    base = 100 * k
    root = program(
        mov(R6, R1),
        ldx(4, R2, R6, 76), ldx(4, R3, R6, 80),
        mov(R4, R2), add(R4, 34), jmp("gt", R4, R3, "drop"),
        ldx(4, R7, R2, 26),  # the packet's source address
        jmp32("ne", R7, ip, "other"),
        st(4, R10, -8, ip), mov(R2, R10), add(R2, -8), *ld_map(R1, HASH),
        call("map_lookup_elem"), jmp("eq", R0, 0, "drop"),
        Label("other"),
        mov(R1, R6), *ld_map(R2, arr), mov(R3, verdict_slot), call("tail_call"),
        mov(R0, 2), exit_(),
        Label("drop"), mov(R0, 2), exit_(),
        prog_id=base, name="root",
    )
    redirect = program(
        mov(R1, ifindex), mov(R2, 0), call("redirect"), exit_(), prog_id=base + 1, name="rd")
    decide = program(
        mov(R2, limit), ldx(4, R3, R1, 0), jmp("gt", R2, 3, "big"),
        mov(R0, returned), exit_(), Label("big"), mov(R0, 0), exit_(),
        prog_id=base + 2, name="decide")
    return {
        p.prog_id: ProgramCode(p.prog_id, p.name, p.insns, p.func_starts, maps)  # type: ignore[misc]
        for p, maps in ((root, (HASH, arr)), (redirect, ()), (decide, ()))
    }


def fleet(n: int, **vary: list[int]) -> tuple[CopySource, list[int]]:
    programs: dict[int, ProgramCode] = {}
    arrays: dict[int, dict[int, int]] = {}
    for k in range(1, n + 1):
        opts = {name: values[k - 1] for name, values in vary.items()}
        opts.setdefault("ip", 0x0A000000 + k)
        opts.setdefault("ifindex", 10 + k)
        programs.update(endpoint_tree(k, **opts))
        arrays[ARRAY_BASE + k] = {0: 100 * k + 1, 1: 100 * k + 2}
    return CopySource(programs, arrays), [100 * k for k in range(1, n + 1)]


def test_copies_that_differ_only_in_address_and_ifindex_share_one_analysis() -> None:
    source, roots = fleet(6)
    own, shared, shapes = both(source, roots)
    for r in roots:
        same(own[r], shared[r])
        assert shared[r].possible == frozenset({2, 7})
        # each copy's own prog array and its own targets
        (call_,) = shared[r].tail_calls
        assert call_.map_id == ARRAY_BASE + r // 100 and call_.targets == (r + 1,)
    assert shapes.stats.families == 3 and shapes.stats.copies == 18
    # the first tree is analysed (its programs from the families), the other five are
    # its answer with their own program and map ids
    assert shapes.stats.dependent == 0 and shapes.stats.trees == 5
    assert shared[roots[1]].reason == f"tail calls via prog array {ARRAY_BASE + 2} (2 slots)"


def test_a_returned_constant_that_differs_is_not_shared() -> None:
    source, roots = fleet(3, verdict_slot=[1, 1, 1], returned=[0, 2, 7], limit=[1, 1, 1])
    own, shared, shapes = both(source, roots)
    for r in roots:
        same(own[r], shared[r])
    assert [shared[r].possible for r in roots] == [
        frozenset({0, 2}), frozenset({2}), frozenset({2, 7})]
    assert shapes.stats.dependent >= 1


def test_one_dependent_family_leaves_the_rest_of_the_tree_shared() -> None:
    """The copies of ``decide`` return different constants, so each is analysed on
    its own; the roots (which differ in address and ifindex only) still take their
    family's answer."""
    source, roots = fleet(4, verdict_slot=[1, 1, 1, 1], returned=[0, 2, 7, 0],
                          limit=[1, 1, 1, 1])
    own, shared, shapes = both(source, roots)
    for r in roots:
        same(own[r], shared[r])
    assert [shared[r].possible for r in roots] == [
        frozenset({0, 2}), frozenset({2}), frozenset({2, 7}), frozenset({0, 2})]
    assert shapes.stats.alone == 4  # each tree's decide
    assert shapes.stats.shared >= 3  # roots 2-4 (and the redirect copies) shared
    assert shapes.stats.trees == 0  # no tree is a whole copy of another


def node_wide(n: int, returned: list[int]) -> tuple[CopySource, list[int]]:
    """Every root tail-calls, by a packet-chosen index, into one node-wide prog array
    that holds every endpoint's ``decide`` (a CNI's policy array): each tree holds all
    of them, and the decides differ in the constant they return."""
    programs: dict[int, ProgramCode] = {}
    slots: dict[int, int] = {}
    for k in range(1, n + 1):
        base = 100 * k
        root = program(
            mov(R6, R1), ldx(4, R3, R6, 8), and_(R3, 63), mov(R1, R6),
            *ld_map(R2, NODE_ARRAY), call("tail_call"), mov(R0, 2), exit_(),
            prog_id=base, name="root")
        decide = program(mov(R0, returned[k - 1]), exit_(), prog_id=base + 2, name="decide")
        programs[base] = ProgramCode(base, "root", root.insns, root.func_starts,
                                     (NODE_ARRAY,))
        programs[base + 2] = ProgramCode(base + 2, "decide", decide.insns,
                                         decide.func_starts, ())
        slots[k] = base + 2
    return CopySource(programs, {NODE_ARRAY: slots}), [100 * k for k in range(1, n + 1)]


NODE_ARRAY = 600


def test_programs_analysed_on_their_own_are_analysed_once_per_scan() -> None:
    n = 5
    source, roots = node_wide(n, [0, 2, 7, 0, 2])
    own, shared, shapes = both(source, roots)
    for r in roots:
        same(own[r], shared[r])
        assert shared[r].possible == frozenset({0, 2, 7})
    # the first tree analyses the five decides, the other four trees reuse them
    assert shapes.stats.reused == (n - 1) * n


def test_a_tail_call_index_that_differs_is_not_shared() -> None:
    source, roots = fleet(3, verdict_slot=[0, 1, 0], returned=[7, 7, 7])
    own, shared, _ = both(source, roots)
    for r in roots:
        same(own[r], shared[r])
    assert [shared[r].possible for r in roots] == [
        frozenset({2, 7}), frozenset({0, 2}), frozenset({2, 7})]


def test_prog_arrays_the_code_loads_are_followed_even_when_the_info_lists_no_maps() -> None:
    """Two roots of different shapes tail-call copies that return different constants;
    the programs' info lists no maps, so only the code says which arrays they use."""
    def root(pid: int, arr: int, extra: int) -> ProgramCode:
        p = program(mov(R6, R1), *[mov(R7, 0)] * extra, mov(R1, R6), *ld_map(R2, arr),
                    mov(R3, 0), call("tail_call"), mov(R0, -1), exit_(), prog_id=pid)
        return ProgramCode(pid, "root", p.insns, p.func_starts, ())

    def leaf(pid: int, verdict: int) -> ProgramCode:
        p = program(mov(R0, verdict), exit_(), prog_id=pid)
        return ProgramCode(pid, "leaf", p.insns, p.func_starts, ())
    programs = {100: root(100, 1, 0), 101: root(101, 2, 1), 200: leaf(200, 0), 201: leaf(201, 2)}
    source = CopySource(programs, {1: {0: 200}, 2: {0: 201}}, helpers=HELPERS)
    own, shared, _ = both(source, [200, 201, 100, 101])  # the leaves attached too
    for r in own:
        same(own[r], shared[r])
    assert [shared[r].possible for r in (100, 101)] == [frozenset({-1, 0}), frozenset({-1, 2})]


def test_a_branch_a_constant_decides_is_not_shared() -> None:
    source, roots = fleet(3, verdict_slot=[1, 1, 1], returned=[2, 2, 2], limit=[1, 9, 1])
    own, shared, _ = both(source, roots)
    for r in roots:
        same(own[r], shared[r])
    assert [shared[r].possible for r in roots] == [
        frozenset({2}), frozenset({0, 2}), frozenset({2})]


def rodata_copy(k: int, value: bytes) -> tuple[dict[int, ProgramCode], dict[int, bytes]]:
    """A copy whose config lives in a frozen read-only map (id 700+k): word 0 is the
    endpoint id (only compared with packet data), word 1 the verdict."""
    ro = 700 + k
    p = program(
        mov(R6, R1), ldx(4, R2, R6, 76), ldx(4, R3, R6, 80),
        mov(R4, R2), add(R4, 8), jmp("gt", R4, R3, "out"),
        ldx(4, R7, R2, 0), *ld_map_value(R1, ro, 0), ldx(4, R1, R1, 0),
        jmp32("eq", R7, R1, "out"),
        *ld_map_value(R1, ro, 0), ldx(4, R0, R1, 4), exit_(),
        Label("out"), mov(R0, 2), exit_(),
        prog_id=100 * k, name="ro",
    )
    return {p.prog_id: ProgramCode(p.prog_id, p.name, p.insns, p.func_starts, (ro,))}, {ro: value}


def test_read_only_maps_whose_compared_word_differs_share_and_a_verdict_word_does_not() -> None:
    import struct

    for verdicts, dependent in (([0, 0, 0], False), ([0, 7, 2], True)):
        programs: dict[int, ProgramCode] = {}
        ro: dict[int, bytes] = {}
        for k, v in enumerate(verdicts, start=1):
            p, r = rodata_copy(k, struct.pack("=II", 1000 + k, v))
            programs.update(p)
            ro.update(r)
        source = CopySource(programs, {}, rodata=ro)
        roots = sorted(programs)
        own, shared, shapes = both(source, roots)
        for r in roots:
            same(own[r], shared[r])
        assert [shared[r].possible for r in roots] == [frozenset({2, v}) for v in verdicts]
        assert bool(shapes.stats.dependent) is dependent
        assert bool(shapes.stats.shared or shapes.stats.trees) is not dependent


def test_copies_differing_in_a_helper_are_not_a_family() -> None:
    a = program(mov(R0, 0), call("ktime_get_ns"), mov(R0, 0), exit_(), prog_id=1)
    b = program(mov(R0, 0), call("user_rnd_u32"), mov(R0, 0), exit_(), prog_id=2)
    shapes = Shapes(CopySource({1: a, 2: b}, {}))
    shapes.add_trees([1, 2])
    assert shapes.local(1, (), _Nothing()) is None
    assert shapes.stats.families == 0


class _Nothing:
    """A tree context never consulted (the lookup stops before analysing)."""

    env = None

    def helper_name(self, imm: int) -> str | None:
        raise AssertionError

    def rodata(self, map_id: int) -> bytes | None:
        raise AssertionError


# -- the dependence pass on its own ---------------------------------------------------

def why(*items: Item, varying: set[int], maps: Mapping[int, frozenset[int]] | None = None,
        entry_cb: frozenset[int] = frozenset()) -> str | None:
    return carried(*items, varying=varying, maps=maps, entry_cb=entry_cb)[0]


def carried(*items: Item, varying: set[int], maps: Mapping[int, frozenset[int]] | None = None,
            entry_cb: frozenset[int] = frozenset()) -> tuple[str | None, frozenset[int]]:
    """The pass's reason, and the cb[] bytes its tail calls carry (into any array)."""
    p = program(*items)
    reason, out = depends(
        Prepared(p.insns, p.func_starts, frozenset(varying)), frozenset(varying),
        maps or {}, known_rodata=lambda _m: False, helper_name=HELPERS.get,
        entry_cb=entry_cb, cb_range=(48, 68))
    return reason, frozenset().union(*(cb for _m, (cb, _x) in out))


def pkt(size: int, reg: Insn) -> list[Item]:
    """r2 = data; bounds check; reg = *(size *)(r2 + 0)"""
    return [ldx(4, R2, R1, 76), ldx(4, R3, R1, 80), mov(R4, R2), add(R4, 8),
            jmp("gt", R4, R3, "out"), reg]


def test_an_exact_varying_value_through_cb_may_decide_a_branch_alike_for_every_copy() -> None:
    """An endpoint id (a mov immediate, 200 or 201 in the copies) stored into cb[] and
    loaded back: a test every copy decides alike is allowed, one that tells the copies
    apart is not."""
    def check(*tail: Item) -> str | None:
        p = program(mov32(R6, 200), stx(4, R1, 52, R6), ldx(4, R3, R1, 52), *tail,
                    mov(R0, 0), exit_(), Label("out"), mov(R0, 2), exit_())
        hulls = {0: operand_hull(p.insns[0], {200, 201})}
        assert hulls[0] == frozenset({200, 201})
        return depends(Prepared(p.insns, p.func_starts, frozenset({0}), hulls),
                       frozenset({0}), {}, known_rodata=lambda _m: False,
                       helper_name=HELPERS.get, cb_range=(48, 68), values={0: frozenset(
                           {200, 201})}, hulls=hulls)[0]
    assert check(jmp32("gt", R3, 65535, "out")) is None
    assert check(jmp32("eq", R3, 7, "out")) is None
    assert check(jmp32("eq", R3, 201, "out"))
    # an immediate operation: still every copy's value (201, 202), computed as the
    # engine computes it; a register operation: not exact any more
    assert check(add(R3, 1), jmp32("gt", R3, 65535, "out")) is None
    assert check(add(R3, 1), jmp32("eq", R3, 202, "out"))
    assert check(add(R3, R6), jmp32("gt", R3, 65535, "out"))
    # spilled and filled (8 bytes, or 4: every value fits): still exact; filled at
    # another size or sign-extended: not
    assert check(stx(8, R10, -8, R3), ldx(8, R3, R10, -8), jmp32("gt", R3, 65535, "out")) is None
    assert check(stx(4, R10, -8, R3), ldx(4, R3, R10, -8), jmp32("gt", R3, 65535, "out")) is None
    assert check(stx(4, R10, -8, R3), ldx(2, R3, R10, -8), jmp32("gt", R3, 65535, "out"))
    assert check(stx(4, R10, -8, R3), ldx(4, R3, R10, -8, sx=True),
                 jmp32("gt", R3, 65535, "out"))
    # a helper writing over the slot, so many bytes: the engine reads any number back
    # there, alike for every copy; by a length the pass cannot tell: the slot may still
    # hold the varying value, no longer exact
    assert check(stx(8, R10, -8, R3), mov(R7, R1), mov(R1, R7), mov(R2, 0), mov(R3, R10),
                 add(R3, -8), mov(R4, 8), call("skb_load_bytes"), ldx(8, R3, R10, -8),
                 jmp32("gt", R3, 65535, "out")) is None
    assert check(stx(8, R10, -8, R3), mov(R7, R1), ldx(4, R4, R1, 0), mov(R1, R7),
                 mov(R2, 0), mov(R3, R10), add(R3, -8), call("skb_load_bytes"),
                 ldx(8, R3, R10, -8), jmp32("gt", R3, 65535, "out"))
    assert check(stx(8, R10, -8, R3), mov(R7, R1), mov(R1, R7), mov(R2, 0), mov(R3, R10),
                 add(R3, -24), mov(R4, 8), call("skb_load_bytes"), ldx(8, R3, R10, -8),
                 jmp32("gt", R3, 65535, "out")) is None


def test_the_side_of_a_jump_no_copy_takes_is_not_followed() -> None:
    """Identities 200 and 201 never take ``< 3``: what that side does with them (return
    one) is in no copy's answer; a test some copy may take is followed."""
    def check(limit: int) -> str | None:
        p = program(mov32(R6, 200), stx(4, R1, 52, R6), ldx(4, R3, R1, 52),
                    jmp32("lt", R3, limit, "reserved"), mov(R0, 0), exit_(),
                    Label("reserved"), mov(R0, R3), exit_())
        hulls = {0: operand_hull(p.insns[0], {200, 201})}
        return depends(Prepared(p.insns, p.func_starts, frozenset({0}), hulls),
                       frozenset({0}), {}, known_rodata=lambda _m: False,
                       helper_name=HELPERS.get, cb_range=(48, 68), values={0: frozenset(
                           {200, 201})}, hulls=hulls)[0]
    assert check(3) is None
    assert check(201) == "a varying constant decides a branch (insn 3)"
    assert check(202) == "a varying constant reaches r0 at the exit at insn 7"


def test_a_read_only_map_field_is_exact_when_every_copys_value_is_known() -> None:
    """A varying .rodata field (200 or 201 in the copies) tested against an immediate:
    decided alike for every copy when the pass and the engine are given the copies'
    values, a dependence when not."""
    def check(every: object, cond: str, imm: int) -> str | None:
        p = program(*ld_map_value(R1, 9, 0), ldx(4, R3, R1, 0), jmp32(cond, R3, imm, "out"),
                    mov(R0, 0), exit_(), Label("out"), mov(R0, 2), exit_())
        return depends(Prepared(p.insns, p.func_starts), frozenset(), {9: frozenset({0})},
                       known_rodata=lambda _m: False, helper_name=HELPERS.get,
                       map_value=every)[0]  # type: ignore[arg-type]
    def values(mid: int, at: int, size: int) -> frozenset[int] | None:
        return frozenset({200, 201}) if (mid, at, size) == (9, 0, 4) else None
    assert check(values, "gt", 65535) is None
    assert check(values, "eq", 201)
    assert check(None, "gt", 65535)


def test_dependence_rules() -> None:
    out = [Label("out"), mov(R0, 0), exit_()]
    # == against a full 32-bit packet word at 32 bits: independent
    assert why(*pkt(4, ldx(4, R7, R2, 0)), mov(R6, 5), jmp32("eq", R7, R6, "out"),
               mov(R0, 2), exit_(), *out, varying={6}) is None
    # ... but at 64 bits (the constant may be out of the word's range), or after a test
    # narrowed the word, or with a 16-bit load, or with >: it depends
    assert why(*pkt(4, ldx(4, R7, R2, 0)), mov(R6, 5), jmp("eq", R7, R6, "out"),
               mov(R0, 2), exit_(), *out, varying={6})
    assert why(*pkt(4, ldx(4, R7, R2, 0)), jmp32("eq", R7, 0, "out"), mov(R6, 5),
               jmp32("eq", R7, R6, "out"), mov(R0, 2), exit_(), *out, varying={7})
    assert why(*pkt(2, ldx(2, R7, R2, 0)), mov(R6, 5), jmp32("eq", R7, R6, "out"),
               mov(R0, 2), exit_(), *out, varying={6})
    assert why(*pkt(4, ldx(4, R7, R2, 0)), mov(R6, 5), jmp32("gt", R7, R6, "out"),
               mov(R0, 2), exit_(), *out, varying={6})
    # a copy of the compared word is narrowed with it (the engine links copies)
    assert why(*pkt(4, ldx(4, R7, R2, 0)), mov(R4, R7), mov(R6, 5),
               jmp32("eq", R7, R6, "out"), mov(R0, R4), exit_(), *out, varying={7})
    # returned, through the stack
    assert why(mov(R6, 5), stx(8, R10, -8, R6), ldx(8, R0, R10, -8), exit_(), varying={0})
    # overwritten before it matters: independent
    assert why(mov(R6, 5), stx(8, R10, -8, R6), st(8, R10, -8, 0), ldx(8, R0, R10, -8),
               exit_(), varying={0}) is None
    # into cb[]: followed (the bytes are handed to tail-call targets); loaded back and
    # returned: depends
    assert carried(mov(R6, 5), stx(4, R1, 52, R6), mov(R7, R1), mov(R1, R7), *ld_map(R2, 1),
                   mov(R3, 0), call("tail_call"), mov(R0, 0), exit_(), varying={0}) == (
        None, frozenset(range(52, 56)))
    # stored but never handed on (no tail call after it): nothing carried
    assert carried(mov(R6, 5), stx(4, R1, 52, R6), mov(R0, 0), exit_(), varying={0}) == (
        None, frozenset())
    assert why(mov(R6, 5), stx(4, R1, 52, R6), ldx(4, R0, R1, 52), exit_(), varying={0})
    # into another context field (the engine keeps none: skb->queue_mapping set from
    # an endpoint id): independent; across the edge of cb[]: depends
    assert why(mov(R6, 5), stx(4, R1, 8, R6), mov(R0, 0), exit_(), varying={0}) is None
    assert why(mov(R6, 5), stx(8, R1, 44, R6), mov(R0, 0), exit_(), varying={0})
    # a tail-call target entered with a tainted cb[] byte: returning it depends, an
    # untainted one does not
    assert why(ldx(4, R0, R1, 52), exit_(), varying=set(), entry_cb=frozenset({52}))
    assert why(ldx(4, R0, R1, 48), exit_(), varying=set(), entry_cb=frozenset({52})) is None
    # a tail-call index, a helper length it sets
    assert why(mov(R6, R1), mov(R3, 1), mov(R1, R6), *ld_map(R2, 1), call("tail_call"),
               mov(R0, 0), exit_(), varying={1})
    assert why(mov(R6, R1), mov(R2, 0), mov(R3, R10), add(R3, -16), mov(R4, 16),
               call("skb_load_bytes"), mov(R0, 0), exit_(), varying={4})
    # a load from a read-only map whose contents vary, returned
    assert why(*ld_map_value(R1, 9, 0), ldx(4, R0, R1, 0), exit_(), varying=set(),
               maps={9: frozenset({1})})
    # a 16-bit field of it compared with a 16-bit packet field (both sides feasible for
    # every copy), and a 32-bit one (a copy's value above 65535 never matches)
    def field(size: int) -> str | None:
        return why(*pkt(2, ldx(2, R5, R2, 0)), *ld_map_value(R1, 9, 0), ldx(size, R3, R1, 0),
                   jmp32("ne", R5, R3, "out"), mov(R0, 0), exit_(), *out, varying=set(),
                   maps={9: frozenset({0, 1, 2})})
    assert field(2) is None
    assert field(4)
    # a varying 64-bit constant (an address in an ld_imm64) masked to 16 bits and
    # compared with a 16-bit packet field: both sides feasible for every copy; masked to
    # 17 bits, a copy's value may be out of the field's reach
    def masked(mask: int) -> str | None:
        return why(*pkt(2, ldx(2, R5, R2, 0)), *ld_imm64(R3, 0x10001), and_(R3, mask),
                   jmp32("ne", R5, R3, "out"), mov(R0, 0), exit_(), *out, varying={6})
    assert masked(0xFFFF) is None
    assert masked(0x1FFFF)
    # ... but not one of its bytes that are the same in every copy
    assert why(*ld_map_value(R1, 9, 4), ldx(4, R0, R1, 0), exit_(), varying=set(),
               maps={9: frozenset({1})}) is None
    # a pointer into the frame spilled to the frame (clang keeps a buffer's address so):
    # filled whole, it is that pointer at its offset (the engine's slot holds it), so a
    # varying value stored through it reaches the slot it points to, not the others
    spill = [mov(R3, R10), add(R3, -16), stx(8, R10, -24, R3)]
    assert why(*spill, mov(R6, 5), st(8, R10, -8, 0), ldx(8, R0, R10, -8), exit_(),
               varying={3}) is None
    assert why(*spill, mov(R6, 5), ldx(8, R4, R10, -24), stx(8, R4, 0, R6),
               ldx(8, R0, R10, -16), exit_(), varying={3})
    assert why(*spill, mov(R6, 5), ldx(8, R4, R10, -24), stx(8, R4, 0, R6),
               ldx(8, R0, R10, -8), exit_(), varying={3}) is None
    # ... and once one is spilled, a fill of a slot last written whole at a known
    # offset is what was stored there (the engine knows the slot), not that pointer
    assert why(*spill, mov(R6, 5), stx(8, R10, -8, R6), ldx(4, R2, R1, 0),
               stx(8, R10, -32, R2), ldx(8, R4, R10, -32), ldx(1, R0, R4, 0), exit_(),
               varying={3}) is None
    # ... and fewer than 8 bytes of the frame are a number, never that pointer
    assert why(*spill, mov(R6, 5), stx(8, R10, -8, R6), ldx(4, R4, R10, -40),
               ldx(1, R0, R4, 0), exit_(), varying={3}) is None
    # ... conservatively when its offset is not known: a varying value stored through
    # the reloaded pointer reaches every later stack load, wherever it points
    vague = [ldx(1, R7, R1, 0), mov(R3, R10), add(R3, -16), and_(R7, 8), sub(R3, R7),
             stx(8, R10, -24, R3)]
    assert why(*vague, mov(R6, 5), ldx(8, R4, R10, -24), stx(8, R4, 0, R6),
               ldx(8, R0, R10, -8), exit_(), varying={6})
    # ... and when the slot holds that pointer on one path only (its offset is not
    # followed past the join)
    assert why(*spill, mov(R6, 5), ldx(4, R2, R1, 0), jmp("eq", R2, 0, "on"),
               stx(8, R10, -24, R2), Label("on"), ldx(8, R4, R10, -24), stx(8, R4, 0, R6),
               ldx(8, R0, R10, -8), exit_(), varying={3})
    assert why(*spill, mov(R6, 5), ldx(8, R4, R10, -24), stx(8, R4, 0, R6),
               mov(R0, 0), exit_(), varying={3}) is None
    # ... and a subprogram handed that frame could write through it: depends
    assert why(*spill, mov(R6, 5), mov(R1, R10), add(R1, -32), pseudo_call("sub"),
               mov(R0, 0), exit_(), Label("sub"), mov(R0, 0), exit_(), varying={3})
    assert why(*spill, mov(R6, 5), mov(R1, 0), mov(R3, 0), pseudo_call("sub"),
               mov(R0, 0), exit_(), Label("sub"), mov(R0, 0), exit_(), varying={3}) is None


# -- property: sharing never changes an answer --------------------------------------

def perturb(code: ProgramCode, rnd: random.Random, prog_id: int,
            rate: float = 0.3) -> ProgramCode:
    """The same program with some value immediates changed (an endpoint's copy)."""
    out = []
    prev_ldimm = False
    for ins in code.insns:
        cls = ins.code & 7
        value = (cls in (4, 7) and not ins.code & 8 and ins.code & 0xF0 not in (0x80, 0xD0)) or (
            cls in (5, 6) and not ins.code & 8 and ins.code & 0xF0 not in (0x00, 0x80, 0x90, 0xE0)
        ) or cls == 2
        if prev_ldimm:
            value = False
        prev_ldimm = ins.code == 0x18
        if value and rnd.random() < rate:
            ins = Insn(ins.code, ins.dst, ins.src, ins.off, rnd.choice((0, 1, 2, 7, -1, 5, 99)))
        out.append(ins)
    return ProgramCode(prog_id, code.name, tuple(out), code.func_starts, code.map_ids)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(trees(tail_calls=True, subprog=True, loops=True), hs.integers(0, 1 << 30))
def test_sharing_never_changes_an_answer(tree: object, seed: int) -> None:
    rnd = random.Random(seed)
    src = tree.source  # type: ignore[attr-defined]
    root = tree.root  # type: ignore[attr-defined]
    programs = dict(src.programs)
    copies = [root.prog_id] + [1000 + i for i in range(3)]
    for pid in copies[1:]:
        programs[pid] = perturb(root, rnd, pid)
    source = CopySource(programs, src.arrays, helpers=src.helpers)
    own, shared, _ = both(source, copies)
    for r in copies:
        same(own[r], shared[r])



def copy_tree(tree: object, rnd: random.Random, copies: int) -> tuple[CopySource, list[int]]:
    """``copies`` endpoints' trees made of one generated tree: each copy's programs
    (ids k*1000 + id) with some value immediates changed, in a prog array of its own
    (the copy's ld_imm64 map references point at it)."""
    src = tree.source  # type: ignore[attr-defined]
    programs: dict[int, ProgramCode] = dict(src.programs)
    arrays: dict[int, dict[int, int]] = {m: dict(a) for m, a in src.arrays.items()}
    roots = [tree.root.prog_id]  # type: ignore[attr-defined]
    for k in range(1, copies):
        array = PROG_ARRAY_OF_COPY + k
        for pid, code in src.programs.items():
            # some programs alike in every copy, some with a few constants changed
            p = perturb(code, rnd, k * 1000 + pid, rnd.choice((0.0, 0.05, 0.3)))
            insns = tuple(Insn(i.code, i.dst, i.src, i.off, array)
                          if i.code == 0x18 and i.src == 1 and i.imm == PROPS_ARRAY else i
                          for i in p.insns)
            maps = tuple(array if m == PROPS_ARRAY else m for m in p.map_ids)
            programs[k * 1000 + pid] = ProgramCode(p.prog_id, p.name, insns, p.func_starts,
                                                   maps)
        if PROPS_ARRAY in src.arrays:
            arrays[array] = {s: k * 1000 + t for s, t in src.arrays[PROPS_ARRAY].items()}
        roots.append(k * 1000 + tree.root.prog_id)  # type: ignore[attr-defined]
    return CopySource(programs, arrays, helpers=src.helpers), roots


PROPS_ARRAY = 1  # test_verdicts_props.PROG_ARRAY
PROG_ARRAY_OF_COPY = 5000


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(hs.one_of(trees(tail_calls=True, subprog=True, loops=False), fp_trees()),
       hs.integers(0, 1 << 30))
def test_sharing_never_changes_an_answer_in_copied_trees(tree: object, seed: int) -> None:
    """Every program of every copy perturbed: some families share, some are analysed on
    their own, frame pointers are spilled; each tree's answer is its own."""
    assume(len(tree.source.programs) > 1)  # type: ignore[attr-defined]
    source, roots = copy_tree(tree, random.Random(seed), 4)
    own, shared, _ = both(source, roots)
    for r in roots:
        same(own[r], shared[r])


# -- a field read byte by byte (an unaligned or packed one, like an ARP target address) --

def arp_target(ip: int | None, *, gap: int = 8, narrowed: bool = False,
               returned_copy: bool = False, wide_const: bool = False) -> list[Item]:
    """What clang emits for ``if (arp->tip != IP)`` on a packed header: the four bytes
    at 38..41 loaded one by one, shifted and ORed (``gap``: the shift between bytes of
    a pair, 8 when they are put together right), then compared with the constant, an
    immediate or (``wide_const``: as clang does for one that does not fit a signed
    32-bit immediate) a register set by ld_imm64; ``narrowed``: a byte was tested
    first; ``returned_copy``: a copy of the compared value is returned."""
    head: list[Item] = [ldx(4, R2, R1, 80), ldx(4, R1, R1, 76), mov(R3, R1), add(R3, 42),
                        jmp("gt", R3, R2, "out")]
    if narrowed:
        head += [ldx(1, R2, R1, 39), jmp("eq", R2, 0, "out")]
    else:
        head += [ldx(1, R2, R1, 39)]
    body: list[Item] = [
        lsh(R2, gap), ldx(1, R3, R1, 38), alu("or", R2, R3),
        ldx(1, R3, R1, 40), ldx(1, R1, R1, 41), lsh(R1, 8), alu("or", R1, R3),
        lsh(R1, 16), alu("or", R1, R2), mov(R4, R1)]
    if wide_const:
        body += [*ld_imm64(R5, ip or 0), jmp("eq", R1, R5, "match")]
    else:
        body += [jmp("eq", R1, ip or 0, "match")]
    return [*head, *body, mov(R0, 0), exit_(),
            Label("match"), mov(R0, R4 if returned_copy else 7), exit_(),
            Label("out"), mov(R0, 2), exit_()]


def arp_depends(ips: list[int], **kw: object) -> str | None:
    """The dependence pass over the first copy with the position of the constant
    varying and every copy's value given, as ``shapes`` gives them."""
    p = program(*arp_target(ips[0], **kw))  # type: ignore[arg-type]
    wide = bool(kw.get("wide_const"))
    pos = next(i for i, x in enumerate(p.insns)
               if (x.code == 0x18 if wide else x.code & 0x07 == 0x05 and x.imm == ips[0]))
    values = {pos: frozenset(ips)}
    hull = operand_hull(p.insns[pos], ips)
    hulls = {pos: hull} if hull is not None else {}
    return depends(Prepared(p.insns, p.func_starts, frozenset({pos}), hulls),
                   frozenset({pos}), {}, known_rodata=lambda _m: False,
                   helper_name=HELPERS.get, cb_range=(48, 68), values=values,
                   hulls=hulls)[0]


def test_a_field_put_together_from_its_bytes_is_opaque_like_one_load() -> None:
    ips = [0x01C8000A, 0x02C8000A, 0x03C8000A]  # 10.200.0.1-3 read little-endian
    assert arp_depends(ips) is None
    # every 32-bit constant, through ld_imm64 (clang's way for those >= 2^31)
    assert arp_depends([0x81C8000A, 0xFFFFFFFF, 0], wide_const=True) is None
    # ... but one that does not fit in 32 bits never matches in that copy
    assert arp_depends([0x81C8000A, 1 << 32], wide_const=True)
    # bytes that do not add up to the whole word, a byte a test narrowed first, and a
    # copy of the compared value returned (the engine narrows it with the value)
    assert arp_depends(ips, gap=4)
    assert arp_depends(ips, narrowed=True)
    assert arp_depends(ips, returned_copy=True)


def test_copies_comparing_a_byte_assembled_field_share_one_analysis() -> None:
    """Endpoint copies differing in that constant (through ld_imm64, values either side
    of 2^31) analysed once, each answer the one its own analysis gives."""
    ips = [0x01C8000A, 0x81C8000A, 0xFFFFFFFF]
    programs = {}
    for k, ip in enumerate(ips, start=1):
        p = program(*arp_target(ip, wide_const=True), prog_id=100 * k, name="arp")
        programs[p.prog_id] = p
    source = CopySource(programs, {})
    roots = sorted(programs)
    own, shared, shapes = both(source, roots)
    for r in roots:
        same(own[r], shared[r])
        assert shared[r].possible == frozenset({0, 2, 7})
    assert shapes.stats.families == 1 and not shapes.stats.dependent


# -- what real per-endpoint datapaths do besides (Cilium 1.12.16, built from its tag) ----

class CbSource(CopySource):
    """With the kernel's cb[] bytes (``__sk_buff.cb`` after the context rewrite)."""

    def cb_range(self) -> tuple[int, int]:
        return (48, 68)


def test_two_programs_of_one_shape_in_one_tree_are_two_families() -> None:
    """An endpoint's tree holds two programs built from one function (conntrack
    "ingress" and "ingress, policy only"): same code, same maps, a different tail-call
    slot. Across endpoints each is copied with the endpoint's id: two families, each
    shared, every answer the one its own analysis gives."""
    programs: dict[int, ProgramCode] = {}
    arrays: dict[int, dict[int, int]] = {}
    roots = []
    for k in range(1, 4):
        arr = ARRAY_BASE + k
        for role, slot in ((0, 3), (1, 4)):
            p = program(mov(R6, R1), st(4, R1, 60, 1000 + k),  # cb[3] = the endpoint id
                        mov(R1, R6), *ld_map(R2, arr), mov(R3, slot), call("tail_call"),
                        mov(R0, 2), exit_(), prog_id=100 * k + role, name=f"ct{role}")
            programs[p.prog_id] = ProgramCode(p.prog_id, p.name, p.insns, p.func_starts,
                                              (arr,))
            roots.append(p.prog_id)
        for slot, code in ((3, [mov(R0, 0)]), (4, [mov(R1, 0), mov(R0, 7)])):
            t = program(*code, exit_(), prog_id=100 * k + slot + 10, name="t")
            programs[t.prog_id] = t
        arrays[arr] = {3: 100 * k + 13, 4: 100 * k + 14}
    source = CbSource(programs, arrays)
    own, shared, shapes = both(source, roots)
    for r in roots:
        same(own[r], shared[r])
    assert [shared[r].possible for r in roots[:2]] == [frozenset({0, 2}), frozenset({2, 7})]
    assert shapes.stats.families == 4 and not shapes.stats.dependent
    assert shapes.stats.shared or shapes.stats.trees


def ldimm_depends(*tail: Item, ids: tuple[int, ...] = (1001, 1002, 1003)) -> str | None:
    """An endpoint id as a 64-bit constant (ld_imm64), every copy's value given."""
    p = program(*ld_imm64(R1, ids[0]), *tail, mov(R0, 0), exit_(),
                Label("out"), mov(R0, 2), exit_())
    values = {0: frozenset(ids)}
    hull = operand_hull(p.insns[0], ids)
    assert hull == frozenset(ids)
    return depends(Prepared(p.insns, p.func_starts, frozenset({0}), {0: hull}),
                   frozenset({0}), {}, known_rodata=lambda _m: False,
                   helper_name=HELPERS.get, cb_range=(48, 68), values=values,
                   hulls={0: hull})[0]


def test_a_64_bit_constant_is_exact_and_a_context_field_outside_cb_is_not_kept() -> None:
    """``r1 = LXC_ID ll; w1 &= 0xffff; if r1 >= 0xffff ...; skb->queue_mapping = r1``
    (Cilium's edt_set_aggregate): every copy decides the test alike, and the engine
    keeps no context field outside cb[]."""
    assert ldimm_depends(and_(R1, 0xFFFF), jmp("ge", R1, 0xFFFF, "out"),
                         stx(2, R6, 124, R1), mov(R6, R1)) is None
    assert ldimm_depends(and_(R1, 0xFFFF), jmp("ge", R1, 1002, "out"))  # tells them apart
    assert ldimm_depends(jmp("ge", R1, 0xFFFF, "out"), ids=(1001, 1 << 40))


def test_the_taint_a_tail_call_carries_is_per_prog_array() -> None:
    """A varying value put in cb[4] for a call through one array (Cilium's custom
    calls, identity | verdict << 24) and a constant there before a call through
    another (the drop notification): each array's targets get only what was carried
    into it."""
    p = program(mov(R6, R1), mov(R7, 1000), stx(4, R6, 64, R7),
                mov(R1, R6), *ld_map(R2, 7), mov(R3, 2), call("tail_call"),
                st(4, R6, 64, 2), mov(R1, R6), *ld_map(R2, 8), mov(R3, 1), call("tail_call"),
                mov(R0, 2), exit_())
    why, out = depends(Prepared(p.insns, p.func_starts, frozenset({1})), frozenset({1}), {},
                       known_rodata=lambda _m: False, helper_name=HELPERS.get,
                       cb_range=(48, 68))
    assert why is None
    assert dict(out) == {7: (frozenset(range(64, 68)), frozenset())}


def test_a_socket_lookup_only_reads_its_tuple() -> None:
    """A spilled exact value stays exact across bpf_skc_lookup_tcp(ctx, &tuple, ...)
    with the tuple on the stack (its tuple argument is read-only), so a test every
    copy decides alike stays allowed after it."""
    helpers = {**HELPERS, 99: "bpf_tc_skc_lookup_tcp", 98: "bpf_get_hash_recalc_unknown"}

    def check(helper: int) -> str | None:
        p = program(mov32(R6, 200), stx(4, R10, -8, R6), mov(R2, R10), add(R2, -24),
                    mov(R3, 12), mov(R4, -1), mov(R5, 0), call(helper),
                    ldx(4, R3, R10, -8), jmp32("gt", R3, 65535, "out"), mov(R0, 0), exit_(),
                    Label("out"), mov(R0, 2), exit_())
        hulls = {0: operand_hull(p.insns[0], {200, 201})}
        return depends(Prepared(p.insns, p.func_starts, frozenset({0}), hulls),
                       frozenset({0}), {}, known_rodata=lambda _m: False,
                       helper_name=helpers.get, cb_range=(48, 68),
                       values={0: frozenset({200, 201})}, hulls=hulls)[0]  # type: ignore[arg-type]
    assert check(99) is None
    assert check(98)  # a helper tcaudit knows nothing of may write the whole frame


def test_what_a_copy_carries_into_its_own_prog_array_is_followed() -> None:
    """Each copy stores its endpoint id in cb[0] and tail-calls, through its own prog
    array, a program that returns it: the family's check names the representative's
    array, the copies' targets sit in theirs, and every copy's answer is its own id."""
    programs: dict[int, ProgramCode] = {}
    arrays: dict[int, dict[int, int]] = {}
    roots = []
    for k in range(1, 4):
        arr = ARRAY_BASE + k
        p = program(mov(R6, R1), st(4, R1, 48, 1000 + k), mov(R1, R6), *ld_map(R2, arr),
                    mov(R3, 0), call("tail_call"), mov(R0, 2), exit_(),
                    prog_id=100 * k, name="root")
        programs[p.prog_id] = ProgramCode(p.prog_id, p.name, p.insns, p.func_starts, (arr,))
        t = program(ldx(4, R0, R1, 48), exit_(), prog_id=100 * k + 1, name="ret")
        programs[t.prog_id] = t
        arrays[arr] = {0: t.prog_id}
        roots.append(p.prog_id)
    own, shared, _ = both(CbSource(programs, arrays), roots)
    for r in roots:
        same(own[r], shared[r])
    assert [shared[r].possible for r in roots] == [
        frozenset({2, 1000 + k}) for k in range(1, 4)]


def test_a_helper_writing_where_a_varying_constant_points_is_dependent() -> None:
    """Found by the property test above: copies that hand bpf_skb_load_bytes a stack
    buffer at different offsets write different slots; the byte read back from the
    frame depends on which, so the pass says so (as for a store at a tainted address)
    and each copy is analysed on its own."""
    def code(where: int, prog_id: int) -> ProgramCode:
        return program(st(8, R10, -16, -1), mov(R1, R1), mov(R2, 0), mov(R3, R10),
                       add(R3, where), mov(R4, 1), call("skb_load_bytes"),
                       ldx(1, R0, R10, -16), exit_(), prog_id=prog_id, name="p")

    assert why(*code(-1, 1).insns, varying={4}) is not None  # (insn 4: the offset)
    # one copy writes above the byte it reads back, the other over it
    source = CopySource({1: code(-1, 1), 2: code(-16, 2), 3: code(-1, 3)}, {})
    own, shared, _ = both(source, [1, 2, 3])
    assert own[1].possible == own[3].possible == frozenset({255})
    for r in (1, 2, 3):
        same(own[r], shared[r])


def test_every_copys_immediates_are_read_at_once() -> None:
    """``code_diff.immediates``: signed 32-bit immediates, and an ld_imm64's 64-bit
    constant from its two halves, pairwise for each copy."""
    from tcaudit.analysis.code_diff import MAP_REF, NOT_A_VALUE, diff_kind, immediates

    def code(imm: int, wide: int) -> bytes:
        return encode(program(mov(R0, imm), *ld_imm64(R1, wide), exit_()).insns)

    raws = [code(-1, 1 << 32), code(7, 5), code(7, (3 << 32) | 5)]
    assert immediates(raws, {0, 1}, {1}) == {
        0: frozenset({-1, 7}), 1: frozenset({1 << 32, 5, (3 << 32) | 5})}
    insns = program(mov(R0, 1), *ld_imm64(R1, 2), *ld_map(R2, 9), exit_()).insns
    second = {2, 4}
    assert [diff_kind(insns, second, p) for p in range(6)] == [
        0, 1, 1, MAP_REF, NOT_A_VALUE, NOT_A_VALUE]
