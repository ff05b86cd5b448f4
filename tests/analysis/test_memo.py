"""The memo tables of the pure scalar operations change no answer and stay bounded.

An analysis gives the same result with empty tables, with tables other trees filled
first, and with tables that remember nothing; every table stays within its limit.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tcaudit.analysis import domain as D
from tcaudit.analysis import memo
from tcaudit.analysis import prepare as P
from tcaudit.analysis import scalar as S
from tcaudit.analysis.closure import Analysis, analyse
from tcaudit.analysis.insns import Insn
from tests.analysis.test_verdicts_props import Tree, fp_trees, trees

TABLES = ((S, "_NORMS"), (S, "_JOINS"), (D, "_ALUS"), (D, "_BRANCHES"), (P, "_OPS"))


class _Forgetful(dict[Any, Any]):
    """A table that remembers nothing."""

    def __setitem__(self, key: Any, value: Any) -> None:
        pass


def _fields(a: Analysis) -> tuple[object, ...]:
    return (a.possible, a.reason, dict(a.exits), a.tail_calls, a.prog_arrays, a.ranges,
            dict(a.exit_ranges), a.steps)


def _without_memo(tree: Tree, monkeypatch: pytest.MonkeyPatch) -> Analysis:
    with monkeypatch.context() as m:
        for mod, name in TABLES:
            m.setattr(mod, name, _Forgetful())
        return analyse(tree.root, tree.source)


SETTINGS = settings(max_examples=120, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


@SETTINGS
@given(batch=st.lists(st.one_of(trees(tail_calls=True, subprog=True, loops=True), fp_trees()),
                min_size=2, max_size=4))
def test_answers_are_the_same_with_and_without_the_tables(
        batch: list[Tree], monkeypatch: pytest.MonkeyPatch) -> None:
    memo.forget()
    cold = [_fields(analyse(t.root, t.source)) for t in batch]
    # now every table holds what the whole batch asked: analyse again, in reverse
    warm = [_fields(analyse(t.root, t.source)) for t in reversed(batch)][::-1]
    bare = [_fields(_without_memo(t, monkeypatch)) for t in batch]
    assert cold == warm == bare


def test_the_tables_stay_within_their_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memo, "LIMIT", 16)
    memo.forget()
    for k in range(200):
        a = S.norm(k, k + 1000, k, k + 1000, 0, (1 << 64) - 1, "r")
        b = S.norm(-k - 5000, k, 0, (1 << 64) - 1, 0, (1 << 64) - 1, "s")
        assert a is not None and b is not None
        S.join(a, b)
        D.alu(0x00, True, 0, a, b, False)
        D.branch(0x20, True, a, b)
        P.Prepared((Insn(0x07, 1, 0, 0, k), Insn(0x07, 2, 0, 0, k), Insn(0x95, 0, 0, 0, 0)),
                   (0,))
    for mod, name in TABLES:
        assert 0 < len(getattr(mod, name)) <= 16, name


def test_forget_empties_every_table() -> None:
    S.norm(0, 1000, 0, 1000, 0, 1023, "x")
    S.join(S.full("a"), S.sized(8, "b"))
    assert all(getattr(mod, name) for mod, name in TABLES[:2])
    memo.forget()
    assert not any(getattr(mod, name) for mod, name in TABLES)
