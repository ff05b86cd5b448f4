"""Who made a change: the process behind a notification's netlink port id.

The kernel puts the port id of the socket that made a tc change in the notification;
its owner is found through /proc/net/netlink (read inside the namespace: the inode of
the NETLINK_ROUTE socket with that port id) and the /proc/*/fd link to that inode. When
no process owns the socket any more, a process holding the new program stands in.
Both lookups are cached, and the caches kept bounded: port ids and programs come and go.
"""

from __future__ import annotations

import os

from tcaudit.inventory.programs import scan_holders
from tcaudit.kernel import nsfs
from tcaudit.kernel.procfs import comm_of
from tcaudit.model import Actor, Program

CACHE_LIMIT = 10_000


class Actors:
    """Port id and program owners, cached across notifications."""

    def __init__(self) -> None:
        self._owners: dict[tuple[int, int], Actor] = {}  # (netns id, port id)
        self._holders: dict[int, list[Actor]] = {}  # program id

    def bound(self) -> None:
        """Forget everything once a cache grows past CACHE_LIMIT."""
        for cache in (self._holders, self._owners):
            if len(cache) > CACHE_LIMIT:
                cache.clear()

    def actor(self, netns_id: int, netns_fd: int, portid: int, program: Program | None) -> Actor:
        """Who made a change from ``portid`` in that namespace (0: the kernel itself)."""
        if portid == 0:
            return Actor(None, None, 0, "kernel")
        key = (netns_id, portid)
        actor = self._owners.get(key)
        if actor is None or not still(actor):
            # port ids are reused once a socket closes: re-resolve when the owner is gone
            actor = self._owners[key] = netlink_owner(netns_fd, portid)
        if actor.pid is None and program is not None:
            holders = self.holders(program.id)
            if holders:
                return holders[0]
        return actor

    def holders(self, prog_id: int) -> list[Actor]:
        """The processes holding a program open (by fd), read once per program."""
        if prog_id not in self._holders:
            self._holders[prog_id] = [
                Actor(h.pid, h.comm, None, "holds the program")
                for h in scan_holders().get(prog_id, [])
            ]
        return self._holders[prog_id]


def still(actor: Actor) -> bool:
    """The cached owner of a port id is still the same live process."""
    if actor.pid is None:
        return False
    return comm_of(actor.pid) == actor.comm


def netlink_owner(netns_fd: int, portid: int) -> Actor:
    """The process whose NETLINK_ROUTE socket has ``portid`` in that namespace."""
    inode = None
    try:
        with nsfs.inside_netns(netns_fd), open("/proc/thread-self/net/netlink") as table:
            for line in table.read().splitlines()[1:]:
                fields = line.split()
                if len(fields) >= 10 and fields[1] == "0" and int(fields[2]) == portid:
                    inode = fields[9]
                    break
    except OSError:
        pass
    if inode is None:
        return Actor(None, None, portid, "netlink port id")
    target = f"socket:[{inode}]"
    # the usual case first: the first netlink socket of a process gets its pid as port id
    candidates = [str(portid)] if portid > 0 else []
    candidates += [p for p in os.listdir("/proc") if p.isdigit() and p != str(portid)]
    for pid in candidates:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return Actor(int(pid), comm_of(pid), portid, "netlink port id")
            except OSError:
                continue
    return Actor(None, None, portid, "netlink port id")
