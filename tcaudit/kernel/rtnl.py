"""The one module that speaks rtnetlink (pyroute2 for link and address changes).

One NETLINK_ROUTE socket per namespace, opened from inside it (``nsfs.inside_netns``)
and used from anywhere afterwards: a netlink socket keeps the namespace it was created
in. This avoids pyroute2's ``IPRoute(netns=NAME)``, which CREATES a missing named
namespace and forks a helper process per namespace (tc-semantics.md, "pyroute2 traps").

The read path (link, qdisc and filter dumps) packs its requests and decodes the few
attributes it needs with ``struct``: pyroute2 0.9.7 leaves TCA_CHAIN, TCA_BPF_ID,
TCA_BPF_TAG and TCA_BPF_FLAGS_GEN undecoded and garbles TCA_BPF_OPS (classic BPF) as a
u32, and its generic decoder plus its package import cost more than a whole
250-namespace scan (docs/design.md has the numbers); those decoders are pure and live in
``rtnl_codec``, this module keeps the socket and the requests. Link and address creation use
pyroute2's ``ifinfmsg``/``ifaddrmsg`` classes (nested veth peer attributes), imported on
first use. Attribute numbers follow include/uapi/linux/rtnetlink.h, if_link.h and
pkt_cls.h.

tc writes are create-only (NLM_F_CREATE | NLM_F_EXCL) unless a caller asks for a replace
by name (only lab stand-ins emulating a vendor do that).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
from collections.abc import Iterator
from typing import Any

from tcaudit.kernel import nsfs
from tcaudit.kernel.abi import CLSACT_HANDLE, TC_H_CLSACT, TCM_IFINDEX_MAGIC_BLOCK
from tcaudit.kernel.rtnl_codec import (
    ETH_P_ALL,
    ETH_P_IP,
    IFA_LOCAL,
    IFADDRMSG,
    IFINFOMSG,
    IFLA_IFNAME,
    LINK_ATTRS,
    LINK_ATTRS_NO_STATS,
    NETLINK_ADD_MEMBERSHIP,
    NETLINK_CAP_ACK,
    NETLINK_EXT_ACK,
    NLA_F_NESTED,
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_DUMP_INTR,
    NLM_F_EXCL,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    NLMSGHDR,
    RTM_DELLINK,
    RTM_DELQDISC,
    RTM_DELTFILTER,
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_GETQDISC,
    RTM_GETTFILTER,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWQDISC,
    RTM_NEWTFILTER,
    RTNLGRP_LINK,
    RTNLGRP_TC,
    SOL_NETLINK,
    TCA_BPF_CLASSID,
    TCA_BPF_FD,
    TCA_BPF_FLAG_ACT_DIRECT,
    TCA_BPF_FLAGS,
    TCA_BPF_NAME,
    TCA_CHAIN,
    TCA_EGRESS_BLOCK,
    TCA_INGRESS_BLOCK,
    TCA_KIND,
    TCA_OPTIONS,
    DecodeError,
    Filter,
    Link,
    NetlinkError,
    Notification,
    Qdisc,
    decode_notifications,
    done_errno,
    error_from,
    filters_from,
    links_from,
    nla,
    parse_nlas,
    protocol_name,
    qdiscs_from,
    split_messages,
    tcmsg,
)

# the gateway hands out the codec's types and numbers with its socket
__all__ = [
    "ETH_P_ALL",
    "ETH_P_IP",
    "RTM_DELLINK",
    "RTM_NEWQDISC",
    "RTM_NEWTFILTER",
    "RTNLGRP_LINK",
    "RTNLGRP_TC",
    "DecodeError",
    "EventsLost",
    "Filter",
    "Link",
    "Netlink",
    "NetlinkError",
    "Notification",
    "Qdisc",
    "protocol_name",
]

_DUMP_NAMES = {
    RTM_GETLINK: "links",
    RTM_GETADDR: "addresses",
    RTM_GETQDISC: "qdiscs",
    RTM_GETTFILTER: "filters",
}


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
        self._ext_ack = False
        # dumps the kernel still marked interrupted after every retry (the caller says
        # its answer may be partial)
        self.interrupted: list[str] = []

    @staticmethod
    def _open() -> socket.socket:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((0, 0))
        return sock

    def _extended_acks(self) -> None:
        """The kernel's own error text with each error, and no echo of our request in
        it; turned on before the first change (a scan never makes one, and opens a
        socket per namespace)."""
        if self._ext_ack:
            return
        self._ext_ack = True
        for option in (NETLINK_EXT_ACK, NETLINK_CAP_ACK):
            with contextlib.suppress(OSError):
                self._sock.setsockopt(SOL_NETLINK, option, 1)

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport --------------------------------------------------------------------

    def _send(self, mtype: int, flags: int, body: bytes) -> int:
        self._seq += 1
        self._sock.send(NLMSGHDR.pack(16 + len(body), mtype, flags, self._seq, 0) + body)
        return self._seq

    def _send_pyroute2(self, msg: Any, mtype: int, flags: int) -> int:
        self._extended_acks()
        self._seq += 1
        msg["header"]["type"] = mtype
        msg["header"]["flags"] = flags
        msg["header"]["sequence_number"] = self._seq
        msg.encode()
        self._sock.send(msg.data)
        return self._seq

    def _responses(self, seq: int) -> Iterator[tuple[int, int, bytes]]:
        """(type, flags, message bytes) until DONE or the ACK; raises on an error (with
        the kernel's own text when it sends one), and on a dump that ended in one."""
        unpack = NLMSGHDR.unpack_from
        while True:
            data = self._sock.recv(1 << 17)
            offset, end = 0, len(data)
            # split_messages' checks, inline: this loop sees every message of every dump
            while offset < end:
                if offset + 16 > end:
                    raise DecodeError(f"truncated netlink header: {end - offset} bytes")
                length, mtype, flags, mseq, _pid = unpack(data, offset)
                if length < 16 or offset + length > end:
                    raise DecodeError(
                        f"malformed netlink message: it says {length} bytes, "
                        f"{end - offset} are left"
                    )
                chunk = data[offset : offset + length]
                offset += (length + 3) & ~3
                if mseq != seq:
                    continue  # a stale answer to an earlier, abandoned request
                if mtype == NLMSG_DONE:
                    code = done_errno(chunk)
                    if code:
                        raise NetlinkError(code, f"{os.strerror(code)} (the dump ended early)")
                    yield mtype, flags, chunk
                    return
                if mtype == NLMSG_ERROR:
                    code, text = error_from(chunk, flags)
                    if code == 0:
                        return  # ACK
                    message = os.strerror(code) + (f": {text}" if text else "")
                    raise NetlinkError(code, message)
                yield mtype, flags, chunk

    def _dump(self, mtype: int, body: bytes, attempts: int = 5) -> list[bytes]:
        """A dump; retried when the kernel marks it interrupted (NLM_F_DUMP_INTR: the
        table changed while it was read). Still interrupted after ``attempts``: the last
        answer, and the dump noted in ``interrupted`` for the caller to say so."""
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
                return out
        self.interrupted.append(_DUMP_NAMES.get(mtype, str(mtype)))
        return out

    def _ack(self, seq: int) -> None:
        for _ in self._responses(seq):
            pass

    def _request(self, mtype: int, flags: int, body: bytes) -> None:
        self._extended_acks()
        self._ack(self._send(mtype, NLM_F_REQUEST | NLM_F_ACK | flags, body))

    # -- reading ----------------------------------------------------------------------

    def links(self, *, stats: bool = True) -> list[Link]:
        """Every link; ``stats=False`` skips the counters (and parses a third as much)."""
        wanted = LINK_ATTRS if stats else LINK_ATTRS_NO_STATS
        body = IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        return links_from(self._dump(RTM_GETLINK, body), wanted)

    def addresses(self) -> list[tuple[int, str, int]]:
        """(ifindex, IPv4 address, prefix length) of every IPv4 address."""
        out = []
        for chunk in self._dump(RTM_GETADDR, IFADDRMSG.pack(socket.AF_INET, 0, 0, 0, 0)):
            _family, prefixlen, _flags, _scope, index = IFADDRMSG.unpack_from(chunk, 16)
            attrs = parse_nlas(chunk, 24)
            if IFA_LOCAL in attrs:
                out.append((index, socket.inet_ntoa(attrs[IFA_LOCAL][:4]), prefixlen))
        return out

    def qdiscs(self) -> list[Qdisc]:
        return qdiscs_from(self._dump(RTM_GETQDISC, tcmsg(0, 0, 0, 0)))

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
        request = tcmsg(ifindex if block is None else -1, 0, parent, 0)
        return filters_from(self._dump(RTM_GETTFILTER, request), block)

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
                out += [(mtype, chunk) for mtype, _f, _s, _p, chunk in split_messages(data)]
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
            out.extend(decode_notifications(data))

    # -- tc writes (fixtures, lab, probe) ------------------------------------------------

    def add_clsact(
        self, ifindex: int, *, ingress_block: int | None = None, egress_block: int | None = None
    ) -> None:
        """Create a clsact qdisc (optionally on shared blocks); EEXIST if one is there."""
        attrs = nla(TCA_KIND, b"clsact\0")
        if ingress_block is not None:
            attrs += nla(TCA_INGRESS_BLOCK, struct.pack("=I", ingress_block))
        if egress_block is not None:
            attrs += nla(TCA_EGRESS_BLOCK, struct.pack("=I", egress_block))
        body = tcmsg(ifindex, CLSACT_HANDLE, TC_H_CLSACT, 0, attrs)
        self._request(RTM_NEWQDISC, NLM_F_CREATE | NLM_F_EXCL, body)

    def delete_clsact(self, ifindex: int) -> None:
        """Delete a clsact qdisc with everything on it. Only for namespaces tcaudit made."""
        self._request(RTM_DELQDISC, 0, tcmsg(ifindex, CLSACT_HANDLE, TC_H_CLSACT, 0))

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
        options = nla(TCA_BPF_FD, struct.pack("=I", prog_fd))
        options += nla(TCA_BPF_NAME, name.encode(errors="surrogateescape") + b"\0")
        flags_value = TCA_BPF_FLAG_ACT_DIRECT if direct_action else 0
        options += nla(TCA_BPF_FLAGS, struct.pack("=I", flags_value))
        if classid is not None:
            options += nla(TCA_BPF_CLASSID, struct.pack("=I", classid))
        attrs = nla(TCA_KIND, b"bpf\0") + nla(TCA_OPTIONS | NLA_F_NESTED, options)
        if chain is not None:
            attrs += nla(TCA_CHAIN, struct.pack("=I", chain))
        info = (pref << 16) | socket.htons(protocol)
        if block is None:
            body = tcmsg(ifindex, handle, parent, info, attrs)
        else:  # TCM_IFINDEX_MAGIC_BLOCK, tcm_block_index in tcm_parent's place
            body = tcmsg(-1, handle, block, info, attrs)
        flags = NLM_F_CREATE | (NLM_F_REPLACE if replace else NLM_F_EXCL)
        self._request(RTM_NEWTFILTER, flags, body)

    def delete_filter(
        self, ifindex: int, parent: int, *, pref: int, handle: int, protocol: int, kind: str
    ) -> None:
        """Delete exactly one filter (pref + handle + protocol + kind)."""
        info = (pref << 16) | socket.htons(protocol)
        body = tcmsg(ifindex, handle, parent, info, nla(TCA_KIND, kind.encode() + b"\0"))
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
        self._request(RTM_NEWLINK, 0, IFINFOMSG.pack(socket.AF_UNSPEC, 0, ifindex, 1, 1))

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
            self._request(RTM_DELLINK, 0, IFINFOMSG.pack(socket.AF_UNSPEC, 0, ifindex, 0, 0))
        except NetlinkError as err:
            if err.errno != errno.ENODEV:
                raise

    def ifindex(self, name: str) -> int | None:
        """One link looked up by name (RTM_GETLINK with IFLA_IFNAME), None if absent."""
        body = IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        body += nla(IFLA_IFNAME, name.encode() + b"\0")
        try:
            for _kind, _flags, chunk in self._responses(
                self._send(RTM_GETLINK, NLM_F_REQUEST, body)
            ):
                return int(IFINFOMSG.unpack_from(chunk, 16)[2])
        except NetlinkError as err:
            if err.errno != errno.ENODEV:
                raise
        return None
