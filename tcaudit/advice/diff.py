"""`tcaudit diff OLD NEW`: what a CNI upgrade (or anything else) did to the tc chains.

Both sides are snapshots (scan documents with verdicts and vendors). Entries are matched
per (namespace, interface, hook): first by pref and handle (the tc identity), then by
filter or program name (a filter that moved), the rest are added or removed. A change to
a chain is a warning; a hook where CWS (at the OLD side's priority) becomes blind is at
"blind" level, so `--fail-on blind` gates exactly what matters for CWS.
"""

from __future__ import annotations

from dataclasses import dataclass

from tcaudit.advice.recommend import recommend
from tcaudit.model import Entry, NamespaceScan, Scan


@dataclass(frozen=True)
class Change:
    level: str  # "blind" | "warning"
    kind: str  # added | removed | moved | replaced | verdict-changed | vendor-changed
    # | tcx-appeared | newly-blind | no-longer-blind | namespace-added | namespace-removed
    netns: str
    interface: str | None
    hook: str | None
    message: str
    old: Entry | None = None
    new: Entry | None = None


def netns_key(ns: NamespaceScan) -> str:
    """A name that survives restarts: netns name, pod, container, else the label."""
    n = ns.netns
    if n.is_self:
        return "self"
    if n.names:
        return n.names[0]
    if n.pod:
        return f"pod {n.pod}"
    if n.container_id:
        return f"container {n.container_id}"
    return n.label


def _entry_name(e: Entry) -> str:
    if e.kind == "tcx":
        return f"TCX {e.program.name if e.program else '?'}"
    return f"{e.kind} pref {e.pref} handle 0x{(e.handle or 0):x} ({e.filter_name or '-'})"


def _identity(e: Entry) -> tuple[object, ...]:
    return (
        ("tcx", e.program.name if e.program else None)
        if e.kind == "tcx"
        else (e.pref, e.handle, e.protocol, e.kind)
    )


def _name(e: Entry) -> tuple[object, ...]:
    return (e.kind, e.filter_name, e.program.name if e.program else None)


def _compare(old: Entry, new: Entry, where: tuple[str, str, str]) -> list[Change]:
    netns, interface, hook = where
    out = []

    def change(kind: str, message: str) -> None:
        out.append(Change("warning", kind, netns, interface, hook, message, old, new))

    old_tag = old.program.tag if old.program else None
    new_tag = new.program.tag if new.program else None
    if old_tag != new_tag or old.filter_name != new.filter_name:
        change(
            "replaced",
            f"{_entry_name(old)} now runs {_entry_name(new)} (tag {old_tag} -> {new_tag})",
        )
    old_words = old.verdict.effective if old.verdict else None
    new_words = new.verdict.effective if new.verdict else None
    if old_words != new_words:
        change(
            "verdict-changed",
            f"{_entry_name(new)}: verdict "
            f"{'|'.join(old_words or ('?',))} -> "
            f"{'|'.join(new_words or ('?',))}",
        )
    old_vendor = (old.vendor.name, old.vendor.version_hint) if old.vendor else None
    new_vendor = (new.vendor.name, new.vendor.version_hint) if new.vendor else None
    if old_vendor != new_vendor:
        change("vendor-changed", f"{_entry_name(new)}: vendor {old_vendor} -> {new_vendor}")
    return out


def _hook_changes(
    old: tuple[Entry, ...], new: tuple[Entry, ...], where: tuple[str, str, str]
) -> list[Change]:
    netns, interface, hook = where
    changes: list[Change] = []
    left = list(old)
    right = list(new)
    for entry in list(right):
        match = next((o for o in left if _identity(o) == _identity(entry)), None)
        if match is not None:
            left.remove(match)
            right.remove(entry)
            changes += _compare(match, entry, where)
    for entry in list(right):
        match = next((o for o in left if _name(o) == _name(entry)), None)
        if match is not None:
            left.remove(match)
            right.remove(entry)
            changes.append(
                Change(
                    "warning",
                    "moved",
                    netns,
                    interface,
                    hook,
                    f"{_entry_name(match)} moved to pref {entry.pref} handle "
                    f"0x{(entry.handle or 0):x}",
                    match,
                    entry,
                )
            )
            changes += [c for c in _compare(match, entry, where) if c.kind != "replaced"]
    for entry in right:
        kind = "tcx-appeared" if entry.kind == "tcx" else "added"
        text = "appeared: it runs before every clsact filter" if kind == "tcx-appeared" else "added"
        changes.append(
            Change(
                "warning", kind, netns, interface, hook, f"{_entry_name(entry)} {text}", None, entry
            )
        )
    for entry in left:
        changes.append(
            Change(
                "warning",
                "removed",
                netns,
                interface,
                hook,
                f"{_entry_name(entry)} removed",
                entry,
                None,
            )
        )
    return changes


def diff(old: Scan, new: Scan) -> list[Change]:
    """Every change between two snapshots, blind-level ones first."""
    changes: list[Change] = []
    old_ns = {netns_key(ns): ns for ns in old.namespaces}
    new_ns = {netns_key(ns): ns for ns in new.namespaces}
    for key in sorted(old_ns.keys() - new_ns.keys()):
        changes.append(
            Change("warning", "namespace-removed", key, None, None, f"namespace {key} is gone")
        )
    for key in sorted(new_ns.keys() - old_ns.keys()):
        changes.append(
            Change("warning", "namespace-added", key, None, None, f"namespace {key} is new")
        )
    for key in sorted(old_ns.keys() & new_ns.keys()):
        old_if = {i.name: i for i in old_ns[key].interfaces}
        new_if = {i.name: i for i in new_ns[key].interfaces}
        for name in sorted(old_if.keys() | new_if.keys()):
            old_hooks = {h.hook: h.entries for h in old_if[name].hooks} if name in old_if else {}
            new_hooks = {h.hook: h.entries for h in new_if[name].hooks} if name in new_if else {}
            for hook in sorted(old_hooks.keys() | new_hooks.keys()):
                changes += _hook_changes(
                    old_hooks.get(hook, ()), new_hooks.get(hook, ()), (key, name, hook)
                )
    # what it means for CWS, judged at the priority the OLD node used
    before = recommend(old)
    after = recommend(new, priority=before.current_priority)

    old_keys = {ns.netns.id: netns_key(ns) for ns in old.namespaces}
    new_keys = {ns.netns.id: netns_key(ns) for ns in new.namespaces}
    was = {(old_keys[b.where.netns_id], b.where.interface, b.where.hook) for b in before.blind}
    now: dict[tuple[str, str, str], list[str]] = {}
    for b in after.blind:
        now.setdefault((new_keys[b.where.netns_id], b.where.interface, b.where.hook), []).append(
            b.reason
        )
    for netns, interface, hook in sorted(now.keys() - was):
        changes.append(
            Change(
                "blind",
                "newly-blind",
                netns,
                interface,
                hook,
                f"CWS at priority {before.current_priority} is now blind on "
                f"{interface} {hook} in {netns}: "
                f"{'; '.join(now[(netns, interface, hook)])}",
            )
        )
    for netns, interface, hook in sorted(was - now.keys()):
        changes.append(
            Change(
                "warning",
                "no-longer-blind",
                netns,
                interface,
                hook,
                f"CWS is no longer blind on {interface} {hook} in {netns}",
            )
        )
    return sorted(changes, key=lambda c: (c.level != "blind",))
