"""Network namespaces through libc: setns(2), unshare(2), mount(2) of named namespaces.

Python 3.11 has no ``os.setns``/``os.unshare``, hence ctypes. Moving a thread into
another namespace is how tcaudit reads one: a netlink socket and BPF_PROG_QUERY see the
namespace of the thread that opens or calls them.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import socket
import sys
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MS_REC = 16384
MS_SHARED = 1 << 20
MNT_DETACH = 2

_libc = ctypes.CDLL("libc.so.6", use_errno=True)  # find_library would run ldconfig
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_void_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]




def setns(fd: int) -> None:
    """Move the calling THREAD into the network namespace behind ``fd``."""
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def open_netns(path: str) -> int:
    """An O_RDONLY fd on a namespace file; raises FileNotFoundError if it is gone."""
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


SO_NETNS_COOKIE = 71  # include/uapi/asm-generic/socket.h, Linux 5.14


def netns_cookie(fd: int) -> int | None:
    """The namespace's cookie: unique within a boot and never reused, unlike its inode
    number (None on kernels without SO_NETNS_COOKIE)."""
    with inside_netns(fd):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8)
    except OSError:
        return None
    finally:
        sock.close()
    return int.from_bytes(raw, sys.byteorder)


@contextlib.contextmanager
def inside_netns(fd: int) -> Iterator[None]:
    """Run the body with this thread in the namespace ``fd``; always come back.

    Netlink and BPF_PROG_QUERY resolve ifindexes in the caller's namespace, and a socket
    keeps the namespace it was created in, so this is how tcaudit reads each namespace
    without helper processes (and without ever creating one, unlike pyroute2's netns=).
    """
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(fd)
        try:
            yield
        finally:
            _go_home(home)
    finally:
        os.close(home)


def _go_home(home: int) -> None:
    """Back to tcaudit's own namespace, or stop the process at once.

    A thread left in a foreign namespace would open its next socket there and read or
    change the wrong node's hooks; no exception handler or ``finally`` may run first, so
    this is the one place tcaudit ends itself (exit 70) and writes to stderr below the
    CLI. A probe's observers stay recorded for `tcaudit probe --cleanup`.
    """
    try:
        setns(home)
    except OSError as err:
        os.write(
            2,
            (
                "tcaudit: fatal: cannot return to its own network namespace "
                f"({err.strerror}); stopped at once so nothing runs in the wrong one "
                "(run `tcaudit probe --cleanup` if a probe was running)\n"
            ).encode(),
        )
        os._exit(70)


def create_named_netns(name: str, run_dir: str = "/run/netns") -> str:
    """Create a named namespace like ``ip netns add`` (bind mount of a fresh netns).

    Raises FileExistsError if the name is taken: a namespace is never reused by accident.
    """
    os.makedirs(run_dir, mode=0o755, exist_ok=True)
    _shared_mount(run_dir)
    path = os.path.join(run_dir, name)
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0)
    os.close(fd)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.unshare(CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            os.unlink(path)
            raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")
        try:
            src = b"/proc/thread-self/ns/net"
            if _libc.mount(src, path.encode(), b"none", MS_BIND, None) != 0:
                err = ctypes.get_errno()
                os.unlink(path)
                raise OSError(err, f"mount --bind {path}: {os.strerror(err)}")
        finally:
            setns(home)
    finally:
        os.close(home)
    return path


def _shared_mount(run_dir: str) -> None:
    """Make ``run_dir`` a shared mount point first, as ``ip netns add`` does
    (iproute2 ip/ipnetns.c, netns_add): else the first ``ip netns add`` after ours
    bind-mounts the directory over itself, our namespace files end up under that mount
    and can never be removed (unlink: EBUSY) while it is there."""
    path = run_dir.encode()
    if _libc.mount(b"", path, b"none", MS_SHARED | MS_REC, None) == 0:
        return
    err = ctypes.get_errno()
    if err != errno.EINVAL:  # EINVAL: not a mount point yet
        raise OSError(err, f"mount --make-rshared {run_dir}: {os.strerror(err)}")
    if (_libc.mount(path, path, b"none", MS_BIND | MS_REC, None) != 0
            or _libc.mount(b"", path, b"none", MS_SHARED | MS_REC, None) != 0):
        err = ctypes.get_errno()
        raise OSError(err, f"mount --rbind {run_dir} {run_dir}: {os.strerror(err)}")


def delete_named_netns(name: str, run_dir: str = "/run/netns") -> None:
    """Undo create_named_netns (the namespace dies once nothing else holds it)."""
    path = os.path.join(run_dir, name)
    if _libc.umount2(path.encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            raise OSError(err, f"umount {path}: {os.strerror(err)}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
