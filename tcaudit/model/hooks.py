"""The inventory's data: namespaces, interfaces, hooks, entries, programs, verdicts, and
a scan of them (``map_entries`` rebuilds one with every entry replaced).

Field names are the JSON names of docs/json.md (schema "tcaudit/scan/v1"), so the JSON
renderer is a straight walk; only ``handle`` (kept as an int here) becomes a hex string.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # an entry's attribution; the registry's types need nothing from here
    from tcaudit.model.fingerprints import VendorMatch

HOOKS = ("tcx/ingress", "clsact/ingress", "tcx/egress", "clsact/egress")  # execution order
HOOK_DIRECTION = {hook: hook.split("/")[1] for hook in HOOKS}


@dataclass(frozen=True)
class Netns:
    """One network namespace, identified by its nsfs inode."""

    id: int  # inode
    dev: int
    names: tuple[str, ...]  # named netns (/run/netns, /var/run/netns)
    pids: tuple[int, ...]  # processes living in it (sorted)
    label: str  # the best human name: netns name, else "pid 123 (comm) container abc"
    path: str  # a path that opens it (/run/netns/NAME, /proc/PID/ns/net)
    is_self: bool = False  # the namespace tcaudit runs in
    container_id: str | None = None
    pod: str | None = None  # Kubernetes pod name, when readable without an API server
    pod_uid: str | None = None


@dataclass(frozen=True)
class MapRef:
    id: int
    name: str | None
    type: str | None


@dataclass(frozen=True)
class Holder:
    pid: int
    comm: str
    exe: str | None = None  # basename of /proc/PID/exe (None: unreadable)


@dataclass(frozen=True)
class Program:
    """A loaded BPF program; everything but ``id`` is None when it could not be read."""

    id: int
    name: str | None
    tag: str | None
    type: str | None
    insns: int | None  # xlated instruction count
    maps: tuple[MapRef, ...]
    holders: tuple[Holder, ...]
    btf_id: int | None
    loaded_at: str | None  # ISO 8601, UTC
    uid: int | None
    error: str | None = None  # why the fields above are null


@dataclass(frozen=True)
class Verdict:
    """What an entry can do to a packet, from its bytecode (basis "static")."""

    possible: tuple[int, ...] | None  # raw signed 32-bit return values; None = unknown
    effective: tuple[str, ...] | None  # "accept", "continue", "drop", "redirect", ...
    basis: str  # "static"
    reason: str | None  # why unknown, or what the answer depends on
    ranges: tuple[tuple[int, int], ...] | None = None
    """Sorted disjoint inclusive [lo, hi] signed 32-bit ranges of every raw value
    (None = unknown); ``possible`` lists them when there are at most 64."""

    def may_return(self, value: int) -> bool | None:
        """Whether ``value`` is among the raw values; None when unknown."""
        if self.possible is not None:
            return value in self.possible
        if self.ranges is None:
            return None
        return any(lo <= value <= hi for lo, hi in self.ranges)

    @property
    def ends_chain(self) -> bool | None:
        """True if it can end the chain (anything but "continue"); None when unknown."""
        if self.effective is None:
            return None
        return any(word != "continue" for word in self.effective)


@dataclass(frozen=True)
class Entry:
    """One thing that runs on a hook: a tc filter or a TCX program."""

    pref: int | None  # None for TCX
    handle: int | None
    chain: int | None
    protocol: str | None
    kind: str  # "bpf", "cbpf" (classic BPF bytecode), "u32", ..., or "tcx"
    direct_action: bool | None
    filter_name: str | None
    program: Program | None
    has_actions: bool = False
    classid: int | None = None
    link_id: int | None = None  # TCX: the bpf_link holding it (None: BPF_PROG_ATTACH)
    cbpf_insns: int | None = None  # classic BPF: instruction count
    reachable: bool = True  # False for chains other than 0 (entered only by goto_chain)
    verdict: Verdict | None = None  # filled in by analysis.add_verdicts
    vendor: VendorMatch | None = None  # filled in by vendors.add_vendors
    # one of tcaudit's own probe observers: known by the probe's state records
    # (inventory/observers.py), never by its name
    observer: bool = False


@dataclass(frozen=True)
class Hook:
    hook: str  # one of HOOKS
    supported: bool  # False: TCX missing from the kernel, or no clsact/ingress qdisc
    entries: tuple[Entry, ...]  # in execution order
    qdisc: str | None = None  # clsact hooks: "clsact" / "ingress" / None
    block: int | None = None  # shared block index, when the qdisc uses one
    block_devices: tuple[str, ...] = ()
    revision: int | None = None  # TCX mprog revision
    link_ids: tuple[int, ...] = ()
    note: str | None = None


@dataclass(frozen=True)
class Interface:
    name: str
    ifindex: int
    kind: str | None
    hooks: tuple[Hook, ...]

    @property
    def entry_count(self) -> int:
        return sum(len(h.entries) for h in self.hooks)


@dataclass(frozen=True)
class NamespaceScan:
    netns: Netns
    interfaces: tuple[Interface, ...]


@dataclass(frozen=True)
class Host:
    hostname: str
    kernel: str
    tcx: bool | None  # the kernel answers TCX queries; None: no TCX hook was queried


@dataclass(frozen=True)
class Scan:
    host: Host
    namespaces: tuple[NamespaceScan, ...]
    warnings: tuple[str, ...] = field(default=())
    partial: bool = False  # a netlink dump stayed interrupted: some hooks may be missing


def map_entries(
    scan: Scan, fn: Callable[[Entry, Interface, Hook, Netns], Entry]
) -> Scan:
    """The same scan with every entry replaced by ``fn(entry, interface, hook, netns)``.

    Containers without entries are reused as they are; the others are rebuilt with their
    constructors (``dataclasses.replace`` costs four times as much, and a node-sized scan
    has thousands of hooks).
    """

    def hook(h: Hook, i: Interface, n: Netns) -> Hook:
        if not h.entries:
            return h
        return Hook(h.hook, h.supported, tuple(fn(e, i, h, n) for e in h.entries), h.qdisc,
                    h.block, h.block_devices, h.revision, h.link_ids, h.note)

    def interface(i: Interface, n: Netns) -> Interface:
        if not i.entry_count:
            return i
        return Interface(i.name, i.ifindex, i.kind, tuple(hook(h, i, n) for h in i.hooks))

    namespaces = tuple(
        NamespaceScan(ns.netns, tuple(interface(i, ns.netns) for i in ns.interfaces))
        for ns in scan.namespaces
    )
    return Scan(scan.host, namespaces, scan.warnings, scan.partial)
