"""The trees of one scan analysed by more than one process (a node has cores to spare).

The engine is pure Python: one process uses one core. A scan's trees that miss the
persistent cache are independent work, except that the copies of one program shape
across the node (``shapes``) share their family's analysis: the first tree of a family
of roots pays for every family its programs belong to (0.5-1 s on a real datapath), and
each later tree costs about a hundredth of that. So the roots are split by family, not
one by one:

* two or more families of roots (a node whose loader builds two kinds of tree: with
  their constants as immediates and in a ``.rodata`` map, ingress and egress, pods and
  the host): whole families go to the processes, largest first to the least loaded
  (each family's first tree counted whole, its later trees at ``LATER_TREE``);
* one family of roots: its first tree is analysed here before any fork (every process
  inherits its answers), and the later trees are dealt out in turn.

Each worker is a ``fork`` of this process made after the trees were grouped (it
inherits the code read from the kernel and the families): it analyses its share, keeps
each answer in the persistent cache as this process would, and hands its answers back
through a pipe in the cache's own encoding (``cache.Encoder``), read once this process
has done its own share. The answers are the same as one process gives (the engine is
deterministic and a tree's answer never depends on which trees were analysed before
it, ``tests/analysis/test_workers.py``). A worker that fails, dies or sends something
unreadable costs nothing but time: its roots are analysed here afterwards. A worker
never writes to stdout or stderr and leaves with ``os._exit``; one still running when
this process fails is killed and reaped.

``TCAUDIT_WORKERS``: the number of processes (1: none forked); default the CPUs this
process may run on, at most ``DEFAULT_MAX``. A worker is forked only for a share worth
``MIN_SHARE`` instructions' worth of analysis (a small scan stays in one process), and
never from a process that runs threads.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from tcaudit.analysis.cache import (
    Encoder,
    Summary,
    analysis_from_json,
    summary_from_json,
    verdict_json,
)
from tcaudit.analysis.results import Analysis

ENV = "TCAUDIT_WORKERS"
DEFAULT_MAX = 2
"""Processes by default (one worker): a worker's resident set starts as a copy of its
parent's, and a node's budget counts both (100 pods: 2 x 85 MB)."""
MAX_WORKERS = 16
LATER_TREE = 0.02
"""A later tree of a family of roots, as a share of the first tree's cost."""
MIN_SHARE = 5_000
"""A worker's estimated share, in instructions analysed, below which none is forked."""
MAX_SIZED = 512
"""Programs of a tree counted for its cost (a node-wide policy array makes every tree
hold the whole node: the estimate needs no more)."""

Result = Analysis | str
"""A root's analysis, or why its code could not be read."""


class TreeSource(Protocol):
    """What a tree's size is read from (``kernelcode.KernelCode``)."""

    def raw(self, prog_id: int) -> bytes | None: ...

    def map_ids_of(self, prog_id: int) -> tuple[int, ...]: ...

    def prog_array(self, map_id: int) -> Mapping[int, int] | None: ...


def worker_count(environ: Mapping[str, str] | None = None) -> int:
    """How many processes analyse a scan: ``TCAUDIT_WORKERS`` or the CPUs available."""
    env = os.environ if environ is None else environ
    raw = env.get(ENV, "").strip()
    if raw:
        try:
            wanted = int(raw)
        except ValueError:
            wanted = 0
        if wanted >= 1:
            return min(wanted, MAX_WORKERS)
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, DEFAULT_MAX))


def tree_size(source: TreeSource, root: int) -> int:
    """Instructions of the root's tail-call tree (its first ``MAX_SIZED`` programs)."""
    seen = {root}
    todo = [root]
    total = 0
    while todo and len(seen) <= MAX_SIZED:
        pid = todo.pop()
        total += len(source.raw(pid) or b"") // 8
        for mid in source.map_ids_of(pid):
            for target in (source.prog_array(mid) or {}).values():
                if target not in seen:
                    seen.add(target)
                    todo.append(target)
    return total


@dataclass(frozen=True)
class Split:
    """Who analyses which roots: ``warm`` here first, then ``shares[0]`` here while each
    other share is analysed by a worker of its own (forked after ``warm``: it inherits
    their families' answers)."""

    warm: tuple[int, ...]
    shares: tuple[tuple[int, ...], ...]
    loads: tuple[float, ...]
    """Each share's estimated cost, in instructions analysed (``warm`` in the first)."""


def split(
    roots: Sequence[int],
    group_of: Callable[[int], object],
    size_of: Callable[[int], int],
    workers: int,
    min_share: float | None = None,
) -> Split | None:
    """The roots dealt out to ``workers`` processes (see the module docstring), or None
    when no fork is worth it (one process, or a share below ``min_share``, default
    ``MIN_SHARE``)."""
    least = MIN_SHARE if min_share is None else min_share
    if workers < 2 or len(roots) < 2:
        return None
    groups: dict[object, list[int]] = {}
    for root in dict.fromkeys(roots):
        key = group_of(root)
        groups.setdefault(root if key is None else key, []).append(root)
    shares: list[list[int]] = [[] for _ in range(workers)]
    loads = [0.0] * workers
    warm: tuple[int, ...] = ()
    if len(groups) >= 2:
        costed = []
        for members in groups.values():
            size = size_of(members[0])
            costed.append((size * (1 + LATER_TREE * (len(members) - 1)), members))
        costed.sort(key=lambda c: -c[0])  # (stable: ties keep the scan's order)
        for cost, members in costed:
            k = loads.index(min(loads))
            shares[k].extend(members)
            loads[k] += cost
    else:
        (members,) = groups.values()
        warm = (members[0],)
        later = size_of(members[0]) * LATER_TREE
        for i, root in enumerate(members[1:]):
            shares[i % workers].append(root)
            loads[i % workers] += later
    used = sorted((k for k in range(workers) if shares[k]), key=lambda k: -loads[k])
    if len(used) < 2 or loads[used[-1]] < least:
        return None
    # the heaviest share stays here: its answers need no decoding
    return Split(warm, tuple(tuple(shares[k]) for k in used), tuple(loads[k] for k in used))


@dataclass(frozen=True)
class Sent:
    """A root's analysis as a worker sent it: the verdict, and the nested analyses as
    the cache's JSON text (decoded only when asked for: a scan needs the verdict)."""

    summary: Summary
    text: str

    def analysis(self) -> Analysis:
        return analysis_from_json(json.loads(self.text))


@dataclass(frozen=True)
class Outcome:
    """What the workers gave back."""

    results: Mapping[int, Sent | str]
    """Each root a worker analysed and sent back readable (str: why it is unreadable)."""
    errors: tuple[str, ...]
    """Their internal-error lines (``VerdictAnalyser.internal_errors``)."""
    peaks_kb: tuple[int, ...]
    """Each worker's peak resident set (wait4's ru_maxrss), KB. A worker that sent
    nothing usable is in none of the others: its roots are left to the caller."""


def run(plan: Split, analyse: Callable[[int], Result], errors: list[str],
        encoder: Encoder | None = None) -> Outcome:
    """Analyse ``plan.warm`` and ``plan.shares[0]`` here with ``analyse`` (which keeps
    its answers), the other shares in forked workers; the workers' answers. ``errors``:
    the list ``analyse`` appends internal errors to; ``encoder``: the persistent cache's,
    when ``analyse`` keeps its answers there (a worker then sends the exit tables it
    already encoded for the records without encoding them again)."""
    for root in plan.warm:
        analyse(root)
    if threading.active_count() > 1:  # a fork copies only this thread: do it all here
        for share in plan.shares:
            for root in share:
                analyse(root)
        return Outcome({}, (), ())
    children: list[tuple[int, int]] = []  # (pid, read end)
    results: dict[int, Sent | str] = {}
    new_errors: list[str] = []
    peaks: list[int] = []
    try:
        for share in plan.shares[1:]:
            children.append(_fork(share, analyse, errors, encoder or Encoder()))
        for root in plan.shares[0]:
            analyse(root)
        while children:
            pid, fd = children[0]
            data = _read_all(fd)
            os.close(fd)
            children.pop(0)
            _, status, usage = os.wait4(pid, 0)
            peaks.append(int(usage.ru_maxrss))
            got = _decode(data) if os.waitstatus_to_exitcode(status) == 0 else None
            if got is not None:
                results.update(got[0])
                new_errors.extend(got[1])
    finally:
        for pid, fd in children:  # only when this process failed meanwhile
            with contextlib.suppress(OSError):
                os.close(fd)
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.waitpid(pid, 0)
    return Outcome(results, tuple(new_errors), tuple(peaks))


def _fork(share: tuple[int, ...], analyse: Callable[[int], Result],
          errors: list[str], encoder: Encoder) -> tuple[int, int]:
    read_end, write_end = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(read_end)
        os.close(write_end)
        raise
    if pid == 0:  # the worker: nothing it does may reach past os._exit
        code = 70
        try:
            os.close(read_end)
            signal.signal(signal.SIGINT, signal.SIG_DFL)  # the caller handles ^C
            data = _encode(share, analyse, errors, encoder)
            view = memoryview(data)
            while view:
                view = view[os.write(write_end, view):]
            code = 0
        except BaseException:  # (the parent analyses the share again)
            code = 70
        finally:
            os._exit(code)
    os.close(write_end)
    return pid, read_end


def _encode(share: tuple[int, ...], analyse: Callable[[int], Result], errors: list[str],
            encoder: Encoder) -> bytes:
    """The share's answers, and the internal errors ``analyse`` added meanwhile."""
    before = len(errors)
    lines = []
    for root in share:
        got = analyse(root)
        if isinstance(got, str):
            lines.append(json.dumps({"root": root, "unreadable": got}))
        else:
            lines.append(json.dumps({"root": root, "summary": verdict_json(got),
                                     "analysis": encoder.text(got)}))
    lines.append(json.dumps({"errors": errors[before:]}))
    return ("\n".join(lines) + "\n").encode()


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _decode(data: bytes) -> tuple[dict[int, Sent | str], list[str]] | None:
    """A worker's answers, or None when any of it is unreadable (or it stopped short:
    the errors line comes last)."""
    results: dict[int, Sent | str] = {}
    try:
        lines = data.decode().splitlines()
        if not lines:
            return None
        for line in lines[:-1]:
            record = json.loads(line)
            root = record["root"]
            if type(root) is not int:
                return None
            if "unreadable" in record:
                if not isinstance(record["unreadable"], str):
                    return None
                results[root] = record["unreadable"]
            else:
                text = record["analysis"]
                if not isinstance(text, str):
                    return None
                results[root] = Sent(summary_from_json(record["summary"]), text)
        tail = json.loads(lines[-1])["errors"]
        if not isinstance(tail, list) or not all(isinstance(e, str) for e in tail):
            return None
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None
    return results, tail
