"""Which known ``cb[]`` bytes a tail-call target's answer can depend on.

A tail call enters its target with the context bytes the caller stored (``closure``:
each (program, cb state) pair is analysed once). Most of what real datapaths carry
there is never part of the answer: Cilium's ``from-container`` stores its endpoint's
security identity and ifindex in ``cb[]`` before tail-calling through the node-wide
policy prog array, and each endpoint's policy program uses them only as map keys and
in drop notifications. Kept as known values, they make every policy program a
different node in every endpoint's tree: N endpoints, N^2 analyses.

``weaken`` drops the known words no answer can depend on: the dependence pass
(``dependence.depends``, run over the target's own code with those bytes as the
varying ones) must find that they reach nothing the engine's answer is made of, and the
bytes they may be copied to at a tail call must do the same in every target, through
the whole tree (a greatest fixpoint: a tail-call cycle passes when every program on it
passes). A word the code does test, like an identity compared with the few reserved
ones, is widened to its value's bucket instead (every number of its bit length) when
the pass finds each such test decided alike for the whole bucket (its *exact* words):
every endpoint's identity then falls in one bucket. Only words a program has been
entered with two values of in the scan are looked at: the others cost no extra analysis,
and the first tree keeps every value it knows. Knowing less is sound whatever the
check says (the engine covers every value of the bucket, or any value); the check is
what keeps the answer as precise as before.
"""

from __future__ import annotations

from collections.abc import Callable

from tcaudit.analysis import scalar as S
from tcaudit.analysis.domain import Value
from tcaudit.analysis.frames import CbState
from tcaudit.analysis.taint import Carried, Entry, Exact, carried_into

MAX_NODES = 1 << 16
"""(program, entry) pairs followed by one check before it gives up (keeps the bytes):
as many as a tree's (``shapes.MAX_TREE``)."""

MAX_VALUES = 2
"""Values of one word remembered: two tell that it varies."""

Check = Callable[[int, Entry], tuple[str | None, Carried]]
"""The dependence pass over a program's own code entered with ``Entry``'s taint: why it
depends (None: it does not) and the taint its tail calls carry, per prog array."""


class Relevance:
    """Checks of known cb[] bytes, kept for the whole scan (code and prog arrays are read
    once a scan)."""

    def __init__(self, targets: Callable[[int], tuple[tuple[int, int], ...]]) -> None:
        self._targets = targets
        self._confined: dict[tuple[int, Entry], bool] = {}
        self._done: dict[tuple[int, CbState], CbState] = {}
        """(program, entry state) -> what it is analysed with (the first answer stays)."""
        self._seen: dict[int, dict[tuple[int, int], set[Value]]] = {}
        """Program -> (offset, size) -> the values tail calls entered it with there."""
        self.dropped = 0  # cb states with less known
        self.kept = 0  # cb states left as they were

    def weaken(self, prog_id: int, cb: CbState, check: Check) -> CbState:
        """``cb`` with less known of its *varying* words (those tail calls have entered
        ``prog_id`` with other values of in this scan; the others are kept as they are,
        as they cost no extra analysis): without them all when no answer in the tree
        entered at ``prog_id`` can depend on any of them; else each one dropped when that
        holds of it, or set to its value's *bucket* (``_bucket``) when every test the
        tree makes of it decides alike for the whole bucket, provided the changes still
        pass together."""
        key = (prog_id, cb)
        done = self._done.get(key)
        if done is None:
            done = self._done[key] = self._weaken(prog_id, cb, check)
        return done

    def _weaken(self, prog_id: int, cb: CbState, check: Check) -> CbState:
        seen = self._seen.setdefault(prog_id, {})
        varying: list[tuple[int, int, Value]] = []
        for word in cb:
            values = seen.setdefault(word[:2], set())
            if len(values) < MAX_VALUES:
                values.add(word[2])
            if len(values) > 1:
                varying.append(word)
        if not varying:
            return cb
        if self.confined(prog_id, (_bytes(tuple(varying)), frozenset()), check):
            self.dropped += 1
            return tuple(w for w in cb if w not in varying)
        new: dict[tuple[int, int], Value | None] = {}  # word -> its bucket, None: dropped
        changed: set[int] = set()
        exact: set[Exact] = set()
        for off, size, value in varying:
            mine = frozenset(range(off, off + size))
            if len(varying) > 1 and self.confined(prog_id, (mine, frozenset()), check):
                new[off, size] = None
                changed |= mine
                continue
            bucket = _bucket(value, size)
            if bucket is not None and self.confined(
                    prog_id, (mine, frozenset({(off, size, bucket)})), check):
                new[off, size] = bucket
                changed |= mine
                exact.add((off, size, bucket))
        if new and (len(new) == 1 or self.confined(
                prog_id, (frozenset(changed), frozenset(exact)), check)):
            self.dropped += 1
            out: list[tuple[int, int, Value]] = []
            for o, z, v in cb:
                got = new.get((o, z), v)
                if got is not None:
                    out.append((o, z, got))
            return tuple(out)
        self.kept += 1
        return cb

    def confined(self, prog_id: int, entry: Entry, check: Check) -> bool:
        """No value of the cb[] bytes ``entry`` taints can reach the answer of the tree
        entered at ``prog_id``, beyond what is decided alike for its exact words' every
        value: every (program, entry) pair reachable passes the dependence pass."""
        key = (prog_id, entry)
        got = self._confined.get(key)
        if got is not None:
            return got
        seen: set[tuple[int, Entry]] = set()
        todo = [key]
        ok = True
        while todo:
            node = todo.pop()
            if node in seen or self._confined.get(node) is True:
                continue
            if self._confined.get(node) is False or len(seen) >= MAX_NODES:
                ok = False
                break
            seen.add(node)
            why, out = check(*node)
            if why is not None:
                self._confined[node] = False
                ok = False
                break
            if out:
                todo.extend((t, carried_into(out, mid)) for mid, t in self._targets(node[0]))
        if ok:  # every pair reached passes, assuming the others do: all of them hold
            for node in seen:
                self._confined[node] = True
        self._confined[key] = ok
        return ok


def _bucket(value: Value, size: int) -> Value | None:
    """The numbers of ``value``'s bit length: [2^k, 2^(k+1) - 1] (a tnum too) for a
    known non-zero number (or a set within one such range) in a word of ``size`` bytes.
    An endpoint's identity or id lands in the bucket of every other endpoint's, so one
    analysis serves them all when the code only tests it against small constants
    (reserved identities) or uses it as a key."""
    if type(value) is not frozenset or not value or size > 8:
        return None
    lo, hi = min(value), max(value)
    if lo <= 0 or hi >= 1 << (8 * size):
        return None
    base = 1 << (hi.bit_length() - 1)
    if lo < base or base == 1:
        return None
    return S.norm(base, 2 * base - 1, base, 2 * base - 1, base, base - 1, _BUCKET)


_BUCKET = "a context word a tail-call caller stored (any number of its bit length)"


def _bytes(cb: CbState) -> frozenset[int]:
    return frozenset(b for off, size, _v in cb for b in range(off, off + size))
