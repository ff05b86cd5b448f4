"""The tail-call closure and the public entry point ``analyse()``.

A program's possible return values are those of its own exits plus those of every
program it can tail-call, transitively (a successful tail call never returns), at most
``MAX_TAIL_CALL_CNT`` deep. A target is analysed with the context bytes (``cb[]``)
known at the call site, because real datapaths hand their exit code to a
drop-notification tail call through ``skb->cb`` (the root starts with cb unknown: an
earlier filter may have written it). Each (program, cb state) pair is analysed once per
``analyse()`` call; a program entered with more than ``MAX_CONTEXTS`` distinct states
falls back to "cb unknown", which covers them all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Protocol

from tcaudit.analysis import domain as D
from tcaudit.analysis import scalar as S
from tcaudit.analysis.domain import Value
from tcaudit.analysis.frames import Summaries
from tcaudit.analysis.interp import (
    MAX_CONTEXTS,
    BudgetExhausted,
    CbState,
    Env,
    Local,
    ProgAnalyser,
    Site,
)
from tcaudit.analysis.prepare import Prepared
from tcaudit.analysis.results import Analysis, ProgramCode, Ranges, TailCall
from tcaudit.analysis.scalar import Rng
from tcaudit.analysis.shapes import ClosureAnswer, Shapes, TreeCopy

__all__ = ["CAP", "MAX_TAIL_CALL_CNT", "Analysis", "CodeSource", "ProgramCode", "Ranges",
           "TailCall", "analyse"]

MAX_TAIL_CALL_CNT = 33
MAX_SUMMARIES = 24
WIDEN_SUMMARIES = 4
"""Growths after which a summary's growing values are widened (so it settles)."""
"""Growths of a program's summary cb state before it becomes "nothing known"."""
CAP = S.CAP


class CodeSource(Protocol):
    """Where the analysis gets helper names, prog array slots and tail-call targets.

    Optional, looked up with getattr: ``rodata(map_id) -> bytes | None`` (the value of a
    map the kernel treats as read-only for programs) and ``cb_range`` (the [start, end)
    bytes of ``struct sk_buff`` that hold ``__sk_buff.cb[]`` after the ctx rewrite).
    """

    def helper_name(self, imm: int) -> str | None:
        """Name of the helper a ``call imm`` (src_reg 0) targets, e.g. "bpf_redirect"."""
        ...

    def prog_array(self, map_id: int) -> Mapping[int, int] | None:
        """Slot index -> prog id of a prog array; None if unreadable or not a prog array."""
        ...

    def program(self, prog_id: int) -> ProgramCode | None:
        """Code of a tail-call target, None if it cannot be read."""
        ...


def project(values: Iterable[Value]) -> tuple[Ranges | None, str | None]:
    """Union of the low 32 bits (signed) of every value; None with the reason when one
    of them can be anything."""
    acc: list[tuple[int, int]] = []
    widest: tuple[int, str] = (0, "every 32-bit value is possible")
    for v in values:
        if not D.is_scalar(v):
            return None, D.reason_of(v)
        r = S.s32_ranges(v)  # type: ignore[arg-type]
        if r is None:
            return None, D.reason_of(v)
        n = S.count(r)
        if n > widest[0] and type(v) is Rng:
            widest = (n, v.reason)
        acc.extend(r)
    merged = S.merge_ranges(acc)
    if merged == [(S.S32_MIN, S.S32_MAX)]:
        return None, widest[1]
    return tuple(merged), None


def to_possible(ranges: Ranges | None) -> frozenset[int] | None:
    if ranges is None or S.count(list(ranges)) > CAP:
        return None
    return frozenset(x for lo, hi in ranges for x in range(lo, hi + 1))


_Key = int | None
_Node = tuple[_Key, CbState]


class _Ctx:
    """State of one analyse() call: memo tables and the shared step budget."""

    def __init__(self, source: CodeSource, budget: int, root: ProgramCode | None,
                 root_key: _Key, shared: Shapes | None = None) -> None:
        self.source = source
        self.start_budget = budget
        self.root = root
        self.root_key: _Key = root_key
        self.shared = shared
        readable = getattr(source, "readable", None)
        self._readable = readable if callable(readable) else None
        self.helpers: dict[int, str | None] = {}
        self.arrays: dict[int, Mapping[int, int] | None] = {}
        self.codes: dict[int, ProgramCode | None] = {}
        self.preps: dict[_Key, Prepared] = {}
        self.locals: dict[_Node, Local] = {}
        self.exact: dict[_Key, set[CbState]] = {}
        self.summaries = Summaries()
        self.active: set[_Node] = set()
        self.built: dict[_Key, Analysis] = {}
        self.rodatas: dict[int, bytes | None] = {}
        rodata = getattr(source, "rodata", None)
        self._rodata = rodata if callable(rodata) else None
        cb_range = getattr(source, "cb_range", None)
        if callable(cb_range):
            cb_range = cb_range()
        self.env = Env(self.helper_name, self.tail_value, self.rodata,
                       cb_range if isinstance(cb_range, tuple) else None, [budget])
        self.summarized = False
        """A node was mapped to a summary of this call's states (``node``)."""
        self.nodes: dict[tuple[_Key, CbState], _Node] = {}
        """(program, cb state a tail call enters it with) -> its node, once it is not a
        summary (a summary grows)."""

    @property
    def budget(self) -> int:
        return self.env.budget[0]

    def helper_name(self, imm: int) -> str | None:
        try:
            return self.helpers[imm]
        except KeyError:
            name = self.helpers[imm] = self.source.helper_name(imm)
            return name

    def rodata(self, map_id: int) -> bytes | None:
        if self._rodata is None:
            return None
        if map_id not in self.rodatas:
            data = self._rodata(map_id)
            self.rodatas[map_id] = data if isinstance(data, bytes) else None
        return self.rodatas[map_id]

    def prog_array(self, map_id: int) -> Mapping[int, int] | None:
        if map_id not in self.arrays:
            arr = self.source.prog_array(map_id)
            self.arrays[map_id] = dict(arr) if arr is not None else None
        return self.arrays[map_id]

    def code(self, key: _Key) -> ProgramCode | None:
        if key == self.root_key and self.root is not None:
            return self.root
        assert key is not None
        if key not in self.codes:
            self.codes[key] = self.source.program(key)
        return self.codes[key]

    def node(self, key: _Key, cb: CbState) -> _Node:
        """The node a tail call entering ``key`` with ``cb`` known is analysed as (less the
        words its tree's answer cannot depend on, ``shapes.weaken``): its own state
        for the first MAX_CONTEXTS states, then one shared summary (the join of the
        states since), analysed again whenever it grows; after frames.MAX_SUMMARIES growths
        the summary is "nothing known", which covers every state (frames.Summaries)."""
        got = self.nodes.get((key, cb))
        if got is not None:
            return got
        asked = cb
        if cb and self.shared is not None and key is not None and (
                key != self.root_key or self.root is None):
            cb = self.shared.weaken(key, cb, self)  # the bytes its answer may depend on
        if not cb:
            got = self.nodes[(key, asked)] = (key, cb)
            return got
        exact = self.exact.setdefault(key, set())
        if cb in exact or len(exact) < MAX_CONTEXTS:
            exact.add(cb)
            got = self.nodes[(key, asked)] = (key, cb)  # (it stays this node)
            return got
        self.summarized = True  # (this tree's history chose the node)
        (summary,) = self.summaries.add(key, (cb,))
        return (key, summary)

    def local(self, node: _Node) -> Local | None:
        """Local analysis of one program entered with known cb bytes; None while it is
        being computed (a tail-call cycle through a subprogram)."""
        loc = self.locals.get(node)
        if loc is not None:
            return loc
        if node in self.active:
            return None
        key, cb = node
        if self.shared is not None and key is not None and (key != self.root_key
                                                            or self.root is None):
            loc = self.shared.local(key, cb, self)
            if loc is not None:
                self.locals[node] = loc
                return loc
        # the scan's families, when this program's own analysis can serve every tree of
        # the scan (not a root given as code: that code may be no program's)
        scan = self.shared if key is not None and (
            key != self.root_key or self.root is None) else None
        if scan is not None:
            # a program analysed on its own in an earlier tree of this scan, entered
            # with the same cb state: its local answer depends on nothing else
            loc = scan.own.get(node)
            if loc is not None:
                scan.stats.reused += 1
                self.locals[node] = loc
                return loc
        code = self.code(key)
        if code is None:
            loc = Local([], {}, [], f"tail-call target prog {key} unreadable")
        else:
            preps = scan.preps if scan is not None else self.preps
            prep = preps.get(key)
            if prep is None:
                prep = preps[key] = Prepared(code.insns, code.func_starts)
            self.active.add(node)
            try:
                loc = ProgAnalyser(prep, self.env, cb, code.map_ids).run()
            finally:
                self.active.discard(node)
            if scan is not None and all(site.main for site in loc.sites):
                # (a tail call from a subprogram returns this tree's values into it)
                scan.own[node] = loc
        self.locals[node] = loc
        return loc

    def resolve(self, site: Site) -> tuple[tuple[int, ...], str | None]:
        """Target prog ids of a tail-call site, and a problem that makes it unknown."""
        if site.map_id is None:
            # bpf_tail_call's map argument is a map the program uses (ARG_CONST_MAP_PTR
            # checked against used_maps): any of its prog arrays
            arrays = [a for a in map(self.prog_array, site.candidates) if a is not None]
            if not arrays:
                return (), f"tail call at insn {site.pc} through an unknown map"
        else:
            arr = self.prog_array(site.map_id)
            if arr is None:
                return (), f"prog array {site.map_id} unreadable"
            arrays = [arr]
        out: list[int] = []
        for arr in arrays:
            keys = sorted(arr) if site.indexes is None else [k for k in site.indexes if k in arr]
            out.extend(arr[k] for k in keys if arr[k] not in out)
        return tuple(out), None

    def site_arrays(self, site: Site) -> list[int]:
        if site.map_id is not None:
            return [site.map_id]
        return [m for m in site.candidates if self.prog_array(m) is not None]

    def tail_value(self, site: Site) -> Value | None:
        """What a tail call from a subprogram returns to the subprogram's caller."""
        targets, problem = self.resolve(site)
        if problem:
            return S.full(problem)
        v: Value | None = None
        for t in targets:
            values, _r, _a, prob = self.closure(self.node(t, site.cb))
            if prob is not None:
                return S.full(prob)
            for x in values:
                v = x if v is None else D.join(v, x)
        return v

    def closure(
        self, start: _Node
    ) -> ClosureAnswer:
        """Every value a program can return including its tail-call targets (breadth
        first, at most MAX_TAIL_CALL_CNT deep): the values, their 32-bit ranges (None
        when unknown), the prog arrays involved and why unknown.

        A program entered with cb[] unknown has the same closure in every tree of a
        scan (a CNI's policy array puts every endpoint's programs in every tree), unless
        this call's own history shaped a node (a summary of its states) or a cycle was
        being followed: kept in the scan's ``shared`` otherwise."""
        key, cb = start
        scan = self.shared
        if cb or scan is None or key is None or (key == self.root_key and self.root is not None):
            return self._closure(start)
        got = scan.closures.get(key)
        if got is not None:
            return got
        before, self.summarized = self.summarized, False
        try:
            out = self._closure(start)
            if not self.summarized and out[3] != _CYCLE:
                scan.closures[key] = out
        finally:
            self.summarized = self.summarized or before
        return out

    def _closure(
        self, start: _Node
    ) -> ClosureAnswer:
        dist: dict[_Node, int] = {start: 0}
        order: list[_Node] = [start]
        values: list[Value] = []
        arrays: set[int] = set()
        problem: str | None = None
        i = 0
        while i < len(order):
            node = order[i]
            i += 1
            loc = self.local(node)
            if loc is None:
                problem = problem or _CYCLE
                continue
            if loc.problem is not None:
                problem = problem or loc.problem
            values.extend(loc.values)
            for site in loc.sites:
                arrays.update(self.site_arrays(site))
                if not site.main:
                    continue
                targets, prob = self.resolve(site)
                if prob is not None:
                    problem = problem or prob
                if dist[node] >= MAX_TAIL_CALL_CNT:
                    continue
                for t in targets:
                    nxt = self.node(t, site.cb)
                    if nxt not in dist:
                        dist[nxt] = dist[node] + 1
                        order.append(nxt)
        if problem is not None:
            return tuple(values), None, frozenset(arrays), problem
        if not values:
            return (), None, frozenset(arrays), "no exit is reachable"
        ranges, why = project(values)
        return tuple(values), ranges, frozenset(arrays), why

    def build(self, key: _Key, path: frozenset[_Key]) -> Analysis:
        done = self.built.get(key)
        if done is not None:
            return done
        node: _Node = (key, ())
        loc = self.local(node)
        assert loc is not None
        _values, ranges, arrays, why = self.closure(node)
        possible = to_possible(ranges)
        if ranges is None:
            reason: str | None = why
        elif possible is None:
            reason = f"more than {CAP} values, see ranges"
        else:
            reason = self._depends(arrays)
        inner = path | {key}
        calls: list[TailCall] = []
        for site in loc.sites:
            targets, _problem = self.resolve(site)
            analyses: list[Analysis | None] = []
            for t in targets:
                if t in inner or len(inner) > MAX_TAIL_CALL_CNT or not self.readable(t):
                    analyses.append(None)
                else:
                    analyses.append(self.build(t, inner))
            idx = site.indexes
            calls.append(
                TailCall(
                    pc=site.pc,
                    map_id=site.map_id,
                    index=idx[0] if idx is not None and len(idx) == 1 else None,
                    targets=targets,
                    analyses=tuple(analyses),
                    indexes=idx,
                    in_subprogram=not site.main,
                )
            )
        exit_ranges = {pc: project((v,))[0] for pc, v in sorted(loc.exits.items())}
        res = Analysis(
            possible=possible,
            reason=reason,
            exits=MappingProxyType({pc: to_possible(r) for pc, r in exit_ranges.items()}),
            tail_calls=tuple(calls),
            prog_arrays=tuple(sorted(arrays)),
            steps=self.start_budget - self.budget,
            ranges=ranges,
            exit_ranges=MappingProxyType(exit_ranges),
        )
        self.built[key] = res
        return res

    def readable(self, key: _Key) -> bool:
        """The program's code can be read (without decoding it when the source can)."""
        if key == self.root_key and self.root is not None:
            return True
        if self._readable is not None and key is not None:
            return bool(self._readable(key))
        return self.code(key) is not None

    def _depends(self, arrays: Iterable[int]) -> str | None:
        return _depends_text(arrays, self.prog_array)


_DEPENDS = "tail calls via "
_CYCLE = "tail-call cycle through a subprogram"


def _depends_text(arrays: Iterable[int],
                  prog_array: Callable[[int], Mapping[int, int] | None]) -> str | None:
    parts = []
    for mid in sorted(arrays):
        arr = prog_array(mid)
        n = len(arr) if arr is not None else 0
        parts.append(f"prog array {mid} ({n} slot{'s' if n != 1 else ''})")
    if not parts:
        return None
    return _DEPENDS + ", ".join(parts)


class _NotACopy(Exception):
    pass


def _renamed(copy: TreeCopy, source: CodeSource) -> Analysis | None:
    """The answer of the tree ``copy`` copies with this tree's program and map ids in
    place of that one's (prog arrays in sorted order, their reason written again); None
    when the answer holds anything else that names one (a problem's reason)."""
    progs, maps = copy.programs, copy.maps
    done: dict[int, Analysis] = {}

    def ren(a: Analysis) -> Analysis:
        got = done.get(id(a))
        if got is not None:
            return got
        if any(m not in maps for m in a.prog_arrays):
            raise _NotACopy
        arrays = tuple(sorted(maps[m] for m in a.prog_arrays))
        reason = a.reason
        if reason is not None and not reason.startswith(f"more than {CAP} values"):
            if not reason.startswith(_DEPENDS):
                raise _NotACopy
            reason = _depends_text(arrays, source.prog_array)
        calls = []
        for t in a.tail_calls:
            if (t.map_id is not None and t.map_id not in maps) or any(
                    x not in progs for x in t.targets):
                raise _NotACopy
            calls.append(TailCall(
                pc=t.pc, map_id=maps[t.map_id] if t.map_id is not None else None,
                index=t.index, targets=tuple(progs[x] for x in t.targets),
                analyses=tuple(ren(x) if x is not None else None for x in t.analyses),
                indexes=t.indexes, in_subprogram=t.in_subprogram))
        out = done[id(a)] = Analysis(
            possible=a.possible, reason=reason, exits=a.exits, tail_calls=tuple(calls),
            prog_arrays=arrays, steps=0, ranges=a.ranges, exit_ranges=a.exit_ranges)
        return out

    if not isinstance(copy.answer, Analysis):
        return None
    try:
        return ren(copy.answer)
    except _NotACopy:
        return None


def analyse(
    code: ProgramCode | int,
    source: CodeSource,
    *,
    step_budget: int = 2_000_000,
    shared: Shapes | None = None,
) -> Analysis:
    """Possible return values of ``code`` (or of the program with that id in
    ``source``) and of every program it tail-calls.

    ``shared``: families of copies among the scan's programs, each analysed once
    (``shapes``); None analyses every program on its own.

    ``step_budget`` bounds the instructions interpreted over the whole tree;
    running out gives ``possible=None`` with reason "step budget exhausted".
    The result reflects the prog arrays' contents at the time of the call.
    """
    if isinstance(code, ProgramCode):
        ctx = _Ctx(source, step_budget, code, code.prog_id, shared)
    else:
        ctx = _Ctx(source, step_budget, None, code, shared)
        if shared is not None:
            # a copy of a tree analysed before (another endpoint's): its answer renamed
            copy = shared.tree_copy(code, ctx)
            got = _renamed(copy, source) if copy is not None else None
            if got is not None:
                shared.stats.trees += 1
                return got
    try:
        result = ctx.build(ctx.root_key, frozenset())
        if shared is not None and isinstance(code, int):
            shared.note_tree(code, result, ctx)
        return result
    except BudgetExhausted:
        return Analysis(
            possible=None,
            reason="step budget exhausted",
            exits=MappingProxyType({}),
            tail_calls=(),
            prog_arrays=(),
            steps=step_budget - ctx.budget,
        )
