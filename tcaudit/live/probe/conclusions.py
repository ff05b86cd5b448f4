"""Counts turned into conclusions: pure functions, no kernel.

Each observer's count is set against a reference: the observer just ahead of it on the
same hook, or for the first one the interface's rx (ingress) or tx (egress) packets.
Each foreign classifier then gets a verdict from traffic (the observers just before and
just after it: "hands packets on" or "ends the chain for N%"), set beside the static one
from its bytecode; a classifier seen ending the chain when its bytecode only hands
packets on is a DISAGREEMENT.
"""

from __future__ import annotations

from tcaudit.model import (
    Conclusion,
    Counts,
    Entry,
    Netns,
    ObserverResult,
    Placement,
    Plan,
    ProbeResult,
)


def results(
    plan: Plan,
    attached: list[tuple[Placement, int, int]],
    counts: dict[int, Counts],
    start_links: dict[tuple[int, int], tuple[int, int]],
    end_links: dict[tuple[int, int], tuple[int, int]],
    elapsed: float,
) -> ProbeResult:
    """The probe's result: each observer's count set against its reference, and a
    conclusion for each of the plan's subjects.

    ``attached`` holds (placement, slot, handle); ``counts`` what each slot counted over
    the run; the link counters map (netns inode, ifindex) to (rx, tx) packets.
    """
    observers: list[ObserverResult] = []
    notes: list[str] = list(plan.notes)
    by_hook: dict[tuple[int, str, str], list[tuple[Placement, int, int]]] = {}
    for item in attached:
        p = item[0]
        by_hook.setdefault((p.netns.id, p.interface, p.hook), []).append(item)
    for (_ns, _iface, hook), items in by_hook.items():
        items.sort(key=lambda item: item[0].pref)
        for index, (placement, slot, handle) in enumerate(items):
            seen = counts[slot]
            if index > 0:
                ahead_placement, ahead_slot, _ = items[index - 1]
                reference = counts[ahead_slot].packets
                label = f"observer at pref {ahead_placement.pref}"
            else:
                key = (placement.netns.id, placement.ifindex)
                rx0, tx0 = start_links.get(key, (0, 0))
                rx1, tx1 = end_links.get(key, (0, 0))
                if hook.endswith("ingress"):
                    reference, label = rx1 - rx0, f"rx packets of {placement.interface}"
                else:
                    reference, label = tx1 - tx0, f"tx packets of {placement.interface}"
                    notes.append(
                        f"{placement.interface} egress: tx is counted after the egress hook, "
                        "so drops or redirects there make the reference low"
                    )
            ratio = seen.packets / reference if reference else None
            observers.append(ObserverResult(placement, slot, handle, seen, reference, label, ratio))
    conclusions = [conclude(plan, subject, observers) for subject in plan.subjects]
    return ProbeResult(
        plan, elapsed, tuple(observers), tuple(conclusions), tuple(dict.fromkeys(notes))
    )


def _unjudged(subject: tuple[Netns, str, str, Entry], message: str) -> Conclusion:
    """A conclusion without counts: the traffic cannot judge this entry, ``message`` why."""
    netns, interface, hook, entry = subject
    return Conclusion(netns.label, interface, hook, entry, None, None, None, None, message)


def conclude(
    plan: Plan, subject: tuple[Netns, str, str, Entry], observers: list[ObserverResult]
) -> Conclusion:
    """What the traffic says about one foreign classifier, from the observers just
    before and just after it on its hook."""
    netns, interface, hook, entry = subject
    assert entry.pref is not None
    mine = [
        o
        for o in observers
        if o.placement.netns.id == netns.id
        and o.placement.interface == interface
        and o.placement.hook == hook
    ]
    before = next((o for o in mine if f"before {entry.pref}" in o.placement.roles), None)
    after = next((o for o in mine if f"after {entry.pref}" in o.placement.roles), None)
    name = entry.filter_name or (entry.program.name if entry.program else entry.kind)
    words = entry.verdict.effective if entry.verdict else None
    neighbours = [
        other
        for ns, iface, h, other in plan.subjects
        if ns.id == netns.id
        and iface == interface
        and h == hook
        and other is not entry
        and other.pref == entry.pref
    ]
    if neighbours:
        return _unjudged(
            subject,
            f"{name} at pref {entry.pref} shares its pref with "
            f"{len(neighbours)} other filter(s): the observers see them "
            "together (their combined effect is on the other lines)",
        )
    static = "|".join(words) if words else "unknown"
    if after is None:
        return _unjudged(
            subject,
            f"{name} at pref {entry.pref}: no observer could go right after it (pref "
            f"{entry.pref + 1} is taken; --share-pref joins it)",
        )
    if before is None:
        # the reference of the observer after it (the nearest observer ahead, or the
        # interface's counter) is what reaches this entry only when nothing else runs
        # in between
        ref_pref = max(
            (o.placement.pref for o in mine if o.placement.pref < after.placement.pref),
            default=0,
        )
        between = [
            other
            for ns, iface, h, other in plan.subjects
            if ns.id == netns.id
            and iface == interface
            and h == hook
            and other is not entry
            and other.pref is not None
            and ref_pref < other.pref < entry.pref
        ]
        if between:
            return _unjudged(
                subject,
                f"{name} at pref {entry.pref}: no free pref just before it, and "
                f"{len(between)} other filter(s) run between the nearest observer and it, "
                "so the traffic after it is not its alone (--share-pref puts an observer "
                "at its own pref)",
            )
    reached = before.counts.packets if before else after.reference_packets
    got = after.counts.packets
    if not reached:
        return Conclusion(
            netns.label,
            interface,
            hook,
            entry,
            reached,
            got,
            None,
            None,
            f"{name} at pref {entry.pref}: no traffic reached it "
            "(try --generate on lab hooks, or a longer --duration)",
        )
    ends = max(0.0, 1 - got / reached)
    can_end = words is None or any(w != "continue" for w in words)
    if ends <= 0.05:
        agrees = True
        text = f"{name} at pref {entry.pref} hands packets on ({got}/{reached} got past it)"
        if can_end:
            text += f"; statically it can {static}, which the traffic seen never hit"
    else:
        agrees = can_end
        text = (
            f"{name} at pref {entry.pref} ends the chain for {ends:.0%} of packets "
            f"({reached - got} of {reached})"
        )
        if not can_end:
            text = f"DISAGREEMENT: {text}, but its bytecode only hands packets on ({static})"
    return Conclusion(netns.label, interface, hook, entry, reached, got, ends, agrees, text)
