"""Putting observers into live chains, counting, and taking them out in every exit path.

An observer is bpf/verdict_probe.c attached as a cls_bpf filter that always returns
TC_ACT_UNSPEC (it never changes a packet's fate) and counts packets per slot; ``run``
attaches one per placement of a plan, reads the counts (and the links' rx/tx counters)
for a while, optionally sending traffic between the selected namespaces, and detaches.

The rules for changing a live chain (the package docstring) that hold here: create-only
(NLM_F_EXCL), never replace; every observer is named tcaudit_probe_<pid>_<slot> and
recorded in the state file BEFORE it is added; delete only what we added (still there,
still ours); removed in every exit path.
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
from tcaudit.inventory.made import made_by_tcaudit
from tcaudit.inventory.observers import state_dir
from tcaudit.kernel import bpf, nsfs
from tcaudit.kernel.abi import CLSACT_PARENT
from tcaudit.kernel.rtnl import ETH_P_ALL, Netlink, NetlinkError
from tcaudit.live.observer import MAX_SLOTS, Observer
from tcaudit.live.probe.conclusions import results
from tcaudit.live.probe.naming import PROBE_PREFIX
from tcaudit.live.probe.state import ProbeError, StateFile, delete_ours
from tcaudit.live.traffic import Endpoint, burst
from tcaudit.model import Netns, Placement, Plan, ProbeResult

HANDLE_BASE = 0x7CA0  # "tcaudit": easy to spot in `tc filter show`


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
    # the program id and tag are what recommend and clean-up recognise an observer by
    program = bpf.prog_info(observer.fd)
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
                    "prog_id": program.id,
                    "tag": program.tag,
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


def nothing_to_observe(plan: Plan) -> str:
    """Why a plan holds no observer, in one line: the hooks' own reasons when every one
    was skipped (a hook without clsact, a shared block ...), else that nothing foreign
    runs there."""
    if plan.skipped:
        reasons = sorted({s.reason for s in plan.skipped})
        first = plan.skipped[0]
        where = f"{first.interface} {first.hook} in {first.netns}"
        more = f" and {len(plan.skipped) - 1} more" if len(plan.skipped) > 1 else ""
        return f"nothing to observe: {where}{more} skipped: {'; '.join(reasons)}"
    return "nothing to observe on the selected hooks (no foreign classifier; name prefs with --at)"


def run(
    plan: Plan,
    observer: Observer,
    duration: float,
    *,
    generate: bool = False,
    generate_on_node: bool = False,
    on_tick: Tick | None = None,
    directory: Path | None = None,
) -> ProbeResult:
    """Attach, count for ``duration`` seconds (sending traffic with ``generate``), detach.

    ``generate`` sends UDP between every address pair of the plan's namespaces: only in
    namespaces tcaudit made (inventory/made.py) unless ``generate_on_node``.
    """
    if not plan.placements:
        raise UsageError(nothing_to_observe(plan))
    if generate and not generate_on_node:
        foreign = [ns.label for ns in plan.namespaces if not ns.is_self and not made_by_tcaudit(ns)]
        if foreign:
            raise UsageError(
                "--generate sends test traffic between every address of the selected "
                f"namespaces, and {', '.join(sorted(foreign)[:5])}"
                f"{' ...' if len(foreign) > 5 else ''} were not made by tcaudit (lab, "
                "selftest): select only those, or add --generate-on-node to send it on "
                "this node's namespaces anyway"
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
