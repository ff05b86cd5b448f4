"""The pure half of rtnetlink: message layouts, attribute numbers, and the decoders.

No socket and no system call here, so every function can be fed arbitrary bytes (the
hostile-input tests do: recorded dumps, truncated and mutated). Whatever the bytes, a
decoder returns a record or raises ``DecodeError`` (one line, exit 3), never
``struct.error`` or ``IndexError``. ``rtnl`` owns the socket and sends the requests.
Attribute numbers follow include/uapi/linux/rtnetlink.h, netlink.h, if_link.h and
pkt_cls.h.
"""

from __future__ import annotations

import functools
import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from tcaudit.errors import EnvironmentProblem

# message types and flags (include/uapi/linux/rtnetlink.h, netlink.h)
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
IFA_LOCAL = 2
RTM_NEWQDISC, RTM_DELQDISC, RTM_GETQDISC = 36, 37, 38
RTM_NEWTFILTER, RTM_DELTFILTER, RTM_GETTFILTER = 44, 45, 46
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP_INTR = 0x10
NLM_F_CAPPED = 0x100  # on NLMSG_ERROR: the request's payload is not echoed
NLM_F_ACK_TLVS = 0x200  # on NLMSG_ERROR: extended ACK attributes follow
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
NLMSGERR_ATTR_MSG = 1
NLM_F_DUMP = 0x300
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
RTNLGRP_LINK = 1
RTNLGRP_TC = 4
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
TCMSG = struct.Struct("=BxxxiIII")  # family, ifindex, handle, parent, info

# ifinfomsg attributes (include/uapi/linux/if_link.h)
IFLA_IFNAME = 3
IFLA_LINKINFO = 18
IFLA_STATS64 = 23
IFLA_INFO_KIND = 1
LINK_ATTRS = frozenset({IFLA_IFNAME, IFLA_LINKINFO, IFLA_STATS64})
LINK_ATTRS_NO_STATS = frozenset({IFLA_IFNAME, IFLA_LINKINFO})

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
NLA_F_NET_BYTEORDER = 1 << 14
NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xFFFF


def protocol_name(proto: int) -> str:
    return PROTOCOL_NAMES.get(proto, f"0x{proto:04x}")


def protocol_number(name: str) -> int:
    for number, known in PROTOCOL_NAMES.items():
        if known == name:
            return number
    return int(name, 0)


class NetlinkError(OSError):
    """The kernel answered a request with an error (errno set)."""


class DecodeError(EnvironmentProblem):
    """A netlink message tcaudit cannot decode: truncated, or shorter than its layout."""


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _decoder(what: str) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """A decoder that turns a payload too short for its layout into ``DecodeError``."""

    def wrap(fn: Callable[_P, _R]) -> Callable[_P, _R]:
        @functools.wraps(fn)
        def decode(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            try:
                return fn(*args, **kwargs)
            except (struct.error, IndexError, KeyError) as err:
                raise DecodeError(f"malformed {what} message from the kernel ({err})") from None

        return decode

    return wrap


def nla(kind: int, payload: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


_NLA = struct.Struct("=HH")


def parse_nlas(
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
        if length < 4 or offset + length > end:
            raise DecodeError(
                f"malformed netlink attribute: {length} bytes at offset {offset} of {end}"
            )
        kind &= NLA_TYPE_MASK  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER
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
        name=_asciiz(name) if name is not None else None,
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
    """A name another vendor chose: bytes that are not UTF-8 kept apart as surrogates
    (two names never collapse into one U+FFFD; output/sanitize.py shows them as \\xNN)."""
    return raw.split(b"\0", 1)[0].decode(errors="surrogateescape")


def tcmsg(ifindex: int, handle: int, parent: int, info: int, attrs: bytes = b"") -> bytes:
    return TCMSG.pack(0, ifindex, handle, parent, info) + attrs


def _link(chunk: bytes, wanted: frozenset[int] = LINK_ATTRS) -> Link:
    _family, _type, index, flags, _change = IFINFOMSG.unpack_from(chunk, 16)
    attrs = parse_nlas(chunk, 32, wanted)
    info = parse_nlas(attrs.get(IFLA_LINKINFO, b""))
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


def _qdisc(chunk: bytes) -> Qdisc:
    _family, ifindex, handle, parent, _info = TCMSG.unpack_from(chunk, 16)
    attrs = parse_nlas(chunk, 36)
    return Qdisc(
        ifindex=ifindex,
        kind=_asciiz(attrs.get(TCA_KIND, b"")),
        handle=handle,
        parent=parent,
        ingress_block=_u32(attrs, TCA_INGRESS_BLOCK),
        egress_block=_u32(attrs, TCA_EGRESS_BLOCK),
    )


def _filter(chunk: bytes, block: int | None = None) -> Filter | None:
    """A filter message; None for an instance header or a u32 hash table."""
    _family, ifindex, handle, parent, info = TCMSG.unpack_from(chunk, 16)
    attrs = parse_nlas(chunk, 36)
    if TCA_OPTIONS not in attrs:
        return None  # the pref/kind header of a classifier instance, no filter
    kind = _asciiz(attrs.get(TCA_KIND, b""))
    if kind == "u32" and handle & 0xFFF == 0:
        return None  # a u32 hash table, not a rule (TC_U32_NODE(handle) == 0)
    options = parse_nlas(attrs[TCA_OPTIONS])
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


# one message, or a whole dump (one error check per dump: a node has thousands of
# messages, and a wrapper per message costs more than the decoding of a small one)
link_from = _decoder("link")(_link)
qdisc_from = _decoder("qdisc")(_qdisc)
filter_from = _decoder("filter")(_filter)


@_decoder("link")
def links_from(chunks: list[bytes], wanted: frozenset[int] = LINK_ATTRS) -> list[Link]:
    return [_link(chunk, wanted) for chunk in chunks]


@_decoder("qdisc")
def qdiscs_from(chunks: list[bytes]) -> list[Qdisc]:
    return [_qdisc(chunk) for chunk in chunks]


@_decoder("filter")
def filters_from(chunks: list[bytes], block: int | None = None) -> list[Filter]:
    """The filters of a dump, without instance headers and u32 hash tables."""
    return [found for chunk in chunks if (found := _filter(chunk, block)) is not None]


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


def split_messages(data: bytes) -> Iterator[tuple[int, int, int, int, bytes]]:
    """(type, flags, seq, portid, whole message) of each netlink message in a datagram.

    A header shorter than 16 bytes, one claiming less than that, or a message running
    past the datagram's end is ``DecodeError``: never a silently shortened dump.
    """
    offset = 0
    end = len(data)
    while offset < end:
        if offset + 16 > end:
            raise DecodeError(f"truncated netlink header: {end - offset} bytes")
        length, mtype, flags, seq, portid = NLMSGHDR.unpack_from(data, offset)
        if length < 16 or offset + length > end:
            raise DecodeError(
                f"malformed netlink message: it says {length} bytes, {end - offset} are left"
            )
        yield mtype, flags, seq, portid, data[offset : offset + length]
        offset += (length + 3) & ~3


@_decoder("netlink error")
def error_from(chunk: bytes, flags: int) -> tuple[int, str | None]:
    """(errno, the kernel's own message or None) of an NLMSG_ERROR (0: an ACK).

    With NETLINK_CAP_ACK the request is echoed without its payload, and with
    NETLINK_EXT_ACK the kernel appends attributes, NLMSGERR_ATTR_MSG its error text.
    """
    code = struct.unpack_from("=i", chunk, 16)[0]
    text = None
    if flags & NLM_F_ACK_TLVS:
        echoed = NLMSGHDR.unpack_from(chunk, 20)[0]
        offset = 20 + (16 if flags & NLM_F_CAPPED else echoed)
        attrs = parse_nlas(chunk, (offset + 3) & ~3)
        if NLMSGERR_ATTR_MSG in attrs:
            text = _asciiz(attrs[NLMSGERR_ATTR_MSG]) or None
    return -code, text


def done_errno(chunk: bytes) -> int:
    """The errno an NLMSG_DONE carries (0: the dump is complete; old kernels send no
    payload)."""
    return -int(struct.unpack_from("=i", chunk, 16)[0]) if len(chunk) >= 20 else 0


@_decoder("notification")
def decode_notifications(data: bytes) -> list[Notification]:
    """The notifications tcaudit cares about in one datagram of multicast messages."""
    out: list[Notification] = []
    for mtype, flags, _seq, portid, chunk in split_messages(data):
        if mtype in (RTM_NEWTFILTER, RTM_DELTFILTER):
            found = _filter(chunk)
            if found is not None:
                out.append(Notification(mtype, flags, portid, filter=found))
            elif mtype == RTM_DELTFILTER:
                _f, ifindex, handle, parent, info = TCMSG.unpack_from(chunk, 16)
                if handle == 0:
                    scope = (ifindex & 0xFFFFFFFF, parent, info >> 16,
                             socket.ntohs(info & 0xFFFF))
                    out.append(Notification(mtype, flags, portid, bulk_delete=scope))
        elif mtype in (RTM_NEWQDISC, RTM_DELQDISC):
            out.append(Notification(mtype, flags, portid, qdisc=_qdisc(chunk)))
        elif mtype in (RTM_NEWLINK, RTM_DELLINK):
            out.append(Notification(mtype, flags, portid, link=_link(chunk)))
    return out
