"""Program facts for every program id a scan meets, each read once.

Facts come from BPF_OBJ_GET_INFO_BY_FD (through ``bpfsys``); the processes holding a
program come from /proc/*/fdinfo (``prog_id:`` lines of bpf-prog and bpf-link fds), read
once per scan and only when some program was found.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable
from datetime import UTC, datetime

from tcaudit.kernel import bpf
from tcaudit.kernel.procfs import comm_of, exe_of
from tcaudit.model import Holder, MapRef, Program

# enum bpf_prog_type (include/uapi/linux/bpf.h), as bpftool names them
PROG_TYPES = (
    "unspec", "socket_filter", "kprobe", "sched_cls", "sched_act", "tracepoint", "xdp",
    "perf_event", "cgroup_skb", "cgroup_sock", "lwt_in", "lwt_out", "lwt_xmit", "sock_ops",
    "sk_skb", "cgroup_device", "sk_msg", "raw_tracepoint", "cgroup_sock_addr", "lwt_seg6local",
    "lirc_mode2", "sk_reuseport", "flow_dissector", "cgroup_sysctl", "raw_tracepoint_writable",
    "cgroup_sockopt", "tracing", "struct_ops", "ext", "lsm", "sk_lookup", "syscall", "netfilter",
)  # fmt: skip
# enum bpf_map_type
MAP_TYPES = (
    "unspec", "hash", "array", "prog_array", "perf_event_array", "percpu_hash", "percpu_array",
    "stack_trace", "cgroup_array", "lru_hash", "lru_percpu_hash", "lpm_trie", "array_of_maps",
    "hash_of_maps", "devmap", "sockmap", "cpumap", "xskmap", "sockhash", "cgroup_storage",
    "reuseport_sockarray", "percpu_cgroup_storage", "queue", "stack", "sk_storage",
    "devmap_hash", "struct_ops", "ringbuf", "inode_storage", "task_storage", "bloom_filter",
    "user_ringbuf", "cgrp_storage", "arena",
)  # fmt: skip


def _enum_name(table: tuple[str, ...], value: int) -> str:
    return table[value] if 0 <= value < len(table) else f"type_{value}"


def _boot_epoch() -> float:
    """Wall-clock time of boot, to turn CLOCK_BOOTTIME load times into dates."""
    return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)


def scan_holders(proc: str = "/proc") -> dict[int, list[Holder]]:
    """prog id -> processes holding an fd on it (directly or through a bpf_link)."""
    holders: dict[int, list[Holder]] = {}
    try:
        pids = [p for p in os.listdir(proc) if p.isdigit()]
    except OSError:
        return holders
    for pid in pids:
        fd_dir = f"{proc}/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        comm: str | None = None
        exe: str | None = None
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if target not in ("anon_inode:bpf-prog", "anon_inode:bpf_link"):
                continue
            try:
                with open(f"{proc}/{pid}/fdinfo/{fd}", encoding="ascii", errors="replace") as f:
                    info = f.read()
            except OSError:
                continue
            for line in info.splitlines():
                if line.startswith("prog_id:"):
                    prog_id = int(line.split()[1])
                    if comm is None:
                        comm = comm_of(pid, proc) or "?"
                        exe = exe_of(pid, proc)
                    entry = Holder(pid=int(pid), comm=comm, exe=exe)
                    bucket = holders.setdefault(prog_id, [])
                    if entry not in bucket:
                        bucket.append(entry)
    return holders


class ProgramReader:
    """Reads and caches program facts for one scan (the same program on 500 hooks: once)."""

    def __init__(self, *, holders: bool = True) -> None:
        self._programs: dict[int, Program] = {}
        self._maps: dict[int, MapRef] = {}
        self._holders: dict[int, list[Holder]] | None = None if holders else {}
        self._boot = _boot_epoch()

    def read_all(self, prog_ids: Iterable[int]) -> dict[int, Program]:
        wanted = [p for p in dict.fromkeys(prog_ids) if p not in self._programs]
        if wanted and self._holders is None:
            self._holders = scan_holders()
        for prog_id in wanted:
            self._programs[prog_id] = self._read(prog_id)
        return self._programs

    def size(self) -> int:
        return len(self._programs)

    def get(self, prog_id: int) -> Program:
        return self.read_all([prog_id])[prog_id]

    def _read(self, prog_id: int) -> Program:
        holders = tuple(sorted((self._holders or {}).get(prog_id, []), key=lambda h: h.pid))
        try:
            fd = bpf.prog_fd_by_id(prog_id)
        except OSError as err:
            return _unreadable(prog_id, f"program {prog_id} unreadable: {err.strerror}", holders)
        try:
            info = bpf.prog_info(fd)
        except OSError as err:
            return _unreadable(
                prog_id, f"program {prog_id} info unreadable: {err.strerror}", holders
            )
        finally:
            os.close(fd)
        loaded = datetime.fromtimestamp(self._boot + info.load_time_ns / 1e9, tz=UTC)
        return Program(
            id=prog_id,
            name=info.name,
            tag=info.tag,
            type=_enum_name(PROG_TYPES, info.type),
            insns=info.xlated_len // 8,
            maps=tuple(self._map(m) for m in info.map_ids),
            holders=holders,
            btf_id=info.btf_id or None,
            loaded_at=loaded.isoformat(timespec="seconds").replace("+00:00", "Z"),
            uid=info.uid,
        )

    def _map(self, map_id: int) -> MapRef:
        if map_id not in self._maps:
            ref = MapRef(id=map_id, name=None, type=None)
            with contextlib.suppress(OSError):
                fd = bpf.map_fd_by_id(map_id)
                try:
                    info = bpf.map_info(fd)
                    ref = MapRef(id=map_id, name=info.name, type=_enum_name(MAP_TYPES, info.type))
                finally:
                    os.close(fd)
            self._maps[map_id] = ref
        return self._maps[map_id]


def _unreadable(prog_id: int, reason: str, holders: tuple[Holder, ...]) -> Program:
    return Program(
        id=prog_id,
        name=None,
        tag=None,
        type=None,
        insns=None,
        maps=(),
        holders=holders,
        btf_id=None,
        loaded_at=None,
        uid=None,
        error=reason,
    )
