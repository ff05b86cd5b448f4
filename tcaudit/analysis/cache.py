"""A persistent cache of verdict analyses, for repeated runs (CI loops, the DaemonSet).

What a program's analysis depends on, and how a cached one is checked before it is used:

* the program's code: immutable for a program id within one boot, so a record is
  filed under (program id, load time), holds the engine version and the boot id, and is
  never used for another program, by another engine or after a reboot;
* every program of its tail-call tree (id and load time, compared again) and the slots
  of every prog array the answer went through (read again and compared): a slot that
  changed, or a target that was reloaded, makes the record stale;
* read-only map contents (frozen: they cannot change) and the kernel's symbol names
  and BTF (fixed for a boot).

The directory is ``$TCAUDIT_CACHE_DIR`` (default ``/var/cache/tcaudit``). It is used only
when it is a real directory owned by the current user with no group or other access
(it is created 0700 when missing); records are regular files owned by the current user
and not writable by group or others, opened with O_NOFOLLOW, written through a rename,
and at most ``MAX_RECORDS`` are kept. Anything else — a missing or unwritable directory,
a corrupt or foreign file — means no cache and no error: the analysis is done again.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

from tcaudit import __version__
from tcaudit.analysis.results import Analysis, TailCall

ENGINE_VERSION = f"{__version__}/engine-8"
"""In every record, checked: a new engine never reads an old engine's answers."""
DEFAULT_DIR = "/var/cache/tcaudit"
MAX_RECORDS = 4096
MAX_RECORD_BYTES = 4 << 20


class CacheSource(Protocol):
    """What checking a record reads from the kernel (``kernelcode.KernelCode``)."""

    def load_time(self, prog_id: int) -> int | None: ...

    def prog_array(self, map_id: int) -> Mapping[int, int] | None: ...


@dataclass(frozen=True)
class Summary:
    """What a scan's verdict needs of an analysis: the root's values, why they are not
    exact, and their ranges (a record's header: read without the nested analyses)."""

    possible: frozenset[int] | None
    reason: str | None
    ranges: tuple[tuple[int, int], ...] | None


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    stale: int = 0
    writes: int = 0


def boot_id(path: str = "/proc/sys/kernel/random/boot_id") -> str | None:
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def open_cache(directory: str | None = None) -> VerdictCache | None:
    """The cache in ``directory`` (else $TCAUDIT_CACHE_DIR, else the default), or None
    when it cannot be used safely."""
    path = Path(directory or os.environ.get("TCAUDIT_CACHE_DIR") or DEFAULT_DIR)
    boot = boot_id()
    if boot is None:
        return None
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        return None
    if not os.access(path, os.W_OK | os.X_OK):
        return None
    return VerdictCache(path, boot)


class VerdictCache:
    """Records of analyses in one safe directory (see the module docstring)."""

    def __init__(self, path: Path, boot: str) -> None:
        self.path = path
        self.boot = boot
        self.stats = CacheStats()
        self.encoder = Encoder()

    def _file(self, prog_id: int, load_time: int) -> Path:
        """One file per program load (two integers: nothing a vendor chose); the engine
        version and the boot id are checked inside (after a reboot, or under another
        engine, the record is a miss and is written again)."""
        return self.path / f"{int(prog_id)}-{int(load_time)}.json"

    def get(self, prog_id: int, source: CacheSource) -> Analysis | None:
        """The cached analysis, checked; None (a miss) for anything else."""
        try:
            got = self._get(prog_id, source)
            if got is None:
                return None
            analysis = analysis_from_json(json.loads(got[1]))
        except Exception:
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        return analysis

    def summary(self, prog_id: int, source: CacheSource) -> Summary | None:
        """The cached root verdict alone, checked like :meth:`get`: the nested
        analyses of the tail-call targets (most of a record) are not decoded."""
        try:
            got = self._get(prog_id, source)
            if got is None:
                return None
            found = summary_from_json(got[0]["summary"])
        except Exception:
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        return found

    def _get(self, prog_id: int, source: CacheSource) -> tuple[dict[str, Any], bytes] | None:
        """The record of the program's current load, checked against the kernel: its
        header and its nested analyses (JSON text, not decoded)."""
        load_time = source.load_time(prog_id)
        if load_time is None:
            return None
        got = _read(self._file(prog_id, load_time))
        if got is None:
            self.stats.misses += 1
            return None
        record = got[0]
        try:
            if (record["engine"] != ENGINE_VERSION or record["boot"] != self.boot
                    or record["root"] != [prog_id, load_time]):
                self.stats.misses += 1
                return None
            for pid, when in record["programs"]:
                if source.load_time(pid) != when:
                    self.stats.stale += 1
                    return None
            for mid, slots in record["arrays"].items():
                now = source.prog_array(int(mid))
                if now is None or sorted(now.items()) != [tuple(s) for s in slots]:
                    self.stats.stale += 1
                    return None
        except Exception:
            self.stats.misses += 1
            return None
        return got

    def put(self, prog_id: int, analysis: Analysis, source: CacheSource) -> None:
        """Keep the analysis; failing to (a race, a full disk) is not an error."""
        try:
            self._put(prog_id, analysis, source)
        except Exception:
            return

    def _put(self, prog_id: int, analysis: Analysis, source: CacheSource) -> None:
        load_time = source.load_time(prog_id)
        if load_time is None or analysis.reason == "step budget exhausted":
            return
        targets, tree_arrays = _tree_ids(analysis)
        programs = []
        for pid in sorted(targets):
            when = source.load_time(pid)
            if when is None:
                return  # a target went away while we looked: nothing to vouch for
            programs.append([pid, when])
        arrays: dict[str, list[list[int]]] = {}
        for mid in sorted(tree_arrays):
            slots = source.prog_array(mid)
            if slots is None:
                return
            arrays[str(mid)] = [[k, v] for k, v in sorted(slots.items())]
        nested = self.encoder.text(analysis)
        record = {
            "engine": ENGINE_VERSION,
            "boot": self.boot,
            "root": [prog_id, load_time],
            "programs": programs,
            "arrays": arrays,
            # the root's verdict apart from the nested analyses: a scan decodes only
            # the header line (a tree's record is hundreds of kB)
            "summary": verdict_json(analysis),
        }
        if _write(self.path, self._file(prog_id, load_time), record, nested):
            self.stats.writes += 1
            self._prune()

    def _prune(self) -> None:
        try:
            entries = [e for e in os.scandir(self.path) if e.name.endswith(".json")]
        except OSError:
            return
        if len(entries) <= MAX_RECORDS:
            return
        def mtime(entry: os.DirEntry[str]) -> float:
            try:
                return entry.stat(follow_symlinks=False).st_mtime
            except OSError:  # removed meanwhile by another tcaudit
                return 0.0

        entries.sort(key=mtime)
        for entry in entries[: len(entries) - MAX_RECORDS * 3 // 4]:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


def _read(path: Path) -> tuple[dict[str, Any], bytes] | None:
    """A record: its header (the first line, a JSON object) and the rest (the nested
    analyses' JSON text, not decoded here)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if (not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid()
                or st.st_mode & 0o022 or st.st_size > MAX_RECORD_BYTES):
            return None
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(MAX_RECORD_BYTES + 1)
        head, newline, nested = data.partition(b"\n")
        doc = json.loads(head) if newline else None
    except (OSError, ValueError, RecursionError):
        return None
    finally:
        os.close(fd)
    return (doc, nested) if isinstance(doc, dict) else None


def _write(directory: Path, path: Path, record: dict[str, Any], nested: str) -> bool:
    """The header line (compact JSON has no newline), then the nested analyses."""
    import tempfile  # (writing only: a warm scan reads)

    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".part")
    except OSError:
        return False
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(record, separators=(",", ":")) + "\n" + nested)
        os.replace(tmp, path)
        return True
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        return False


def _walk(analysis: Analysis) -> Iterator[Analysis]:
    """Every distinct analysis of the tree once (targets reached on many paths are one
    object: the closure builds each (program, cb) once)."""
    seen: set[int] = set()
    todo = [analysis]
    while todo:
        a = todo.pop()
        if id(a) in seen:
            continue
        seen.add(id(a))
        yield a
        todo.extend(x for call in a.tail_calls for x in call.analyses if x is not None)


def _tree_ids(analysis: Analysis) -> tuple[set[int], set[int]]:
    """The tail-call targets and the prog arrays of the whole tree."""
    programs: set[int] = set()
    arrays: set[int] = set()
    for a in _walk(analysis):
        arrays.update(a.prog_arrays)
        for call in a.tail_calls:
            programs.update(call.targets)
            if call.map_id is not None:
                arrays.add(call.map_id)
    return programs, arrays


# ---------------------------------------------------------------------------------------
# Analysis <-> JSON
# ---------------------------------------------------------------------------------------


def _ranges(r: Any) -> tuple[tuple[int, int], ...] | None:
    return None if r is None else tuple((int(lo), int(hi)) for lo, hi in r)


class Encoder:
    """Analyses as JSON text (:meth:`text`), remembering the text of each exit table.

    The trees of one scan that are copies of each other (``shapes``) share their exit
    tables (the same objects, renamed trees keep them), most of a record's bytes: each
    is encoded once per encoder (the cache's lifetime, one command)."""

    def __init__(self) -> None:
        self._tables: dict[int, tuple[object, str]] = {}

    def text(self, a: Analysis) -> str:
        """``{"nodes": [...]}``: each distinct analysis of the tree once, a target
        before every analysis that refers to it (by index), the root last."""
        nodes: list[str] = []
        index: dict[int, int] = {}
        # iterative post-order: a Cilium tree is deep enough to matter for recursion
        stack: list[tuple[Analysis, bool]] = [(a, False)]
        while stack:
            node, ready = stack.pop()
            if id(node) in index:
                continue
            if not ready:
                stack.append((node, True))
                stack.extend((y, False) for t in node.tail_calls for y in t.analyses
                             if y is not None and id(y) not in index)
                continue
            index[id(node)] = len(nodes)
            nodes.append(self._node(node, index))
        return '{"nodes":[' + ",".join(nodes) + "]}"

    def _node(self, a: Analysis, index: Mapping[int, int]) -> str:
        head = json.dumps({
            **verdict_json(a),
            "tail_calls": [
                {
                    "pc": t.pc, "map_id": t.map_id, "index": t.index,
                    "targets": list(t.targets),
                    "analyses": [index[id(x)] if x is not None else None
                                 for x in t.analyses],
                    "indexes": list(t.indexes) if t.indexes is not None else None,
                    "in_subprogram": t.in_subprogram,
                }
                for t in a.tail_calls
            ],
            "prog_arrays": list(a.prog_arrays),
            "steps": a.steps,
        }, separators=(",", ":"))
        return (head[:-1] + ',"exits":' + self._table(a.exits, _exits_json)
                + ',"exit_ranges":' + self._table(a.exit_ranges, _exit_ranges_json) + "}")

    def _table(self, table: Mapping[int, Any], encode: Callable[[Mapping[int, Any]], Any]
               ) -> str:
        got = self._tables.get(id(table))
        if got is not None and got[0] is table:
            return got[1]
        text = json.dumps(encode(table), separators=(",", ":"))
        self._tables[id(table)] = (table, text)  # (the table kept: its id stays its own)
        return text


def verdict_json(a: Analysis) -> dict[str, Any]:
    """What an analysis answers itself: its possible values, ranges and reason."""
    return {
        "possible": sorted(a.possible) if a.possible is not None else None,
        "ranges": [list(r) for r in a.ranges] if a.ranges is not None else None,
        "reason": a.reason,
    }


def summary_from_json(head: dict[str, Any]) -> Summary:
    """The inverse of :func:`verdict_json`; anything else raises."""
    possible, reason = head["possible"], head["reason"]
    if reason is not None and not isinstance(reason, str):
        raise ValueError("reason is not a string")
    return Summary(_opt_set(possible), reason, _ranges(head["ranges"]))


def _exits_json(exits: Mapping[int, frozenset[int] | None]) -> list[list[Any]]:
    return [[pc, sorted(v) if v is not None else None] for pc, v in exits.items()]


def _exit_ranges_json(exits: Mapping[int, Any]) -> list[list[Any]]:
    return [[pc, [list(x) for x in r] if r is not None else None] for pc, r in exits.items()]


def analysis_from_json(d: dict[str, Any]) -> Analysis:
    """The inverse of :meth:`Encoder.text` (parsed); a node may refer only to nodes before
    it (so a record cannot make a cycle), anything else raises."""
    built: list[Analysis] = []
    for node in d["nodes"]:
        built.append(_node_from_json(node, built))
    if not built:
        raise ValueError("no analysis in the record")
    return built[-1]


def _opt_set(v: Any) -> frozenset[int] | None:
    return None if v is None else frozenset(int(x) for x in v)


def _node_from_json(d: dict[str, Any], built: list[Analysis]) -> Analysis:
    def ref(i: Any) -> Analysis | None:
        if i is None:
            return None
        if type(i) is not int or not 0 <= i < len(built):
            raise ValueError("a reference to a later or missing analysis")
        return built[i]

    tail: Callable[[dict[str, Any]], TailCall] = lambda t: TailCall(  # noqa: E731
        pc=int(t["pc"]),
        map_id=t["map_id"],
        index=t["index"],
        targets=tuple(int(x) for x in t["targets"]),
        analyses=tuple(ref(x) for x in t["analyses"]),
        indexes=tuple(t["indexes"]) if t["indexes"] is not None else None,
        in_subprogram=bool(t["in_subprogram"]),
    )
    return Analysis(
        possible=_opt_set(d["possible"]),
        reason=d["reason"],
        exits=MappingProxyType({int(pc): _opt_set(v) for pc, v in d["exits"]}),
        tail_calls=tuple(tail(t) for t in d["tail_calls"]),
        prog_arrays=tuple(int(x) for x in d["prog_arrays"]),
        steps=int(d["steps"]),
        ranges=_ranges(d["ranges"]),
        exit_ranges=MappingProxyType({int(pc): _ranges(r) for pc, r in d["exit_ranges"]}),
    )
