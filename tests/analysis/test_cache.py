"""The persistent verdict cache: reused only for the same code, targets and slots, and
never from a directory or file someone else could have written."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from tcaudit.analysis import cache as C
from tcaudit.analysis.closure import Analysis, analyse
from tests.bpfasm import FakeSource, Label, call, exit_, jmp, ld_map, mov, program, tail_call
from tests.conftest import require_privileged

R0_SHOT = 2


class Kernel:
    """What the cache checks against: load times and prog-array slots."""

    def __init__(self) -> None:
        self.times = {1: 100, 2: 200, 3: 300}
        self.arrays: dict[int, dict[int, int]] = {9: {0: 2}}

    def load_time(self, prog_id: int) -> int | None:
        return self.times.get(prog_id)

    def prog_array(self, map_id: int) -> Mapping[int, int] | None:
        return self.arrays.get(map_id)


def tree(kernel: Kernel) -> Analysis:
    from tests.bpfasm import R0, R2, R3

    root = program(call(5), jmp("eq", R0, 0, "tail"), mov(R0, 7), exit_(), Label("tail"),
                   ld_map(R2, 9), mov(R3, 0), tail_call(), mov(R0, -1), exit_(), prog_id=1)
    shot = program(mov(R0, R0_SHOT), exit_(), prog_id=2)
    ok = program(mov(R0, 0), exit_(), prog_id=3)
    src = FakeSource(programs={1: root, 2: shot, 3: ok}, arrays=kernel.arrays)
    return analyse(root, src)


@pytest.fixture()
def cache(tmp_path: Path) -> C.VerdictCache:
    got = C.open_cache(str(tmp_path / "c"))
    assert got is not None
    return got


def test_round_trip_and_hit(cache: C.VerdictCache) -> None:
    kernel = Kernel()
    a = tree(kernel)
    assert a.possible == {-1, 2, 7}
    cache.put(1, a, kernel)
    b = cache.get(1, kernel)
    assert b == a and b is not None and b.tail_calls == a.tail_calls
    assert cache.stats.hits == 1 and cache.stats.writes == 1
    assert C.analysis_from_json(json.loads(C.Encoder().text(a))) == a


def test_the_encoder_writes_each_exit_table_once_and_never_anothers() -> None:
    """Copies of a tree share their exit tables: one encoder gives each analysis its own
    tables, whether they are the very objects another one had or equal-sized others."""
    a = tree(Kernel())
    other = replace(a, exits=MappingProxyType({pc: frozenset({9}) for pc in a.exits}),
                    exit_ranges=MappingProxyType({pc: ((9, 9),) for pc in a.exit_ranges}))
    copy = replace(a, prog_arrays=(77,))  # the same tables, another tree
    enc = C.Encoder()
    for x in (a, other, copy, other, a):
        assert C.analysis_from_json(json.loads(enc.text(x))) == x


def test_a_summary_is_the_root_verdict_without_decoding_the_nested_analyses(
        cache: C.VerdictCache) -> None:
    kernel = Kernel()
    a = tree(kernel)
    cache.put(1, a, kernel)
    assert cache.summary(1, kernel) == C.Summary(a.possible, a.reason, a.ranges)
    rec = _record(cache)
    doc = _load(rec)
    _store(rec, {**doc, "analysis": "{not json"})
    # the scan's path does not read the nested part; the full read is a miss
    assert cache.summary(1, kernel) == C.Summary(a.possible, a.reason, a.ranges)
    assert cache.get(1, kernel) is None
    kernel.arrays[9] = {0: 3}  # checked like a full read: a changed slot is stale
    assert cache.summary(1, kernel) is None
    kernel.arrays[9] = {0: 2}
    for bad in ({"summary": {"possible": ["x"], "reason": None, "ranges": None}},
                {"summary": {"possible": None, "reason": 5, "ranges": None}}, {"summary": 3}):
        _store(rec, {**doc, **bad})
        assert cache.summary(1, kernel) is None


def test_a_changed_slot_or_a_reloaded_target_is_stale(cache: C.VerdictCache) -> None:
    kernel = Kernel()
    cache.put(1, tree(kernel), kernel)
    kernel.arrays[9] = {0: 3}  # the vendor pointed the slot at another program
    assert cache.get(1, kernel) is None and cache.stats.stale == 1
    kernel.arrays[9] = {0: 2}
    kernel.times[2] = 201  # the target was reloaded under the same id (or id reuse)
    assert cache.get(1, kernel) is None and cache.stats.stale == 2
    kernel.times[2] = 200
    assert cache.get(1, kernel) is not None
    kernel.times[1] = 101  # the root itself is another program now
    assert cache.get(1, kernel) is None


def test_another_boot_or_engine_never_matches(cache: C.VerdictCache,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    kernel = Kernel()
    cache.put(1, tree(kernel), kernel)
    monkeypatch.setattr(C, "ENGINE_VERSION", "0.0.0/engine-1")
    assert cache.get(1, kernel) is None
    monkeypatch.undo()
    other = C.VerdictCache(cache.path, "another-boot")
    assert other.get(1, kernel) is None


def _record(cache: C.VerdictCache) -> Path:
    files = [p for p in cache.path.iterdir() if p.suffix == ".json"]
    assert len(files) == 1
    return files[0]


def _load(rec: Path) -> dict[str, Any]:
    """A record's header line, with its nested analyses' text as ``analysis``."""
    head, newline, nested = rec.read_text().partition("\n")
    assert newline
    return {**json.loads(head), "analysis": nested}


def _store(rec: Path, doc: dict[str, Any]) -> None:
    """The inverse of ``_load`` (a non-text ``analysis`` written as its JSON)."""
    nested = doc.get("analysis", "")
    head = {k: v for k, v in doc.items() if k != "analysis"}
    rec.write_text(json.dumps(head) + "\n"
                   + (nested if isinstance(nested, str) else json.dumps(nested)))


def test_corrupt_group_writable_or_linked_records_are_ignored(cache: C.VerdictCache,
                                                               tmp_path: Path) -> None:
    kernel = Kernel()
    cache.put(1, tree(kernel), kernel)
    rec = _record(cache)
    good = rec.read_bytes()
    rec.write_bytes(b'{"engine": ')
    assert cache.get(1, kernel) is None
    rec.write_bytes(good)
    os.chmod(rec, 0o620)  # group-writable: someone else could have planted it
    assert cache.get(1, kernel) is None
    os.chmod(rec, 0o600)
    assert cache.get(1, kernel) is not None
    elsewhere = tmp_path / "planted.json"
    elsewhere.write_bytes(good)
    rec.unlink()
    rec.symlink_to(elsewhere)  # O_NOFOLLOW
    assert cache.get(1, kernel) is None


@pytest.mark.privileged
def test_a_record_owned_by_another_user_is_ignored(cache: C.VerdictCache) -> None:
    require_privileged()  # chown
    kernel = Kernel()
    cache.put(1, tree(kernel), kernel)
    rec = _record(cache)
    os.chown(rec, 65534, 65534)
    assert cache.get(1, kernel) is None


def test_unsafe_or_unwritable_directories_mean_no_cache(tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    os.chmod(loose, 0o755)
    assert C.open_cache(str(loose)) is None  # group/other access
    link = tmp_path / "link"
    tight = tmp_path / "tight"
    tight.mkdir(mode=0o700)
    link.symlink_to(tight)
    assert C.open_cache(str(link)) is None  # a link
    assert C.open_cache(str(tight)) is not None
    assert C.open_cache("/proc/tcaudit-cannot-be-here") is None


def test_the_cache_is_bounded(cache: C.VerdictCache, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(C, "MAX_RECORDS", 8)
    kernel = Kernel()
    a = tree(kernel)
    for pid in range(10, 30):
        kernel.times[pid] = pid
        cache.put(pid, a, kernel)
    assert len(list(cache.path.glob("*.json"))) <= 8


def test_cli_reuses_and_no_cache_bypasses(monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    from tcaudit import pipeline as inv
    from tcaudit.analysis import attach

    seen: list[Any] = []
    real = attach.VerdictAnalyser

    def spy(*args: Any, **kw: Any) -> Any:
        seen.append(kw.get("cache"))
        return real(*args, **kw)

    monkeypatch.setattr(inv, "VerdictAnalyser", spy)
    monkeypatch.setattr(inv, "scan", lambda *_a, **_k: _empty_scan())
    inv.inventory(use_cache=True)
    inv.inventory(use_cache=False)
    assert isinstance(seen[0], C.VerdictCache) and seen[1] is None


def _empty_scan() -> Any:
    from tcaudit.model import Host, Scan

    return Scan(host=Host(hostname="h", kernel="k", tcx=True), namespaces=(), warnings=())


def test_records_of_the_wrong_shape_are_ignored(cache: C.VerdictCache) -> None:
    kernel = Kernel()
    cache.put(1, tree(kernel), kernel)
    rec = _record(cache)
    doc = _load(rec)
    for bad in ({"programs": 5}, {"arrays": []}, {"analysis": {"possible": "x"}},
                {"arrays": {"9": 3}}, {"analysis": []}):
        _store(rec, {**doc, **bad})
        assert cache.get(1, kernel) is None


def test_hostile_records_are_misses_never_errors(cache: C.VerdictCache) -> None:
    # ids the kernel calls would choke on, deep nesting, and a FIFO in a record's place
    kernel = Kernel()
    cache.put(1, tree(kernel), kernel)
    rec = _record(cache)
    doc = _load(rec)
    for bad in ({"programs": [[-1, 5]]}, {"programs": [["1", 5]]},
                {"analysis": json.loads("[" * 500 + "]" * 500)}):
        _store(rec, {**doc, **bad})
        assert cache.get(1, kernel) is None
    # a target that refers to itself (or to a later node): no cycle can be made
    nested = json.loads(doc["analysis"])
    assert len(nested["nodes"]) == 2  # the target (slot 0: SHOT), then the root
    nested["nodes"][-1]["tail_calls"][0]["analyses"] = [len(nested["nodes"]) - 1]
    _store(rec, {**doc, "analysis": json.dumps(nested)})
    assert cache.get(1, kernel) is None
    _store(rec, {**doc, "analysis": "[" * 200_000 + "]" * 200_000})
    assert cache.get(1, kernel) is None
    rec.write_text('{"summary": ' + "[" * 200_000 + "]" * 200_000 + "}\n{}")
    assert cache.get(1, kernel) is None and cache.summary(1, kernel) is None
    # one line only (a record of the engine before: the nested text inside the header)
    rec.write_text(json.dumps(doc))
    assert cache.get(1, kernel) is None and cache.summary(1, kernel) is None
    rec.unlink()
    os.mkfifo(rec, 0o600)
    assert cache.get(1, kernel) is None  # O_NONBLOCK: no hang, and not a regular file


def test_the_warm_path_does_not_load_the_engine() -> None:
    """A scan the cache answers whole imports the pipeline, the cache and the verdict
    attachment, never the engine (tens of modules, ~20 ms of a 0.3 s warm scan)."""
    import subprocess
    import sys

    code = ("import json, sys, tcaudit.pipeline, tcaudit.cli.main\n"
            "from tcaudit.analysis.attach import VerdictAnalyser\n"
            "VerdictAnalyser().prefetch([])\n"
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    loaded = set(json.loads(out))
    assert "tcaudit.analysis.cache" in loaded
    assert not loaded & {"tcaudit.analysis.interp", "tcaudit.analysis.closure",
                         "tcaudit.analysis.shapes", "tcaudit.analysis.dependence"}
