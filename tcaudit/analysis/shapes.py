"""Copies of one program shape across a node, analysed once.

A CNI loads one datapath per endpoint, compiled (or patched at load time) with that
endpoint's constants: on a node with 100 pods there are 100 copies of each program that
differ only in some immediates, in the ids of their own maps (each endpoint has its own
prog array) and in the contents of a read-only config map. A cache keyed by code misses
every one of them. This module groups the programs of the trees being scanned by
*shape* (the code with every immediate masked, the function starts and the number of
maps) and checks each copy against the family's representative (the lowest id):

* an immediate that differs must be a value (an ALU or jump operand, a store, a 64-bit
  constant): it joins the family's *varying* positions, analysed as an unknown value;
* a map reference that differs must follow the two programs' map lists position by
  position, and maps at one position must be of one kind; a read-only (frozen) map whose
  contents differ joins the family's *abstract* maps, whose loads are unknown values;
* anything else (a different helper, call offset, value offset) leaves the copy out: it
  is analysed on its own.

For each family and entry ``cb`` state the engine runs once on the representative's code
with the varying operands unknown and the abstract maps unreadable (sound for every
copy), and ``dependence.depends`` checks that no varying value can reach anything the
answer is made of. When it can, or when the program tail-calls from a subprogram (its
answer then includes its own tree's), every copy is analysed on its own as before. The
shared answer is given to each copy with its own map ids put back.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from tcaudit.analysis import insns as I
from tcaudit.analysis import scalar as S
from tcaudit.analysis.code_diff import (
    LD_IMM64,
    LDIMM_OP,
    MAP_REF,
    MAP_REFS,
    diff_kind,
    differing,
    immediates,
    second_halves,
)
from tcaudit.analysis.dependence import depends
from tcaudit.analysis.domain import Value
from tcaudit.analysis.frames import CbState
from tcaudit.analysis.insns import decode
from tcaudit.analysis.interp import Env, Local, ProgAnalyser, Site
from tcaudit.analysis.prepare import Prepared, operand_hull
from tcaudit.analysis.relevance import Relevance
from tcaudit.analysis.renaming import has_map, remap
from tcaudit.analysis.results import Ranges
from tcaudit.analysis.taint import NO_ENTRY, Carried, Entry, carried_into

ClosureAnswer = tuple[tuple[Value, ...], Ranges | None, frozenset[int], str | None]
"""A tail-call closure (``closure._Ctx.closure``): the values, their 32-bit ranges,
the prog arrays involved and why unknown."""

MAX_TREE = 1 << 16
"""Programs followed per scan when looking for copies, and (program, entry) pairs
followed by one tree's check: a CNI's node-wide policy array puts every endpoint's
programs in every endpoint's tree (Cilium: 27 a pod, 6,750 on a 250-pod node)."""
MAX_ROUNDS = 64
"""Checks of one tree, each with one more program on its own, before none is shared."""


class Code(Protocol):
    """A program's code (``closure.ProgramCode``)."""

    @property
    def insns(self) -> tuple[I.Insn, ...]: ...

    @property
    def func_starts(self) -> tuple[int, ...]: ...


class ShapeSource(Protocol):
    """What grouping reads (``kernelcode.KernelCode``): raw code, no decoding."""

    def raw(self, prog_id: int) -> bytes | None: ...

    def map_ids_of(self, prog_id: int) -> tuple[int, ...]: ...

    def func_starts_of(self, prog_id: int) -> tuple[int, ...]: ...

    def prog_array(self, map_id: int) -> Mapping[int, int] | None: ...

    def rodata(self, map_id: int) -> bytes | None: ...

    def program(self, prog_id: int) -> Code | None: ...


class TreeContext(Protocol):
    """What an analysis needs from the tree it runs for (``closure._Ctx``)."""

    env: Env
    root_key: int | None

    def helper_name(self, imm: int) -> str | None: ...

    def rodata(self, map_id: int) -> bytes | None: ...


@dataclass
class Family:
    rep: int
    insns: tuple[I.Insn, ...]
    func_starts: tuple[int, ...]
    map_ids: tuple[int, ...]
    varying: set[int] = field(default_factory=set)
    abstract_maps: dict[int, set[int]] = field(default_factory=dict)
    """Read-only map (the representative's id) -> byte offsets that differ."""
    members: dict[int, tuple[int, ...]] = field(default_factory=dict)
    """Copy -> its map ids (position by position with ``map_ids``)."""
    values: dict[int, frozenset[int]] = field(default_factory=dict)
    """Every copy's immediate (signed 32 bits) at each varying position; an ld_imm64's
    64-bit constant (unsigned) at its first half."""
    hulls: dict[int, Value] = field(default_factory=dict)
    """The operand the shared analysis uses there: every copy's value, as the engine
    sees it (mov, jump and store immediates; others are any value)."""
    prep: Prepared | None = None
    locals: dict[CbState, Local | None] = field(default_factory=dict)
    second: set[int] | None = None
    """Indexes of the second halves of 64-bit immediate loads (computed once)."""
    kinds: dict[int, int] = field(default_factory=dict)
    """Insn -> what a differing immediate there is (``code_diff.diff_kind``)."""
    fields: dict[tuple[int, int, int], Value | None] = field(default_factory=dict)
    """(map id, offset, size) of an abstract map -> every copy's value there."""

    def renaming(self, pid: int) -> dict[int, int]:
        """The representative's map ids -> this copy's, position by position."""
        return dict(zip(self.map_ids, self.members[pid], strict=True))


@dataclass(frozen=True)
class TreeCopy:
    """A tree that copies an analysed one: that one's answer and the ids of this tree
    that stand where its programs and maps stood."""

    answer: object
    programs: Mapping[int, int]
    maps: Mapping[int, int]


@dataclass
class ShapeStats:
    programs: int = 0
    families: int = 0
    copies: int = 0
    shared: int = 0  # analyses given to a copy from its family
    dependent: int = 0  # families analysed copy by copy (their answer may differ)
    trees: int = 0  # trees answered as a renamed copy of another
    reused: int = 0  # own analyses of a program given to another tree of the scan
    alone: int = 0  # programs of a sharing tree analysed on their own (their family's
    # varying constants reach their answer)


@dataclass(frozen=True)
class _Plan:
    """The programs of one tree that take their family's answer; ``whole`` when all of
    them do (the tree's answer is then a renamed copy's, ``tree_copy``)."""

    shared: frozenset[int]
    whole: bool


class Shapes:
    """Families of copies among the programs of the trees of one scan."""

    def __init__(self, source: ShapeSource) -> None:
        self.source = source
        self.stats = ShapeStats()
        self._seen: set[int] = set()
        self._map_refs: dict[int, tuple[int, ...]] = {}
        self._slot_progs: dict[int, tuple[tuple[int, int], ...]] = {}
        self._tree_reps: dict[int, tuple[int, object]] = {}
        """Family (id) -> (root, answer) of the first of its trees analysed."""
        self._groups: dict[bytes, list[int]] = {}
        self._family: dict[int, Family | None] = {}
        self._built = False
        self._checked: dict[tuple[int, Entry], tuple[str | None, Carried]] = {}
        self._entries: dict[tuple[Carried, int], Entry] = {}
        self._interned: dict[Entry, Entry] = {}
        self._walked: dict[tuple[int, Entry, bool],
                           tuple[str | None, tuple[tuple[int, Entry], ...]]] = {}
        self._plans: dict[int, _Plan] = {}
        self._forced: set[int] = set()
        """Programs the plans of the scan's trees put on their own (``_plan``)."""
        self.preps: dict[int | None, Prepared] = {}
        """Programs' prepared code, for every tree of the scan (``closure``)."""
        self._given: dict[tuple[int, CbState], Local] = {}
        """(copy, cb state) -> the family's answer renamed for the copy, every tree."""
        self.closures: dict[int, ClosureAnswer] = {}
        """Program -> its tail-call closure entered with cb[] unknown, for every tree of
        the scan (``closure._Ctx.closure``: kept only when no tree's state shaped it)."""
        self.own: dict[tuple[int | None, CbState], Local] = {}
        """(prog id, entry cb state) -> that program's analysis on its own (no family
        shared): the same in every tree of the scan that reaches it so (``closure``).
        A CNI's node-wide policy prog array puts every endpoint's policy program in
        every endpoint's tree, which would otherwise be analysed once per tree."""
        self.relevance = Relevance(self._targets)

    # -- grouping --------------------------------------------------------------------

    def add_trees(self, roots: Iterable[int]) -> None:
        """Register every program of the trees of ``roots`` (following prog arrays)."""
        todo = [r for r in roots if r not in self._seen]
        while todo and len(self._seen) < MAX_TREE:
            pid = todo.pop()
            if pid in self._seen:
                continue
            self._seen.add(pid)
            key = self._key(pid)
            if key is None:
                continue
            self.stats.programs += 1
            self._groups.setdefault(key, []).append(pid)
            for mid in self._maps(pid):
                slots = self.source.prog_array(mid)
                if slots:
                    todo.extend(t for t in slots.values() if t not in self._seen)
        self._built = False

    def family_of(self, prog_id: int) -> int | None:
        """The representative of the program's family of copies (None: on its own)."""
        if not self._built:
            self._build()
        fam = self._family.get(prog_id)
        return None if fam is None else fam.rep

    def _targets(self, pid: int) -> tuple[tuple[int, int], ...]:
        """(prog array, program) for every program in a slot of a prog array the
        program uses (read once a scan)."""
        got = self._slot_progs.get(pid)
        if got is None:
            out: list[tuple[int, int]] = []
            for mid in self._maps(pid):
                out.extend((mid, t) for t in (self.source.prog_array(mid) or {}).values())
            got = self._slot_progs[pid] = tuple(out)
        return got

    def _maps(self, pid: int) -> tuple[int, ...]:
        """The maps a program uses: its info's list and every map its code refers to
        (a program whose info lists none still tail-calls through the arrays it loads)."""
        got = self._map_refs.get(pid)
        if got is None:
            raw = self.source.raw(pid) or b""
            refs = set(self.source.map_ids_of(pid))
            for m in LDIMM_OP.finditer(raw[0::8]):  # opcodes: one byte an instruction
                pc = m.start()
                if 8 * pc + 8 <= len(raw) and raw[8 * pc + 1] >> 4 in MAP_REFS:
                    refs.add(struct.unpack_from("=I", raw, 8 * pc + 4)[0])
            got = self._map_refs[pid] = tuple(sorted(refs))
        return got

    def _key(self, pid: int) -> bytes | None:
        raw = self.source.raw(pid)
        if raw is None:
            return None
        digest = hashlib.blake2b(digest_size=20)
        for k in range(4):  # opcode, registers, offset: everything but the immediate
            digest.update(raw[k::8])
        starts = self.source.func_starts_of(pid)
        digest.update(struct.pack(f"=I{len(starts)}I", len(self.source.map_ids_of(pid)),
                                  *starts))
        return digest.digest()

    def _build(self) -> None:
        for group in self._groups.values():
            if len(group) < 2 or all(i in self._family for i in group):
                continue
            for ids in self._roles(sorted(group)):
                self._build_family(ids)
        self._built = True

    def _roles(self, ids: list[int]) -> list[list[int]]:
        """The programs of one shape, split by role. Two of them that use the very same
        maps, where others of the shape use other maps (each endpoint its own), belong
        to one endpoint (a tree holds each of its programs once): they are
        two programs built from one source (ingress and egress, with or without
        policy), and the immediates they differ in say which (a tail-call slot, a
        direction flag). Programs that agree there are one role's copies: a family.
        Every split is sound (each family is checked on its own); this one keeps the
        two roles from making each other's constants "varying"."""
        siblings: dict[tuple[int, ...], list[int]] = {}
        for pid in ids:
            siblings.setdefault(self.source.map_ids_of(pid), []).append(pid)
        if len(siblings) < 2:
            return [ids]  # one set of maps for all (none, or node-wide ones): no sign
        where: set[int] = set()
        for sib in siblings.values():
            first = self.source.raw(sib[0])
            for other in sib[1:]:
                raw = self.source.raw(other)
                diffs = differing(first, raw) if first is not None and raw is not None else None
                where.update(diffs or ())
        if not where:
            return [ids]
        roles: dict[bytes, list[int]] = {}
        for pid in ids:
            raw = self.source.raw(pid) or b""
            key = b"".join(raw[8 * p + 4:8 * p + 8] for p in sorted(where))
            roles.setdefault(key, []).append(pid)
        return list(roles.values())

    def _build_family(self, ids: list[int]) -> None:
        """One family of copies from programs of one shape and role (the first the
        representative; those that are not its copies are left on their own)."""
        fam = self._family_for(ids[0])
        if fam is None:
            return
        for pid in ids[1:]:
            if self._join(fam, pid):
                fam.members[pid] = self.source.map_ids_of(pid)
        if len(fam.members) < 2:
            for pid in fam.members:
                self._family[pid] = None
            return
        fam.values = immediates(
            (raw for raw in map(self.source.raw, fam.members) if raw is not None),
            fam.varying, {p for p in fam.varying if fam.insns[p].code == LD_IMM64})
        for p in fam.varying:
            hull = operand_hull(fam.insns[p], fam.values[p])
            if hull is not None:
                fam.hulls[p] = hull
        self.stats.families += 1
        self.stats.copies += len(fam.members)
        for pid in fam.members:
            self._family[pid] = fam

    def _family_for(self, rep: int) -> Family | None:
        raw = self.source.raw(rep)
        if raw is None:
            return None
        maps = self.source.map_ids_of(rep)
        fam = Family(rep, decode(raw), self.source.func_starts_of(rep), maps)
        fam.members[rep] = maps
        return fam

    def _join(self, fam: Family, pid: int) -> bool:
        """Add the copy's differences to the family; False when it is not a copy."""
        raw = self.source.raw(pid)
        maps = self.source.map_ids_of(pid)
        rep_raw = self.source.raw(fam.rep)
        if raw is None or rep_raw is None or len(maps) != len(fam.map_ids):
            return False
        remap = dict(zip(fam.map_ids, maps, strict=True))
        abstract: dict[int, set[int]] = {}
        for rm, mm in remap.items():
            if rm == mm:
                continue
            ra, ma = self.source.prog_array(rm), self.source.prog_array(mm)
            if (ra is None) != (ma is None):
                return False
            rr, mr = self.source.rodata(rm), self.source.rodata(mm)
            if (rr is None) != (mr is None):
                return False
            if rr is not None and mr is not None and rr != mr:
                if len(rr) != len(mr):
                    return False
                abstract[rm] = {i for i, (x, y) in enumerate(zip(rr, mr, strict=True))
                                if x != y}
        diffs = differing(rep_raw, raw)
        if diffs is None:
            return False
        insns = fam.insns
        if fam.second is None:
            fam.second = second_halves(insns)
        second = fam.second
        varying: set[int] = set()
        kinds = fam.kinds
        for p in diffs:
            k = kinds.get(p)
            if k is None:
                k = kinds[p] = diff_kind(insns, second, p)
            if k >= 0:
                varying.add(k)
            elif k != MAP_REF or remap.get(insns[p].imm & 0xFFFFFFFF) != (
                    struct.unpack_from("=i", raw, 8 * p + 4)[0] & 0xFFFFFFFF):
                return False
        fam.varying |= varying
        for mid, offs in abstract.items():
            fam.abstract_maps.setdefault(mid, set()).update(offs)
        return True

    # -- sharing ---------------------------------------------------------------------

    def local(self, prog_id: int, cb: CbState, ctx: TreeContext) -> Local | None:
        """The family's answer for this copy entered with ``cb``, or None: analyse it on
        its own."""
        if not self._built:
            self._build()
        fam = self._family.get(prog_id)
        if fam is None or any(has_map(v) for _o, _s, v in cb):
            return None
        root = ctx.root_key
        if root is None or prog_id not in self._plan(root, ctx).shared or fam.prep is None:
            return None
        if cb not in fam.locals:
            fam.locals[cb] = self._analyse(fam, cb, ctx)
        loc = fam.locals[cb]
        if loc is None:
            return None
        self.stats.shared += prog_id != fam.rep
        mine = self._given.get((prog_id, cb))
        if mine is None:  # (the family's answer for cb, once analysed, stays)
            mine = self._given[(prog_id, cb)] = remap(loc, fam.renaming(prog_id),
                                                      fam.members[prog_id])
        return mine

    def weaken(self, prog_id: int, cb: CbState, ctx: TreeContext) -> CbState:
        """The entry state a tail call into ``prog_id`` is analysed with: ``cb`` without
        the known words its tree's answer cannot depend on (``relevance``)."""
        return self.relevance.weaken(prog_id, cb, lambda pid, e: self._check_any(pid, e, ctx))

    def _check_any(self, pid: int, entry: Entry, ctx: TreeContext) -> tuple[str | None, Carried]:
        """The pass over the program's own code entered with ``entry``'s taint, or over
        its family's when that passes: more is tainted there (the family's varying
        constants too), so nothing of ``entry`` reaches the answer of either, and one
        check serves every copy."""
        if self._family.get(pid) is not None:
            got = self._check(pid, entry, ctx)
            if got[0] is None:
                return got
        return self._check(pid, entry, ctx, own=True)

    # -- whole trees -----------------------------------------------------------------

    def tree_copy(self, root: int, ctx: TreeContext) -> TreeCopy | None:
        """An analysed tree this one is a copy of: its root's answer and the program and
        map ids of this tree that stand where that tree's stood, or None. Both trees
        pass the whole-tree check, so each one's answer is the shared one and the two
        differ only in those ids."""
        if not self._built:
            self._build()
        fam = self._family.get(root)
        if fam is None:
            return None
        done = self._tree_reps.get(id(fam))
        if done is None or done[0] == root or not self._plan(root, ctx).whole:
            return None
        iso = self._iso(done[0], root)
        if iso is None:
            return None
        return TreeCopy(done[1], iso[0], iso[1])

    def note_tree(self, root: int, answer: object, ctx: TreeContext) -> None:
        """Keep a tree's answer for its copies (when its family shares it)."""
        fam = self._family.get(root)
        if fam is not None and id(fam) not in self._tree_reps and self._plan(root, ctx).whole:
            self._tree_reps[id(fam)] = (root, answer)

    def _iso(self, a_root: int, b_root: int) -> tuple[dict[int, int], dict[int, int]] | None:
        """Program and map correspondences between two trees of copies: program by
        program (each pair in one family, or one program both trees share), map by map
        position, prog array slot by slot; None when they are not built alike."""
        progs: dict[int, int] = {}
        maps: dict[int, int] = {}
        back_p: dict[int, int] = {}
        back_m: dict[int, int] = {}
        todo = [(a_root, b_root)]
        while todo:
            a, b = todo.pop()
            if a in progs or b in back_p:
                if progs.get(a) != b or back_p.get(b) != a:
                    return None
                continue
            progs[a], back_p[b] = b, a
            fa, fb = self._family.get(a), self._family.get(b)
            if a == b:
                ma = mb = self.source.map_ids_of(a)
            elif fa is not None and fa is fb:
                ma, mb = fa.members[a], fa.members[b]
            else:
                return None
            if set(self._maps(a)) != set(ma) or set(self._maps(b)) != set(mb):
                return None  # a map the info does not list: not followed here
            for x, y in zip(ma, mb, strict=True):
                if maps.get(x, y) != y or back_m.get(y, x) != x:
                    return None
                maps[x], back_m[y] = y, x
                sa, sb = self.source.prog_array(x), self.source.prog_array(y)
                if (sa is None) != (sb is None):
                    return None
                if sa is not None and sb is not None:
                    if sorted(sa) != sorted(sb):
                        return None
                    todo.extend((sa[k], sb[k]) for k in sa)
            if len(progs) > MAX_TREE:
                return None
        return progs, maps

    def _plan(self, root: int, ctx: TreeContext) -> _Plan:
        """Which programs of the tree may take their family's shared answer.

        Every program of the tree (prog arrays followed) is checked with the cb[] bytes
        tainted by the programs that may tail-call it. One whose answer a varying
        constant of its own family can reach is analysed on its own instead, and its
        targets are checked with the taint its own code passes on from its entry. When
        even a program's own code lets its entry's taint reach its answer, every caller
        still sharing on the way to it is analysed on its own too and the tree is
        checked again; when there is none, or this goes on past MAX_ROUNDS, nothing in
        the tree is shared (always sound).
        """
        done = self._plans.get(root)
        if done is not None:
            return done
        # the programs earlier trees of the scan put on their own: a node's trees hold the
        # same node-wide programs (a policy array), which would be blamed again round by
        # round (putting a program on its own never changes an answer)
        forced = set(self._forced)
        plan = _Plan(frozenset(), False)
        for _round in range(MAX_ROUNDS):
            got = self._walk(root, forced, ctx)
            if isinstance(got, _Plan):
                plan = got
                break
            if not got:
                break
            forced |= got
        self._plans[root] = plan
        if plan.shared:
            self._forced |= forced
        if not plan.whole:
            self.stats.dependent += 1
        return plan

    def _walk(self, root: int, forced: set[int], ctx: TreeContext) -> _Plan | set[int]:
        """One pass over the tree with the programs of ``forced`` on their own: the
        plan, or the callers still sharing on the way to each program whose own code
        lets its entry's taint reach its answer (the taint came from one of them; empty:
        no caller to blame, or the tree is too big to check)."""
        blame: set[int] = set()
        seen: set[tuple[int, Entry]] = set()
        visited: set[int] = set()
        alone: set[int] = set()
        # each (program, entry) reached, with the one it was first reached from: the
        # path back to the root when its own code fails
        parent: dict[tuple[int, Entry], tuple[int, Entry] | None] = {(root, NO_ENTRY): None}
        todo: list[tuple[int, Entry]] = [(root, NO_ENTRY)]
        while todo and len(seen) < MAX_TREE:
            pid, entry = node = todo.pop()
            if node in seen:
                continue
            seen.add(node)
            visited.add(pid)
            why: str | None = "on its own"
            if pid not in forced:
                why, edges = self._edges(pid, entry, False, ctx)
            if why is not None:
                why, edges = self._edges(pid, entry, True, ctx)
                if why is not None:
                    culprits = set()
                    up = parent[node]
                    while up is not None:
                        if up[0] not in forced:
                            culprits.add(up[0])
                        up = parent[up]
                    if not culprits:
                        return set()
                    blame |= culprits
                    continue
                alone.add(pid)
            for nxt in edges:
                if nxt not in parent:
                    parent[nxt] = node
                    todo.append(nxt)
        if todo:
            return set()
        if blame:
            return blame
        self.stats.alone += len(alone)
        return _Plan(frozenset(visited - alone), not alone)

    def _edges(self, pid: int, entry: Entry, own: bool, ctx: TreeContext
               ) -> tuple[str | None, tuple[tuple[int, Entry], ...]]:
        """The check of (program, entry) and the (target, entry) pairs it leads to, the
        same in every tree of the scan: kept, so that the walk of each tree (a CNI's
        policy array puts every endpoint's programs in every tree) only follows them."""
        key = (pid, entry, own)
        got = self._walked.get(key)
        if got is None:
            why, out = self._check(pid, entry, ctx, own=own)
            edges = dict.fromkeys((t, self._into(out, mid)) for mid, t in self._targets(pid))
            got = self._walked[key] = (why, tuple(edges))
        return got

    def _into(self, out: Carried, mid: int) -> Entry:
        """``carried_into``, one object per answer (the walks keep many of them)."""
        key = (out, mid)
        got = self._entries.get(key)
        if got is None:
            got = carried_into(out, mid)
            got = self._entries[key] = self._interned.setdefault(got, got)
        return got

    def _check(self, pid: int, entry: Entry, ctx: TreeContext,
               own: bool = False) -> tuple[str | None, Carried]:
        """The dependence pass over the program's family's code (``own``: over its own
        code, nothing varying) entered with ``entry``'s taint; what it carries is named
        by this program's own prog arrays."""
        fam = None if own else self._family.get(pid)
        why, out = self._checked_code(pid, fam, entry, ctx)
        if fam is None or pid == fam.rep or not out:
            return why, out
        # the family's code is the representative's: its arrays, position by position
        # with this copy's (one it does not list stands for every array)
        mine = fam.renaming(pid)
        return why, tuple((mine.get(m) if m is not None else None, e) for m, e in out)

    def _checked_code(self, pid: int, fam: Family | None, entry: Entry,
                      ctx: TreeContext) -> tuple[str | None, Carried]:
        key = (id(fam) if fam is not None else -pid - 1, entry)
        got = self._checked.get(key)
        if got is not None:
            return got
        if fam is not None:
            if fam.prep is None:
                fam.prep = Prepared(fam.insns, fam.func_starts, frozenset(fam.varying),
                                    fam.hulls)
            prep = fam.prep
            varying = frozenset(fam.varying)
            maps = {m: frozenset(o) for m, o in fam.abstract_maps.items()}
        elif not entry[0]:
            got = self._checked[key] = (None, ())
            return got
        else:
            code = self.source.program(pid)
            if code is None:
                got = self._checked[key] = ("unreadable", ())
                return got
            mine = self.preps.get(pid)
            if mine is None:
                mine = self.preps[pid] = Prepared(code.insns, code.func_starts)
            prep = mine
            varying, maps = frozenset(), {}
        got = self._checked[key] = depends(
            prep, varying, maps,
            known_rodata=lambda m: ctx.rodata(m) is not None,
            helper_name=ctx.helper_name,
            entry_cb=entry[0],
            cb_range=ctx.env.cb_range,
            values=fam.values if fam is not None else None,
            hulls=fam.hulls if fam is not None else None,
            entry_exact=entry[1],
            map_value=self._map_value(fam) if fam is not None else None,
        )
        return got

    def _map_value(self, fam: Family) -> Callable[[int, int, int], Value | None]:
        """(the representative's map id, offset, size) -> every copy's little-endian
        value of those bytes of its own read-only map; the same for the engine and the
        dependence pass, so both see one value."""
        def value(mid: int, at: int, size: int) -> Value | None:
            key = (mid, at, size)
            if key not in fam.fields:
                fam.fields[key] = self._field_values(fam, mid, at, size)
            return fam.fields[key]
        return value

    def _field_values(self, fam: Family, mid: int, at: int, size: int) -> Value | None:
        if mid not in fam.map_ids or at < 0 or size not in (1, 2, 4, 8):
            return None
        pos = fam.map_ids.index(mid)
        out: set[int] = set()
        for maps in fam.members.values():
            data = self.source.rodata(maps[pos])
            if data is None or at + size > len(data):
                return None
            out.add(int.from_bytes(data[at:at + size], "little"))
        return S.make_set(out, _VARYING_FIELD)

    def _analyse(self, fam: Family, cb: CbState, ctx: TreeContext) -> Local | None:
        used_tree = []

        def tail_value(site: Site) -> Value | None:
            used_tree.append(site)  # a subprogram's tail call returns its tree's values
            return S.full("tail call from a subprogram")

        varying = {m: frozenset(o) for m, o in fam.abstract_maps.items()}
        none: frozenset[int] = frozenset()

        base = ctx.env
        env = Env(ctx.helper_name, tail_value, ctx.rodata, base.cb_range, base.budget,
                  lambda m: varying.get(m, none), self._map_value(fam))
        assert fam.prep is not None
        loc = ProgAnalyser(fam.prep, env, cb, fam.map_ids).run()
        return None if used_tree else loc


_VARYING_FIELD = "a read-only map field that differs between copies of this program"
