"""`tcaudit watch`: record who changes the tc hooks, and catch vendors racing each other.

Per watched namespace: one rtnetlink socket subscribed to RTNLGRP_TC and RTNLGRP_LINK
(opened from inside the namespace BEFORE the initial dump, so nothing falls between),
a model of every clsact filter and TCX attachment, and:

- tc notifications turned into events: filter added / replaced / deleted, qdisc added /
  deleted; the actor is the process behind the netlink port id the kernel puts in the
  notification (the socket's owner, found through /proc/net/netlink and /proc/*/fd),
  else a process holding the new program;
- filters that vanish without an event of their own (their qdisc, link or namespace is
  deleted) reported as "filter-lost";
- TCX: no netlink events exist, so the mprog revision of every link is polled;
- new namespaces picked up and gone ones noticed (rediscovery once a second, when no
  --netns narrows the selection); a gone namespace's socket is closed at once so tcaudit
  never keeps a dead pod's namespace alive;
- overruns (ENOBUFS) reported as "events-lost", followed by a rescan of that namespace.

Findings: a vendor's filter replaced by another vendor's program; a filter deleted by a
process other than the one that added it; clsact deleted (every filter on it lost) and
recreated; a hook left without a vendor's filter for longer than --gap; one vendor's
programs piling up at several prefs of one hook (cilium/cilium#36172); a TCX program
appearing in front of legacy filters. Memory stays bounded: the model holds what is on
the hooks now, events are streamed out, findings are capped.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tcaudit.inventory.namespaces import discover
from tcaudit.inventory.namespaces import select as select_namespaces
from tcaudit.inventory.programs import ProgramReader, scan_holders
from tcaudit.inventory.scan import entry_from_filter
from tcaudit.kernel import bpf, nsfs
from tcaudit.kernel.abi import PARENT_EGRESS, PARENT_HOOK, PARENT_INGRESS, TC_H_CLSACT, TCX_ATTACH
from tcaudit.kernel.rtnl import (
    RTM_DELLINK,
    RTM_NEWQDISC,
    RTM_NEWTFILTER,
    RTNLGRP_LINK,
    RTNLGRP_TC,
    EventsLost,
    Filter,
    Netlink,
    Notification,
)
from tcaudit.model import (
    Actor,
    Fingerprint,
    Hook,
    Interface,
    Netns,
    Program,
    VendorMatch,
    WatchEvent,
    WatchFinding,
    WatchSummary,
)
from tcaudit.vendors.attribution import attribute

MAX_FINDINGS = 1000
CACHE_LIMIT = 10_000


@dataclass
class _Known:
    """A filter on a hook, as the watch last saw it."""

    filt: Filter
    program: Program | None
    vendor: VendorMatch | None
    added_by: Actor | None


@dataclass
class _Space:
    netns: Netns
    fd: int
    nl: Netlink
    links: dict[int, str] = field(default_factory=dict)
    clsact: set[int] = field(default_factory=set)
    filters: dict[tuple[int, int], dict[tuple[int, int, int, str], _Known]] = field(
        default_factory=dict
    )
    tcx: dict[tuple[int, str], tuple[int, tuple[int, ...]]] = field(default_factory=dict)
    clsact_deleted_at: dict[int, float] = field(default_factory=dict)


Emit = Callable[[WatchEvent | WatchFinding], None]


class Watcher:
    """The watch's state machine; ``run`` drives it, tests may drive ``step``."""

    def __init__(
        self,
        selectors: Sequence[str],
        registry: Sequence[Fingerprint],
        emit: Emit,
        *,
        gap: float = 0.1,
        tcx_interval: float = 0.25,
        rediscover_interval: float = 1.0,
        lab_resolver: Callable[[str], list[str]] | None = None,
        receive_buffer: int = 32 << 20,
    ) -> None:
        self._selectors = list(selectors)
        self._follow = not selectors or "all" in selectors
        self._registry = registry
        self._emit_cb = emit
        self._gap = gap
        self._tcx_interval = tcx_interval
        self._rediscover_interval = rediscover_interval
        self._lab_resolver = lab_resolver
        self._receive_buffer = receive_buffer
        self._spaces: dict[int, _Space] = {}
        self._reader = ProgramReader(holders=False)
        self._holders: dict[int, list[Actor]] = {}
        self._owners: dict[tuple[int, int], Actor] = {}
        self._gaps: dict[tuple[int, int, int, str], float] = {}
        self._piling: set[tuple[int, int, int, str]] = set()
        self.summary = WatchSummary(started=time.time())
        self._next_tcx = 0.0
        self._next_discovery = 0.0
        self._tcx_supported = True

    # -- output -------------------------------------------------------------------------

    def _emit(self, item: WatchEvent | WatchFinding) -> None:
        if isinstance(item, WatchEvent):
            self.summary.events[item.what] += 1
        elif len(self.summary.findings) < MAX_FINDINGS:
            self.summary.findings.append(item)
        else:
            self.summary.findings_dropped += 1
        self._emit_cb(item)

    def _ns_event(self, netns: Netns, what: str, **fields: Any) -> None:
        """Emit an event about a namespace, stamped now (filter events use ``_event``)."""
        self._emit(WatchEvent(time.time(), netns.label, netns.id, what, **fields))

    def _finding(
        self,
        space: _Space,
        kind: str,
        message: str,
        interface: str | None = None,
        hook: str | None = None,
    ) -> None:
        self._emit(WatchFinding(time.time(), kind, message, space.netns.label, interface, hook))

    # -- namespaces -----------------------------------------------------------------------

    def start(self) -> None:
        for netns in select_namespaces(discover(), self._selectors, self._lab_resolver):
            self._add_space(netns, announce=False)
        self.summary.namespaces = len(self._spaces)
        self._next_discovery = time.monotonic() + self._rediscover_interval

    def _add_space(self, netns: Netns, *, announce: bool) -> None:
        try:
            fd = nsfs.open_netns(netns.path)
        except FileNotFoundError:
            return  # gone again before we got to it
        except OSError as err:
            self._unwatched(netns, err)
            return
        try:
            nl = Netlink(fd)
            nl.subscribe(RTNLGRP_TC, RTNLGRP_LINK)  # first subscribe, then read the state
            nl.enlarge_receive_buffer(self._receive_buffer)
        except OSError as err:
            os.close(fd)
            self._unwatched(netns, err)
            return
        space = _Space(netns, fd, nl)
        self._spaces[netns.id] = space
        self._load(space)
        if announce:
            count = sum(len(f) for f in space.filters.values())
            self._ns_event(
                netns, "namespace-added", note=f"{len(space.links)} links, {count} filters"
            )

    def _unwatched(self, netns: Netns, err: OSError) -> None:
        self._ns_event(netns, "namespace-unwatched", note=f"cannot watch it: {err.strerror}")

    def _load(self, space: _Space) -> None:
        """(Re)read a namespace's state; returns nothing, replaces the model."""
        space.links = {link.ifindex: link.name for link in space.nl.links(stats=False)}
        space.clsact = {
            q.ifindex
            for q in space.nl.qdiscs()
            if q.parent == TC_H_CLSACT and q.kind in ("clsact", "ingress")
        }
        space.filters = {}
        for ifindex in space.clsact:
            for parent in (PARENT_INGRESS, PARENT_EGRESS):
                bucket = space.filters.setdefault((ifindex, parent), {})
                for f in space.nl.filters(ifindex, parent):
                    program, vendor = self._describe(space, f)
                    bucket[_key(f)] = _Known(f, program, vendor, None)
        space.tcx = self._tcx_state(space)

    def _close_space(self, space: _Space) -> None:
        space.nl.close()
        os.close(space.fd)
        del self._spaces[space.netns.id]

    def _rediscover(self) -> None:
        known = {ns.id: ns for ns in discover()}
        for netns_id, space in list(self._spaces.items()):
            if netns_id not in known:
                # release it first: our socket must not keep a dead namespace alive
                lost = [k for bucket in space.filters.values() for k in bucket.values()]
                self._close_space(space)
                self._ns_event(
                    space.netns, "namespace-gone", note=f"{len(lost)} filters went with it"
                )
                for item in lost:
                    self._lost(space, item, "its namespace is gone", hook_gone=True)
                self._forget(netns_id)
        if self._follow:
            for netns_id, netns in known.items():
                if netns_id not in self._spaces:
                    self._add_space(netns, announce=True)

    # -- programs and actors --------------------------------------------------------------

    def _bound_caches(self) -> None:
        """Caches follow programs and sockets that come and go: keep them bounded."""
        if self._reader.size() > CACHE_LIMIT:
            self._reader = ProgramReader(holders=False)
        for cache in (self._holders, self._owners):
            if len(cache) > CACHE_LIMIT:
                cache.clear()

    def _describe(self, space: _Space, f: Filter) -> tuple[Program | None, VendorMatch | None]:
        self._bound_caches()
        entry = entry_from_filter(f, self._reader.get)
        program = entry.program
        hook_name = PARENT_HOOK.get(f.parent, "clsact/ingress")
        interface = Interface(space.links.get(f.ifindex, "?"), f.ifindex, None, ())
        vendor = attribute(
            entry, interface, Hook(hook_name, True, (entry,)), space.netns, self._registry
        )
        return program, vendor

    def _actor(self, space: _Space, portid: int, program: Program | None) -> Actor:
        if portid == 0:
            return Actor(None, None, 0, "kernel")
        key = (space.netns.id, portid)
        actor = self._owners.get(key)
        if actor is None or not _still(actor):
            # port ids are reused once a socket closes: re-resolve when the owner is gone
            actor = self._owners[key] = _netlink_owner(space.fd, portid)
        if actor.pid is None and program is not None:
            holders = self._program_holders(program.id)
            if holders:
                return holders[0]
        return actor

    def _program_holders(self, prog_id: int) -> list[Actor]:
        if prog_id not in self._holders:
            self._holders[prog_id] = [
                Actor(h.pid, h.comm, None, "holds the program")
                for h in scan_holders().get(prog_id, [])
            ]
        return self._holders[prog_id]

    # -- events ------------------------------------------------------------------------

    def _event(
        self,
        space: _Space,
        what: str,
        f: Filter,
        known: _Known | None,
        actor: Actor | None,
        previous: _Known | None = None,
        note: str | None = None,
    ) -> WatchEvent:
        return WatchEvent(
            time=time.time(),
            netns=space.netns.label,
            netns_id=space.netns.id,
            what=what,
            interface=space.links.get(f.ifindex, str(f.ifindex)),
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

    def _lost(self, space: _Space, known: _Known, why: str, *, hook_gone: bool = False) -> None:
        self._emit(self._event(space, "filter-lost", known.filt, known, None, note=why))
        if not hook_gone:  # a deleted link or namespace leaves no hook to be without
            self._gap_open(space, known)

    def _forget(self, netns_id: int, ifindex: int | None = None) -> None:
        """Drop the bookkeeping of a namespace (or one of its links) that is gone."""
        for book in (self._gaps, self._piling):
            for key in [k for k in book if k[0] == netns_id and ifindex in (None, k[1])]:
                if isinstance(book, dict):
                    del book[key]
                else:
                    book.discard(key)

    def _gap_open(self, space: _Space, known: _Known) -> None:
        if known.vendor is None:
            return
        f = known.filt
        bucket = space.filters.get((f.ifindex, f.parent), {})
        if any(k.vendor and k.vendor.name == known.vendor.name for k in bucket.values()):
            return
        self._gaps.setdefault(
            (space.netns.id, f.ifindex, f.parent, known.vendor.name), time.monotonic()
        )

    def _gap_close(self, space: _Space, known: _Known) -> None:
        if known.vendor is None:
            return
        f = known.filt
        started = self._gaps.pop((space.netns.id, f.ifindex, f.parent, known.vendor.name), None)
        if started is not None and time.monotonic() - started > self._gap:
            gone = (time.monotonic() - started) * 1000
            self._finding(
                space,
                "hook-gap",
                f"{space.links.get(f.ifindex, '?')} {PARENT_HOOK.get(f.parent)} was left "
                f"without {known.vendor.name}'s filter for {gone:.0f} ms",
                space.links.get(f.ifindex),
                PARENT_HOOK.get(f.parent),
            )

    def _on_filter(self, space: _Space, note: Notification) -> None:
        f = note.filter
        assert f is not None
        if f.block is not None:
            return  # shared blocks: reported through their devices' dumps only
        bucket = space.filters.setdefault((f.ifindex, f.parent), {})
        key = _key(f)
        previous = bucket.get(key)
        interface = space.links.get(f.ifindex, str(f.ifindex))
        hook = PARENT_HOOK.get(f.parent)
        if note.type == RTM_NEWTFILTER:
            if previous is not None and previous.filt == f:
                return  # already in the model (a rescan saw it before its notification)
            program, vendor = self._describe(space, f)
            actor = self._actor(space, note.portid, program)
            known = _Known(f, program, vendor, actor)
            bucket[key] = known
            if previous is None:
                self._emit(self._event(space, "filter-added", f, known, actor))
            else:
                self._emit(self._event(space, "filter-replaced", f, known, actor, previous))
                before = previous.vendor.name if previous.vendor else None
                after = vendor.name if vendor else None
                if before != after:
                    self._finding(
                        space,
                        "vendor-replaced",
                        f"{interface} {hook} pref {f.pref} handle 0x{f.handle:x}: "
                        f"{before or 'an unknown owner'}'s filter replaced by "
                        f"{after or 'an unknown'} program (by {actor.text()})",
                        interface,
                        hook,
                    )
            self._gap_close(space, known)
            self._check_piling(space, f, vendor)
            return
        if previous is None:  # deleted before we saw it (e.g. during a rescan)
            program, vendor = self._describe(space, f)
            previous = _Known(f, program, vendor, None)
        else:
            del bucket[key]
        self._deleted(space, previous, self._actor(space, note.portid, None))

    def _on_bulk_delete(self, space: _Space, note: Notification) -> None:
        """`tc filter del ... pref N` (every handle) or a whole hook flushed: one message
        without options, so the model says which filters went."""
        assert note.bulk_delete is not None
        ifindex, parent, pref, protocol = note.bulk_delete
        bucket = space.filters.get((ifindex, parent), {})
        gone = [
            key
            for key, known in bucket.items()
            if pref in (0, known.filt.pref) and protocol in (0, known.filt.protocol)
        ]
        actor = self._actor(space, note.portid, None)
        for key in gone:
            self._deleted(space, bucket.pop(key), actor)

    def _deleted(self, space: _Space, previous: _Known, actor: Actor) -> None:
        f = previous.filt
        interface = space.links.get(f.ifindex, str(f.ifindex))
        hook = PARENT_HOOK.get(f.parent)
        self._emit(self._event(space, "filter-deleted", f, previous, actor))
        adder = previous.added_by
        if (
            adder is not None
            and adder.pid is not None
            and actor.pid is not None
            and (adder.pid != actor.pid)
        ):
            self._finding(
                space,
                "deleted-by-other",
                f"{interface} {hook} pref {f.pref} handle 0x{f.handle:x} "
                f"({previous.vendor.name if previous.vendor else 'unknown owner'}) "
                f"was deleted by {actor.text()}, not by {adder.text()} who added "
                "it",
                interface,
                hook,
            )
        self._gap_open(space, previous)

    def _check_piling(self, space: _Space, f: Filter, vendor: VendorMatch | None) -> None:
        if vendor is None:
            return
        bucket = space.filters.get((f.ifindex, f.parent), {})
        prefs = sorted(
            {k.filt.pref for k in bucket.values() if k.vendor and k.vendor.name == vendor.name}
        )
        marker = (space.netns.id, f.ifindex, f.parent, vendor.name)
        if len(prefs) >= 2 and marker not in self._piling:
            self._piling.add(marker)
            interface = space.links.get(f.ifindex, "?")
            self._finding(
                space,
                "piling",
                f"{interface} {PARENT_HOOK.get(f.parent)}: {vendor.name}'s programs pile up "
                f"at prefs {', '.join(map(str, prefs))} (old ones left behind, as in "
                "cilium/cilium#36172)",
                interface,
                PARENT_HOOK.get(f.parent),
            )

    def _on_qdisc(self, space: _Space, note: Notification) -> None:
        q = note.qdisc
        assert q is not None
        if q.parent != TC_H_CLSACT or q.kind not in ("clsact", "ingress", ""):
            return
        interface = space.links.get(q.ifindex, str(q.ifindex))
        actor = self._actor(space, note.portid, None)
        now = time.time()
        if note.type == RTM_NEWQDISC:
            space.clsact.add(q.ifindex)
            self._ns_event(
                space.netns, "qdisc-added", interface=interface, kind=q.kind, actor=actor
            )
            deleted = space.clsact_deleted_at.pop(q.ifindex, None)
            if deleted is not None:
                self._finding(
                    space,
                    "clsact-recreated",
                    f"{interface}: clsact recreated {1000 * (now - deleted):.0f} ms "
                    f"after it was deleted (by {actor.text()})",
                    interface,
                )
            return
        space.clsact.discard(q.ifindex)
        lost = _take_filters(space, q.ifindex)
        self._ns_event(
            space.netns,
            "qdisc-deleted",
            interface=interface,
            kind=q.kind,
            actor=actor,
            note=f"{len(lost)} filters lost with it",
        )
        space.clsact_deleted_at[q.ifindex] = now
        if lost:
            owners = sorted({k.vendor.name for k in lost if k.vendor} or {"unknown owners"})
            self._finding(
                space,
                "clsact-deleted",
                f"{interface}: clsact deleted by {actor.text()}: {len(lost)} filters "
                f"lost ({', '.join(owners)})",
                interface,
            )
        for known in lost:
            self._lost(space, known, "its clsact qdisc was deleted")

    def _on_link(self, space: _Space, note: Notification) -> None:
        link = note.link
        assert link is not None
        if note.type != RTM_DELLINK:
            space.links[link.ifindex] = link.name
            return
        lost = _take_filters(space, link.ifindex)
        space.clsact.discard(link.ifindex)
        for direction in ("tcx/ingress", "tcx/egress"):
            space.tcx.pop((link.ifindex, direction), None)
        self._ns_event(
            space.netns,
            "link-deleted",
            interface=link.name,
            note=f"{len(lost)} filters went with it",
        )
        for known in lost:
            self._lost(space, known, f"link {link.name} was deleted", hook_gone=True)
        space.links.pop(link.ifindex, None)
        space.clsact_deleted_at.pop(link.ifindex, None)
        self._forget(space.netns.id, link.ifindex)

    # -- TCX ------------------------------------------------------------------------------

    def _tcx_state(self, space: _Space) -> dict[tuple[int, str], tuple[int, tuple[int, ...]]]:
        state: dict[tuple[int, str], tuple[int, tuple[int, ...]]] = {}
        if not self._tcx_supported:
            return state
        with nsfs.inside_netns(space.fd):
            for ifindex in list(space.links):
                for hook, attach in TCX_ATTACH.items():
                    try:
                        query = bpf.tcx_query(ifindex, attach)
                    except bpf.TcxUnsupported:
                        self._tcx_supported = False
                        return {}
                    except OSError:
                        continue  # the link went away: its RTM_DELLINK tells the story
                    state[(ifindex, hook)] = (query.revision, query.prog_ids)
        return state

    def _poll_tcx(self, space: _Space) -> None:
        fresh = self._tcx_state(space)
        for key, (revision, progs) in fresh.items():
            # a link first seen now (made during the watch) starts from nothing attached
            old_revision, old_progs = space.tcx.get(key, (0, ()))
            if revision == old_revision:
                continue
            ifindex, hook = key
            interface = space.links.get(ifindex, str(ifindex))
            for prog_id in progs:
                if prog_id not in old_progs:
                    program = self._reader.get(prog_id)
                    holders = self._program_holders(prog_id)
                    self._ns_event(
                        space.netns,
                        "tcx-attached",
                        interface=interface,
                        hook=hook,
                        kind="tcx",
                        program=program,
                        actor=holders[0] if holders else None,
                    )
                    parent = PARENT_INGRESS if hook.endswith("ingress") else PARENT_EGRESS
                    legacy = space.filters.get((ifindex, parent), {})
                    if legacy:
                        self._finding(
                            space,
                            "tcx-in-front",
                            f"{interface} {hook}: TCX program {prog_id} "
                            f"({program.name}) now runs before {len(legacy)} clsact "
                            "filters",
                            interface,
                            hook,
                        )
            for prog_id in old_progs:
                if prog_id not in progs:
                    self._ns_event(
                        space.netns,
                        "tcx-detached",
                        interface=interface,
                        hook=hook,
                        kind="tcx",
                        program=self._reader.get(prog_id),
                    )
        space.tcx = fresh

    # -- the loop -------------------------------------------------------------------------

    def _rescan(self, space: _Space) -> None:
        """After an overrun: compare a fresh dump with the model, emit the difference."""
        before = {
            (k, key): known for k, bucket in space.filters.items() for key, known in bucket.items()
        }
        self._load(space)
        after = {
            (k, key): known for k, bucket in space.filters.items() for key, known in bucket.items()
        }
        for ident, known in after.items():
            old = before.get(ident)
            if old is None:
                self._emit(
                    self._event(
                        space,
                        "filter-added",
                        known.filt,
                        known,
                        None,
                        note="seen by the rescan after lost events",
                    )
                )
            elif old.program != known.program:
                self._emit(
                    self._event(
                        space,
                        "filter-replaced",
                        known.filt,
                        known,
                        None,
                        old,
                        note="seen by the rescan after lost events",
                    )
                )
        for ident, known in before.items():
            if ident not in after:
                self._emit(
                    self._event(
                        space,
                        "filter-deleted",
                        known.filt,
                        known,
                        None,
                        note="seen by the rescan after lost events",
                    )
                )

    def step(self, timeout: float) -> None:
        """Wait up to ``timeout`` for notifications and handle everything that is due."""
        sockets = {space.nl.fileno(): space for space in self._spaces.values()}
        ready: list[int] = []
        if sockets:
            # epoll, not select(2): a big node has more than FD_SETSIZE (1024) fds
            with selectors.DefaultSelector() as selector:
                for fileno in sockets:
                    selector.register(fileno, selectors.EVENT_READ)
                ready = [int(key.fd) for key, _ in selector.select(timeout)]
        elif timeout > 0:
            time.sleep(timeout)
        for fileno in ready:
            space = sockets[fileno]
            if space.netns.id not in self._spaces:
                continue
            try:
                notes = space.nl.notifications()
            except EventsLost:
                with contextlib.suppress(EventsLost):
                    space.nl.notifications()  # what is still queued predates the rescan
                self.summary.lost += 1
                self._ns_event(
                    space.netns, "events-lost", note="the socket overran; rescanning the namespace"
                )
                self._finding(
                    space,
                    "events-lost",
                    "netlink notifications were lost; the state was rebuilt by a rescan",
                )
                self._rescan(space)
                continue
            for note in notes:
                if note.filter is not None:
                    self._on_filter(space, note)
                elif note.bulk_delete is not None:
                    self._on_bulk_delete(space, note)
                elif note.qdisc is not None:
                    self._on_qdisc(space, note)
                elif note.link is not None:
                    self._on_link(space, note)
        now = time.monotonic()
        if now >= self._next_tcx:
            for space in list(self._spaces.values()):
                self._poll_tcx(space)
            self._next_tcx = now + self._tcx_interval
        if now >= self._next_discovery:
            self._rediscover()
            self._next_discovery = now + self._rediscover_interval

    def run(self, duration: float) -> WatchSummary:
        """Step until ``duration`` is over; the caller calls ``finish`` (also on Ctrl-C)."""
        end = time.monotonic() + duration
        while (left := end - time.monotonic()) > 0:
            self.step(min(left, 0.05))
        return self.summary

    def finish(self) -> None:
        now = time.monotonic()
        for (netns_id, ifindex, parent, vendor), started in list(self._gaps.items()):
            space = self._spaces.get(netns_id)
            if space is not None and now - started > self._gap:
                interface = space.links.get(ifindex, str(ifindex))
                self._finding(
                    space,
                    "hook-gap",
                    f"{interface} {PARENT_HOOK.get(parent)} is still without {vendor}'s "
                    f"filter ({1000 * (now - started):.0f} ms)",
                    interface,
                    PARENT_HOOK.get(parent),
                )
        self._gaps.clear()
        for space in list(self._spaces.values()):
            with contextlib.suppress(OSError):
                self._close_space(space)
        self.summary.ended = time.time()


def _take_filters(space: _Space, ifindex: int) -> list[_Known]:
    """Remove and return what the model has on both clsact parents of a link."""
    return [
        known
        for parent in (PARENT_INGRESS, PARENT_EGRESS)
        for known in space.filters.pop((ifindex, parent), {}).values()
    ]


def _still(actor: Actor) -> bool:
    """The cached owner of a port id is still the same live process."""
    if actor.pid is None:
        return False
    try:
        with open(f"/proc/{actor.pid}/comm") as comm:
            return comm.read().strip() == actor.comm
    except OSError:
        return False


def _key(f: Filter) -> tuple[int, int, int, str]:
    return (f.pref, f.handle, f.protocol, f.kind)


def _netlink_owner(netns_fd: int, portid: int) -> Actor:
    """The process whose NETLINK_ROUTE socket has ``portid`` in that namespace."""
    inode = None
    try:
        with nsfs.inside_netns(netns_fd), open("/proc/thread-self/net/netlink") as table:
            for line in table.read().splitlines()[1:]:
                fields = line.split()
                if len(fields) >= 10 and fields[1] == "0" and int(fields[2]) == portid:
                    inode = fields[9]
                    break
    except OSError:
        pass
    if inode is None:
        return Actor(None, None, portid, "netlink port id")
    target = f"socket:[{inode}]"
    # the usual case first: the first netlink socket of a process gets its pid as port id
    candidates = [str(portid)] if portid > 0 else []
    candidates += [p for p in os.listdir("/proc") if p.isdigit() and p != str(portid)]
    for pid in candidates:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    with open(f"/proc/{pid}/comm") as comm:
                        return Actor(int(pid), comm.read().strip(), portid, "netlink port id")
            except OSError:
                continue
    return Actor(None, None, portid, "netlink port id")
