"""Discover network namespaces and resolve ``--netns`` selectors, without creating any.

Sources: the namespace tcaudit runs in, every named netns (/run/netns, /var/run/netns) and
every namespace a process lives in (/proc/*/ns/net), deduplicated by (st_dev, st_ino) of
the nsfs inode. Labels prefer netns names, then the lowest pid with its comm and the
container id its cgroup path shows (docker, containerd/cri, cri-o), and the Kubernetes
pod name when a container's /etc/hostname can be read through /proc/PID/root.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from tcaudit.errors import UsageError
from tcaudit.kernel.procfs import comm_of
from tcaudit.model import Netns

NETNS_DIRS = ("/run/netns", "/var/run/netns")
SELF_PATH = "/proc/self/ns/net"
NS_GET_NSTYPE = 0xB703  # _IO(0xb7, 0x3), include/uapi/linux/nsfs.h
CLONE_NEWNET = 0x40000000

# docker-<id>.scope, cri-containerd-<id>.scope, crio-<id>.scope, /docker/<id>, .../<id>
_CONTAINER_ID = re.compile(
    r"(?:docker-|cri-containerd-|crio-|containerd-|/docker/|/kubepods[^\n]*/)([0-9a-f]{64})"
)
_POD_UID = re.compile(
    r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})"
)


@dataclass(frozen=True)
class _Found:
    key: tuple[int, int]
    names: tuple[str, ...]
    pids: tuple[int, ...]
    path: str


def _stat_key(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            return handle.read()
    except OSError:
        return None


def cgroup_identity(cgroup: str) -> tuple[str | None, str | None]:
    """(short container id, pod uid) from the text of /proc/PID/cgroup."""
    match = _CONTAINER_ID.search(cgroup)
    container = match.group(1)[:12] if match else None
    uid_match = _POD_UID.search(cgroup)
    pod_uid = uid_match.group(1).replace("_", "-") if uid_match else None
    return container, pod_uid


def _describe_pid(pid: int) -> tuple[str, str | None, str | None, str | None]:
    """(comm, container id, pod uid, pod name) of a process, as far as /proc tells."""
    comm = comm_of(pid) or "?"
    container, pod_uid = cgroup_identity(_read(f"/proc/{pid}/cgroup") or "")
    pod = None
    if pod_uid is not None:
        # kubelet bind-mounts the pod's hostname (the pod name) into app containers
        hostname = _read(f"/proc/{pid}/root/etc/hostname")
        pod = (hostname.strip() or None) if hostname else None
    return comm, container, pod_uid, pod


def discover(proc: str = "/proc", netns_dirs: Iterable[str] = NETNS_DIRS) -> list[Netns]:
    """Every network namespace reachable from here, the one tcaudit runs in first."""
    self_key = _stat_key(SELF_PATH)
    names: dict[tuple[int, int], list[str]] = {}
    paths: dict[tuple[int, int], str] = {}
    for directory in netns_dirs:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            key = _stat_key(entry.path)
            if key is None or not _is_nsfs(entry.path):
                continue
            if entry.name not in names.setdefault(key, []):
                names[key].append(entry.name)
            paths.setdefault(key, entry.path)
    pids: dict[tuple[int, int], list[int]] = {}
    try:
        proc_entries = os.listdir(proc)
    except OSError:
        proc_entries = []
    for name in proc_entries:
        if not name.isdigit():
            continue
        path = f"{proc}/{name}/ns/net"
        key = _stat_key(path)
        if key is None:
            continue  # gone, or a kernel thread we may not look at
        pids.setdefault(key, []).append(int(name))
        paths.setdefault(key, path)
    keys = set(names) | set(pids)
    if self_key is not None:
        keys.add(self_key)
        paths[self_key] = SELF_PATH
    ordered = sorted(keys, key=lambda k: (k != self_key, k[1]))
    return [
        _label(
            _Found(
                key=key,
                names=tuple(names.get(key, ())),
                pids=tuple(sorted(pids.get(key, ()))),
                path=paths[key],
            ),
            key == self_key,
        )
        for key in ordered
    ]


def _is_nsfs(path: str) -> bool:
    """True for a NETWORK namespace file: on the nsfs device like our own, and of type
    CLONE_NEWNET (ioctl NS_GET_NSTYPE), so /proc/N/ns/mnt and friends are refused.

    A file left behind by a crashed ``ip netns add`` is a plain file on tmpfs instead.
    """
    key, own = _stat_key(path), _stat_key(SELF_PATH)
    if key is None or own is None or key[0] != own[0]:
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return fcntl.ioctl(fd, NS_GET_NSTYPE) == CLONE_NEWNET
    except OSError:
        return False
    finally:
        os.close(fd)


def _label(found: _Found, is_self: bool) -> Netns:
    container = pod_uid = pod = None
    if found.names:
        label = ",".join(found.names)
    elif found.pids:
        pid = found.pids[0]
        comm, container, pod_uid, pod = _describe_pid(pid)
        # the lowest pid is often a pod's pause process, which has no /etc/hostname:
        # ask a few of its neighbours for the pod name
        for other in found.pids[1:8]:
            if pod or pod_uid is None:
                break
            pod = _describe_pid(other)[3]
        label = f"pid {pid} ({comm})"
        if pod:
            label += f" pod {pod}"
        if container:
            label += f" container {container}"
    else:
        label = "?"
    if is_self:
        label = f"self ({label})" if found.names else "self"
    return Netns(
        id=found.key[1],
        dev=found.key[0],
        names=found.names,
        pids=found.pids,
        label=label,
        path=found.path,
        is_self=is_self,
        container_id=container,
        pod=pod,
        pod_uid=pod_uid,
    )


def select(
    known: list[Netns],
    selectors: Iterable[str],
) -> list[Netns]:
    """Apply ``--netns`` selectors (contracts.md); none means all. Never creates a netns.

    A selector that matches nothing raises UsageError (exit 2).
    """
    selectors = list(selectors)
    if not selectors or "all" in selectors:
        return list(known)
    by_key = {(ns.dev, ns.id): ns for ns in known}
    chosen: dict[tuple[int, int], Netns] = {}
    for selector in selectors:
        for ns in _resolve_one(selector, known, by_key):
            chosen.setdefault((ns.dev, ns.id), ns)
    order = {(ns.dev, ns.id): i for i, ns in enumerate(known)}
    return sorted(chosen.values(), key=lambda ns: order.get((ns.dev, ns.id), len(order)))


def _resolve_one(
    selector: str,
    known: list[Netns],
    by_key: dict[tuple[int, int], Netns],
) -> list[Netns]:
    if selector == "self":
        return [ns for ns in known if ns.is_self]
    kind, _, value = selector.partition(":")
    if kind == "pid" and value:
        if not value.isdigit():
            raise UsageError(f"--netns {selector}: pid must be a number")
        return [_by_path(f"/proc/{value}/ns/net", selector, by_key)]
    if kind == "inode" and value:
        if not value.isdigit():
            raise UsageError(f"--netns {selector}: inode must be a number")
        found = [ns for ns in known if ns.id == int(value)]
        if not found:
            raise UsageError(f"--netns {selector}: no network namespace has inode {value}")
        return found
    if kind == "lab" and value:
        # the CLI turns lab:NAME into the lab's namespace names (cli/options.py): the
        # inventory sits below the lab and never asks it
        raise UsageError(f"--netns {selector}: lab selectors are resolved by the command line")
    if "/" in selector:
        return [_by_path(selector, selector, by_key)]
    return [_resolve_name(selector, selector, known)]


def _resolve_name(name: str, selector: str, known: list[Netns]) -> Netns:
    for ns in known:
        if name in ns.names:
            return ns
    raise UsageError(
        f"--netns {selector}: no network namespace named {name!r} "
        f"(named ones live in {' and '.join(NETNS_DIRS)}; try 'ip netns list')"
    )


def _by_path(path: str, selector: str, by_key: dict[tuple[int, int], Netns]) -> Netns:
    try:
        os.stat(path)
    except FileNotFoundError:
        raise UsageError(f"--netns {selector}: {path} does not exist") from None
    except OSError as err:
        raise UsageError(f"--netns {selector}: {path}: {err.strerror}") from None
    key = _stat_key(path)
    if key is None or not _is_nsfs(path):
        raise UsageError(f"--netns {selector}: {path} is not a network namespace")
    ns = by_key.get(key)
    if ns is None:  # e.g. a bind mount elsewhere: usable, though discovery missed it
        ns = Netns(id=key[1], dev=key[0], names=(), pids=(), label=path, path=path)
    elif ns.path != path and not ns.is_self:
        ns = replace(ns, path=path)
    return ns
