"""The trees of one scan analysed by more than one process (tcaudit.analysis.workers).

A worker may only make the scan faster: every root's answer with workers is the one a
single process gives, a worker that fails costs only time, and no process is left.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator

import pytest

from tcaudit.analysis import attach, closure, workers
from tcaudit.analysis.cache import Encoder
from tcaudit.analysis.closure import Analysis, ProgramCode
from tcaudit.analysis.insns import Insn, encode
from tests.analysis.test_shapes import ARRAY_BASE, CopySource, endpoint_tree, same


class Source(CopySource):
    """CopySource with what ``VerdictAnalyser`` reads besides."""

    def cache_key(self, prog_id: int) -> str | None:
        p = self.programs.get(prog_id)
        if p is None:
            return None
        return hashlib.sha256(encode(p.insns) + repr(p.map_ids).encode()).hexdigest()

    def error(self, prog_id: int) -> str | None:
        return None if prog_id in self.programs else f"program {prog_id} unreadable"

    def map_ids_of(self, prog_id: int) -> tuple[int, ...]:
        p = self.programs.get(prog_id)
        return p.map_ids if p is not None else ()


def node(kinds: int, per_kind: int) -> tuple[Source, list[int]]:
    """Endpoint trees (``test_shapes.endpoint_tree``) of ``kinds`` shapes: kind j's root
    starts with j more instructions, so each kind is a family of roots of its own."""
    programs: dict[int, ProgramCode] = {}
    arrays: dict[int, dict[int, int]] = {}
    roots = []
    for j in range(kinds):
        for i in range(per_kind):
            k = 1 + j * per_kind + i
            tree = endpoint_tree(k, ip=0x0A000000 + k, ifindex=10 + k)
            root = tree[100 * k]
            # (no jump crosses the start: every offset stays right)
            insns = (Insn(0xB7, 5, 0, 0, 0),) * j + root.insns
            tree[100 * k] = ProgramCode(root.prog_id, root.name, insns, root.func_starts,
                                        root.map_ids)
            programs.update(tree)
            arrays[ARRAY_BASE + k] = {0: 100 * k + 1, 1: 100 * k + 2}
            roots.append(100 * k)
    return Source(programs, arrays), roots


@pytest.fixture
def everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fork for any share, however small (the fixtures here are tiny)."""
    monkeypatch.setattr(workers, "MIN_SHARE", 0)


@pytest.fixture(autouse=True)
def no_leftover_process() -> Iterator[None]:
    yield
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # every worker this test forked was reaped


def analyses(source: Source, roots: list[int], count: int) -> tuple[
        dict[int, Analysis], attach.VerdictAnalyser]:
    analyser = attach.VerdictAnalyser(source, workers=count)  # type: ignore[arg-type]
    analyser.prefetch(roots)
    got = {}
    for r in roots:
        a = analyser.analysis(r)
        assert not isinstance(a, str)
        got[r] = a
    return got, analyser


def nested(a: Analysis) -> list[dict[str, object]]:
    """Every analysis of the tree as the cache encodes it, but for ``steps`` (the work
    it took: less where an earlier tree's answers were reused)."""
    return [{k: v for k, v in node.items() if k != "steps"}
            for node in json.loads(Encoder().text(a))["nodes"]]


# -- who analyses what -------------------------------------------------------------------

def test_families_of_roots_go_whole_to_the_least_loaded_process() -> None:
    group = {1: "a", 2: "a", 3: "b", 4: "a", 5: "c"}
    size = {1: 30_000, 3: 20_000, 5: 9_000}
    plan = workers.split([1, 2, 3, 4, 5], group.__getitem__, size.__getitem__, 2,
                         min_share=0)
    assert plan is not None and plan.warm == ()
    # a (30,000 and two later trees) here; b and c in the worker
    assert plan.shares == ((1, 2, 4), (3, 5))
    assert plan.loads == (30_000 * (1 + 2 * workers.LATER_TREE), 29_000)


def test_one_family_of_roots_is_warmed_here_and_its_later_trees_dealt_out() -> None:
    plan = workers.split(list(range(10, 17)), lambda _r: "one", lambda _r: 1_000_000, 2)
    assert plan is not None
    assert plan.warm == (10,)
    assert plan.shares == ((11, 13, 15), (12, 14, 16))


def test_no_fork_for_one_process_one_root_or_a_small_share() -> None:
    assert workers.split([1, 2, 3], lambda r: r, lambda _r: 10**6, 1) is None
    assert workers.split([1], lambda r: r, lambda _r: 10**6, 2) is None
    # two families, the smaller worth less than MIN_SHARE
    sizes = {1: 10**6, 2: workers.MIN_SHARE - 1}
    assert workers.split([1, 2], lambda r: r, sizes.__getitem__, 2) is None
    # a root without a family is a family of its own (None is no group)
    plan = workers.split([1, 2], lambda _r: None, lambda _r: 10**6, 2)
    assert plan is not None and sorted(plan.shares) == [(1,), (2,)]


@pytest.mark.parametrize(("value", "cpus", "expected"), [
    ("1", 8, 1), ("3", 1, 3), ("999", 2, workers.MAX_WORKERS),
    ("", 8, workers.DEFAULT_MAX), ("0", 1, 1), ("two", 2, 2), (None, 1, 1),
])
def test_the_number_of_processes(monkeypatch: pytest.MonkeyPatch, value: str | None,
                                 cpus: int, expected: int) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cpus)))
    env = {} if value is None else {workers.ENV: value}
    assert workers.worker_count(env) == expected


def test_the_tree_size_follows_prog_arrays_once() -> None:
    source, roots = node(1, 2)
    one = sum(len(p.insns) for pid, p in source.programs.items() if pid // 100 == 1)
    assert workers.tree_size(source, roots[0]) == one
    source.arrays[ARRAY_BASE + 1][2] = 100  # the tree holds its own root: counted once
    assert workers.tree_size(source, roots[0]) == one


# -- the answers -------------------------------------------------------------------------

@pytest.mark.parametrize(("kinds", "per_kind"), [(2, 4), (3, 2), (1, 7)])
def test_workers_give_the_answers_one_process_gives(everywhere: None, kinds: int,
                                                    per_kind: int) -> None:
    source, roots = node(kinds, per_kind)
    alone, _ = analyses(source, roots, 1)
    split, analyser = analyses(source, roots, 2)
    assert len(analyser.worker_peaks_kb) == 1  # (one worker was forked)
    assert all(kb > 0 for kb in analyser.worker_peaks_kb)
    for r in roots:
        same(alone[r], split[r])
        # the whole nested analysis, not only the root's verdict
        assert nested(alone[r]) == nested(split[r])
    assert {r: a.possible for r, a in split.items()} == {r: frozenset({2, 7}) for r in roots}


def test_a_scan_takes_the_workers_verdicts_without_decoding_their_trees(
        everywhere: None) -> None:
    source, roots = node(2, 3)
    analyser = attach.VerdictAnalyser(source, workers=2)  # type: ignore[arg-type]
    analyser.prefetch(roots)
    sent = set(analyser._sent)
    assert sent and sent < set(roots)
    assert all(analyser._summaries[r].possible == frozenset({2, 7}) for r in sent)
    r = min(sent)
    full = analyser.analysis(r)  # decoded when asked for, once
    assert not isinstance(full, str) and r not in analyser._sent
    assert analyser.analysis(r) is full


def test_a_worker_that_fails_costs_only_time(everywhere: None,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    source, roots = node(2, 3)
    alone, _ = analyses(source, roots, 1)
    parent = os.getpid()
    real = closure.analyse

    def dies_in_a_worker(*a: object, **k: object) -> Analysis:
        if os.getpid() != parent:
            os._exit(9)  # killed (the OOM killer, a signal): nothing sent
        return real(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(closure, "analyse", dies_in_a_worker)
    got, analyser = analyses(source, roots, 2)
    assert len(analyser.worker_peaks_kb) == 1
    for r in roots:
        same(alone[r], got[r])  # its roots analysed here afterwards
    assert analyser.internal_errors == []


def test_a_worker_that_sends_garbage_costs_only_time(everywhere: None,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    source, roots = node(2, 2)
    alone, _ = analyses(source, roots, 1)
    monkeypatch.setattr(workers, "_encode", lambda *_a: b'{"root": 1, "analysis": 3}\n')
    got, _ = analyses(source, roots, 2)
    for r in roots:
        same(alone[r], got[r])


@pytest.mark.parametrize("data", [
    b"", b"not json\n", b'{"root": 1}\n{"errors": []}\n',
    b'{"root": "1", "unreadable": "x"}\n{"errors": []}\n',
    b'{"root": 1, "unreadable": "x"}\n',  # stopped short: no errors line
    b'{"root": 1, "summary": {"possible": null, "reason": 5, "ranges": null}, '
    b'"analysis": "{\\"nodes\\": []}"}\n{"errors": []}\n',
    b'{"errors": [1]}\n', b"\xff\n",
])
def test_what_a_worker_sends_is_checked(data: bytes) -> None:
    assert workers._decode(data) is None


def test_a_worker_s_internal_errors_reach_the_scan(everywhere: None,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    source, roots = node(2, 2)
    real = closure.analyse
    parent = os.getpid()

    def fails_in_the_worker(code: object, *a: object, **k: object) -> Analysis:
        if os.getpid() != parent:
            raise KeyError("boom")  # a bug: each of its roots' verdicts is unknown
        return real(code, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(closure, "analyse", fails_in_the_worker)
    analyser = attach.VerdictAnalyser(source, workers=2)  # type: ignore[arg-type]
    analyser.prefetch(roots)
    sent = sorted(analyser._sent)
    assert sent
    assert analyser.internal_errors == [
        f"program {r}: verdict analysis failed (internal error: KeyError: 'boom'); "
        "its verdict is unknown" for r in sent]
    for r in roots:
        got = analyser.analysis(r)
        assert not isinstance(got, str)
        assert (got.possible is None) == (r in sent), r


def test_a_failure_here_kills_and_reaps_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    parent = os.getpid()
    started = time.monotonic()

    def analyse(root: int) -> str:
        if os.getpid() != parent:
            time.sleep(60)  # a worker still busy when this process fails
        if root == 3:
            raise KeyboardInterrupt
        return "unreadable"

    plan = workers.Split((), ((3,), (4,)), (1.0, 1.0))
    with pytest.raises(KeyboardInterrupt):
        workers.run(plan, analyse, [])
    assert time.monotonic() - started < 30  # not waited for: killed


def test_no_fork_from_a_process_with_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers.threading, "active_count", lambda: 2)
    monkeypatch.setattr(os, "fork", lambda: pytest.fail("forked"))
    done = []
    plan = workers.Split((1,), ((2,), (3,)), (1.0, 1.0))
    got = workers.run(plan, lambda r: done.append(r) or "x", [])  # type: ignore[func-returns-value]
    assert done == [1, 2, 3] and not got.results and got.peaks_kb == ()
