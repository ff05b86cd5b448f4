"""The scan: namespaces -> links -> hooks -> entries, read-only, in execution order.

Per namespace one netlink socket (opened inside it) dumps links, qdiscs and the filters
of both clsact parents; TCX hooks are queried with BPF_PROG_QUERY from inside the
namespace (ifindexes are per namespace). Programs are read once for the whole scan.
Objects that vanish while we read (churn) are skipped with a warning; the core never
prints, the CLI shows ``Scan.warnings`` on stderr.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from tcaudit.errors import UsageError
from tcaudit.inventory.namespaces import discover, select
from tcaudit.inventory.programs import ProgramReader
from tcaudit.kernel import bpf, nsfs
from tcaudit.kernel.abi import CLSACT_PARENT, TC_H_CLSACT, TCX_ATTACH
from tcaudit.kernel.rtnl import (
    Filter,
    Link,
    Netlink,
    NetlinkError,
    Qdisc,
    protocol_name,
)
from tcaudit.model import (
    HOOKS,
    Entry,
    Hook,
    Host,
    Interface,
    NamespaceScan,
    Netns,
    Program,
    Scan,
)


@dataclass(frozen=True)
class Selection:
    """What to look at: --netns selectors, --dev names, hooks (contracts.md)."""

    netns: tuple[str, ...] = ()
    devs: tuple[str, ...] = ()
    hooks: tuple[str, ...] = HOOKS


def hooks_for(hooks: Iterable[str], direction: str | None) -> tuple[str, ...]:
    """Combine --hook and --direction into the hooks to read, in execution order."""
    chosen = set(hooks) or set(HOOKS)
    unknown = chosen - set(HOOKS)
    if unknown:
        raise UsageError(f"unknown hook {sorted(unknown)[0]!r} (choose from {', '.join(HOOKS)})")
    if direction in ("ingress", "egress"):
        chosen = {h for h in chosen if h.endswith(direction)}
        if not chosen:
            raise UsageError(
                f"--hook {' '.join(sorted(set(hooks)))} and --direction {direction} select no hook"
            )
    return tuple(h for h in HOOKS if h in chosen)


@dataclass
class _RawHook:
    supported: bool
    filters: list[Filter] = field(default_factory=list)
    tcx: bpf.TcxQuery | None = None
    qdisc: str | None = None
    block: int | None = None
    note: str | None = None


@dataclass
class _RawNamespace:
    netns: Netns
    links: list[Link]
    hooks: dict[tuple[int, str], _RawHook]
    block_devices: dict[int, list[str]]


class _Scanner:
    def __init__(self, selection: Selection) -> None:
        self.selection = selection
        self.warnings: list[str] = []
        self.partial = False
        self.tcx_supported = True
        self.tcx_queried = False

    def read_namespace(self, ns: Netns) -> _RawNamespace | None:
        try:
            fd = nsfs.open_netns(ns.path)
        except OSError:
            self.warnings.append(f"namespace {ns.label} vanished before it could be read")
            return None
        try:
            with Netlink(fd) as nl:
                links = nl.links(stats=False)
                if self.selection.devs:
                    links = [link for link in links if link.name in self.selection.devs]
                qdiscs = nl.qdiscs() if links else []
                hooks = self._tcx(fd, ns, links)
                block_devices = self._clsact(nl, ns, links, qdiscs, hooks)
                if nl.interrupted:
                    # the kernel kept marking these dumps interrupted (its tables changed
                    # while read, five times over): say so, never answer as if complete
                    self.partial = True
                    what = ", ".join(sorted(set(nl.interrupted)))
                    self.warnings.append(
                        f"namespace {ns.label}: the kernel's dump of its {what} stayed "
                        "interrupted by changes after 5 tries: this part of the scan may be "
                        "incomplete (partial)"
                    )
        except OSError as err:
            # the namespace died under us: a netlink socket keeps it alive once opened,
            # so this is the moment between discovery and opening the socket
            self.warnings.append(f"namespace {ns.label} could not be read: {err.strerror}")
            return None
        finally:
            os.close(fd)
        return _RawNamespace(netns=ns, links=links, hooks=hooks, block_devices=block_devices)

    def _tcx(self, fd: int, ns: Netns, links: list[Link]) -> dict[tuple[int, str], _RawHook]:
        hooks: dict[tuple[int, str], _RawHook] = {}
        wanted = [h for h in self.selection.hooks if h in TCX_ATTACH]
        if not wanted or not links:
            return hooks
        with nsfs.inside_netns(fd):
            for link in links:
                for hook in wanted:
                    if not self.tcx_supported:
                        hooks[(link.ifindex, hook)] = _RawHook(False, note="kernel has no TCX")
                        continue
                    try:
                        query = bpf.tcx_query(link.ifindex, TCX_ATTACH[hook])
                    except bpf.TcxUnsupported:
                        self.tcx_supported = False
                        self.tcx_queried = True
                        hooks[(link.ifindex, hook)] = _RawHook(False, note="kernel has no TCX")
                        continue
                    except OSError as err:
                        if err.errno not in (errno.ENODEV, errno.ENXIO):
                            raise
                        self.warnings.append(
                            f"{ns.label}: interface {link.name} vanished during the scan"
                        )
                        continue
                    self.tcx_queried = True
                    hooks[(link.ifindex, hook)] = _RawHook(True, tcx=query)
        return hooks

    def _clsact(
        self,
        nl: Netlink,
        ns: Netns,
        links: list[Link],
        qdiscs: list[Qdisc],
        hooks: dict[tuple[int, str], _RawHook],
    ) -> dict[int, list[str]]:
        wanted = [h for h in self.selection.hooks if h in CLSACT_PARENT]
        names = {link.ifindex: link.name for link in links}
        hook_qdisc = {
            q.ifindex: q
            for q in qdiscs
            if q.parent == TC_H_CLSACT and q.kind in ("clsact", "ingress")
        }
        block_devices: dict[int, list[str]] = {}
        for q in hook_qdisc.values():
            for block in (q.ingress_block, q.egress_block):
                if block and q.ifindex in names:
                    block_devices.setdefault(block, []).append(names[q.ifindex])
        block_cache: dict[int, list[Filter]] = {}
        for link in links:
            qdisc = hook_qdisc.get(link.ifindex)
            for hook in wanted:
                if qdisc is None:
                    hooks[(link.ifindex, hook)] = _RawHook(False, note="no clsact qdisc")
                    continue
                if hook == "clsact/egress" and qdisc.kind == "ingress":
                    hooks[(link.ifindex, hook)] = _RawHook(
                        False, qdisc="ingress", note="ingress qdisc has no egress hook"
                    )
                    continue
                block = qdisc.ingress_block if hook == "clsact/ingress" else qdisc.egress_block
                try:
                    if block:
                        if block not in block_cache:
                            block_cache[block] = nl.block_filters(block)
                        filters = block_cache[block]
                    else:
                        filters = nl.filters(link.ifindex, CLSACT_PARENT[hook])
                except NetlinkError as err:
                    if err.errno not in (errno.ENODEV, errno.EINVAL, errno.ENOENT):
                        raise
                    self.warnings.append(f"{ns.label}: {link.name} {hook} vanished during the scan")
                    continue
                hooks[(link.ifindex, hook)] = _RawHook(
                    True, filters=filters, qdisc=qdisc.kind, block=block or None
                )
        return block_devices


def entry_from_filter(f: Filter, program_of: Callable[[int], Program | None]) -> Entry:
    """The one way a clsact filter becomes an Entry, shared by scan and watch.

    A classic-BPF filter is kind ``cbpf`` with its length and never a program; an eBPF
    filter's program comes from ``program_of`` (a dict's ``get`` or a reader's).
    """
    bpf = f.bpf
    kind = f.kind
    program = None
    if bpf is not None and bpf.classic_ops is not None:
        kind = "cbpf"
    elif bpf is not None and bpf.prog_id:
        program = program_of(bpf.prog_id)
    return Entry(
        pref=f.pref,
        handle=f.handle,
        chain=f.chain,
        protocol=protocol_name(f.protocol),
        kind=kind,
        direct_action=bpf.direct_action if bpf else None,
        filter_name=bpf.name if bpf else None,
        program=program,
        has_actions=f.has_actions,
        classid=bpf.classid if bpf else f.classid,
        cbpf_insns=len(bpf.classic_ops) if bpf and bpf.classic_ops is not None else None,
        reachable=f.chain == 0,
    )


def _hook(
    name: str, raw: _RawHook, programs: dict[int, Program], blocks: dict[int, list[str]]
) -> Hook:
    if raw.tcx is not None:
        entries = tuple(
            Entry(
                pref=None,
                handle=None,
                chain=None,
                protocol=None,
                kind="tcx",
                direct_action=None,
                filter_name=None,
                program=programs.get(prog_id),
                link_id=link_id or None,
            )
            for prog_id, link_id in zip(raw.tcx.prog_ids, raw.tcx.link_ids, strict=True)
        )
        return Hook(
            hook=name,
            supported=True,
            entries=entries,
            revision=raw.tcx.revision,
            link_ids=tuple(i for i in raw.tcx.link_ids if i),
        )
    # chain 0 runs; other chains only through goto_chain: list them after, unreachable
    ordered = [f for f in raw.filters if f.chain == 0] + [f for f in raw.filters if f.chain != 0]
    return Hook(
        hook=name,
        supported=raw.supported,
        entries=tuple(entry_from_filter(f, programs.get) for f in ordered),
        qdisc=raw.qdisc,
        block=raw.block,
        block_devices=tuple(blocks.get(raw.block, ())) if raw.block else (),
        note=raw.note,
    )


def scan(
    selection: Selection = Selection(),
    *,
    reader: ProgramReader | None = None,
) -> Scan:
    """Read every selected hook; raises UsageError for selectors or --dev matching nothing."""
    chosen = select(discover(), selection.netns)
    scanner = _Scanner(selection)
    raws = [raw for ns in chosen if (raw := scanner.read_namespace(ns)) is not None]
    if selection.devs:
        seen = {link.name for raw in raws for link in raw.links}
        missing = [dev for dev in selection.devs if dev not in seen]
        if missing:
            raise UsageError(
                f"--dev {missing[0]}: no such interface in the selected namespaces "
                f"({len(chosen)} looked at)"
            )
    reader = reader or ProgramReader()
    prog_ids: list[int] = []
    for raw in raws:
        for hook in raw.hooks.values():
            if hook.tcx is not None:
                prog_ids.extend(hook.tcx.prog_ids)
            prog_ids.extend(f.bpf.prog_id for f in hook.filters if f.bpf and f.bpf.prog_id)
    programs = reader.read_all(prog_ids)
    namespaces = []
    for raw in raws:
        interfaces = []
        for link in raw.links:
            hooks = tuple(
                _hook(name, raw.hooks[(link.ifindex, name)], programs, raw.block_devices)
                for name in selection.hooks
                if (link.ifindex, name) in raw.hooks
            )
            interfaces.append(
                Interface(name=link.name, ifindex=link.ifindex, kind=link.kind, hooks=hooks)
            )
        namespaces.append(NamespaceScan(netns=raw.netns, interfaces=tuple(interfaces)))
    host = Host(
        hostname=socket.gethostname(),
        kernel=os.uname().release,
        tcx=scanner.tcx_supported if scanner.tcx_queried else None,
    )
    return Scan(
        host=host,
        namespaces=tuple(namespaces),
        warnings=tuple(scanner.warnings),
        partial=scanner.partial,
    )
