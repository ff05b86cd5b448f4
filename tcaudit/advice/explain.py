"""`tcaudit explain`: one program's bytecode, what each exit returns, and why.

Gives the disassembly (bpftool's xlated syntax) of the program and of every tail-call
target it can reach (recursively, each once, with their ids), each exit annotated with
its possible values, the places the program is attached (found by a scan), and a summary
paragraph a support engineer can paste into a ticket.
"""

from __future__ import annotations

from dataclasses import dataclass

from tcaudit.analysis.attach import VerdictAnalyser
from tcaudit.analysis.insns import disassemble
from tcaudit.analysis.meaning import ranges_text, verdict_names
from tcaudit.analysis.results import Analysis
from tcaudit.errors import UsageError
from tcaudit.inventory.programs import ProgramReader
from tcaudit.inventory.scan import Selection
from tcaudit.model import Entry, Program, Scan
from tcaudit.pipeline import inventory

_MEANING = {
    "accept": "accepts (ends the chain)",
    "drop": "drops",
    "redirect": "redirects (ends the chain)",
    "stolen": "steals (ends the chain)",
    "trap": "traps (ends the chain)",
    "continue": "hands the packet on",
}


@dataclass(frozen=True)
class Attachment:
    netns: str
    interface: str
    hook: str
    pref: int | None
    handle: int | None
    mode: str  # "direct-action", "classic" or "tcx"
    effective: tuple[str, ...] | None


@dataclass(frozen=True)
class Line:
    pc: int
    text: str
    returns: tuple[int, ...] | None = None  # on exits: the possible values; None unknown
    ranges: tuple[tuple[int, int], ...] | None = None  # on exits: as ranges; None unknown
    is_exit: bool = False
    function_start: bool = False


@dataclass(frozen=True)
class TailCallSite:
    pc: int
    map_id: int | None
    index: int | None
    targets: tuple[int, ...]
    indexes: tuple[int, ...] | None = None  # a small set of slots when not one constant


@dataclass(frozen=True)
class ProgramListing:
    program: Program
    possible: tuple[int, ...] | None
    reason: str | None
    lines: tuple[Line, ...]
    subprograms: tuple[int, ...]
    tail_calls: tuple[TailCallSite, ...]
    ranges: tuple[tuple[int, int], ...] | None = None


@dataclass(frozen=True)
class Explanation:
    root: ProgramListing
    targets: tuple[ProgramListing, ...]  # every tail-call target reachable, each once
    attachments: tuple[Attachment, ...]
    summary: str
    warnings: tuple[str, ...] = ()


def _mode(entry: Entry) -> str:
    if entry.kind == "tcx":
        return "tcx"
    return "direct-action" if entry.direct_action else "classic"


def attachments_of(scan: Scan, prog_id: int) -> list[tuple[Attachment, Entry]]:
    found = []
    for ns in scan.namespaces:
        for interface in ns.interfaces:
            for hook in interface.hooks:
                for entry in hook.entries:
                    if entry.program is not None and entry.program.id == prog_id:
                        mode = _mode(entry)
                        verdict = entry.verdict
                        found.append(
                            (
                                Attachment(
                                    netns=ns.netns.label,
                                    interface=interface.name,
                                    hook=hook.hook,
                                    pref=entry.pref,
                                    handle=entry.handle,
                                    mode=mode,
                                    effective=verdict.effective if verdict else None,
                                ),
                                entry,
                            )
                        )
    return found


def find_entry(scan: Scan, hook: str, pref: int | None, position: int | None) -> Entry:
    """The one entry a --netns/--dev/--hook/--pref (or --position for TCX) selection names."""
    candidates = [
        entry
        for ns in scan.namespaces
        for interface in ns.interfaces
        for h in interface.hooks
        if h.hook == hook
        for index, entry in enumerate(h.entries, start=1)
        if (pref is None or entry.pref == pref) and (position is None or index == position)
    ]
    if not candidates:
        raise UsageError(f"no entry on {hook} matches (pref {pref}, position {position})")
    if len(candidates) > 1:
        raise UsageError(
            f"{len(candidates)} entries match on {hook}: narrow it with --netns/--dev, "
            "--pref or --position"
        )
    entry = candidates[0]
    if entry.program is None:
        raise UsageError(f"the {entry.kind} filter at pref {entry.pref} runs no eBPF program")
    return entry


def _listing(
    program: Program, analysis: Analysis | str, analyser: VerdictAnalyser
) -> ProgramListing:
    code = analyser.code.program(program.id)
    if isinstance(analysis, str) or code is None:
        reason = analysis if isinstance(analysis, str) else analyser.code.error(program.id)
        return ProgramListing(program, None, reason, (), (), ())
    texts = disassemble(code.insns, analyser.code.helper_name)
    starts = set(code.func_starts)
    lines = []
    for pc, text in enumerate(texts):
        if not text:
            continue  # the second half of an ld_imm64
        is_exit = pc in analysis.exits
        returns = analysis.exits.get(pc) if is_exit else None
        lines.append(
            Line(
                pc=pc,
                text=text,
                returns=tuple(sorted(returns)) if returns is not None else None,
                ranges=analysis.exit_ranges.get(pc) if is_exit else None,
                is_exit=is_exit,
                function_start=pc in starts and pc != 0,
            )
        )
    sites = tuple(
        TailCallSite(pc=t.pc, map_id=t.map_id, index=t.index, targets=t.targets, indexes=t.indexes)
        for t in analysis.tail_calls
    )
    return ProgramListing(
        program=program,
        possible=tuple(sorted(analysis.possible)) if analysis.possible is not None else None,
        reason=analysis.reason,
        lines=tuple(lines),
        subprograms=tuple(sorted(s for s in starts if s != 0)),
        tail_calls=sites,
        ranges=analysis.ranges,
    )


def _summary(root: ProgramListing, attachments: list[Attachment]) -> str:
    name = root.program.name or "(no name)"
    head = f"Program {root.program.id} ({name}, tag {root.program.tag})"
    if root.possible is None and root.ranges is not None:
        text = f"{head} can return values in {ranges_text(root.ranges)}"
        text += "."
    elif root.possible is None:
        text = (
            f"{head}: tcaudit could not bound its return values ({root.reason}). Treat it as "
            "able to end the chain: a classifier behind it may not see every packet."
        )
    else:
        names = ", ".join(verdict_names(frozenset(root.possible)))
        text = f"{head} can return {names}"
        if root.reason:
            text += f" ({root.reason}; the answer holds for the prog array's slots now)"
        text += "."
    if not attachments:
        return text + " It is not attached to any selected tc hook."
    for attachment in attachments[:3]:
        where = f"{attachment.hook} of {attachment.interface} in {attachment.netns}" + (
            f" at pref {attachment.pref}" if attachment.pref is not None else ""
        )
        if attachment.effective is None:
            text += f" On {where} ({attachment.mode}) its effect is unknown."
            continue
        words = ", ".join(_MEANING[w] for w in attachment.effective)
        text += f" On {where} ({attachment.mode}) it {words}."
        if any(w != "continue" for w in attachment.effective):
            text += (
                " Packets it accepts, redirects, steals or traps never reach a classifier "
                "that runs after it (such as Datadog CWS at pref 10)."
            )
    if len(attachments) > 3:
        text += f" It is attached on {len(attachments) - 3} more hooks."
    return text


def explain(prog_id: int, scan: Scan, *, reader: ProgramReader | None = None) -> Explanation:
    """Explain one program; ``scan`` (with verdicts) tells where it is attached."""
    reader = reader or ProgramReader()
    program = reader.get(prog_id)
    if program.error:
        raise UsageError(f"no readable BPF program with id {prog_id} ({program.error})")
    analyser = VerdictAnalyser()
    analysis = analyser.analysis(prog_id)
    root = _listing(program, analysis, analyser)
    targets: list[ProgramListing] = []
    seen = {prog_id}
    queue = [t for site in root.tail_calls for t in site.targets]
    while queue:
        target = queue.pop(0)
        if target in seen:
            continue
        seen.add(target)
        listing = _listing(reader.get(target), analyser.analysis(target), analyser)
        targets.append(listing)
        queue.extend(t for site in listing.tail_calls for t in site.targets)
    attachments = [a for a, _ in attachments_of(scan, prog_id)]
    return Explanation(
        root=root,
        targets=tuple(targets),
        attachments=tuple(attachments),
        summary=_summary(root, attachments),
        warnings=tuple(analyser.internal_errors),
    )


def explain_selected(
    selection: Selection,
    prog_id: int | None = None,
    *,
    pref: int | None = None,
    position: int | None = None,
) -> Explanation:
    """`tcaudit explain`: by program id, or the one entry a hook selection names."""
    scan = inventory(selection)
    if prog_id is None:
        if len(selection.hooks) != 1:
            raise UsageError("name the program: PROG_ID, or one --hook with --pref/--position")
        entry = find_entry(scan, selection.hooks[0], pref, position)
        assert entry.program is not None  # find_entry checked
        prog_id = entry.program.id
    return explain(prog_id, scan)
