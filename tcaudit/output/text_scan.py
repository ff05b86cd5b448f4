"""``tcaudit scan --format table``: the inventory for people.

A table per namespace, interfaces with nothing on their hooks left out unless ``--all``;
columns fitted to the terminal (table.py).
"""

from __future__ import annotations

from typing import Final

from tcaudit.model import Entry, Hook, Interface, NamespaceScan, Scan, Verdict
from tcaudit.output.interface import handle_text
from tcaudit.output.layout import PIPED, Layout
from tcaudit.output.sanitize import safe_text, shown
from tcaudit.output.table import Cell, CellLike, Column, Drawn, fit, fit_note, render

COLUMNS: Final = (
    Column("interface", shrink=9),
    Column("hook"),
    Column("pref", right=True),
    Column("handle", drop=2),
    Column("kind", shrink=6),
    Column("filter name", shrink=11, soft=16, drop=3),
    Column("program", shrink=10, drop=4),
    Column("verdict"),
    Column("vendor", shrink=12, cut="end"),
    Column("held by", shrink=7, soft=12, drop=1),
)


def verdict_text(verdict: Verdict | None) -> str:
    """``accept|drop``, ``continue``, or ``?`` when unknown."""
    if verdict is None or verdict.effective is None:
        return "?"
    return "|".join(verdict.effective)


def program_text(entry: Entry) -> str:
    if entry.kind == "cbpf":
        return f"classic BPF, {entry.cbpf_insns} insns"
    program = entry.program
    if program is None:
        return "-" if entry.kind not in ("bpf", "tcx") else "? (no program id)"
    if program.error:
        return f"id {program.id}: {program.error}"
    return f"{program.id} {shown(program.name or '') or '(no name)'}"


def vendor_text(entry: Entry) -> str:
    match = entry.vendor
    if match is None:
        return "unknown"
    version = f" {match.version_hint}" if match.version_hint else ""
    return shown(f"{match.name}{version} ({match.confidence})")


def holders_text(entry: Entry) -> str:
    if entry.program is None or not entry.program.holders:
        return ""
    return ", ".join(f"{shown(h.comm or '?')}[{h.pid}]" for h in entry.program.holders[:3]) + (
        " …" if len(entry.program.holders) > 3 else ""
    )


def kind_text(entry: Entry, hook: Hook) -> str:
    flags = []
    if entry.direct_action:
        flags.append("da")
    if entry.has_actions:
        flags.append("actions")
    if not entry.reachable:
        flags.append(f"chain {entry.chain}: unreachable")
    if hook.block:
        flags.append(f"block {hook.block}")
    return entry.kind + (" " + ",".join(flags) if flags else "")


def interface_rows(interface: Interface, show_all: bool, name: Cell) -> list[list[CellLike]]:
    """The rows of one interface: one per entry (and per empty hook with ``show_all``);
    ``name`` labels its first row."""
    rows: list[list[CellLike]] = []
    first = True
    for hook in interface.hooks:
        if not hook.entries:
            if show_all:
                state = "empty" if hook.supported else (hook.note or "unsupported")
                rows.append([name if first else "", hook.hook, "", "", state, "", "", "", "", ""])
                first = False
            continue
        for entry in hook.entries:
            rows.append(
                [
                    name if first else "",
                    hook.hook,
                    "" if entry.pref is None else str(entry.pref),
                    handle_text(entry.handle)
                    or (f"link {entry.link_id}" if entry.link_id else "attach"),
                    kind_text(entry, hook),
                    shown(entry.filter_name or ""),
                    program_text(entry),
                    verdict_text(entry.verdict),
                    vendor_text(entry),
                    holders_text(entry),
                ]
            )
            first = False
    return rows


def namespace_rows(ns: NamespaceScan, show_all: bool) -> list[list[CellLike]]:
    rows: list[list[CellLike]] = []
    for interface in ns.interfaces:
        if show_all or interface.entry_count:
            rows += interface_rows(interface, show_all, Cell(shown(interface.name)))
    return rows


@safe_text
def scan_table(scan: Scan, *, show_all: bool = False, layout: Layout = PIPED) -> str:
    """A table per namespace; interfaces with nothing on their hooks hidden unless show_all."""
    tables = [(ns, namespace_rows(ns, show_all)) for ns in scan.namespaces]
    tables = [(ns, rows) for ns, rows in tables if rows]
    fitted = fit(COLUMNS, [row for _, rows in tables for row in rows], layout)
    drawn: list[Drawn] = []
    blocks: list[str] = []
    for ns, rows in tables:
        table = render(COLUMNS, rows, fitted)
        drawn.append(table)
        blocks.append(f"netns {shown(ns.netns.label)} [inode {ns.netns.id}]\n{table.text}")
    if not blocks:
        blocks.append("no classifiers on any selected tc hook")
    hidden = 0 if show_all else sum(
        1 for ns in scan.namespaces for i in ns.interfaces if not i.entry_count
    )
    summary = (
        f"{len(scan.namespaces)} namespaces, "
        f"{sum(len(ns.interfaces) for ns in scan.namespaces)} interfaces, "
        f"{sum(i.entry_count for ns in scan.namespaces for i in ns.interfaces)} entries"
    )
    if scan.host.tcx is False:
        summary += "; kernel has no TCX (tcx hooks not available)"
    if hidden:
        summary += f"; {hidden} interfaces without classifiers hidden (--all shows them)"
    note = fit_note(drawn, layout)
    return "\n\n".join(blocks) + "\n\n" + summary + "\n" + (f"{note}\n" if note else "")
