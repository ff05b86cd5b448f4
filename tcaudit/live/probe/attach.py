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
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tcaudit.errors import EnvironmentProblem, UsageError
from tcaudit.inventory.namespaces import discover
from tcaudit.kernel import nsfs
from tcaudit.kernel.abi import CLSACT_PARENT
from tcaudit.kernel.rtnl import ETH_P_ALL, Netlink, NetlinkError
from tcaudit.live.observer import MAX_SLOTS, Observer
from tcaudit.live.probe.conclusions import results
from tcaudit.live.traffic import Endpoint, burst
from tcaudit.model import (
    CleanupReport,
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

PROBE_PREFIX = "tcaudit_probe"
STATE_DIR = "/run/tcaudit/probe"


def state_dir() -> Path:
    """Where running probes record their observers (TCAUDIT_PROBE_STATE_DIR overrides)."""
    return Path(os.environ.get("TCAUDIT_PROBE_STATE_DIR", STATE_DIR))


HANDLE_BASE = 0x7CA0  # "tcaudit": easy to spot in `tc filter show`


def _is_ours(entry: Entry) -> bool:
    return bool(entry.filter_name and entry.filter_name.startswith(PROBE_PREFIX))


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
        if e.pref is not None and e.reachable and not is_cws(e.vendor) and not _is_ours(e)
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


class ProbeError(EnvironmentProblem):
    """The kernel refused a change the probe needs (exit 3), with what to do."""


# -- state file (for --cleanup after SIGKILL) ------------------------------------------


@dataclass
class StateFile:
    path: Path
    records: list[dict[str, object]] = field(default_factory=list)

    @classmethod
    def create(cls, directory: Path) -> StateFile:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ProbeError(
                f"cannot create {directory} for the probe's state file: "
                f"{err.strerror} (set TCAUDIT_PROBE_STATE_DIR)"
            ) from None
        return cls(directory / f"{os.getpid()}-{time.time_ns()}.json")

    def add(self, record: dict[str, object]) -> None:
        self.records.append(record)
        self._write()

    def remove(self, record: dict[str, object]) -> None:
        self.records.remove(record)
        self._write()

    def _write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        doc = {"pid": os.getpid(), "started": _start_time(os.getpid()), "observers": self.records}
        try:
            tmp.write_text(json.dumps(doc))
            tmp.replace(self.path)
        except OSError as err:
            raise ProbeError(
                f"cannot write the probe's state file {self.path}: "
                f"{err.strerror} (set TCAUDIT_PROBE_STATE_DIR)"
            ) from None

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def _start_time(pid: int) -> int | None:
    """A process's start time (clock ticks since boot): tells a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _netns_path(inode: int, fallback: str) -> str | None:
    for ns in discover():
        if ns.id == inode:
            return ns.path
    return fallback if Path(fallback).exists() else None


def _delete_ours(nl: Netlink, record: dict[str, object]) -> bool:
    """Delete the observer a record names, if it is still there AND still ours."""
    ifindex, pref, handle = (
        int(str(record["ifindex"])),
        int(str(record["pref"])),
        int(str(record["handle"])),
    )
    parent = CLSACT_PARENT[str(record["hook"])]
    for f in nl.filters(ifindex, parent):
        if (
            f.pref == pref
            and f.handle == handle
            and f.kind == "bpf"
            and f.bpf is not None
            and f.bpf.name == record["name"]
            and str(record["name"]).startswith(PROBE_PREFIX)
        ):
            nl.delete_filter(
                ifindex, parent, pref=pref, handle=handle, protocol=f.protocol, kind="bpf"
            )
            return True
    return False


def cleanup(directory: Path | None = None) -> CleanupReport:
    """Remove the observers that crashed or killed probes left behind, and nothing else."""
    directory = directory or state_dir()
    removed: list[str] = []
    gone: list[str] = []
    active: list[str] = []
    for path in sorted(directory.glob("*.json")) if directory.exists() else []:
        try:
            state = json.loads(path.read_text())
            pid = int(state.get("pid", 0))
            records = list(state.get("observers", []))
        except (OSError, ValueError, AttributeError, TypeError):
            gone.append(f"{path.name}: not a probe state file, left alone")
            continue
        started = state.get("started")
        if pid and pid != os.getpid() and started is not None and _start_time(pid) == started:
            active.append(f"{path.name} (probe pid {pid} still running)")
            continue
        keep = []
        for record in records:
            try:
                what = (
                    f"{record['name']} on {record['interface']} {record['hook']} "
                    f"pref {record['pref']} handle 0x{int(record['handle']):x} "
                    f"in {record['netns_label']}"
                )
                ns_path = _netns_path(int(record["netns_inode"]), str(record["netns_path"]))
            except (KeyError, TypeError, ValueError):
                gone.append(f"{path.name}: a malformed record, skipped")
                continue
            if ns_path is None:
                gone.append(what + " (namespace gone)")
                continue
            try:
                fd = nsfs.open_netns(ns_path)
            except OSError:
                gone.append(what + " (namespace gone)")
                continue
            try:
                with Netlink(fd) as nl:
                    (removed if _delete_ours(nl, record) else gone).append(what)
            except OSError as err:
                keep.append(record)
                gone.append(f"{what}: could not remove it ({err.strerror}); kept for a retry")
            finally:
                os.close(fd)
        if keep:  # the dead probe's pid and start time stay: it still counts as dead
            path.write_text(json.dumps({"pid": pid, "started": started, "observers": keep}))
        else:
            path.unlink()
    return CleanupReport(tuple(removed), tuple(gone), tuple(active))


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
                    _delete_ours(entry[1], record)
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
