"""Fill in every scan entry's ``verdict``: what it can do to a packet where it hangs.

bpf and TCX entries: the possible return values of the program the kernel runs, from its
xlated bytecode (``verdicts.analyse``), mapped to their meaning for the attach mode
(direct-action, classic, TCX). Results are cached by ``KernelCode.cache_key`` (code + map
ids + prog-array slots), so the same program on 500 hooks is analysed once. Other filter
kinds get the meaning tc gives them without looking at their match: a match without
actions accepts (TC_ACT_OK), a match with actions runs the actions (not decoded).
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from types import MappingProxyType
from typing import TYPE_CHECKING

from tcaudit.analysis.cache import Summary, VerdictCache
from tcaudit.analysis.kernelcode import KernelCode
from tcaudit.analysis.meaning import Mode, effective_ranges
from tcaudit.analysis.results import Analysis
from tcaudit.model import Entry, Scan, Verdict, map_entries

if TYPE_CHECKING:
    from tcaudit.analysis.shapes import Shapes
    from tcaudit.analysis.workers import Sent


class VerdictAnalyser:
    """Analyses programs for one scan, each distinct (code, maps, slots) once."""

    def __init__(
        self,
        code: KernelCode | None = None,
        *,
        step_budget: int = 2_000_000,
        cache: VerdictCache | None = None,
        share: bool = True,
        workers: int | None = None,
    ) -> None:
        self.code = code or KernelCode()
        self.cache = cache
        self._share = share
        self._workers = workers
        """Processes analysing the trees that miss the cache (``workers``; None: as
        ``TCAUDIT_WORKERS`` or the CPUs say)."""
        self.worker_peaks_kb: tuple[int, ...] = ()
        """The peak resident set of each worker forked (``workers.Outcome``)."""
        self._shapes: Shapes | None = None
        self._budget = step_budget
        self._by_key: dict[str, Analysis] = {}
        self._by_id: dict[int, Analysis | str] = {}
        self._sent: dict[int, Sent] = {}
        """Roots a worker analysed: their nested analyses, decoded when asked for."""
        self._summaries: dict[int, Summary] = {}
        """Root verdicts the cache answered without the nested analyses (a scan's need)."""
        self.internal_errors: list[str] = []
        """One line per program whose analysis raised (a tcaudit bug), for stderr."""

    @property
    def shapes(self) -> Shapes | None:
        """Copies of one program shape (one per endpoint) analysed once (``shapes``).
        The engine is imported on first need: a scan the persistent cache answers
        whole (the warm path) never loads it."""
        if self._shapes is None and self._share:
            from tcaudit.analysis.shapes import Shapes

            self._shapes = Shapes(self.code)
        return self._shapes

    def prefetch(self, prog_ids: list[int]) -> None:
        """Answer what the persistent cache can, group the trees of the rest into
        families of copies, and analyse them, in more than one process when they are
        worth it (``workers``)."""
        misses = []
        for prog_id in dict.fromkeys(prog_ids):
            if prog_id in self._by_id or prog_id in self._summaries:
                continue
            if self.cache is not None:
                cached = self.cache.summary(prog_id, self.code)
                if cached is not None:
                    self._summaries[prog_id] = cached
                    continue
            misses.append(prog_id)
        if len(misses) > 1 and self.shapes is not None:
            self.shapes.add_trees(misses)
            self._in_workers(misses, self.shapes)

    def _in_workers(self, roots: list[int], shapes: Shapes) -> None:
        from tcaudit.analysis import workers

        count = workers.worker_count() if self._workers is None else self._workers
        plan = workers.split(roots, shapes.family_of,
                             lambda root: workers.tree_size(self.code, root), count)
        if plan is None:
            return
        got = workers.run(plan, self.analysis, self.internal_errors,
                          self.cache.encoder if self.cache is not None else None)
        for root, sent in got.results.items():
            if isinstance(sent, str):
                self._by_id[root] = sent
            else:
                self._summaries[root] = sent.summary
                self._sent[root] = sent
        self.internal_errors.extend(got.errors)
        self.worker_peaks_kb = got.peaks_kb

    def analysis(self, prog_id: int) -> Analysis | str:
        """The program's analysis, or why it could not be read."""
        sent = self._sent.pop(prog_id, None)
        if sent is not None and prog_id not in self._by_id:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                self._by_id[prog_id] = sent.analysis()  # (else analysed again, here)
        if prog_id not in self._by_id and self.cache is not None:
            cached = self.cache.get(prog_id, self.code)
            if cached is not None:
                self._by_id[prog_id] = cached
        if prog_id not in self._by_id:
            key = self.code.cache_key(prog_id)
            if key is None:
                self._by_id[prog_id] = self.code.error(prog_id) or f"program {prog_id} unreadable"
            else:
                if key not in self._by_key:
                    self._by_key[key] = self._analyse(prog_id)
                self._by_id[prog_id] = self._by_key[key]
                result = self._by_key[key]
                if self.cache is not None and not (result.reason or "").startswith(
                    "internal error"
                ):
                    self.cache.put(prog_id, result, self.code)
        return self._by_id[prog_id]

    def _analyse(self, prog_id: int) -> Analysis:
        """The engine's answer; an exception in it (a bug) becomes this one program's
        unknown verdict, so the scan of the node goes on."""
        from tcaudit.analysis.closure import analyse  # (see ``shapes``)

        try:
            return analyse(prog_id, self.code, step_budget=self._budget, shared=self.shapes)
        except Exception as err:
            detail = f"{type(err).__name__}: {err}".splitlines()[0][:200]
            self.internal_errors.append(
                f"program {prog_id}: verdict analysis failed (internal error: {detail}); "
                "its verdict is unknown"
            )
            return Analysis(
                possible=None,
                reason=f"internal error: {detail}",
                exits=MappingProxyType({}),
                tail_calls=(),
                prog_arrays=(),
            )

    def verdict(self, entry: Entry) -> Verdict:
        if entry.kind in ("bpf", "tcx"):
            return self._program_verdict(entry)
        if entry.kind == "cbpf":
            if entry.direct_action:
                return Verdict(
                    None,
                    None,
                    "static",
                    "classic BPF bytecode in direct-action "
                    "mode: its return value is the verdict (not analysed)",
                )
            if entry.has_actions:
                return Verdict(
                    None,
                    None,
                    "static",
                    "classic BPF bytecode with actions: a match runs the actions (not decoded)",
                )
            return Verdict(
                None,
                ("accept", "continue"),
                "static",
                "classic BPF bytecode (not analysed): a match accepts, no match continues",
            )
        if entry.has_actions:
            return Verdict(
                None, None, "static", f"{entry.kind} filter: a match runs its actions (not decoded)"
            )
        if entry.kind == "u32" and entry.classid is None:
            return Verdict(
                None,
                ("continue",),
                "static",
                "u32 node without classid or "
                "actions: it can only link to another hash table, whose nodes "
                "are listed on their own",
            )
        return Verdict(
            None,
            ("accept", "continue"),
            "static",
            f"{entry.kind} filter without actions: a match accepts (TC_ACT_OK)",
        )

    def _program_verdict(self, entry: Entry) -> Verdict:
        if entry.program is None:
            return Verdict(None, None, "static", "no program id on this filter")
        result = self._summaries.get(entry.program.id) or self.analysis(entry.program.id)
        if isinstance(result, str):
            return Verdict(None, None, "static", result)
        mode: Mode
        if entry.kind == "tcx":
            mode = "tcx"
        elif entry.direct_action:
            mode = "direct-action"
        else:
            mode = "classic"
        possible = result.possible
        return Verdict(
            possible=tuple(sorted(possible)) if possible is not None else None,
            effective=effective_ranges(result.ranges, mode, has_actions=entry.has_actions),
            basis="static",
            reason=result.reason,
            ranges=result.ranges,
        )


def add_verdicts(scan: Scan, analyser: VerdictAnalyser | None = None) -> Scan:
    """The same scan with ``verdict`` set on every entry."""
    analyser = analyser or VerdictAnalyser()
    analyser.prefetch([
        e.program.id
        for ns in scan.namespaces for i in ns.interfaces for h in i.hooks for e in h.entries
        if e.kind in ("bpf", "tcx") and e.program is not None
    ])
    done = map_entries(scan, lambda e, _i, _h, _n: replace(e, verdict=analyser.verdict(e)))
    if analyser.internal_errors:
        done = replace(done, warnings=(*done.warnings, *analyser.internal_errors))
    return done
