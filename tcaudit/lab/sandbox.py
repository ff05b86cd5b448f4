"""Fixture toolkit: throwaway namespaces, veth pairs, classifiers, TCX programs, traffic.

Tests, benchmarks, the demo and (later) the lab build on it. A ``Sandbox`` records
everything it makes and ``close()`` removes exactly that, in reverse order, even after a
failure half-way. It never touches the interfaces of the namespace it is started from:
every interface it creates lives in a namespace it created.

Writes go through the two gateways: ``netlink`` (links, addresses, qdiscs, filters) and
``bpfsys`` (namespaces, program loads, TCX attach/detach). C classifiers are compiled by
bcc from the package's ``bpf/`` directory; trivial ones ("return N") are loaded as raw
instructions, which takes microseconds instead of a compiler run.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tcaudit.inventory import made
from tcaudit.kernel import bpf, nsfs
from tcaudit.kernel.abi import CLSACT_PARENT, TCX_ATTACH
from tcaudit.kernel.rtnl import ETH_P_ALL, Netlink, NetlinkError
from tcaudit.live import traffic

_COUNTER = itertools.count(1)
# bpf/lab/cilium_like.c: the root first, then the cilium_calls slots 0, 1, ... in order
CILIUM_TREE = (
    "cil_from_container",
    "cil_handle_ipv4",
    "cil_handle_ipv6",
    "cil_policy",
    "cil_ct4",
    "cil_nat4",
    "cil_lb6",
    "cil_icmp",
)


def _lab_source(name: str) -> Path:
    from tcaudit.live.observer import bpf_source

    return bpf_source(f"lab/{name}")


# RFC 2544's benchmarking range: never routed anywhere, and the pairs only ever talk to
# each other inside namespaces the sandbox made
_NET_BASE = (198 << 24) | (18 << 16)


def returning(value: int) -> bytes:
    """Raw eBPF for ``return value``: ``r0 = value; exit`` (mov sign-extends the imm)."""
    return struct.pack("<BBhi", 0xB7, 0, 0, value) + struct.pack("<BBhi", 0x95, 0, 0, 0)


@dataclass
class Namespace:
    name: str
    path: str
    fd: int
    nl: Netlink

    def ifindex(self, dev: str) -> int:
        index = self.nl.ifindex(dev)
        if index is None:
            raise LookupError(f"no interface {dev} in namespace {self.name}")
        return index


@dataclass(frozen=True)
class Program:
    fd: int
    name: str
    id: int


@dataclass(frozen=True)
class VethPair:
    a: Namespace
    a_dev: str
    a_addr: str
    b: Namespace
    b_dev: str
    b_addr: str


@dataclass(frozen=True)
class FilterRef:
    ns: Namespace
    dev: str
    direction: str
    pref: int
    handle: int
    protocol: int


@dataclass(frozen=True)
class TcxRef:
    ns: Namespace
    dev: str
    direction: str
    program: Program
    link_fd: int | None  # None: attached with BPF_PROG_ATTACH (outlives us: detach it)


@dataclass
class Sandbox:
    """Everything one test (or lab scenario) creates; ``close()`` removes all of it."""

    prefix: str = "tcat"
    tag: str = ""  # default: prefix + pid + counter (unique); the lab names its own
    namespaces: list[Namespace] = field(default_factory=list)
    programs: list[Program] = field(default_factory=list)
    filters: list[FilterRef] = field(default_factory=list)
    tcx: list[TcxRef] = field(default_factory=list)
    _bcc: list[Any] = field(default_factory=list)
    _pairs: int = 0

    def __post_init__(self) -> None:
        # pid + counter: unique across concurrent test processes and within one
        self.tag = self.tag or f"{self.prefix}{os.getpid() % 100000}x{next(_COUNTER)}"

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- topology ---------------------------------------------------------------------

    def namespace(self, role: str, *, ipv6: bool = False) -> Namespace:
        name = f"{self.tag}-{role}"
        path = nsfs.create_named_netns(name)
        try:
            made.record(name, path)  # probe --generate may send traffic only in these
            fd = nsfs.open_netns(path)
            ns = Namespace(name=name, path=path, fd=fd, nl=Netlink(fd))
        except BaseException:
            made.forget(path)
            nsfs.delete_named_netns(name)
            raise
        self.namespaces.append(ns)
        if not ipv6:
            # no router solicitations or DAD probes: packet counts in tests stay exact
            with nsfs.inside_netns(fd):
                for scope in ("all", "default"):
                    Path(f"/proc/sys/net/ipv6/conf/{scope}/disable_ipv6").write_text("1")
        lo = ns.nl.ifindex("lo")
        if lo is not None:
            ns.nl.set_up(lo)
        return ns

    def veth(self, a: Namespace, a_dev: str, b: Namespace, b_dev: str) -> VethPair:
        """A veth pair between two sandbox namespaces, up, with a /30 on each end."""
        base = _NET_BASE + 4 * self._pairs
        self._pairs += 1
        a.nl.add_veth(a_dev, b_dev, b.fd)
        a_addr = socket.inet_ntoa(struct.pack("!I", base + 1))
        b_addr = socket.inet_ntoa(struct.pack("!I", base + 2))
        for ns, dev, addr in ((a, a_dev, a_addr), (b, b_dev, b_addr)):
            index = ns.ifindex(dev)
            ns.nl.add_address(index, addr, 30)
            ns.nl.set_up(index)
        return VethPair(a, a_dev, a_addr, b, b_dev, b_addr)

    def clsact(self, ns: Namespace, dev: str) -> None:
        ns.nl.add_clsact(ns.ifindex(dev))

    # -- programs -----------------------------------------------------------------------

    def load_raw(self, insns: bytes, name: str) -> Program:
        fd = bpf.prog_load(insns, name=name)
        return self._keep(fd, name)

    def load_returning(self, value: int, name: str = "tcaudit_ret") -> Program:
        return self.load_raw(returning(value), name)

    def load_c(self, source: Path, function: str, cflags: Sequence[str] = ()) -> Program:
        """Compile C with bcc and load one sched_cls function (needs kernel headers)."""
        from bcc import BPF  # imported here: scan and friends must work without bcc

        compiled = BPF(src_file=str(source).encode(), cflags=list(cflags))
        self._bcc.append(compiled)
        fn = compiled.load_func(function.encode(), BPF.SCHED_CLS)
        # bcc owns this fd; keep our own so the program outlives bcc's cleanup order
        return self._keep(os.dup(fn.fd), function)

    def load_c_many(
        self, source: Path, functions: Sequence[str], cflags: Sequence[str] = ()
    ) -> tuple[Any, dict[str, Program]]:
        """Compile once, load several functions; returns bcc's BPF object (for its maps)."""
        from bcc import BPF

        compiled = BPF(src_file=str(source).encode(), cflags=list(cflags))
        self._bcc.append(compiled)
        loaded = {}
        for function in functions:
            fn = compiled.load_func(function.encode(), BPF.SCHED_CLS)
            loaded[function] = self._keep(os.dup(fn.fd), function)
        return compiled, loaded

    def load_tree(
        self, source: Path, functions: Sequence[str], array: str, slots: Mapping[str, int]
    ) -> tuple[dict[str, Program], int]:
        """Compile once, load ``functions`` and put ``slots`` (function -> slot) into the
        prog array ``array``: a tail-call tree. Returns the programs and the array's fd
        (owned by bcc: pin it to keep the slots past this process)."""
        compiled, programs = self.load_c_many(source, functions)
        table_fd = int(compiled[array.encode()].get_fd())
        for name, slot in slots.items():
            bpf.map_update(
                table_fd, struct.pack("=I", slot), struct.pack("=I", programs[name].fd)
            )
        return programs, table_fd

    def load_cilium_tree(self) -> tuple[dict[str, Program], int]:
        """bpf/lab/cilium_like.c: cil_from_container tail-calling through cilium_calls."""
        return self.load_tree(
            _lab_source("cilium_like.c"),
            CILIUM_TREE,
            "cilium_calls",
            {name: slot for slot, name in enumerate(CILIUM_TREE[1:])},
        )

    def release(self) -> None:
        """Stop tracking everything without removing it (the lab keeps it after exit)."""
        for ns in self.namespaces:
            ns.nl.close()
            os.close(ns.fd)
        for prog in self.programs:
            with contextlib.suppress(OSError):
                os.close(prog.fd)
        for tcx in self.tcx:
            if tcx.link_fd is not None:
                raise RuntimeError(
                    "a TCX link would end with this process: attach with "
                    "link=False (BPF_PROG_ATTACH) to keep it"
                )
        self.namespaces.clear()
        self.programs.clear()
        self.filters.clear()
        self.tcx.clear()

    def count(self, prog: Program, map_name: str = "seen") -> int:
        """Slot 0 of a u64 array map of ``prog`` (the counters of bpf/lab/count.c)."""
        for map_id in bpf.prog_info(prog.fd).map_ids:
            fd = bpf.map_fd_by_id(map_id)
            try:
                if bpf.map_info(fd).name == map_name:
                    value = bpf.map_lookup(fd, struct.pack("=I", 0), 8)
                    return struct.unpack("=Q", value)[0] if value else 0
            finally:
                os.close(fd)
        raise LookupError(f"program {prog.name} has no map named {map_name}")

    def _keep(self, fd: int, name: str) -> Program:
        prog = Program(fd=fd, name=name, id=bpf.prog_info(fd).id)
        self.programs.append(prog)
        return prog

    # -- attaching --------------------------------------------------------------------

    def attach(
        self,
        ns: Namespace,
        dev: str,
        direction: str,
        prog: Program,
        *,
        pref: int,
        handle: int,
        name: str | None = None,
        direct_action: bool = True,
        protocol: int = ETH_P_ALL,
        replace: bool = False,
    ) -> FilterRef:
        ns.nl.add_bpf_filter(
            ns.ifindex(dev),
            CLSACT_PARENT["clsact/" + direction],
            pref=pref,
            handle=handle,
            prog_fd=prog.fd,
            name=name or prog.name,
            protocol=protocol,
            direct_action=direct_action,
            replace=replace,
        )
        ref = FilterRef(ns, dev, direction, pref, handle, protocol)
        self.filters.append(ref)
        return ref

    def detach(self, ref: FilterRef) -> None:
        ref.ns.nl.delete_filter(
            ref.ns.ifindex(ref.dev),
            CLSACT_PARENT["clsact/" + ref.direction],
            pref=ref.pref,
            handle=ref.handle,
            protocol=ref.protocol,
            kind="bpf",
        )
        self.filters.remove(ref)

    def tcx_attach(
        self, ns: Namespace, dev: str, direction: str, prog: Program, *, link: bool = True
    ) -> TcxRef:
        """Attach through BPF_LINK_CREATE (link=True) or BPF_PROG_ATTACH (link=False)."""
        with nsfs.inside_netns(ns.fd):
            index = socket.if_nametoindex(dev)
            attach = TCX_ATTACH["tcx/" + direction]
            if link:
                link_fd: int | None = bpf.tcx_link_create(prog.fd, index, attach)
            else:
                bpf.tcx_prog_attach(prog.fd, index, attach)
                link_fd = None
        ref = TcxRef(ns, dev, direction, prog, link_fd)
        self.tcx.append(ref)
        return ref

    def tcx_detach(self, ref: TcxRef) -> None:
        if ref.link_fd is not None:
            os.close(ref.link_fd)  # the last fd on a bpf_link detaches it
        else:
            # the device may be gone already, taking the attachment with it
            with nsfs.inside_netns(ref.ns.fd), contextlib.suppress(OSError):
                index = socket.if_nametoindex(ref.dev)
                bpf.tcx_prog_detach(ref.program.fd, index, TCX_ATTACH["tcx/" + ref.direction])
        self.tcx.remove(ref)

    # -- traffic ------------------------------------------------------------------------

    def send_udp(
        self, src: Namespace, dst_addr: str, count: int = 10, port: int = 9, size: int = 64
    ) -> int:
        """Send ``count`` UDP datagrams from inside ``src``; returns how many were sent."""
        return traffic.send_udp(src.fd, dst_addr, count=count, size=size, port=port)

    # -- teardown -----------------------------------------------------------------------

    def close(self) -> None:
        """Remove everything this sandbox made; keep going past individual failures."""
        errors: list[str] = []
        for tcx in list(self.tcx):
            try:
                self.tcx_detach(tcx)
            except OSError as err:
                errors.append(f"tcx {tcx.dev}: {err}")
        self.filters.clear()  # they go with their namespaces
        for ns in reversed(self.namespaces):
            ns.nl.close()
            os.close(ns.fd)
            try:
                made.forget(ns.path)
                nsfs.delete_named_netns(ns.name)
            except OSError as err:
                errors.append(f"netns {ns.name}: {err}")
        self.namespaces.clear()
        for prog in self.programs:
            with contextlib.suppress(OSError):
                os.close(prog.fd)
        self.programs.clear()
        for compiled in self._bcc:
            with contextlib.suppress(Exception):
                compiled.cleanup()
        self._bcc.clear()
        if errors:
            raise RuntimeError("sandbox cleanup incomplete: " + "; ".join(errors))


@contextlib.contextmanager
def sandbox(prefix: str = "tcat") -> Iterator[Sandbox]:
    box = Sandbox(prefix=prefix)
    try:
        yield box
    finally:
        box.close()


def leftover_namespaces(prefix: str) -> list[str]:
    """Named namespaces whose name starts with ``prefix`` (for cleanup checks)."""
    try:
        return sorted(n for n in os.listdir("/run/netns") if n.startswith(prefix))
    except FileNotFoundError:
        return []


__all__ = [
    "FilterRef",
    "Namespace",
    "NetlinkError",
    "Program",
    "Sandbox",
    "TcxRef",
    "VethPair",
    "leftover_namespaces",
    "returning",
    "sandbox",
]
