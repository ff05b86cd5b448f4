"""The dependence pass's exact varying values: ids, what the engine derives from them,
and the cb[] words that hold one (``dependence``).

An *exact* value is a varying constant whose every copy's value the pass knows (a mov,
store or 64-bit immediate, a read-only map field, a cb[] word a tail call entered with):
an id (negative, kept in a register's origin) -> every copy's value. A test of one that
the engine decides alike for every copy's value (``decisions``) does not make the
copies' answers differ.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from tcaudit.analysis import domain as D
from tcaudit.analysis.domain import Value
from tcaudit.analysis.taint import Exact, fits_in


class ExactValues:
    """The bookkeeping of exact values, for the pass (its state is set up there)."""

    values: Mapping[int, frozenset[int]]
    exact: dict[int, Value]
    next_id: int
    fields: dict[tuple[int, int, int], int | None]
    map_value: Callable[[int, int, int], Value | None] | None
    derived: dict[tuple[int, int], int | None]
    cbx: dict[int, tuple[int, int | None]]
    cbx_out: dict[int | None, set[Exact]]
    cbt: set[int]
    used: set[int]
    stale: bool

    def _fits_all(self, pc: int, width: int) -> int:
        """The may-not-fit flags no copy's value of the varying constant at pc has
        (``values``: a 32-bit immediate sign-extended to ``width``, or an ld_imm64's
        64-bit constant)."""
        consts = self.values.get(pc)
        if not consts:
            return 0
        mask = (1 << width) - 1
        return fits_in(max((c & mask).bit_length() for c in consts))

    def _new_exact(self, v: Value) -> int:
        eid = self.next_id
        self.next_id -= 1
        self.exact[eid] = v
        return eid

    def _field(self, mid: int, at: int, size: int) -> int | None:
        """The exact value of a varying read-only map field (every copy's value)."""
        key = (mid, at, size)
        if key not in self.fields:
            assert self.map_value is not None
            v = self.map_value(mid, at, size)
            self.fields[key] = None if v is None else self._new_exact(v)
        return self.fields[key]

    def _derived(self, eid: int, pc: int, op: int, wide: bool, off: int,
                 kval: Value) -> int | None:
        """The exact value ``eid op imm`` (the instruction at pc): what the engine
        computes from every copy's value (``domain.alu``, as interp does)."""
        key = (eid, pc)
        if key not in self.derived:
            v = D.alu(op, wide, off, self.exact[eid], kval, False)
            self.derived[key] = self._new_exact(v) if D.is_scalar(v) else None
        return self.derived[key]

    def _note_cb(self, off: int, size: int, exact: int | None) -> None:
        """Record a tainted store to cb[off:off+size]; overlapping words of another
        size or value stop being exact."""
        for k, (s, e) in list(self.cbx.items()):
            if k < off + size and off < k + s and (k, s) != (off, size):
                self._set_cb(k, s, None, e)
                exact = None
        old = self.cbx.get(off)
        if old is not None and old[1] != exact:
            # another store: still exact when it stores the same values (the same
            # constant at another place, like an endpoint id stored on two paths)
            same = (old[1] is not None and exact is not None
                    and self.exact[old[1]] == self.exact[exact])
            exact = old[1] if same else None
        self._set_cb(off, size, exact, old[1] if old is not None else None)

    def _set_cb(self, off: int, size: int, exact: int | None, was: int | None) -> None:
        if was is not None and exact is None and off in self.used:
            self.stale = True
        self.cbx[off] = (size, exact)

    def _fits(self, eid: int, size: int) -> bool:
        """Every copy's value of the exact value ``eid`` fits in ``size`` bytes."""
        v = self.exact[eid]
        limit = 1 << (8 * size)
        if type(v) is frozenset:
            return all(0 <= x < limit for x in v)
        return D.as_scalar(v).umax < limit  # type: ignore[union-attr]

    def _carry_exact(self, mid: int | None) -> None:
        out = self.cbx_out.setdefault(mid, set())
        for off, (size, eid) in self.cbx.items():
            if eid is not None and all(x in self.cbt for x in range(off, off + size)):
                out.add((off, size, self.exact[eid]))
