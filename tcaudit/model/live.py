"""The live tools' results (probe, watch, clean-up), here so that output renders them
without importing live/: the probe's plan, counts and conclusions, the watch's events,
findings and summary."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tcaudit.model.hooks import Entry, Netns, Program

if TYPE_CHECKING:
    from tcaudit.model.fingerprints import VendorMatch

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
