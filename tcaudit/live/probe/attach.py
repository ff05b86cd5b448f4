"""`tcaudit probe`: put observers into live tc chains and count what reaches them.

Static analysis says what a classifier CAN return; observers show what actually gets
past it. An observer is bpf/verdict_probe.c attached as a cls_bpf filter that always
returns TC_ACT_UNSPEC (it never changes a packet's fate) and counts packets per slot.

Rules for changing a live chain (contracts.md, "Changing a live hook"):
- create-only (NLM_F_EXCL), never replace; delete only what we added;
- a free pref, or a pref whose filters are all bpf with protocol all (ours is added last,
  so it runs FIRST at that pref and sees exactly what reaches it); never pref 0; never a
  hook without a clsact qdisc on a node (lab and selftest namespaces may create clsact);
- every observer is named tcaudit_probe_<slot> and recorded in a state file BEFORE it is
  added, so `tcaudit probe --cleanup` removes exactly those after a crash or SIGKILL;
- removed in every exit path: normal end, exception, Ctrl-C, SIGTERM (the CLI turns
  SIGTERM into the same unwinding as Ctrl-C).
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tcaudit.errors import UsageError
from tcaudit.kernel import nsfs
from tcaudit.kernel.abi import CLSACT_PARENT
from tcaudit.kernel.rtnl import ETH_P_ALL, Netlink, NetlinkError
from tcaudit.live.observer import MAX_SLOTS, Observer
from tcaudit.live.probe.conclusions import results
from tcaudit.live.probe.naming import PROBE_PREFIX, is_ours
from tcaudit.live.probe.state import ProbeError, StateFile, delete_ours, state_dir
from tcaudit.live.traffic import Endpoint, burst
from tcaudit.model import (
    Entry,
    Hook,
    Netns,
    Placement,
    Plan,
    ProbeResult,
    Scan,
    Skipped,
)
from tcaudit.vendors.cws import DEFAULT_PRIORITY, detect_priority, is_cws

HANDLE_BASE = 0x7CA0  # "tcaudit": easy to spot in `tc filter show`


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
        if e.pref is not None and e.reachable and not is_cws(e.vendor) and not is_ours(e)
    ]


def plan(
    scan: Scan,
    *,
    at: tuple[int, ...] = (),
    priority: int | None = None,
) -> Plan:
    """Where observers go. Default: at the CWS priority in effect, and just before and
    just after every foreign classifier; ``at`` replaces that with explicit prefs."""
    detected, _ = detect_priority(scan)
    cws_pref = priority or detected or DEFAULT_PRIORITY
    placements: list[Placement] = []
    skipped: list[Skipped] = []
    subjects: list[tuple[Netns, str, str, Entry]] = []
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
                tcx_foreign = [e for e in (tcx.entries if tcx else ()) if not is_cws(e.vendor)]
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
                    wanted.setdefault(cws_pref, []).append("cws")
                    for entry in foreign:
                        assert entry.pref is not None
                        subjects.append((ns.netns, interface.name, name, entry))
                        wanted.setdefault(entry.pref + 1, []).append(f"after {entry.pref}")
                        before = entry.pref - 1
                        usable, shares = _usable(hook, before)
                        if not usable or shares:
                            # pref-1 holds other filters (which would run AFTER us and
                            # blur the count): share the entry's own pref instead, where
                            # an observer added last runs first
                            before = entry.pref
                        wanted.setdefault(before, []).append(f"before {entry.pref}")
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
    )


# -- running ---------------------------------------------------------------------------


Tick = Callable[[float, int], None]


@contextlib.contextmanager
def _attached(
    plan: Plan, observer: Observer, state: StateFile
) -> Iterator[list[tuple[Placement, int, int]]]:
    """Attach every observer; detach exactly those in every exit path.

    Each observer is recorded before it is added, and the clean-up walks the RECORDS (not
    the list of confirmed additions): a signal between the kernel adding a filter and
    this code noting it cannot leave an unrecorded observer behind.
    """
    attached: list[tuple[Placement, int, int]] = []
    sockets: dict[int, tuple[int, Netlink]] = {}
    try:
        for slot, placement in enumerate(plan.placements, start=1):
            key = placement.netns.id
            if key not in sockets:
                try:
                    fd = nsfs.open_netns(placement.netns.path)
                except OSError as err:
                    raise ProbeError(
                        f"namespace {placement.netns.label} went away before the "
                        f"observers could be added ({err.strerror})"
                    ) from None
                sockets[key] = (fd, Netlink(fd))
            nl = sockets[key][1]
            parent = CLSACT_PARENT[placement.hook]
            taken = {
                f.handle for f in nl.filters(placement.ifindex, parent) if f.pref == placement.pref
            }
            handle = HANDLE_BASE + slot
            while handle in taken:
                handle += MAX_SLOTS
            name = f"{PROBE_PREFIX}_{os.getpid()}_{slot}"  # the pid: concurrent probes differ
            state.add(
                {
                    "netns_inode": placement.netns.id,
                    "netns_path": placement.netns.path,
                    "netns_label": placement.netns.label,
                    "interface": placement.interface,
                    "ifindex": placement.ifindex,
                    "hook": placement.hook,
                    "pref": placement.pref,
                    "handle": handle,
                    "name": name,
                }
            )
            try:
                nl.add_bpf_filter(
                    placement.ifindex,
                    parent,
                    pref=placement.pref,
                    handle=handle,
                    prog_fd=observer.fd,
                    name=name,
                    protocol=ETH_P_ALL,
                    classid=slot,
                )
            except NetlinkError as err:
                # not added, so not ours: forget the record, or the clean-up below could
                # delete another probe's observer at the same pref and handle
                state.remove(state.records[-1])
                raise ProbeError(
                    f"cannot add an observer on {placement.interface} {placement.hook} pref "
                    f"{placement.pref} in {placement.netns.label}: {err.strerror}"
                ) from None
            attached.append((placement, slot, handle))
        yield attached
    finally:
        errors = []
        for record in reversed(list(state.records)):
            entry = sockets.get(int(str(record["netns_inode"])))
            try:
                if entry is not None:
                    delete_ours(entry[1], record)
                state.remove(record)
            except OSError as err:
                if err.errno in (errno.ENODEV, errno.ENOENT, errno.EINVAL):
                    state.remove(record)  # the link or namespace is gone, and the observer
                else:
                    errors.append(f"{record['name']}: {err}")
        for fd, nl in sockets.values():
            nl.close()
            os.close(fd)
        if not state.records:
            state.discard()
        elif sys.exc_info()[0] is None:  # never mask a Ctrl-C or an error in flight
            raise ProbeError(
                "observers left behind (tcaudit probe --cleanup removes them): " + "; ".join(errors)
            )


def _open(netns: Netns) -> int:
    try:
        return nsfs.open_netns(netns.path)
    except OSError as err:
        raise ProbeError(f"namespace {netns.label} went away during the probe "
                         f"({err.strerror})") from None


def _link_counters(plan: Plan) -> dict[tuple[int, int], tuple[int, int]]:
    """(netns inode, ifindex) -> (rx packets, tx packets) for the observed interfaces."""
    out: dict[tuple[int, int], tuple[int, int]] = {}
    for netns in {p.netns.id: p.netns for p in plan.placements}.values():
        fd = _open(netns)
        try:
            with Netlink(fd) as nl:
                for link in nl.links():
                    out[(netns.id, link.ifindex)] = (link.rx_packets, link.tx_packets)
        finally:
            os.close(fd)
    return out


def _endpoints(plan: Plan) -> tuple[list[Endpoint], list[int]]:
    endpoints: list[Endpoint] = []
    fds: list[int] = []
    seen: set[int] = set()
    for netns in plan.namespaces:
        if netns.id in seen or netns.is_self:
            continue  # never send from the namespace tcaudit runs in
        seen.add(netns.id)
        fd = _open(netns)
        fds.append(fd)
        with Netlink(fd) as nl:
            names = {link.ifindex: link.name for link in nl.links(stats=False)}
            for index, address, prefixlen in nl.addresses():
                if names.get(index) != "lo":
                    endpoints.append(Endpoint(fd, names.get(index, "?"), address, prefixlen))
    return endpoints, fds


def run(
    plan: Plan,
    observer: Observer,
    duration: float,
    *,
    generate: bool = False,
    on_tick: Tick | None = None,
    directory: Path | None = None,
) -> ProbeResult:
    """Attach, count for ``duration`` seconds (sending traffic with ``generate``), detach."""
    if not plan.placements:
        raise UsageError(
            "nothing to observe on the selected hooks (no foreign classifier; name prefs with --at)"
        )
    state = StateFile.create(directory or state_dir())
    endpoints, fds = _endpoints(plan) if generate else ([], [])
    try:
        with _attached(plan, observer, state) as attached:
            start_links = _link_counters(plan)
            start = {slot: observer.counts(slot) for _, slot, _ in attached}
            began = time.monotonic()
            while (elapsed := time.monotonic() - began) < duration:
                if generate:
                    burst(endpoints, count=10)
                if on_tick is not None:
                    seen = sum(
                        observer.counts(slot).packets - start[slot].packets
                        for _, slot, _ in attached
                    )
                    on_tick(elapsed, seen)
                time.sleep(min(0.2, max(0.0, duration - elapsed)))
            if generate:
                time.sleep(0.05)  # let the last burst land
            end = {slot: observer.counts(slot) - start[slot] for _, slot, _ in attached}
            end_links = _link_counters(plan)
            elapsed = time.monotonic() - began
    finally:
        for fd in fds:
            os.close(fd)
    return results(plan, attached, end, start_links, end_links, elapsed)
