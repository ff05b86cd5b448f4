"""The watch's model of one namespace's hooks, and the event records built from it.

``Space`` is what the watch knows of a namespace now: its links, clsact qdiscs, every
clsact filter as a ``Known`` (the filter, its program and vendor, who added it) and the
TCX revisions. The functions here read and update that model and build WatchEvent
records; they make no system call and open no socket (the loop does), so hand-made
filters can be fed to them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tcaudit.kernel.abi import PARENT_EGRESS, PARENT_HOOK, PARENT_INGRESS
from tcaudit.kernel.rtnl_codec import Filter
from tcaudit.model import Actor, Netns, Program, VendorMatch, WatchEvent

FilterKey = tuple[int, int, int, str]  # pref, handle, protocol, kind
HookKey = tuple[int, int]  # ifindex, clsact parent
TcxKey = tuple[int, str]  # ifindex, "tcx/ingress" | "tcx/egress"
TcxState = dict[TcxKey, tuple[int, tuple[int, ...]]]  # mprog revision, program ids
RESCANNED = "seen by the rescan after lost events"


@dataclass(frozen=True)
class Known:
    """A filter on a hook, as the watch last saw it."""

    filt: Filter
    program: Program | None
    vendor: VendorMatch | None
    added_by: Actor | None


@dataclass
class Space:
    """What the watch knows of one namespace's hooks."""

    netns: Netns
    links: dict[int, str] = field(default_factory=dict)
    clsact: set[int] = field(default_factory=set)
    filters: dict[HookKey, dict[FilterKey, Known]] = field(default_factory=dict)
    tcx: TcxState = field(default_factory=dict)
    clsact_deleted_at: dict[int, float] = field(default_factory=dict)

    def interface(self, ifindex: int) -> str:
        """The link's name, else its index (a link the model has not seen)."""
        return self.links.get(ifindex, str(ifindex))


def key(f: Filter) -> FilterKey:
    return (f.pref, f.handle, f.protocol, f.kind)


def take_filters(space: Space, ifindex: int) -> list[Known]:
    """Remove and return what the model has on both clsact parents of a link."""
    return [
        known
        for parent in (PARENT_INGRESS, PARENT_EGRESS)
        for known in space.filters.pop((ifindex, parent), {}).values()
    ]


def bulk_deleted(bucket: Mapping[FilterKey, Known], pref: int, protocol: int) -> list[FilterKey]:
    """The filters of a hook one delete without options took: a whole pref (every
    handle), or the whole hook (pref 0); protocol 0 matches any."""
    return [
        k
        for k, known in bucket.items()
        if pref in (0, known.filt.pref) and protocol in (0, known.filt.protocol)
    ]


def filter_event(
    space: Space,
    what: str,
    f: Filter,
    known: Known | None,
    actor: Actor | None,
    previous: Known | None = None,
    note: str | None = None,
    *,
    now: float,
) -> WatchEvent:
    return WatchEvent(
        time=now,
        netns=space.netns.label,
        netns_id=space.netns.id,
        what=what,
        interface=space.interface(f.ifindex),
        hook=PARENT_HOOK.get(f.parent),
        pref=f.pref,
        handle=f.handle,
        kind="cbpf" if f.bpf is not None and f.bpf.classic_ops is not None else f.kind,
        filter_name=f.bpf.name if f.bpf else None,
        program=known.program if known else None,
        vendor=known.vendor if known else None,
        actor=actor,
        previous_program=previous.program if previous else None,
        previous_vendor=previous.vendor if previous else None,
        note=note,
    )


def everything(space: Space) -> dict[tuple[HookKey, FilterKey], Known]:
    """Every filter of the model, keyed by hook and filter."""
    return {
        (hook, k): known for hook, bucket in space.filters.items() for k, known in bucket.items()
    }


def rescan_events(
    space: Space,
    before: Mapping[tuple[HookKey, FilterKey], Known],
    after: Mapping[tuple[HookKey, FilterKey], Known],
    now: float,
) -> list[WatchEvent]:
    """What a rescan found changed: filters added, replaced (another program at the same
    key) and deleted, with no actor (the notifications that named them were lost)."""
    found = []
    for ident, known in after.items():
        old = before.get(ident)
        if old is None:
            found.append(
                filter_event(
                    space, "filter-added", known.filt, known, None, None, RESCANNED, now=now
                )
            )
        elif old.program != known.program:
            found.append(
                filter_event(
                    space, "filter-replaced", known.filt, known, None, old, RESCANNED, now=now
                )
            )
    for ident, known in before.items():
        if ident not in after:
            found.append(
                filter_event(
                    space, "filter-deleted", known.filt, known, None, None, RESCANNED, now=now
                )
            )
    return found


def tcx_changes(old: TcxState, fresh: TcxState) -> list[tuple[TcxKey, list[int], list[int]]]:
    """(hook, programs attached, programs detached) of each TCX hook whose revision moved.
    A hook first seen now (a link made during the watch) starts from nothing attached."""
    changes = []
    for hook, (revision, progs) in fresh.items():
        old_revision, old_progs = old.get(hook, (0, ()))
        if revision == old_revision:
            continue
        attached = [p for p in progs if p not in old_progs]
        detached = [p for p in old_progs if p not in progs]
        changes.append((hook, attached, detached))
    return changes
