"""A scan seen whole, for people: how big it is, which vendors run on it, what runs
ahead of CWS and can end the chain, and which namespaces and interfaces are alike, so a
node-sized table shows each kind once (output/text_scan.py renders it).

*Alike* means the same hooks up to names and ids: the same interfaces (by kind, in
order) with the same hooks, and on each the same entries in run order (kind, pref,
chain, protocol, direct-action and actions flags, the effective verdict, the vendor with
its version and confidence, whether it is CWS's own, whether it blinds CWS). Names
(namespaces, interfaces, filters, programs, processes) and ids (inodes, ifindexes,
handles, program ids and tags, links) never enter it: a name another vendor chose can
neither put two things in one group nor keep them apart.

Nothing unusual is ever hidden in a group. The node's own namespace, and every namespace
or interface with any of these, is listed in full: an entry whose verdict is unknown or
may hide, whose program could not be read, that no vendor fingerprint matched, that is
named like CWS but does not behave like it, in an unreachable chain, not a bpf or TCX
program (u32, classic BPF, actions), one of tcaudit's own observers; or a hook on a
shared block. Fewer than :data:`ALIKE` alike ones are listed in full too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Final

from tcaudit.advice.causes import Cause
from tcaudit.advice.recommend import recommend
from tcaudit.model import Entry, Hook, Interface, NamespaceScan, Scan
from tcaudit.vendors.cws import impostor, trusted

ALIKE: Final = 3  # alike namespaces (interfaces) are shown as one from this many on
BLINDS: Final = "!!"  # ends the chain ahead of CWS: CWS is blind on that hook
MAY: Final = "?"  # may end it: an unknown verdict, or CWS's own pref without CWS there

Mark = tuple[int, str, str, int | None, int | None]  # netns, interface, hook, pref, program


@dataclass(frozen=True)
class Overview:
    namespaces: int
    interfaces: int
    empty_interfaces: int  # interfaces with nothing on any hook
    hooks: int  # hooks with at least one entry
    entries: int
    vendors: tuple[tuple[str, int], ...]  # (vendor and version, or "unknown", entries)
    priority: int  # the CWS priority the hooks were judged at
    priority_source: str  # "detected" (CWS's filters are on the hooks) or "assumed"
    cws_hooks: int  # the hooks CWS attaches to (every interface, ingress and egress)
    causes: tuple[Cause, ...]  # what ends the chain ahead of CWS, per culprit
    blind_hooks: int  # CWS hooks something blinds for sure
    may_hooks: int  # CWS hooks something may blind (and nothing blinds for sure)
    marks: dict[Mark, str]  # the entries that blind (BLINDS) or may blind (MAY) CWS
    groups: tuple[tuple[int, ...], ...]  # scan.namespaces indexes: alike ones together
    interface_groups: tuple[tuple[tuple[int, ...], ...], ...]  # per namespace, likewise

    def mark(self, ns: NamespaceScan, interface: Interface, hook: Hook, entry: Entry) -> str:
        """``!!``, ``?`` or ``""`` for one entry."""
        program = entry.program.id if entry.program else None
        key = (ns.netns.id, interface.name, hook.hook, entry.pref, program)
        return self.marks.get(key, "")


def overview(scan: Scan) -> Overview:
    """The overview of ``scan`` at the CWS priority in effect on it (the one CWS's own
    filters use, else the default), judged by the recommendation's own rules."""
    rec = recommend(scan)
    marks: dict[Mark, str] = {}
    for spot in rec.blind:
        key = (spot.where.netns_id, spot.where.interface, spot.culprit_hook, spot.pref,
               spot.program_id)
        if marks.get(key) != BLINDS:
            marks[key] = BLINDS if spot.certain else MAY
    where = {(b.where.netns_id, b.where.interface, b.where.hook) for b in rec.blind}
    certain = {(b.where.netns_id, b.where.interface, b.where.hook) for b in rec.blind
               if b.certain}
    vendors: Counter[str] = Counter()
    hooks = entries = interfaces = empty = 0
    for ns in scan.namespaces:
        for interface in ns.interfaces:
            interfaces += 1
            empty += not interface.entry_count
            for hook in interface.hooks:
                hooks += bool(hook.entries)
                for entry in hook.entries:
                    entries += 1
                    if not entry.observer:
                        vendors[_vendor(entry)] += 1
    shapes = [_namespace_shape(ns, marks) for ns in scan.namespaces]
    return Overview(
        namespaces=len(scan.namespaces),
        interfaces=interfaces,
        empty_interfaces=empty,
        hooks=hooks,
        entries=entries,
        vendors=tuple(sorted(vendors.items(), key=lambda kv: (-kv[1], kv[0]))),
        priority=rec.current_priority,
        priority_source="detected" if rec.priority_source == "detected" else "assumed",
        cws_hooks=rec.hooks,
        causes=rec.causes,
        blind_hooks=len(certain),
        may_hooks=len(where - certain),
        marks=marks,
        groups=_groups(shapes),
        interface_groups=tuple(
            _groups([_interface_shape(ns, i, marks) if i.entry_count else None
                     for i in ns.interfaces])
            for ns in scan.namespaces
        ),
    )


def _vendor(entry: Entry) -> str:
    match = entry.vendor
    if match is None:
        return "unknown"
    if impostor(entry):
        return f"unknown, named like {match.name}"
    return f"{match.name} {match.version_hint}" if match.version_hint else match.name


def _groups(shapes: Sequence[Hashable | None]) -> tuple[tuple[int, ...], ...]:
    """Indexes of alike shapes together (at least ALIKE of them), each other one alone,
    in the order each first appears."""
    members: dict[Hashable, list[int]] = {}
    for i, shape in enumerate(shapes):
        if shape is not None:
            members.setdefault(shape, []).append(i)
    out: list[tuple[int, ...]] = []
    for i, shape in enumerate(shapes):
        group = members.get(shape, []) if shape is not None else []
        if len(group) >= ALIKE:
            if group[0] == i:
                out.append(tuple(group))
        else:
            out.append((i,))
    return tuple(out)


def _entry_shape(entry: Entry, mark: str) -> Hashable | None:
    """What makes two entries alike; None when this one must be seen on its own."""
    verdict = entry.verdict
    if (
        entry.observer
        or not entry.reachable
        or entry.kind not in ("bpf", "tcx")
        or entry.has_actions
        or entry.program is None
        or entry.program.error
        or verdict is None
        or verdict.effective is None
        or entry.vendor is None
        or impostor(entry)
        or mark == MAY
    ):
        return None
    vendor = entry.vendor
    return (
        entry.kind,
        entry.pref,
        entry.chain,
        entry.protocol,
        entry.direct_action,
        verdict.effective,
        (vendor.name, vendor.version_hint, vendor.confidence),
        trusted(entry),
        entry.program.type,
        mark,
    )


def _hook_shape(
    ns: NamespaceScan, interface: Interface, hook: Hook, marks: dict[Mark, str]
) -> Hashable | None:
    if hook.block is not None:
        return None
    entries = []
    for entry in hook.entries:
        program = entry.program.id if entry.program else None
        mark = marks.get((ns.netns.id, interface.name, hook.hook, entry.pref, program), "")
        shape = _entry_shape(entry, mark)
        if shape is None:
            return None
        entries.append(shape)
    return (hook.hook, hook.supported, hook.qdisc, hook.note, tuple(entries))


def _interface_shape(
    ns: NamespaceScan, interface: Interface, marks: dict[Mark, str]
) -> Hashable | None:
    hooks = []
    for hook in interface.hooks:
        shape = _hook_shape(ns, interface, hook, marks)
        if shape is None:
            return None
        hooks.append(shape)
    return (interface.kind, tuple(hooks))


def _namespace_shape(ns: NamespaceScan, marks: dict[Mark, str]) -> Hashable | None:
    if ns.netns.is_self or not any(i.entry_count for i in ns.interfaces):
        return None  # the node's own namespace; one with nothing on it is not shown
    shapes = []
    for interface in ns.interfaces:
        shape = _interface_shape(ns, interface, marks)
        if shape is None:
            return None
        shapes.append(shape)
    return tuple(shapes)
