"""Where observers go: choosing placements from a scan, before anything is changed.

By default one observer goes at the CWS priority in effect, and one just before and one
just after every foreign classifier (reachable, not CWS, not an observer); ``at`` names
the prefs instead. A pref is used only if it is free, or if every filter there is bpf
with protocol all: an observer added last at a shared pref runs FIRST there and sees
exactly what reaches it. Never pref 0, never a shared block (an observer there would sit
on every device of the block), never a hook without a clsact qdisc; a hook gets nothing
when there is nothing on it to find out.
"""

from __future__ import annotations

from tcaudit.errors import UsageError
from tcaudit.live.observer import MAX_SLOTS
from tcaudit.live.probe.naming import is_ours
from tcaudit.model import Entry, Hook, Netns, Placement, Plan, Scan, Skipped
from tcaudit.vendors.cws import DEFAULT_PRIORITY, detect_priority, trusted


def _usable(hook: Hook, pref: int) -> tuple[bool, bool]:
    """(usable, shares) for an observer (bpf, protocol all) at ``pref`` on ``hook``."""
    if not 1 <= pref <= 0xFFFF:
        return False, False
    there = [e for e in hook.entries if e.pref == pref and e.chain == 0]
    if not there:
        return True, False
    if all(e.kind in ("bpf", "cbpf") and e.protocol == "all" for e in there):
        return True, True
    return False, False


def _foreign(hook: Hook) -> list[Entry]:
    return [
        e
        for e in hook.entries
        if e.pref is not None and e.reachable and not trusted(e) and not is_ours(e)
    ]


SHARED_COST = (
    "while the probe runs, that vendor cannot re-create the pref with another kind or "
    "protocol (the kernel answers EINVAL)"
)


def _free(hook: Hook, pref: int) -> bool:
    usable, shares = _usable(hook, pref)
    return usable and not shares


def plan(
    scan: Scan,
    *,
    at: tuple[int, ...] = (),
    priority: int | None = None,
    share_pref: bool = False,
) -> Plan:
    """Where observers go. Default: at the CWS priority in effect, and just before and
    just after every foreign classifier; ``at`` replaces that with explicit prefs.

    Only free prefs, unless ``share_pref``: an observer added at a pref a vendor holds
    joins that vendor's classifier instance, and then, while the probe runs, that vendor
    cannot re-create the pref with another kind or protocol (SHARED_COST). Where the
    pref just before a classifier is taken (a vendor at pref 1 has none), the observer
    after it is set against the interface's counters instead."""
    detected, _ = detect_priority(scan)
    cws_pref = priority or detected or DEFAULT_PRIORITY
    placements: list[Placement] = []
    skipped: list[Skipped] = []
    subjects: list[tuple[Netns, str, str, Entry]] = []
    notes: list[str] = []
    for ns in scan.namespaces:
        for interface in ns.interfaces:
            hooks = {h.hook: h for h in interface.hooks}
            for name in ("clsact/ingress", "clsact/egress"):
                hook = hooks.get(name)
                if hook is None:
                    continue
                direction = name.split("/")[1]
                tcx = hooks.get(f"tcx/{direction}")
                foreign = _foreign(hook)
                tcx_foreign = [e for e in (tcx.entries if tcx else ()) if not trusted(e)]
                if not at and not foreign and not tcx_foreign:
                    continue  # nothing to find out on this hook
                if hook.block is not None:
                    skipped.append(
                        Skipped(
                            ns.netns.label,
                            interface.name,
                            name,
                            f"its qdisc uses shared block {hook.block}: an "
                            "observer there would sit on every device of the "
                            "block",
                        )
                    )
                    continue
                if not hook.supported:
                    skipped.append(
                        Skipped(
                            ns.netns.label,
                            interface.name,
                            name,
                            "no clsact qdisc: nothing runs there (not created on a node hook)",
                        )
                    )
                    continue
                wanted: dict[int, list[str]] = {}
                if at:
                    for pref in at:
                        wanted.setdefault(pref, []).append("at")
                else:
                    # what reaches CWS: at its pref when free, else right before it
                    at_cws = cws_pref
                    if not share_pref and not _free(hook, cws_pref) and _free(hook, cws_pref - 1):
                        at_cws = cws_pref - 1
                    wanted.setdefault(at_cws, []).append("cws")
                    for entry in foreign:
                        assert entry.pref is not None
                        subjects.append((ns.netns, interface.name, name, entry))
                        wanted.setdefault(entry.pref + 1, []).append(f"after {entry.pref}")
                        before = entry.pref - 1
                        if _free(hook, before):
                            wanted.setdefault(before, []).append(f"before {entry.pref}")
                        elif share_pref:
                            # join the entry's own pref: an observer added last runs first
                            wanted.setdefault(entry.pref, []).append(f"before {entry.pref}")
                        else:
                            notes.append(
                                f"{interface.name} {name} in {ns.netns.label}: no free pref "
                                f"just below pref {entry.pref}, so what reaches it is the "
                                f"interface's {'rx' if direction == 'ingress' else 'tx'} "
                                "counter (--share-pref puts an observer at its own pref: "
                                f"{SHARED_COST})"
                            )
                for pref, roles in sorted(wanted.items()):
                    usable, shares = _usable(hook, pref)
                    if not usable:
                        skipped.append(
                            Skipped(
                                ns.netns.label,
                                interface.name,
                                name,
                                f"pref {pref} is held by a non-bpf or non-'all' filter: not shared",
                            )
                        )
                        continue
                    if shares and not share_pref:
                        skipped.append(
                            Skipped(
                                ns.netns.label,
                                interface.name,
                                name,
                                f"pref {pref} ({', '.join(roles)}) holds another filter: "
                                "observers take free prefs only (--share-pref joins it; "
                                f"{SHARED_COST})",
                            )
                        )
                        continue
                    placements.append(
                        Placement(
                            ns.netns,
                            interface.name,
                            interface.ifindex,
                            name,
                            pref,
                            tuple(roles),
                            shares,
                        )
                    )
    if len(placements) >= MAX_SLOTS:
        raise UsageError(
            f"{len(placements)} observers needed, at most {MAX_SLOTS - 1}: "
            "narrow it with --netns/--dev/--hook"
        )
    return Plan(
        tuple(placements),
        tuple(skipped),
        tuple(subjects),
        cws_pref,
        tuple(ns.netns for ns in scan.namespaces),
        tuple(dict.fromkeys(notes)),
    )
