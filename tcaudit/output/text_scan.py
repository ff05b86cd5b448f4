"""``tcaudit scan --format table``: the inventory for people, sized for a real node.

It leads with a summary (how many namespaces, interfaces, hooks and classifiers, which
vendors, how many hooks have a chain-ender ahead of CWS and whose), then shows alike
namespaces once ("248 pod namespaces like pod-1: eth0 clsact/ingress+egress: CWS only"),
then every other namespace in full, a table each, alike interfaces in one of them as one
row set with their count (``lxc0 +249``). What is alike, and what is never grouped, is
advice/overview.py's to say; ``--all`` lists every namespace and interface in full, empty
ones too. Entries ahead of CWS that end the chain are marked ``!!`` (``?``: they may), in
words as well as in colour. Columns fit the terminal (table.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from tcaudit.model import Entry, Hook, Interface, NamespaceScan, Scan, Verdict
from tcaudit.output.interface import handle_text
from tcaudit.output.layout import PIPED, Layout, cells, paint, shorten, wrap
from tcaudit.output.sanitize import safe_text, shown
from tcaudit.output.table import Cell, CellLike, Column, Drawn, fit, fit_note, render
from tcaudit.vendors.cws import trusted

if TYPE_CHECKING:
    from tcaudit.advice.overview import Overview

COLUMNS: Final = (
    Column(""),  # the mark: !! (blinds CWS) or ? (may)
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
MARK_STYLE: Final = {"!!": ("red", "bold"), "?": ("yellow",)}
MEMBER_NAME: Final = 24  # a group's other members are named in at most this many cells


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


def _mark_cell(mark: str) -> CellLike:
    return Cell(mark, MARK_STYLE[mark]) if mark else ""


def interface_rows(
    ns: NamespaceScan, interface: Interface, show_all: bool, name: Cell, view: Overview
) -> list[list[CellLike]]:
    """The rows of one interface: one per entry (and per empty hook with ``show_all``);
    ``name`` labels its first row."""
    rows: list[list[CellLike]] = []
    first = True
    for hook in interface.hooks:
        if not hook.entries:
            if show_all:
                state = "empty" if hook.supported else (hook.note or "unsupported")
                rows.append(["", name if first else "", hook.hook, "", "", state,
                             "", "", "", "", ""])
                first = False
            continue
        for entry in hook.entries:
            rows.append(
                [
                    _mark_cell(view.mark(ns, interface, hook, entry)),
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


def namespace_rows(
    index: int, ns: NamespaceScan, show_all: bool, view: Overview
) -> tuple[list[list[CellLike]], bool]:
    """A namespace's rows, alike interfaces once with their count (not with show_all);
    True when some row set stands for several interfaces."""
    groups = (
        tuple((i,) for i in range(len(ns.interfaces)))
        if show_all
        else view.interface_groups[index]
    )
    rows: list[list[CellLike]] = []
    for group in groups:
        interface = ns.interfaces[group[0]]
        if show_all or interface.entry_count:
            more = f" +{len(group) - 1}" if len(group) > 1 else ""
            rows += interface_rows(ns, interface, show_all, Cell(shown(interface.name), keep=more),
                                   view)
    return rows, any(len(g) > 1 for g in groups)


def _vendor_words(entry: Entry) -> str:
    match = entry.vendor
    if match is None:
        return "unknown"
    return shown(f"{match.name} {match.version_hint}" if match.version_hint else match.name)


def describe_hook(ns: NamespaceScan, interface: Interface, hook: Hook, view: Overview) -> str:
    """``CWS only``, or the entries in run order: ``Cilium 1.13+ pref 1
    accept|drop|redirect !!, then CWS pref 10``."""
    if all(trusted(e) for e in hook.entries):
        prefs = sorted({e.pref for e in hook.entries if e.pref is not None})
        return "CWS only" + (f" at pref {prefs[0]}" if prefs and prefs != [view.priority] else "")
    words = []
    for entry in hook.entries:
        at = "TCX" if entry.pref is None else f"pref {entry.pref}"
        if trusted(entry):
            words.append(f"CWS {at}")
            continue
        mark = view.mark(ns, interface, hook, entry)
        text = f"{_vendor_words(entry)} {at} {verdict_text(entry.verdict)}"
        words.append(text + (" " + paint(mark, *MARK_STYLE[mark]) if mark else ""))
    return ", then ".join(words)


def describe_interface(ns: NamespaceScan, interface: Interface, view: Overview) -> str:
    """``eth0 clsact/ingress+egress: CWS only``: hooks of one kind saying the same
    thing are told once."""
    told: dict[tuple[str, str], list[str]] = {}
    for hook in interface.hooks:
        if hook.entries:
            kind, direction = hook.hook.split("/")
            told.setdefault((kind, describe_hook(ns, interface, hook, view)), []).append(direction)
    parts = [f"{kind}/{'+'.join(ways)}: {words}" for (kind, words), ways in told.items()]
    return f"{shown(interface.name)} {'; '.join(parts)}"


def _kind_word(members: Sequence[NamespaceScan]) -> str:
    if all(ns.netns.pod for ns in members):
        return "pod "
    if all(ns.netns.container_id for ns in members):
        return "container "
    return ""


def group_lines(members: Sequence[NamespaceScan], view: Overview, layout: Layout) -> list[str]:
    """Alike namespaces told once: what their hooks hold, then who else is in it."""
    first = members[0]
    interfaces = [describe_interface(first, i, view) for i in first.interfaces if i.entry_count]
    names = {tuple(i.name for i in ns.interfaces) for ns in members}
    differ = "; interface names differ" if len(names) > 1 else ""
    head = (
        f"{len(members)} {_kind_word(members)}namespaces like {shown(first.netns.label)}: "
        + "; ".join(interfaces)
        + differ
    )
    width = layout.width or 1 << 20
    out = wrap(head, layout.width, subsequent="    ")
    others = [shorten(shown(ns.netns.label), MEMBER_NAME) for ns in members[1:]]
    ending = " (--all lists each in full)"
    listed: list[str] = []
    for n, name in enumerate(others):
        rest = len(others) - n - 1
        candidate = "    also " + ", ".join([*listed, name]) + (f" and {rest} more" if rest else "")
        if listed and cells(candidate + ending) > width:
            break
        listed.append(name)
    rest = len(others) - len(listed)
    line = "    also " + ", ".join(listed) + (f" and {rest} more" if rest else "") + ending
    return [*out, line]


def count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def summary_lines(scan: Scan, view: Overview, show_all: bool, grouped: bool) -> list[str]:
    hidden = (
        f" ({view.empty_interfaces} with nothing on their hooks, hidden: --all shows them)"
        if view.empty_interfaces and not show_all
        else ""
    )
    out = [
        f"{count(view.namespaces, 'namespace')}, {count(view.interfaces, 'interface')}{hidden}, "
        f"{count(view.hooks, 'hook')} with {count(view.entries, 'classifier')}"
        + ("; the kernel has no TCX (tcx hooks not available)" if scan.host.tcx is False else "")
    ]
    vendors = ", ".join(f"{shown(name)} {n}" for name, n in view.vendors)
    out.append(f"Vendors (classifiers): {vendors or 'none'}")
    source = (
        "the pref its filters use"
        if view.priority_source == "detected"
        else "assumed: no CWS filter on these hooks"
    )
    ahead = f"Ahead of CWS (priority {view.priority}, {source}): "
    sure = [c for c in view.causes if c.certain]
    if view.blind_hooks:
        from tcaudit.advice.causes import phrase

        ahead += (
            paint(f"a chain-ender on {view.blind_hooks} of the {view.cws_hooks} hooks", "red")
            + f" it attaches to, marked !! ({shown('; '.join(phrase(c) for c in sure))})"
        )
    else:
        ahead += paint(
            f"no chain-ender on any of the {view.cws_hooks} hooks it attaches to", "green"
        )
    if view.may_hooks:
        ahead += (
            f"; {view.may_hooks} more hooks may have one (an unknown verdict, or CWS's own "
            "pref without CWS there; marked ?)"
        )
    out.append(ahead)
    if grouped:
        out.append(
            "Alike namespaces are told once (the same hooks, vendors and verdicts; only names "
            "and ids differ); anything unusual is listed in full; --all lists every one."
        )
    return out


@safe_text
def scan_table(scan: Scan, *, show_all: bool = False, layout: Layout = PIPED) -> str:
    """The summary, alike namespaces once, every other namespace as a table (with
    ``show_all``: every namespace, interface and hook)."""
    from tcaudit.advice.overview import overview

    view = overview(scan)
    groups = (
        tuple((i,) for i in range(len(scan.namespaces))) if show_all else view.groups
    )
    alike = [g for g in groups if len(g) > 1]
    head = summary_lines(scan, view, show_all, bool(alike))
    blocks = ["\n".join(line for s in head for line in wrap(s, layout.width, subsequent="    "))]
    for group in alike:
        blocks.append("\n".join(group_lines([scan.namespaces[i] for i in group], view, layout)))
    tables = []
    grouped_rows = False
    for group in groups:
        if len(group) > 1:
            continue
        ns = scan.namespaces[group[0]]
        rows, several = namespace_rows(group[0], ns, show_all, view)
        if rows:
            tables.append((ns, rows))
            grouped_rows = grouped_rows or several
    columns: tuple[Column, ...] = COLUMNS
    if not any(row[0] for _, rows in tables for row in rows):
        columns = COLUMNS[1:]  # nothing marked: no mark column
        tables = [(ns, [row[1:] for row in rows]) for ns, rows in tables]
    fitted = fit(columns, [row for _, rows in tables for row in rows], layout)
    drawn: list[Drawn] = []
    for ns, rows in tables:
        table = render(columns, rows, fitted)
        drawn.append(table)
        blocks.append(f"netns {shown(ns.netns.label)} [inode {ns.netns.id}]\n{table.text}")
    if not tables and not alike:
        blocks.append("no classifiers on any selected tc hook")
    notes = []
    if grouped_rows:
        notes.append(
            "+N after an interface: that many more interfaces alike in that namespace (the "
            "same hooks, vendors and verdicts); --all lists each."
        )
    note = fit_note(drawn, layout)
    if note:
        notes.append(note)
    if notes:
        blocks.append("\n".join(line for n in notes for line in wrap(n, layout.width)))
    return "\n\n".join(blocks) + "\n"
