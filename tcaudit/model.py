"""The data model: the dataclasses that flow from the scan to the renderers.

The bottom layer, imported by every other (it imports no other tcaudit module): the
inventory (namespaces, interfaces, hooks, entries, programs, verdicts), the vendor
registry's fingerprints and an entry's attribution, and the live tools' results.

Field names are the JSON names of docs/json.md (schema "tcaudit/scan/v1"), so the JSON
renderer is a straight walk; only ``handle`` (kept as an int here) becomes a hex string.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

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


# --- vendors: the registry's fingerprints and an entry's attribution ---------------------


@dataclass(frozen=True)
class Matchers:
    """What a vendor's entries look like; every pattern is matched with ``re.fullmatch``."""

    filter_name: tuple[re.Pattern[str], ...] = ()
    program_name: tuple[re.Pattern[str], ...] = ()
    map_name: tuple[re.Pattern[str], ...] = ()
    holder_comm: tuple[re.Pattern[str], ...] = ()
    interface: tuple[re.Pattern[str], ...] = ()
    hook: tuple[str, ...] = ()  # empty: any hook
    netns: str = "any"  # "host" | "pod" | "any"
    unverified: tuple[str, ...] = ()  # matcher kinds that are guesses

    def patterns(self, kind: str) -> tuple[re.Pattern[str], ...]:
        value: tuple[re.Pattern[str], ...] = getattr(self, kind)
        return value


@dataclass(frozen=True)
class Fingerprint:
    """One vendor version range as the registry describes it."""

    id: str
    vendor: str
    versions: str | None
    certainty: str
    sources: tuple[str, ...]
    attach: str  # "clsact" | "tcx"
    default_pref: int | None  # None: the kernel picks (or TCX: no pref)
    default_handle: int | None
    pref_fixed: bool
    accept_verdict: str | None  # TC_ACT_* / TCX_* name
    other_verdicts: tuple[str, ...]
    tail_calls: bool | None
    knob: str | None  # the exact setting that moves its priority
    knob_note: str | None
    habits: tuple[str, ...]
    notes: tuple[str, ...]
    matchers: Matchers

    @property
    def label(self) -> str:
        return f"{self.vendor} {self.versions}" if self.versions else self.vendor


@dataclass(frozen=True)
class VendorMatch:
    name: str
    version_hint: str | None
    confidence: str  # "high" | "medium" | "low"
    evidence: tuple[str, ...]
    fingerprint: Fingerprint  # the best one (merged when several tie)


# --- live tools' results (probe, watch), so output renders them without importing live --


@dataclass(frozen=True)
class Counts:
    packets: int = 0
    bytes: int = 0
    ipv4: int = 0
    ipv6: int = 0
    arp: int = 0
    other: int = 0

    def __sub__(self, other: Counts) -> Counts:
        return Counts(*(a - b for a, b in zip(self.astuple(), other.astuple(), strict=True)))

    def astuple(self) -> tuple[int, ...]:
        return (self.packets, self.bytes, self.ipv4, self.ipv6, self.arp, self.other)


@dataclass(frozen=True)
class Placement:
    netns: Netns
    interface: str
    ifindex: int
    hook: str  # clsact/ingress | clsact/egress
    pref: int
    roles: tuple[str, ...]  # "cws", "before <pref>", "after <pref>", "at"
    shares: bool  # the pref holds other (bpf, protocol all) filters: we run first there


@dataclass(frozen=True)
class Skipped:
    netns: str
    interface: str
    hook: str
    reason: str


@dataclass(frozen=True)
class Plan:
    placements: tuple[Placement, ...]
    skipped: tuple[Skipped, ...]
    subjects: tuple[tuple[Netns, str, str, Entry], ...]  # foreign classifiers to judge
    priority: int
    namespaces: tuple[Netns, ...] = ()  # every selected one (--generate sends between them)
    notes: tuple[str, ...] = ()  # how the placement differs from the default, and why


@dataclass(frozen=True)
class CleanupReport:
    removed: tuple[str, ...]
    gone: tuple[str, ...]  # recorded but no longer there (namespace or filter gone)
    active: tuple[str, ...]  # state files of probes still running (left alone)


@dataclass(frozen=True)
class ObserverResult:
    placement: Placement
    slot: int
    handle: int
    counts: Counts
    reference_packets: int | None
    reference: str  # "observer at pref N", "rx packets of IF", ...
    pass_ratio: float | None


@dataclass(frozen=True)
class Conclusion:
    netns: str
    interface: str
    hook: str
    entry: Entry
    before: int | None
    after: int | None
    ends_chain_ratio: float | None  # share of packets that did not get past it
    agrees: bool | None  # with the static verdict; None: no traffic to judge
    message: str


@dataclass(frozen=True)
class ProbeResult:
    plan: Plan
    duration: float
    observers: tuple[ObserverResult, ...]
    conclusions: tuple[Conclusion, ...]
    notes: tuple[str, ...]


@dataclass(frozen=True)
class Actor:
    pid: int | None
    comm: str | None
    portid: int | None
    how: str  # "netlink port id", "holds the program", "kernel", "unknown"

    def text(self) -> str:
        if self.pid is not None:
            return f"{self.comm}[{self.pid}]"
        if self.portid:
            return f"netlink port {self.portid} (process gone)"
        return self.how


@dataclass(frozen=True)
class WatchEvent:
    time: float
    netns: str  # label
    netns_id: int
    what: str  # filter-added | filter-replaced | filter-deleted | filter-lost | qdisc-added
    # | qdisc-deleted | tcx-attached | tcx-detached | link-deleted | namespace-added
    # | namespace-gone | events-lost
    interface: str | None = None
    hook: str | None = None
    pref: int | None = None
    handle: int | None = None
    kind: str | None = None
    filter_name: str | None = None
    program: Program | None = None
    vendor: VendorMatch | None = None
    actor: Actor | None = None
    previous_program: Program | None = None
    previous_vendor: VendorMatch | None = None
    note: str | None = None


@dataclass(frozen=True)
class WatchFinding:
    time: float
    kind: str  # vendor-replaced | deleted-by-other | clsact-deleted | clsact-recreated |
    # hook-gap | piling | tcx-in-front | events-lost
    message: str
    netns: str
    interface: str | None = None
    hook: str | None = None


@dataclass
class WatchSummary:
    started: float
    ended: float = 0.0
    events: Counter[str] = field(default_factory=Counter)
    findings: list[WatchFinding] = field(default_factory=list)
    findings_dropped: int = 0
    lost: int = 0
    namespaces: int = 0
