"""The watch's loop: namespaces, their sockets, notifications, TCX polling, rescans.

Per watched namespace: one rtnetlink socket subscribed to RTNLGRP_TC and RTNLGRP_LINK
(opened from inside the namespace BEFORE the initial dump, so nothing falls between)
and the model of its hooks (``events.Space``), and:

- tc notifications turned into events: filter added / replaced / deleted, qdisc added /
  deleted, each with its actor (``actors``);
- filters that vanish without an event of their own (their qdisc, link or namespace is
  deleted) reported as "filter-lost";
- TCX: no netlink events exist, so the mprog revision of every link is polled;
- new namespaces picked up and gone ones noticed (rediscovery once a second, when no
  --netns narrows the selection); a gone namespace's socket is closed at once so tcaudit
  never keeps a dead pod's namespace alive;
- overruns (ENOBUFS) reported as "events-lost", followed by a rescan of that namespace.

The findings' rules are in ``races``. Memory stays bounded: the model holds what is on
the hooks now, events are streamed out, findings are capped, caches are bounded.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import tcaudit.live.watch.races as races
from tcaudit.inventory.namespaces import discover
from tcaudit.inventory.namespaces import select as select_namespaces
from tcaudit.inventory.programs import ProgramReader
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
from tcaudit.live.watch.actors import CACHE_LIMIT, Actors
from tcaudit.live.watch.events import (
    Known,
    Space,
    TcxState,
    bulk_deleted,
    everything,
    filter_event,
    key,
    rescan_events,
    take_filters,
    tcx_changes,
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


@dataclass(kw_only=True)
class _Watched(Space):
    """A namespace being watched: the model of its hooks, its fd and its socket."""

    fd: int
    nl: Netlink


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
        receive_buffer: int = 32 << 20,
    ) -> None:
        self._selectors = list(selectors)
        self._follow = not selectors or "all" in selectors
        self._registry = registry
        self._emit_cb = emit
        self._gap = gap
        self._tcx_interval = tcx_interval
        self._rediscover_interval = rediscover_interval
        self._receive_buffer = receive_buffer
        self._spaces: dict[int, _Watched] = {}
        self._reader = ProgramReader(holders=False)
        self._actors = Actors()
        self._gaps: dict[races.VendorHook, float] = {}  # since when (monotonic)
        self._piling: set[races.VendorHook] = set()  # reported once
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

    def _event(
        self,
        space: _Watched,
        what: str,
        f: Filter,
        known: Known | None,
        actor: Actor | None,
        previous: Known | None = None,
        note: str | None = None,
    ) -> None:
        self._emit(filter_event(space, what, f, known, actor, previous, note, now=time.time()))

    def _finding(self, space: _Watched, race: races.Race | None) -> None:
        if race is not None:
            self._emit(race.finding(time.time(), space.netns.label))

    # -- namespaces -----------------------------------------------------------------------

    def start(self) -> None:
        for netns in select_namespaces(discover(), self._selectors):
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
        space = _Watched(netns, fd=fd, nl=nl)
        self._spaces[netns.id] = space
        self._load(space)
        if announce:
            count = sum(len(f) for f in space.filters.values())
            self._ns_event(
                netns, "namespace-added", note=f"{len(space.links)} links, {count} filters"
            )

    def _unwatched(self, netns: Netns, err: OSError) -> None:
        self._ns_event(netns, "namespace-unwatched", note=f"cannot watch it: {err.strerror}")

    def _load(self, space: _Watched) -> None:
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
                    bucket[key(f)] = Known(f, program, vendor, None)
        space.tcx = self._tcx_state(space)

    def _close_space(self, space: _Watched) -> None:
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
        self._actors.bound()

    def _describe(self, space: _Watched, f: Filter) -> tuple[Program | None, VendorMatch | None]:
        self._bound_caches()
        entry = entry_from_filter(f, self._reader.get)
        program = entry.program
        hook_name = PARENT_HOOK.get(f.parent, "clsact/ingress")
        interface = Interface(space.links.get(f.ifindex, "?"), f.ifindex, None, ())
        vendor = attribute(
            entry, interface, Hook(hook_name, True, (entry,)), space.netns, self._registry
        )
        return program, vendor

    def _actor(self, space: _Watched, portid: int, program: Program | None) -> Actor:
        return self._actors.actor(space.netns.id, space.fd, portid, program)

    # -- filters, qdiscs, links -----------------------------------------------------------

    def _lost(self, space: _Watched, known: Known, why: str, *, hook_gone: bool = False) -> None:
        self._event(space, "filter-lost", known.filt, known, None, note=why)
        if not hook_gone:  # a deleted link or namespace leaves no hook to be without
            self._gap_open(space, known)

    def _forget(self, netns_id: int, ifindex: int | None = None) -> None:
        """Drop the bookkeeping of a namespace (or one of its links) that is gone."""
        for book in (self._gaps, self._piling):
            for k in [k for k in book if k[0] == netns_id and ifindex in (None, k[1])]:
                if isinstance(book, dict):
                    del book[k]
                else:
                    book.discard(k)

    def _gap_open(self, space: _Watched, known: Known) -> None:
        gap = races.left_without(space, known)
        if gap is not None:
            self._gaps.setdefault(gap, time.monotonic())

    def _gap_close(self, space: _Watched, known: Known) -> None:
        gap = races.vendor_hook(space, known)
        if gap is not None and (started := self._gaps.pop(gap, None)) is not None:
            self._finding(space, races.hook_gap(space, gap, time.monotonic() - started, self._gap))

    def _on_filter(self, space: _Watched, note: Notification) -> None:
        f = note.filter
        assert f is not None
        if f.block is not None:
            return  # shared blocks: reported through their devices' dumps only
        bucket = space.filters.setdefault((f.ifindex, f.parent), {})
        previous = bucket.get(key(f))
        if note.type == RTM_NEWTFILTER:
            if previous is not None and previous.filt == f:
                return  # already in the model (a rescan saw it before its notification)
            program, vendor = self._describe(space, f)
            actor = self._actor(space, note.portid, program)
            known = Known(f, program, vendor, actor)
            bucket[key(f)] = known
            if previous is None:
                self._event(space, "filter-added", f, known, actor)
            else:
                self._event(space, "filter-replaced", f, known, actor, previous)
                self._finding(space, races.vendor_replaced(space, previous, known, actor))
            self._gap_close(space, known)
            hook = races.vendor_hook(space, known)
            race = races.piling(space, known, self._piling)
            if hook is not None and race is not None:
                self._piling.add(hook)  # reported once per hook and vendor
                self._finding(space, race)
            return
        if previous is None:  # deleted before we saw it (e.g. during a rescan)
            program, vendor = self._describe(space, f)
            previous = Known(f, program, vendor, None)
        else:
            del bucket[key(f)]
        self._deleted(space, previous, self._actor(space, note.portid, None))

    def _on_bulk_delete(self, space: _Watched, note: Notification) -> None:
        """`tc filter del ... pref N` (every handle) or a whole hook flushed: one message
        without options, so the model says which filters went."""
        assert note.bulk_delete is not None
        ifindex, parent, pref, protocol = note.bulk_delete
        bucket = space.filters.get((ifindex, parent), {})
        gone = bulk_deleted(bucket, pref, protocol)
        actor = self._actor(space, note.portid, None)
        for k in gone:
            self._deleted(space, bucket.pop(k), actor)

    def _deleted(self, space: _Watched, previous: Known, actor: Actor) -> None:
        self._event(space, "filter-deleted", previous.filt, previous, actor)
        self._finding(space, races.deleted_by_other(space, previous, actor))
        self._gap_open(space, previous)

    def _on_qdisc(self, space: _Watched, note: Notification) -> None:
        q = note.qdisc
        assert q is not None
        if q.parent != TC_H_CLSACT or q.kind not in ("clsact", "ingress", ""):
            return
        interface = space.interface(q.ifindex)
        actor = self._actor(space, note.portid, None)
        now = time.time()
        if note.type == RTM_NEWQDISC:
            space.clsact.add(q.ifindex)
            self._ns_event(
                space.netns, "qdisc-added", interface=interface, kind=q.kind, actor=actor
            )
            deleted = space.clsact_deleted_at.pop(q.ifindex, None)
            self._finding(space, races.clsact_recreated(space, q.ifindex, deleted, now, actor))
            return
        space.clsact.discard(q.ifindex)
        lost = take_filters(space, q.ifindex)
        self._ns_event(
            space.netns,
            "qdisc-deleted",
            interface=interface,
            kind=q.kind,
            actor=actor,
            note=f"{len(lost)} filters lost with it",
        )
        space.clsact_deleted_at[q.ifindex] = now
        self._finding(space, races.clsact_deleted(space, q.ifindex, lost, actor))
        for known in lost:
            self._lost(space, known, "its clsact qdisc was deleted")

    def _on_link(self, space: _Watched, note: Notification) -> None:
        link = note.link
        assert link is not None
        if note.type != RTM_DELLINK:
            space.links[link.ifindex] = link.name
            return
        lost = take_filters(space, link.ifindex)
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

    def _tcx_state(self, space: _Watched) -> TcxState:
        state: TcxState = {}
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

    def _poll_tcx(self, space: _Watched) -> None:
        fresh = self._tcx_state(space)
        for (ifindex, hook), attached, detached in tcx_changes(space.tcx, fresh):
            interface = space.interface(ifindex)
            for prog_id in attached:
                program = self._reader.get(prog_id)
                holders = self._actors.holders(prog_id)
                self._ns_event(
                    space.netns,
                    "tcx-attached",
                    interface=interface,
                    hook=hook,
                    kind="tcx",
                    program=program,
                    actor=holders[0] if holders else None,
                )
                self._finding(space, races.tcx_in_front(space, ifindex, hook, prog_id, program))
            for prog_id in detached:
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

    def _rescan(self, space: _Watched) -> None:
        """After an overrun: compare a fresh dump with the model, emit the difference."""
        before = everything(space)
        self._load(space)
        for event in rescan_events(space, before, everything(space), time.time()):
            self._emit(event)

    def step(self, timeout: float) -> None:
        """Wait up to ``timeout`` for notifications and handle everything that is due."""
        sockets = {space.nl.fileno(): space for space in self._spaces.values()}
        ready: list[int] = []
        if sockets:
            # epoll, not select(2): a big node has more than FD_SETSIZE (1024) fds
            with selectors.DefaultSelector() as selector:
                for fileno in sockets:
                    selector.register(fileno, selectors.EVENT_READ)
                ready = [int(k.fd) for k, _ in selector.select(timeout)]
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
                    races.Race(
                        "events-lost",
                        "netlink notifications were lost; the state was rebuilt by a rescan",
                    ),
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
        for gap, started in list(self._gaps.items()):
            space = self._spaces.get(gap[0])
            if space is not None:
                self._finding(
                    space, races.hook_gap(space, gap, now - started, self._gap, still=True)
                )
        self._gaps.clear()
        for space in list(self._spaces.values()):
            with contextlib.suppress(OSError):
                self._close_space(space)
        self.summary.ended = time.time()
