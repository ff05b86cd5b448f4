"""Known cb[] words no answer depends on are dropped from a tail call's entry state
(tcaudit.analysis.relevance, through shapes.weaken).

The pattern is a CNI's node-wide policy prog array: each endpoint's root stores its own
identity in cb[] and tail-calls, by a packet-chosen index, into every endpoint's policy
program, which uses the identity as a map key. Kept as a known value, the identity makes
each policy program a different analysis in every tree (N^2); dropped, one serves all.
Every test compares with each tree's own analysis (no sharing, nothing dropped): the
answer must not change, and an identity that decides a branch or a drop code that a
later tail call returns must stay known.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from tcaudit.analysis.closure import Analysis, ProgramCode, analyse
from tcaudit.analysis.scalar import Rng
from tcaudit.analysis.shapes import Shapes
from tests.analysis.conftest import Runs
from tests.analysis.test_shapes import HASH, CopySource, both, same
from tests.analysis.test_verdicts_props import covers
from tests.bpfasm import (
    R0,
    R1,
    R2,
    R3,
    R6,
    R7,
    R10,
    Item,
    Label,
    add,
    and_,
    call,
    exit_,
    jmp,
    jmp32,
    ld_map,
    ldx,
    mov,
    program,
    st,
    stx,
)
from tests.refinterp import Machine

CB = (48, 68)  # where cb[] sits in the context, as the kernel's rewrite puts it
IDENTITY = 48  # cb word the root stores its endpoint's identity in
CODE = 52  # cb word of a drop code, read by the notify program
POLICY_ARRAY = 700  # node-wide: slot k holds endpoint k's policy program
NOTIFY_ARRAY = 701  # node-wide: slot 0 holds the drop-notify program
NOTIFY = 99


class CbSource(CopySource):
    def cb_range(self) -> tuple[int, int]:
        return CB


def _code(pid: int, name: str, maps: tuple[int, ...], *items: Item) -> ProgramCode:
    p = program(*items, prog_id=pid, name=name)
    return ProgramCode(pid, name, p.insns, p.func_starts, maps)


def policy_node(n: int, *, special: int | None = None, special_op: str = "eq",
                root_code: bool = False, notify_on_drop: bool = False
                ) -> tuple[CbSource, list[int]]:
    """n endpoints. Root k stores identity 1000+k at cb[IDENTITY] (and, ``root_code``,
    the drop code 10+k at cb[CODE]), returns its own constant 20+k on one path (so its
    family is analysed copy by copy, with its identity known) and tail-calls into the
    node-wide policy array. Policy k looks the identity up in a map with its own id
    (2000+k) beside it; ``special``: it returns 7 when the identity is that one (or
    compares so with it, ``special_op``);
    ``notify_on_drop``: a failed lookup tail-calls the notify program, which returns
    cb[CODE]."""
    programs: dict[int, ProgramCode] = {}
    slots: dict[int, int] = {}
    for k in range(1, n + 1):
        base = 100 * k
        code = [st(4, R6, CODE, 10 + k)] if root_code else []
        programs[base] = _code(
            base, "root", (POLICY_ARRAY,),
            mov(R6, R1), st(4, R6, IDENTITY, 1000 + k), *code,
            ldx(4, R3, R6, 8), and_(R3, 63), jmp("eq", R3, 63, "mine"),
            mov(R1, R6), *ld_map(R2, POLICY_ARRAY), call("tail_call"),
            mov(R0, 2), exit_(), Label("mine"), mov(R0, 20 + k), exit_())
        decide: list[Item] = []
        if special is not None:
            decide = [ldx(4, R7, R6, IDENTITY), jmp32(special_op, R7, special, "special")]
        drop: list[Item] = [mov(R0, 2), exit_()]
        if notify_on_drop:
            drop = [mov(R1, R6), *ld_map(R2, NOTIFY_ARRAY), mov(R3, 0), call("tail_call"),
                    *drop]
        programs[base + 1] = _code(
            base + 1, "policy", (HASH, NOTIFY_ARRAY),
            mov(R6, R1), ldx(4, R7, R6, IDENTITY), stx(4, R10, -8, R7),
            st(4, R10, -4, 2000 + k), mov(R2, R10), add(R2, -8), *ld_map(R1, HASH),
            call("map_lookup_elem"), jmp("eq", R0, 0, "drop"), *decide,
            mov(R0, 0), exit_(), Label("drop"), *drop,
            Label("special"), mov(R0, 7), exit_())
        slots[k] = base + 1
    programs[NOTIFY] = _code(NOTIFY, "notify", (), ldx(4, R0, R1, CODE), exit_())
    arrays = {POLICY_ARRAY: slots, NOTIFY_ARRAY: {0: NOTIFY}}
    return CbSource(programs, arrays), [100 * k for k in range(1, n + 1)]


def shared_after_own(source: CbSource, roots: list[int],
                     runs: Runs) -> tuple[
                         dict[int, Analysis], Shapes]:
    """Each tree analysed on its own, then the scan's way (``runs`` then holds only the
    second's analyses); every answer must be the tree's own."""
    own = {r: analyse(r, source) for r in roots}
    runs.clear()
    shapes = Shapes(source)
    shapes.add_trees(roots)
    shared = {r: analyse(r, source, shared=shapes) for r in roots}
    for r in roots:
        same(own[r], shared[r])
    return shared, shapes


POLICY_MAPS = (HASH, NOTIFY_ARRAY)


def test_an_identity_used_as_a_map_key_is_dropped_and_one_analysis_serves_every_tree(
        runs: Runs, monkeypatch: pytest.MonkeyPatch) -> None:
    n = 6
    source, roots = policy_node(n)
    shared, shapes = shared_after_own(source, roots, runs)
    for k, r in enumerate(roots, start=1):
        got = shared[r]
        assert got.possible == frozenset({0, 2, 20 + k})
    assert shapes.relevance.dropped >= 1
    # the policy family analysed with the first tree's identity (a program entered with
    # one state is not checked), then once more with nothing known for all the others
    assert [cb for maps, cb in runs if maps == POLICY_MAPS] == [
        ((IDENTITY, 4, frozenset({1001})),), ()]
    # the same with every known word kept: the policy family once per identity
    runs.clear()
    monkeypatch.setattr(Shapes, "weaken", lambda _s, _p, cb, _c: cb)
    shapes = Shapes(source)
    shapes.add_trees(roots)
    for r in roots:
        same(shared[r], analyse(r, source, shared=shapes))
    assert len([cb for maps, cb in runs if maps == POLICY_MAPS]) >= n


def test_an_identity_that_decides_a_branch_stays_known() -> None:
    source, roots = policy_node(5, special=1003)
    own, shared, shapes = both(source, roots)
    for r in roots:
        same(own[r], shared[r])
    # only endpoint 3's tree enters the policy programs with identity 1003
    assert [7 in (shared[r].possible or ()) for r in roots] == [
        False, False, True, False, False]
    assert shapes.relevance.kept >= 1


def test_an_identity_tested_only_against_reserved_ones_is_widened_to_its_bucket(
        runs: Runs) -> None:
    """Identities 1001-1005 all lie in [512, 1023], where ``< 3`` is false for each."""
    source, roots = policy_node(5, special=3, special_op="lt")
    shared, _shapes = shared_after_own(source, roots, runs)
    for k, r in enumerate(roots, start=1):
        got = shared[r]
        assert got.possible == frozenset({0, 2, 20 + k})  # never 7
    entries = [cb for maps, cb in runs if maps == POLICY_MAPS and cb]
    assert len(entries) == 2 and entries[0] == ((IDENTITY, 4, frozenset({1001})),)
    ((off, size, bucket),) = entries[1]
    assert (off, size) == (IDENTITY, 4) and isinstance(bucket, Rng)
    assert (bucket.umin, bucket.umax) == (512, 1023)


def test_a_reserved_identity_resolved_on_a_side_no_endpoint_takes_still_widens(
        runs: Runs) -> None:
    """The pattern of a real datapath's policy program: a reserved identity (< 3) is
    replaced by one looked up in a map; the identity is then spilled (4 bytes), filled
    and stored back into cb[] before a tail call. No endpoint's identity takes the
    lookup side, so the widened identity stays exact past the join."""
    policy = _code(
        7, "policy", (HASH, NOTIFY_ARRAY),
        mov(R6, R1), ldx(4, R7, R6, IDENTITY), jmp32("ge", R7, 3, "known"),
        mov(R2, R10), add(R2, -8), st(4, R10, -8, 0), *ld_map(R1, HASH),
        call("map_lookup_elem"), jmp("eq", R0, 0, "known"), ldx(4, R7, R0, 0),
        Label("known"), stx(4, R10, -16, R7), ldx(4, R7, R10, -16),
        jmp32("eq", R7, 2, "world"), stx(4, R6, IDENTITY, R7),
        mov(R1, R6), *ld_map(R2, NOTIFY_ARRAY), mov(R3, 0), call("tail_call"),
        mov(R0, 0), exit_(), Label("world"), mov(R0, 2), exit_())
    notify = _code(NOTIFY, "notify", (HASH,), mov(R6, R1), ldx(4, R7, R6, IDENTITY),
                   stx(4, R10, -8, R7), mov(R2, R10), add(R2, -8), *ld_map(R1, HASH),
                   call("map_lookup_elem"), mov(R0, 2), exit_())
    programs = {7: policy, NOTIFY: notify}
    roots = []
    for k in range(1, 5):  # roots of different shapes, each on its own
        pid = 100 * k
        programs[pid] = _code(pid, "root", (POLICY_ARRAY,), mov(R6, R1),
                              *[mov(R7, 0)] * k, st(4, R6, IDENTITY, 1000 + k),
                              mov(R1, R6), *ld_map(R2, POLICY_ARRAY), mov(R3, 1),
                              call("tail_call"), mov(R0, 2), exit_())
        roots.append(pid)
    source = CbSource(programs, {POLICY_ARRAY: {1: 7}, NOTIFY_ARRAY: {0: NOTIFY}})
    shared, shapes = shared_after_own(source, roots, runs)
    for r in roots:
        got = shared[r]
        assert got.possible == frozenset({0, 2})
    policy_runs = [cb for maps, cb in runs if maps == (HASH, NOTIFY_ARRAY) and cb]
    assert len(policy_runs) == 2  # the first root's identity, then its bucket
    assert shapes.relevance.dropped >= 1


def test_a_drop_code_a_later_tail_call_returns_stays_known_and_the_identity_goes(
        runs: Runs) -> None:
    source, roots = policy_node(5, root_code=True, notify_on_drop=True)
    shared, _shapes = shared_after_own(source, roots, runs)
    for k, r in enumerate(roots, start=1):
        got = shared[r]
        # the notify program returns the root's own drop code, through the policy
        # program that passes cb[] on
        assert got.possible == frozenset({0, 2, 10 + k, 20 + k})
    # the policy family entered once per drop code, with the identity dropped after the
    # first tree's (and once with nothing known: the report of the tail call's target on
    # its own, ``build``)
    entries = [cb for maps, cb in runs if maps == POLICY_MAPS and cb]
    assert entries == [((IDENTITY, 4, frozenset({1001})), (CODE, 4, frozenset({11})))] + [
        ((CODE, 4, frozenset({10 + k})),) for k in range(2, 6)]


def test_a_tail_call_cycle_passes_the_taint_around_and_is_still_confined(
        runs: Runs) -> None:
    """A program that tail-calls itself with cb[] passed on: the greatest fixpoint."""
    loop = _code(5, "loop", (800, HASH),
                 mov(R6, R1), ldx(4, R7, R6, IDENTITY), stx(4, R10, -8, R7),
                 mov(R2, R10), add(R2, -8), *ld_map(R1, HASH), call("map_lookup_elem"),
                 jmp("eq", R0, 0, "out"), mov(R1, R6), *ld_map(R2, 800), mov(R3, 0),
                 call("tail_call"), Label("out"), mov(R0, 2), exit_())
    # two roots of different shapes (not one family), each storing its identity
    roots = {pid: _code(pid, "root", (800,), mov(R6, R1), *[mov(R7, 0)] * (pid - 1233),
                        st(4, R6, IDENTITY, pid),
                        mov(R1, R6), *ld_map(R2, 800), mov(R3, 0), call("tail_call"),
                        mov(R0, 0), exit_()) for pid in (1234, 1235)}
    source = CbSource({**roots, 5: loop}, {800: {0: 5}})
    shared, shapes = shared_after_own(source, list(roots), runs)
    for r in roots:
        got = shared[r]
        assert got.possible == frozenset({0, 2})
    # the second root's identity is dropped: the loop is not analysed with it
    loop_runs = [cb for maps, cb in runs if maps == (800, HASH)]
    assert ((IDENTITY, 4, frozenset({1234})),) in loop_runs
    assert ((IDENTITY, 4, frozenset({1235})),) not in loop_runs
    assert shapes.relevance.dropped == 1


# -- property: dropping cb[] words never changes an answer ------------------------------

WORDS = (48, 52, 56, 60)
TARGETS = (11, 12, 13)  # node-wide programs, slot i - 10 of NODE_WIDE
NODE_WIDE = 710


def _snippet(draw: hs.DrawFn) -> list[Item]:
    """One piece of a target's code: ``cb[]`` words used as a map key, compared, stored,
    copied, computed with, or a tail call (cb[] passed on)."""
    w = draw(hs.sampled_from(WORDS))
    kind = draw(hs.sampled_from(("key", "branch", "store", "copy", "add", "tail")))
    if kind == "key":
        return [ldx(4, R7, R6, w), stx(4, R10, -8, R7), mov(R2, R10), add(R2, -8),
                *ld_map(R1, HASH), call("map_lookup_elem"), jmp("eq", R0, 0, "drop")]
    if kind == "branch":
        op = draw(hs.sampled_from(("eq", "ne", "gt", "lt")))
        return [ldx(4, R7, R6, w), jmp32(op, R7, draw(hs.sampled_from((1, 5, 1001))), "alt")]
    if kind == "store":
        return [st(4, R6, w, draw(hs.sampled_from((0, 5, 1001))))]
    if kind == "copy":
        return [ldx(4, R7, R6, w), stx(4, R6, draw(hs.sampled_from(WORDS)), R7)]
    if kind == "add":
        return [ldx(4, R7, R6, w), add(R7, 1), stx(4, R6, w, R7)]
    index = draw(hs.sampled_from((0, 1, 2, None)))
    pick = [ldx(4, R3, R6, 8), and_(R3, 3)] if index is None else [mov(R3, index)]
    return [mov(R1, R6), *ld_map(R2, NODE_WIDE), *pick, call("tail_call")]


def _ending(draw: hs.DrawFn) -> list[Item]:
    if draw(hs.booleans()):
        return [ldx(4, R0, R6, draw(hs.sampled_from(WORDS))), exit_()]  # a word returned
    return [mov(R0, draw(hs.sampled_from((0, 2, 7)))), exit_()]


@hs.composite
def cb_nodes(draw: hs.DrawFn) -> tuple[CbSource, list[int]]:
    """Three endpoint roots storing their own constants in cb[] words (one returning its
    own constant on a packet-chosen path, so each is analysed with its constants known)
    and tail-calling into node-wide programs that use those words at random."""
    programs: dict[int, ProgramCode] = {}
    for pid in TARGETS:
        body = [item for _ in range(draw(hs.integers(1, 4))) for item in _snippet(draw)]
        programs[pid] = _code(pid, f"t{pid}", (HASH, NODE_WIDE), mov(R6, R1), *body,
                              *_ending(draw), Label("drop"), mov(R0, 2), exit_(),
                              Label("alt"), mov(R0, draw(hs.sampled_from((0, 7)))), exit_())
    roots = []
    for k in range(3):
        pid = 100 + k
        stores = [st(4, R6, w, draw(hs.sampled_from((1, 5, 1001, 1002 + k))))
                  for w in draw(hs.lists(hs.sampled_from(WORDS), max_size=4, unique=True))]
        programs[pid] = _code(
            pid, "root", (NODE_WIDE,), mov(R6, R1), *stores,
            ldx(4, R3, R6, 8), and_(R3, 7), jmp("eq", R3, 7, "mine"),
            mov(R1, R6), *ld_map(R2, NODE_WIDE), and_(R3, 3), call("tail_call"),
            mov(R0, 2), exit_(), Label("mine"), mov(R0, 20 + k), exit_())
        roots.append(pid)
    return CbSource(programs, {NODE_WIDE: {t - 10: t for t in TARGETS}}), roots


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(cb_nodes())
def test_dropping_cb_words_is_sound_and_never_less_precise(
        node: tuple[CbSource, list[int]]) -> None:
    """Every concrete run's verdict is allowed, and the answer is at least as precise as
    each tree's own analysis with every word kept (it may be more precise: a word that
    keeps changing, dropped, no longer pushes a target to its summary state)."""
    source, roots = node
    own, shared, _ = both(source, roots)
    for r in roots:
        mine, got = own[r], shared[r]
        if mine.possible is not None:
            assert got.possible is not None and got.possible <= mine.possible, (mine, got)
        programs = {0: source.programs[r].insns,
                    **{p: c.insns for p, c in source.programs.items()}}
        for seed in range(8):
            run = Machine(programs, source.arrays, random.Random(seed)).run()
            assert covers(got, run.retval), (run.retval, got.possible, seed)


def test_programs_a_tree_puts_on_their_own_start_the_next_trees_plan(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Roots of one family store their varying constant in cb[]; node-wide programs pass
    cb[] on to one that returns it, so each tree's plan puts them on their own. The next
    tree starts from the programs the earlier ones put on their own (on real Cilium 1.12,
    30 endpoints: 8 rounds a tree became 2)."""
    n = 5
    programs: dict[int, ProgramCode] = {}
    for k in range(1, n + 1):
        programs[100 * k] = _code(
            100 * k, "root", (POLICY_ARRAY,), mov(R6, R1), st(4, R6, CODE, 10 + k),
            mov(R1, R6), *ld_map(R2, POLICY_ARRAY), ldx(4, R3, R6, 8), and_(R3, 7),
            call("tail_call"), mov(R0, 2), exit_())
        programs[100 * k + 1] = _code(
            100 * k + 1, "pass", (NOTIFY_ARRAY,), mov(R6, R1), mov(R7, k),
            mov(R1, R6), *ld_map(R2, NOTIFY_ARRAY), mov(R3, 0), call("tail_call"),
            mov(R0, 0), exit_())
    programs[NOTIFY] = _code(NOTIFY, "notify", (), ldx(4, R0, R1, CODE), exit_())
    arrays = {POLICY_ARRAY: {k: 100 * k + 1 for k in range(1, n + 1)},
              NOTIFY_ARRAY: {0: NOTIFY}}
    source = CbSource(programs, arrays)
    roots = [100 * k for k in range(1, n + 1)]
    own = {r: analyse(r, source) for r in roots}

    def walks(carry: bool) -> tuple[int, set[int]]:
        count = [0]
        real = Shapes._walk

        def spy(self: Shapes, *args: object) -> object:
            count[0] += 1
            return real(self, *args)  # type: ignore[arg-type]

        monkeypatch.setattr(Shapes, "_walk", spy)
        shapes = Shapes(source)
        shapes.add_trees(roots)
        for k, r in enumerate(roots, start=1):
            got = analyse(r, source, shared=shapes)
            same(own[r], got)
            assert got.possible == frozenset({0, 2, 10 + k})
            if not carry:
                shapes._forced.clear()
        monkeypatch.undo()
        return count[0], set(shapes._forced)

    carried, forced = walks(carry=True)
    # the node-wide programs the trees blamed are kept for the next trees' plans
    assert {100 * k + 1 for k in range(1, n + 1)} & forced
    assert carried <= walks(carry=False)[0]



def _nested(a: Analysis) -> list[tuple[int, tuple[int, ...], object]]:
    """Every nested analysis of the tree, depth first: (site, targets, its answer)."""
    out: list[tuple[int, tuple[int, ...], object]] = []
    todo, seen = [a], set()
    while todo:
        x = todo.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        for call_ in x.tail_calls:
            for t, sub in zip(call_.targets, call_.analyses, strict=True):
                out.append((call_.pc, call_.targets, None if sub is None else (
                    t, sub.possible, sub.reason, dict(sub.exits))))
                if sub is not None:
                    todo.append(sub)
    return sorted(out, key=repr)


def test_a_nested_answer_is_every_trees_and_is_computed_once_a_scan() -> None:
    """The node-wide policy array puts every endpoint's policy program (and the notify
    program behind it) in every tree: each one's closure entered with cb[] unknown is
    the same in every tree, kept for the scan, and every tree's nested answers are the
    ones its own analysis gives."""
    source, roots = policy_node(4, root_code=True, notify_on_drop=True)
    own = {r: analyse(r, source) for r in roots}
    shapes = Shapes(source)
    shapes.add_trees(roots)
    shared = {r: analyse(r, source, shared=shapes) for r in roots}
    for r in roots:
        same(own[r], shared[r])
        assert _nested(own[r]) == _nested(shared[r])
    assert set(source.arrays[POLICY_ARRAY].values()) | {NOTIFY} <= set(shapes.closures)
