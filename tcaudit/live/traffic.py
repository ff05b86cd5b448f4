"""Test traffic for lab namespaces, the probe's --generate and selftest: small UDP bursts
sent from inside a namespace (the socket keeps the namespace it was created in).

Only ever aimed at addresses of interfaces tcaudit found in the selected namespaces (for
lab and selftest: namespaces tcaudit made itself); never anywhere else.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from dataclasses import dataclass

from tcaudit.kernel import nsfs

DISCARD_PORT = 9  # RFC 863: nobody listens, the kernel answers ICMP port unreachable


@dataclass(frozen=True)
class Endpoint:
    netns_fd: int
    interface: str
    address: str
    prefixlen: int

    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Interface(f"{self.address}/{self.prefixlen}").network


def send_udp(
    netns_fd: int, destination: str, count: int = 10, size: int = 64, port: int = DISCARD_PORT
) -> int:
    """Send ``count`` datagrams from inside a namespace; returns how many left."""
    with nsfs.inside_netns(netns_fd):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent = 0
    with sock:
        payload = b"tcaudit" + bytes(max(0, size - 7))
        for _ in range(count):
            try:
                sock.sendto(payload, (destination, port))
                sent += 1
            except OSError as err:
                # a port-unreachable answer to an earlier datagram, or a drop: go on
                if err.errno not in (
                    errno.ECONNREFUSED,
                    errno.EPERM,
                    errno.ENOBUFS,
                    errno.EHOSTUNREACH,
                    errno.ENETUNREACH,
                ):
                    raise
    return sent


def pairs(endpoints: list[Endpoint]) -> list[tuple[Endpoint, Endpoint]]:
    """Every (from, to) pair of endpoints on the same small subnet, on different
    interfaces: both ends of each veth pair see traffic in both directions."""
    out = []
    for a in endpoints:
        for b in endpoints:
            if a is b or a.address == b.address or a.prefixlen < 16:
                continue
            if a.network() == b.network():
                out.append((a, b))
    return out


def burst(endpoints: list[Endpoint], count: int = 5) -> int:
    return sum(send_udp(a.netns_fd, b.address, count) for a, b in pairs(endpoints))


def _checksum(data: bytes) -> int:
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data[: len(data) // 2 * 2]))
    if len(data) % 2:
        total += data[-1] << 8
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def send_ping(netns_fd: int, destination: str, count: int = 3) -> int:
    """ICMP echo requests from inside a namespace (a raw socket: root only)."""
    with nsfs.inside_netns(netns_fd):
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sent = 0
    with sock:
        for seq in range(count):
            body = struct.pack("!BBHHH", 8, 0, 0, 0x7CA0, seq) + b"tcaudit ping"
            packet = body[:2] + struct.pack("!H", _checksum(body)) + body[4:]
            try:
                sock.sendto(packet, (destination, 0))
                sent += 1
            except OSError as err:
                if err.errno not in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EPERM):
                    raise
    return sent
