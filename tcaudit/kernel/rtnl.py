"""The one module that speaks rtnetlink (pyroute2 for link and address changes).

One NETLINK_ROUTE socket per namespace, opened from inside it (``nsfs.inside_netns``)
and used from anywhere afterwards: a netlink socket keeps the namespace it was created
in. This avoids pyroute2's ``IPRoute(netns=NAME)``, which CREATES a missing named
namespace and forks a helper process per namespace (tc-semantics.md, "pyroute2 traps").

The read path (link, qdisc and filter dumps) packs its requests and decodes the few
attributes it needs with ``struct``: pyroute2 0.9.7 leaves TCA_CHAIN, TCA_BPF_ID,
TCA_BPF_TAG and TCA_BPF_FLAGS_GEN undecoded and garbles TCA_BPF_OPS (classic BPF) as a
u32, and its generic decoder plus its package import cost more than a whole
250-namespace scan (docs/design.md has the numbers). Link and address creation use
pyroute2's ``ifinfmsg``/``ifaddrmsg`` classes (nested veth peer attributes), imported on
first use. Attribute numbers follow include/uapi/linux/rtnetlink.h, if_link.h and
pkt_cls.h.

tc writes are create-only (NLM_F_CREATE | NLM_F_EXCL) unless a caller asks for a replace
by name (only lab stand-ins emulating a vendor do that).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tcaudit.kernel import nsfs
from tcaudit.kernel.abi import CLSACT_HANDLE, TC_H_CLSACT, TCM_IFINDEX_MAGIC_BLOCK

# message types and flags (include/uapi/linux/rtnetlink.h, netlink.h)
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
IFA_LOCAL = 2
RTM_NEWQDISC, RTM_DELQDISC, RTM_GETQDISC = 36, 37, 38
RTM_NEWTFILTER, RTM_DELTFILTER, RTM_GETTFILTER = 44, 45, 46
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP = 0x300
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
RTNLGRP_LINK = 1
RTNLGRP_TC = 4
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
_TCMSG = struct.Struct("=BxxxiIII")  # family, ifindex, handle, parent, info

# ifinfomsg attributes (include/uapi/linux/if_link.h)
IFLA_IFNAME = 3
IFLA_LINKINFO = 18
IFLA_STATS64 = 23
IFLA_INFO_KIND = 1
_LINK_ATTRS = frozenset({IFLA_IFNAME, IFLA_LINKINFO, IFLA_STATS64})
_LINK_ATTRS_NO_STATS = frozenset({IFLA_IFNAME, IFLA_LINKINFO})

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
PROTOCOL_NAMES = {
    0x0003: "all",
    0x0800: "ip",
    0x86DD: "ipv6",
    0x0806: "arp",
    0x8100: "802.1q",
    0x88A8: "802.1ad",
    0x8847: "mpls_uc",
    0x88CC: "lldp",
}


# tcmsg top-level attributes (enum in include/uapi/linux/rtnetlink.h)
TCA_KIND = 1
TCA_OPTIONS = 2
TCA_CHAIN = 11
TCA_INGRESS_BLOCK = 13
TCA_EGRESS_BLOCK = 14
# cls_bpf options (include/uapi/linux/pkt_cls.h)
TCA_BPF_ACT = 1
TCA_BPF_CLASSID = 3
TCA_BPF_OPS_LEN = 4
TCA_BPF_OPS = 5
TCA_BPF_FD = 6
TCA_BPF_NAME = 7
TCA_BPF_FLAGS = 8
TCA_BPF_FLAGS_GEN = 9
TCA_BPF_TAG = 10
TCA_BPF_ID = 11
TCA_BPF_FLAG_ACT_DIRECT = 1
TCA_U32_CLASSID = 1
# where each classifier kind keeps its actions (TCA_<KIND>_ACT)
_ACT_ATTR = {
    "bpf": 1,
    "u32": 7,
    "basic": 3,
    "matchall": 2,
    "flower": 3,
    "fw": 4,
    "route": 6,
    "flow": 9,
    "cgroup": 1,
}
NLA_F_NESTED = 1 << 15


def protocol_name(proto: int) -> str:
    return PROTOCOL_NAMES.get(proto, f"0x{proto:04x}")


def protocol_number(name: str) -> int:
    for number, known in PROTOCOL_NAMES.items():
        if known == name:
            return number
    return int(name, 0)


class NetlinkError(OSError):
    """The kernel answered a request with an error (errno set)."""


def _nla(kind: int, payload: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


_NLA = struct.Struct("=HH")


def _parse_nlas(
    data: bytes, offset: int = 0, wanted: frozenset[int] | None = None
) -> dict[int, bytes]:
    """Attributes from ``offset`` on; with ``wanted``, stop once all of those are found
    (a link message carries ~50 attributes, the scan needs three)."""
    attrs: dict[int, bytes] = {}
    end = len(data)
    unpack = _NLA.unpack_from
    missing = len(wanted) if wanted is not None else -1
    while offset + 4 <= end:
        length, kind = unpack(data, offset)
        if length < 4:
            break
        kind &= 0x7FFF  # NLA_F_NESTED / NLA_F_NET_BYTEORDER
        if wanted is None or kind in wanted:
            attrs[kind] = data[offset + 4 : offset + length]
            missing -= 1
            if missing == 0:
                break
        offset += (length + 3) & ~3
    return attrs


@dataclass(frozen=True)
class Link:
    ifindex: int
    name: str
    kind: str | None  # "veth", "vxlan", ...; None for physical/loopback
    up: bool
    rx_packets: int
    tx_packets: int
    rx_bytes: int
    tx_bytes: int


@dataclass(frozen=True)
class Qdisc:
    ifindex: int
    kind: str
    handle: int
    parent: int
    ingress_block: int | None
    egress_block: int | None


@dataclass(frozen=True)
class BpfOptions:
    name: str | None
    prog_id: int | None
    tag: str | None
    direct_action: bool
    flags_gen: int
    classid: int | None
    classic_ops: tuple[tuple[int, int, int, int], ...] | None  # (code, jt, jf, k) for cBPF


@dataclass(frozen=True)
class Filter:
    ifindex: int  # TCM_IFINDEX_MAGIC_BLOCK for filters dumped from a shared block
    parent: int
    block: int | None
    chain: int
    pref: int
    protocol: int
    handle: int
    kind: str
    has_actions: bool
    bpf: BpfOptions | None
    classid: int | None = None  # u32: TCA_U32_CLASSID (a match with one ends the chain)


def _decode_bpf(options: dict[int, bytes]) -> BpfOptions:
    flags = struct.unpack("=I", options[TCA_BPF_FLAGS][:4])[0] if TCA_BPF_FLAGS in options else 0
    ops = None
    if TCA_BPF_OPS in options:
        raw = options[TCA_BPF_OPS]
        # struct sock_filter { __u16 code; __u8 jt; __u8 jf; __u32 k; }
        ops = tuple(struct.unpack_from("=HBBI", raw, i) for i in range(0, len(raw) - 7, 8))
    name = options.get(TCA_BPF_NAME)
    return BpfOptions(
        name=name.split(b"\0", 1)[0].decode(errors="replace") if name is not None else None,
        prog_id=struct.unpack("=I", options[TCA_BPF_ID][:4])[0] if TCA_BPF_ID in options else None,
        tag=options[TCA_BPF_TAG][:8].hex() if TCA_BPF_TAG in options else None,
        direct_action=bool(flags & TCA_BPF_FLAG_ACT_DIRECT),
        flags_gen=(
            struct.unpack("=I", options[TCA_BPF_FLAGS_GEN][:4])[0]
            if TCA_BPF_FLAGS_GEN in options
            else 0
        ),
        classid=(
            struct.unpack("=I", options[TCA_BPF_CLASSID][:4])[0]
            if TCA_BPF_CLASSID in options
            else None
        ),
        classic_ops=ops,
    )


def _u32(attrs: dict[int, bytes], kind: int) -> int | None:
    raw = attrs.get(kind)
    return struct.unpack_from("=I", raw)[0] if raw is not None and len(raw) >= 4 else None


def _asciiz(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode(errors="replace")


def _tcmsg(ifindex: int, handle: int, parent: int, info: int, attrs: bytes = b"") -> bytes:
    return _TCMSG.pack(0, ifindex, handle, parent, info) + attrs


def _link_from(chunk: bytes, wanted: frozenset[int] = _LINK_ATTRS) -> Link:
    _family, _type, index, flags, _change = _IFINFOMSG.unpack_from(chunk, 16)
    attrs = _parse_nlas(chunk, 32, wanted)
    info = _parse_nlas(attrs.get(IFLA_LINKINFO, b""))
    counters = attrs.get(IFLA_STATS64, b"")
    # struct rtnl_link_stats64 starts rx_packets, tx_packets, rx_bytes, tx_bytes
    rx_p, tx_p, rx_b, tx_b = (
        struct.unpack_from("=QQQQ", counters) if len(counters) >= 32 else (0, 0, 0, 0)
    )
    return Link(
        ifindex=index,
        name=_asciiz(attrs.get(IFLA_IFNAME, b"?")),
        kind=_asciiz(info[IFLA_INFO_KIND]) if IFLA_INFO_KIND in info else None,
        up=bool(flags & 1),
        rx_packets=rx_p,
        tx_packets=tx_p,
        rx_bytes=rx_b,
        tx_bytes=tx_b,
    )


def _qdisc_from(chunk: bytes) -> Qdisc:
    _family, ifindex, handle, parent, _info = _TCMSG.unpack_from(chunk, 16)
    attrs = _parse_nlas(chunk, 36)
    return Qdisc(
        ifindex=ifindex,
        kind=_asciiz(attrs.get(TCA_KIND, b"")),
        handle=handle,
        parent=parent,
        ingress_block=_u32(attrs, TCA_INGRESS_BLOCK),
        egress_block=_u32(attrs, TCA_EGRESS_BLOCK),
    )


def _filter_from(chunk: bytes, block: int | None = None) -> Filter | None:
    """A filter message; None for an instance header or a u32 hash table."""
    _family, ifindex, handle, parent, info = _TCMSG.unpack_from(chunk, 16)
    attrs = _parse_nlas(chunk, 36)
    if TCA_OPTIONS not in attrs:
        return None  # the pref/kind header of a classifier instance, no filter
    kind = _asciiz(attrs.get(TCA_KIND, b""))
    if kind == "u32" and handle & 0xFFF == 0:
        return None  # a u32 hash table, not a rule (TC_U32_NODE(handle) == 0)
    options = _parse_nlas(attrs[TCA_OPTIONS])
    if ifindex == -1 and block is None:
        block = parent  # a notification about a shared block's filter
    return Filter(
        ifindex=ifindex & 0xFFFFFFFF,
        parent=parent,
        block=block,
        chain=_u32(attrs, TCA_CHAIN) or 0,
        pref=info >> 16,
        protocol=socket.ntohs(info & 0xFFFF),
        handle=handle,
        kind=kind,
        has_actions=_ACT_ATTR.get(kind, -1) in options,
        bpf=_decode_bpf(options) if kind == "bpf" else None,
        classid=_u32(options, TCA_U32_CLASSID) if kind == "u32" else None,
    )


@dataclass(frozen=True)
class Notification:
    """One rtnetlink multicast message tcaudit cares about."""

    type: int  # RTM_NEWTFILTER, RTM_DELTFILTER, RTM_NEWQDISC, ...
    flags: int  # the request's NLM_F_* flags, as the kernel passes them on
    portid: int  # netlink port id of the socket that made the change (0: the kernel)
    filter: Filter | None = None
    qdisc: Qdisc | None = None
    link: Link | None = None
    # a delete of a whole pref (handle 0) or of a whole hook (pref 0): the kernel sends
    # one message without options; (ifindex, parent, pref, protocol)
    bulk_delete: tuple[int, int, int, int] | None = None


class EventsLost(OSError):
    """The socket overran (ENOBUFS): notifications were dropped; rescan."""


class Netlink:
    """One rtnetlink socket bound to one network namespace."""

    def __init__(self, netns_fd: int | None = None) -> None:
        if netns_fd is None:
            self._sock = self._open()
        else:
            with nsfs.inside_netns(netns_fd):
                self._sock = self._open()
        self._seq = 0

    @staticmethod
    def _open() -> socket.socket:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((0, 0))
        return sock

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport --------------------------------------------------------------------

    def _send(self, mtype: int, flags: int, body: bytes) -> int:
        self._seq += 1
        self._sock.send(_NLMSGHDR.pack(16 + len(body), mtype, flags, self._seq, 0) + body)
        return self._seq

    def _send_pyroute2(self, msg: Any, mtype: int, flags: int) -> int:
        self._seq += 1
        msg["header"]["type"] = mtype
        msg["header"]["flags"] = flags
        msg["header"]["sequence_number"] = self._seq
        msg.encode()
        self._sock.send(msg.data)
        return self._seq

    def _responses(self, seq: int) -> Iterator[tuple[int, int, bytes]]:
        """(type, flags, message bytes) until DONE or the ACK; raises on an error."""
        while True:
            data = self._sock.recv(1 << 17)
            offset = 0
            while offset + 16 <= len(data):
                length, mtype, flags, mseq, _pid = _NLMSGHDR.unpack_from(data, offset)
                if length < 16:
                    return
                chunk = data[offset : offset + length]
                offset += (length + 3) & ~3
                if mseq != seq:
                    continue  # a stale answer to an earlier, abandoned request
                if mtype == NLMSG_DONE:
                    yield mtype, flags, chunk
                    return
                if mtype == NLMSG_ERROR:
                    code = struct.unpack_from("=i", chunk, 16)[0]
                    if code == 0:
                        return  # ACK
                    raise NetlinkError(-code, os.strerror(-code))
                yield mtype, flags, chunk

    def _dump(self, mtype: int, body: bytes, attempts: int = 5) -> list[bytes]:
        """A dump; retried when the kernel marks it interrupted (NLM_F_DUMP_INTR)."""
        out: list[bytes] = []
        for _ in range(attempts):
            seq = self._send(mtype, NLM_F_REQUEST | NLM_F_DUMP, body)
            out = []
            interrupted = False
            for kind, flags, chunk in self._responses(seq):
                interrupted |= bool(flags & NLM_F_DUMP_INTR)
                if kind != NLMSG_DONE:
                    out.append(chunk)
            if not interrupted:
                break
        return out

    def _ack(self, seq: int) -> None:
        for _ in self._responses(seq):
            pass

    def _request(self, mtype: int, flags: int, body: bytes) -> None:
        self._ack(self._send(mtype, NLM_F_REQUEST | NLM_F_ACK | flags, body))

    # -- reading ----------------------------------------------------------------------

    def links(self, *, stats: bool = True) -> list[Link]:
        """Every link; ``stats=False`` skips the counters (and parses a third as much)."""
        wanted = _LINK_ATTRS if stats else _LINK_ATTRS_NO_STATS
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        return [_link_from(chunk, wanted) for chunk in self._dump(RTM_GETLINK, body)]

    def addresses(self) -> list[tuple[int, str, int]]:
        """(ifindex, IPv4 address, prefix length) of every IPv4 address."""
        out = []
        for chunk in self._dump(RTM_GETADDR, _IFADDRMSG.pack(socket.AF_INET, 0, 0, 0, 0)):
            _family, prefixlen, _flags, _scope, index = _IFADDRMSG.unpack_from(chunk, 16)
            attrs = _parse_nlas(chunk, 24)
            if IFA_LOCAL in attrs:
                out.append((index, socket.inet_ntoa(attrs[IFA_LOCAL][:4]), prefixlen))
        return out

    def qdiscs(self) -> list[Qdisc]:
        return [_qdisc_from(chunk) for chunk in self._dump(RTM_GETQDISC, _tcmsg(0, 0, 0, 0))]

    def filters(self, ifindex: int, parent: int) -> list[Filter]:
        """Every filter of every chain on one parent, in the kernel's dump order.

        The dump walks chains, then classifier instances in ascending pref, then (for
        cls_bpf) each instance's list from its head, which is the order they run in.
        A link or qdisc that went away gives an empty list.
        """
        return self._filters(ifindex, parent, None)

    def block_filters(self, block: int) -> list[Filter]:
        """The filters of a shared block (tcm_ifindex = TCM_IFINDEX_MAGIC_BLOCK)."""
        return self._filters(TCM_IFINDEX_MAGIC_BLOCK, block, block)

    def _filters(self, ifindex: int, parent: int, block: int | None) -> list[Filter]:
        # tcm_block_index shares tcm_parent's field; -1 is TCM_IFINDEX_MAGIC_BLOCK
        request = _tcmsg(ifindex if block is None else -1, 0, parent, 0)
        out = []
        for chunk in self._dump(RTM_GETTFILTER, request):
            found = _filter_from(chunk, block)
            if found is not None:
                out.append(found)
        return out

    # -- events -----------------------------------------------------------------------

    def subscribe(self, *groups: int) -> None:
        """Join rtnetlink multicast groups (RTNLGRP_* numbers) on this socket."""
        for group in groups:
            self._sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)

    def events(self, timeout: float) -> list[tuple[int, bytes]]:
        """(message type, bytes) of every notification that arrives within ``timeout``."""
        out: list[tuple[int, bytes]] = []
        self._sock.settimeout(timeout)
        try:
            while True:
                data = self._sock.recv(1 << 17)
                offset = 0
                while offset + 16 <= len(data):
                    length, mtype = struct.unpack_from("=IH", data, offset)
                    if length < 16:
                        break
                    out.append((mtype, data[offset : offset + length]))
                    offset += (length + 3) & ~3
        except TimeoutError:
            pass
        finally:
            self._sock.settimeout(None)
        return out

    def fileno(self) -> int:
        return self._sock.fileno()

    def enlarge_receive_buffer(self, size: int = 32 << 20) -> None:
        """SO_RCVBUFFORCE (root): bursts of tc changes must not overrun the socket
        (tests pass a small size to provoke an overrun)."""
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, 33, size)  # SO_RCVBUFFORCE
        except OSError:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)

    def notifications(self) -> list[Notification]:
        """Every notification waiting on the socket, without blocking.

        Raises EventsLost when the kernel dropped some (ENOBUFS): the caller rescans.
        """
        out: list[Notification] = []
        while True:
            try:
                data = self._sock.recv(1 << 20, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return out
            except OSError as err:
                if err.errno == errno.ENOBUFS:
                    raise EventsLost(errno.ENOBUFS, "netlink notifications lost") from None
                raise
            offset = 0
            while offset + 16 <= len(data):
                length, mtype, flags, _seq, portid = _NLMSGHDR.unpack_from(data, offset)
                if length < 16:
                    break
                chunk = data[offset : offset + length]
                offset += (length + 3) & ~3
                if mtype in (RTM_NEWTFILTER, RTM_DELTFILTER):
                    found = _filter_from(chunk)
                    if found is not None:
                        out.append(Notification(mtype, flags, portid, filter=found))
                    elif mtype == RTM_DELTFILTER:
                        _f, ifindex, handle, parent, info = _TCMSG.unpack_from(chunk, 16)
                        if handle == 0:
                            scope = (ifindex & 0xFFFFFFFF, parent, info >> 16,
                                     socket.ntohs(info & 0xFFFF))
                            out.append(Notification(mtype, flags, portid, bulk_delete=scope))
                elif mtype in (RTM_NEWQDISC, RTM_DELQDISC):
                    out.append(Notification(mtype, flags, portid, qdisc=_qdisc_from(chunk)))
                elif mtype in (RTM_NEWLINK, RTM_DELLINK):
                    out.append(Notification(mtype, flags, portid, link=_link_from(chunk)))

    # -- tc writes (fixtures, lab, probe) ------------------------------------------------

    def add_clsact(
        self, ifindex: int, *, ingress_block: int | None = None, egress_block: int | None = None
    ) -> None:
        """Create a clsact qdisc (optionally on shared blocks); EEXIST if one is there."""
        attrs = _nla(TCA_KIND, b"clsact\0")
        if ingress_block is not None:
            attrs += _nla(TCA_INGRESS_BLOCK, struct.pack("=I", ingress_block))
        if egress_block is not None:
            attrs += _nla(TCA_EGRESS_BLOCK, struct.pack("=I", egress_block))
        body = _tcmsg(ifindex, CLSACT_HANDLE, TC_H_CLSACT, 0, attrs)
        self._request(RTM_NEWQDISC, NLM_F_CREATE | NLM_F_EXCL, body)

    def delete_clsact(self, ifindex: int) -> None:
        """Delete a clsact qdisc with everything on it. Only for namespaces tcaudit made."""
        self._request(RTM_DELQDISC, 0, _tcmsg(ifindex, CLSACT_HANDLE, TC_H_CLSACT, 0))

    def add_bpf_filter(
        self,
        ifindex: int,
        parent: int,
        *,
        pref: int,
        handle: int,
        prog_fd: int,
        name: str,
        protocol: int = ETH_P_ALL,
        direct_action: bool = True,
        classid: int | None = None,
        chain: int | None = None,
        block: int | None = None,
        replace: bool = False,
    ) -> None:
        """Attach a program as a cls_bpf filter (on a shared ``block`` when given).

        Create-only (NLM_F_EXCL): EEXIST when pref+handle is taken. ``replace=True``
        (NLM_F_REPLACE, no EXCL) swaps the program in place the way ``tc filter replace``
        does: only lab stand-ins emulating a vendor may ask for it.
        """
        options = _nla(TCA_BPF_FD, struct.pack("=I", prog_fd))
        options += _nla(TCA_BPF_NAME, name.encode() + b"\0")
        flags_value = TCA_BPF_FLAG_ACT_DIRECT if direct_action else 0
        options += _nla(TCA_BPF_FLAGS, struct.pack("=I", flags_value))
        if classid is not None:
            options += _nla(TCA_BPF_CLASSID, struct.pack("=I", classid))
        attrs = _nla(TCA_KIND, b"bpf\0") + _nla(TCA_OPTIONS | NLA_F_NESTED, options)
        if chain is not None:
            attrs += _nla(TCA_CHAIN, struct.pack("=I", chain))
        info = (pref << 16) | socket.htons(protocol)
        if block is None:
            body = _tcmsg(ifindex, handle, parent, info, attrs)
        else:  # TCM_IFINDEX_MAGIC_BLOCK, tcm_block_index in tcm_parent's place
            body = _tcmsg(-1, handle, block, info, attrs)
        flags = NLM_F_CREATE | (NLM_F_REPLACE if replace else NLM_F_EXCL)
        self._request(RTM_NEWTFILTER, flags, body)

    def delete_filter(
        self, ifindex: int, parent: int, *, pref: int, handle: int, protocol: int, kind: str
    ) -> None:
        """Delete exactly one filter (pref + handle + protocol + kind)."""
        info = (pref << 16) | socket.htons(protocol)
        body = _tcmsg(ifindex, handle, parent, info, _nla(TCA_KIND, kind.encode() + b"\0"))
        self._request(RTM_DELTFILTER, 0, body)

    # -- link writes (fixtures, lab) ----------------------------------------------------

    def add_veth(self, name: str, peer: str, peer_netns_fd: int | None = None) -> None:
        from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

        msg = ifinfmsg()
        peer_attrs: list[tuple[str, Any]] = [("IFLA_IFNAME", peer)]
        if peer_netns_fd is not None:
            peer_attrs.append(("IFLA_NET_NS_FD", peer_netns_fd))
        peer_info = {"attrs": [("VETH_INFO_PEER", {"attrs": peer_attrs})]}
        msg["attrs"] = [
            ("IFLA_IFNAME", name),
            (
                "IFLA_LINKINFO",
                {"attrs": [("IFLA_INFO_KIND", "veth"), ("IFLA_INFO_DATA", peer_info)]},
            ),
        ]
        flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
        self._ack(self._send_pyroute2(msg, RTM_NEWLINK, flags))

    def set_up(self, ifindex: int) -> None:
        self._request(RTM_NEWLINK, 0, _IFINFOMSG.pack(socket.AF_UNSPEC, 0, ifindex, 1, 1))

    def add_address(self, ifindex: int, address: str, prefixlen: int) -> None:
        from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg

        msg = ifaddrmsg()
        msg["family"] = socket.AF_INET
        msg["prefixlen"] = prefixlen
        msg["index"] = ifindex
        msg["attrs"] = [("IFA_LOCAL", address), ("IFA_ADDRESS", address)]
        flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
        self._ack(self._send_pyroute2(msg, RTM_NEWADDR, flags))

    def delete_link(self, ifindex: int) -> None:
        try:
            self._request(RTM_DELLINK, 0, _IFINFOMSG.pack(socket.AF_UNSPEC, 0, ifindex, 0, 0))
        except NetlinkError as err:
            if err.errno != errno.ENODEV:
                raise

    def ifindex(self, name: str) -> int | None:
        """One link looked up by name (RTM_GETLINK with IFLA_IFNAME), None if absent."""
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        body += _nla(IFLA_IFNAME, name.encode() + b"\0")
        try:
            for _kind, _flags, chunk in self._responses(
                self._send(RTM_GETLINK, NLM_F_REQUEST, body)
            ):
                return int(_IFINFOMSG.unpack_from(chunk, 16)[2])
        except NetlinkError as err:
            if err.errno != errno.ENODEV:
                raise
        return None
