"""The watch's findings, as rules over the model: vendors racing each other on a hook.

- vendor-replaced: a vendor's filter replaced by another vendor's (or an unknown) program;
- deleted-by-other: a filter deleted by a process other than the one that added it;
- clsact-deleted (every filter on it lost) and clsact-recreated;
- hook-gap: a hook left without a vendor's filter for longer than --gap;
- piling: one vendor's programs at several prefs of one hook (cilium/cilium#36172);
- tcx-in-front: a TCX program appearing in front of legacy clsact filters.

Each rule is a function of plain data (the namespace's ``events.Space``, ``Known``
filters, actors, durations) with no kernel access and no clock; it returns a ``Race``
(a finding before the loop stamps it with the time and the namespace) or None.
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from dataclasses import dataclass

from tcaudit.kernel.abi import PARENT_EGRESS, PARENT_HOOK, PARENT_INGRESS
from tcaudit.live.watch.events import Known, Space
from tcaudit.model import Actor, Program, WatchFinding

VendorHook = tuple[int, int, int, str]  # netns id, ifindex, clsact parent, vendor name


@dataclass(frozen=True)
class Race:
    """A finding, not yet stamped with its time and namespace."""

    kind: str
    message: str
    interface: str | None = None
    hook: str | None = None

    def finding(self, time: float, netns: str) -> WatchFinding:
        return WatchFinding(time, self.kind, self.message, netns, self.interface, self.hook)


def vendor_replaced(space: Space, previous: Known, known: Known, actor: Actor) -> Race | None:
    """``known`` replaced ``previous`` (same key) on behalf of ``actor``: a finding when
    the vendor changed (a vendor replacing its own filter is an upgrade)."""
    before = previous.vendor.name if previous.vendor else None
    after = known.vendor.name if known.vendor else None
    if before == after:
        return None
    f = known.filt
    interface, hook = space.interface(f.ifindex), PARENT_HOOK.get(f.parent)
    return Race(
        "vendor-replaced",
        f"{interface} {hook} pref {f.pref} handle 0x{f.handle:x}: "
        f"{before or 'an unknown owner'}'s filter replaced by "
        f"{after or 'an unknown'} program (by {actor.text()})",
        interface,
        hook,
    )


def deleted_by_other(space: Space, previous: Known, actor: Actor) -> Race | None:
    """``actor`` deleted ``previous``: a finding when both it and the filter's adder are
    known processes and not the same one."""
    adder = previous.added_by
    if adder is None or adder.pid is None or actor.pid is None or adder.pid == actor.pid:
        return None
    f = previous.filt
    interface, hook = space.interface(f.ifindex), PARENT_HOOK.get(f.parent)
    return Race(
        "deleted-by-other",
        f"{interface} {hook} pref {f.pref} handle 0x{f.handle:x} "
        f"({previous.vendor.name if previous.vendor else 'unknown owner'}) "
        f"was deleted by {actor.text()}, not by {adder.text()} who added it",
        interface,
        hook,
    )


def clsact_deleted(space: Space, ifindex: int, lost: Sequence[Known], actor: Actor) -> Race | None:
    """A link's clsact qdisc was deleted by ``actor``: a finding when filters went with it."""
    if not lost:
        return None
    interface = space.interface(ifindex)
    owners = sorted({k.vendor.name for k in lost if k.vendor} or {"unknown owners"})
    return Race(
        "clsact-deleted",
        f"{interface}: clsact deleted by {actor.text()}: {len(lost)} filters "
        f"lost ({', '.join(owners)})",
        interface,
    )


def clsact_recreated(
    space: Space, ifindex: int, deleted_at: float | None, now: float, actor: Actor
) -> Race | None:
    """A clsact qdisc was added at ``now`` (same clock as ``deleted_at``, when the watch
    saw the link's previous one deleted): a finding when it had been."""
    if deleted_at is None:
        return None
    interface = space.interface(ifindex)
    return Race(
        "clsact-recreated",
        f"{interface}: clsact recreated {1000 * (now - deleted_at):.0f} ms "
        f"after it was deleted (by {actor.text()})",
        interface,
    )


def vendor_hook(space: Space, known: Known) -> VendorHook | None:
    """The hook and vendor of a filter (None for a filter of no known vendor)."""
    if known.vendor is None:
        return None
    return (space.netns.id, known.filt.ifindex, known.filt.parent, known.vendor.name)


def left_without(space: Space, known: Known) -> VendorHook | None:
    """``known`` is gone from the model: the hook and vendor it leaves without a filter of
    that vendor, if it does (None when the vendor still has another filter there)."""
    if known.vendor is None:
        return None
    f = known.filt
    bucket = space.filters.get((f.ifindex, f.parent), {})
    if any(k.vendor and k.vendor.name == known.vendor.name for k in bucket.values()):
        return None
    return vendor_hook(space, known)


def hook_gap(
    space: Space, gap: VendorHook, lasted: float, limit: float, *, still: bool = False
) -> Race | None:
    """A hook was without the vendor's filter for ``lasted`` seconds (``still``: it is at
    the end of the watch): a finding when longer than ``limit`` (--gap)."""
    if lasted <= limit:
        return None
    _, ifindex, parent, vendor = gap
    hook = PARENT_HOOK.get(parent)
    if still:
        interface = space.interface(ifindex)
        return Race(
            "hook-gap",
            f"{interface} {hook} is still without {vendor}'s filter ({1000 * lasted:.0f} ms)",
            interface,
            hook,
        )
    return Race(
        "hook-gap",
        f"{space.links.get(ifindex, '?')} {hook} was left without {vendor}'s filter for "
        f"{1000 * lasted:.0f} ms",
        space.links.get(ifindex),
        hook,
    )


def piling(space: Space, known: Known, reported: Set[VendorHook]) -> Race | None:
    """``known`` was added: a finding when its vendor now has filters at two or more prefs
    of that hook, once per hook and vendor (``reported``: the ``vendor_hook``s already
    found; the caller adds this one when a race comes back)."""
    vendor = known.vendor
    if vendor is None or vendor_hook(space, known) in reported:
        return None
    ifindex, parent = known.filt.ifindex, known.filt.parent
    bucket = space.filters.get((ifindex, parent), {})
    prefs = sorted(
        {k.filt.pref for k in bucket.values() if k.vendor and k.vendor.name == vendor.name}
    )
    if len(prefs) < 2:
        return None
    interface, hook = space.links.get(ifindex, "?"), PARENT_HOOK.get(parent)
    return Race(
        "piling",
        f"{interface} {hook}: {vendor.name}'s programs pile up "
        f"at prefs {', '.join(map(str, prefs))} (old ones left behind, as in "
        "cilium/cilium#36172)",
        interface,
        hook,
    )


def tcx_in_front(
    space: Space, ifindex: int, hook: str, prog_id: int, program: Program
) -> Race | None:
    """A TCX program was attached to ``hook`` ("tcx/ingress" or "tcx/egress"): a finding
    when the same direction has clsact filters, which now run after it."""
    parent = PARENT_INGRESS if hook.endswith("ingress") else PARENT_EGRESS
    legacy = space.filters.get((ifindex, parent), {})
    if not legacy:
        return None
    interface = space.interface(ifindex)
    return Race(
        "tcx-in-front",
        f"{interface} {hook}: TCX program {prog_id} ({program.name}) now runs before "
        f"{len(legacy)} clsact filters",
        interface,
        hook,
    )
