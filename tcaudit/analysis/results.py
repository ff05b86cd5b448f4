"""What the verdict analysis answers (``closure.analyse``), and the code it is given.

Kept apart from the engine so that reading answers back (the persistent cache, the
scan's warm path) does not load the engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from tcaudit.analysis.insns import Insn

__all__ = ["Analysis", "ProgramCode", "Ranges", "TailCall"]

Ranges = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class ProgramCode:
    """The code of one program as read from the kernel (xlated) or built in tests."""

    prog_id: int | None
    name: str
    insns: tuple[Insn, ...]
    func_starts: tuple[int, ...] = (0,)
    """Subprogram start insn indexes from func_info (may be just (0,) or empty)."""
    map_ids: tuple[int, ...] = ()
    """Maps the program uses (the kernel's used_maps); a tail call can only go through
    one of its prog arrays, which matters when constant blinding hides which."""


@dataclass(frozen=True)
class TailCall:
    """One ``bpf_tail_call`` site of a program.

    ``index`` is the constant slot index or None when the index is not one
    constant (then ``indexes`` may still list a small set, else every filled
    slot is a target). ``analyses`` is aligned with ``targets``; an entry is
    None when that target is already being described further up (a cycle),
    lies beyond the kernel's tail-call depth limit, or cannot be read.
    """

    pc: int
    map_id: int | None
    index: int | None
    targets: tuple[int, ...]
    analyses: tuple[Analysis | None, ...]
    indexes: tuple[int, ...] | None = None
    in_subprogram: bool = False


@dataclass(frozen=True)
class Analysis:
    """Result of :func:`analyse` for one program (tail-call targets included)."""

    possible: frozenset[int] | None
    """Every signed 32-bit value the program can return when there are at most CAP of
    them; None = unknown or more than CAP (then ``ranges`` says which)."""
    reason: str | None
    """Why unknown, or what a known answer depends on (prog array contents)."""
    exits: Mapping[int, frozenset[int] | None]
    """Exit insn index (of this program, subprograms included) -> possible
    r0 values there, low 32 bits as signed ints (None: unknown or more than CAP).
    Exits the analysis never reached (dead code, callback functions) are absent."""
    tail_calls: tuple[TailCall, ...]
    prog_arrays: tuple[int, ...]
    """Map ids of the prog arrays the result depends on."""
    steps: int = field(default=0, compare=False)
    """Instructions interpreted (whole tree) to get this result."""
    ranges: Ranges | None = None
    """Sorted, disjoint, merged inclusive signed 32-bit ranges covering every possible
    value; None = unknown."""
    exit_ranges: Mapping[int, Ranges | None] = field(
        default_factory=lambda: MappingProxyType({})
    )
    """Like ``exits``, as ranges (None: unknown)."""
