"""bpf(2) through ctypes: maps, programs, object info, TCX, test runs (namespaces: ``nsfs``).

Everything here is a thin, typed wrapper: it packs a ``union bpf_attr`` member, makes the
call and unpacks the answer. Nothing installed on the machines tcaudit targets knows TCX
(bpftool 7.1, libbpf 1.1 and the 6.1 uapi headers predate it), so its constants are
defined here from include/uapi/linux/bpf.h of Linux 6.6+.

Layouts follow include/uapi/linux/bpf.h (``union bpf_attr``, ``struct bpf_prog_info``,
``struct bpf_map_info``).
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import platform
import struct
from dataclasses import dataclass

# bpf(2) commands (enum bpf_cmd)
BPF_MAP_CREATE = 0
BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_MAP_GET_NEXT_KEY = 4
BPF_OBJ_PIN = 6
BPF_OBJ_GET = 7
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_TEST_RUN = 10
BPF_PROG_GET_FD_BY_ID = 13
BPF_MAP_GET_FD_BY_ID = 14
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_PROG_QUERY = 16
BPF_MAP_FREEZE = 22
BPF_LINK_CREATE = 28
BPF_LINK_GET_FD_BY_ID = 30
BPF_LINK_DETACH = 34

# enum bpf_prog_type / bpf_map_type (the members tcaudit names)
BPF_PROG_TYPE_SCHED_CLS = 3
BPF_MAP_TYPE_ARRAY = 2
BPF_MAP_TYPE_PROG_ARRAY = 3

# mprog attach flags (include/uapi/linux/bpf.h, BPF_F_BEFORE/AFTER/ID/LINK)
BPF_F_REPLACE = 1 << 2
BPF_F_BEFORE = 1 << 3
BPF_F_AFTER = 1 << 4
BPF_F_ID = 1 << 5


_BPF_SYSCALL = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "ppc64le": 361, "s390x": 351}
_ATTR_SIZE = 160  # >= sizeof(union bpf_attr) on 6.x; the kernel wants the unused tail zeroed

_libc = ctypes.CDLL("libc.so.6", use_errno=True)  # find_library would run ldconfig
_libc.syscall.restype = ctypes.c_long


class BpfError(OSError):
    """A failed bpf(2) call; ``errno`` is set, ``log`` holds the verifier log for loads."""

    def __init__(self, err: int, what: str, log: str = "") -> None:
        super().__init__(err, f"{what}: {os.strerror(err)}")
        self.log = log


@functools.cache
def _syscall_nr() -> int:
    machine = platform.machine()
    try:
        return _BPF_SYSCALL[machine]
    except KeyError:
        raise BpfError(errno.ENOSYS, f"bpf(2) syscall number unknown for {machine}") from None


def _bpf(cmd: int, attr: ctypes.Array[ctypes.c_char], what: str) -> int:
    ret = _libc.syscall(_syscall_nr(), cmd, attr, _ATTR_SIZE)
    if ret < 0:
        raise BpfError(ctypes.get_errno(), what)
    return int(ret)


def _attr() -> ctypes.Array[ctypes.c_char]:
    return ctypes.create_string_buffer(_ATTR_SIZE)


def _addr(buf: ctypes.Array[ctypes.c_char] | ctypes.Structure | None) -> int:
    return 0 if buf is None else ctypes.addressof(buf)


# ---------------------------------------------------------------------------------------
# object introspection


class _ProgInfo(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("tag", ctypes.c_uint8 * 8),
        ("jited_prog_len", ctypes.c_uint32),
        ("xlated_prog_len", ctypes.c_uint32),
        ("jited_prog_insns", ctypes.c_uint64),
        ("xlated_prog_insns", ctypes.c_uint64),
        ("load_time", ctypes.c_uint64),
        ("created_by_uid", ctypes.c_uint32),
        ("nr_map_ids", ctypes.c_uint32),
        ("map_ids", ctypes.c_uint64),
        ("name", ctypes.c_char * 16),
        ("ifindex", ctypes.c_uint32),
        ("gpl_compatible", ctypes.c_uint32),
        ("netns_dev", ctypes.c_uint64),
        ("netns_ino", ctypes.c_uint64),
        ("nr_jited_ksyms", ctypes.c_uint32),
        ("nr_jited_func_lens", ctypes.c_uint32),
        ("jited_ksyms", ctypes.c_uint64),
        ("jited_func_lens", ctypes.c_uint64),
        ("btf_id", ctypes.c_uint32),
        ("func_info_rec_size", ctypes.c_uint32),
        ("func_info", ctypes.c_uint64),
        ("nr_func_info", ctypes.c_uint32),
        ("nr_line_info", ctypes.c_uint32),
        ("line_info", ctypes.c_uint64),
        ("jited_line_info", ctypes.c_uint64),
        ("nr_jited_line_info", ctypes.c_uint32),
        ("line_info_rec_size", ctypes.c_uint32),
        ("jited_line_info_rec_size", ctypes.c_uint32),
        ("nr_prog_tags", ctypes.c_uint32),
        ("prog_tags", ctypes.c_uint64),
        ("run_time_ns", ctypes.c_uint64),
        ("run_cnt", ctypes.c_uint64),
        ("recursion_misses", ctypes.c_uint64),
        ("verified_insns", ctypes.c_uint32),
        ("attach_btf_obj_id", ctypes.c_uint32),
        ("attach_btf_id", ctypes.c_uint32),
    ]


class _MapInfo(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("name", ctypes.c_char * 16),
        ("ifindex", ctypes.c_uint32),
        ("btf_vmlinux_value_type_id", ctypes.c_uint32),
        ("netns_dev", ctypes.c_uint64),
        ("netns_ino", ctypes.c_uint64),
        ("btf_id", ctypes.c_uint32),
        ("btf_key_type_id", ctypes.c_uint32),
        ("btf_value_type_id", ctypes.c_uint32),
        ("btf_vmlinux_id", ctypes.c_uint32),
        ("map_extra", ctypes.c_uint64),
    ]


@dataclass(frozen=True)
class ProgInfo:
    """What BPF_OBJ_GET_INFO_BY_FD says about a program (raw kernel values)."""

    id: int
    type: int
    name: str
    tag: str
    xlated_len: int
    load_time_ns: int  # CLOCK_BOOTTIME nanoseconds
    uid: int
    map_ids: tuple[int, ...]
    btf_id: int
    jited: bool
    xlated: bytes | None = None
    func_starts: tuple[int, ...] | None = None


@dataclass(frozen=True)
class MapInfo:
    id: int
    type: int
    name: str
    key_size: int
    value_size: int
    max_entries: int
    map_flags: int = 0


def _get_fd_by_id(cmd: int, obj_id: int, what: str) -> int:
    attr = _attr()
    struct.pack_into("=I", attr, 0, obj_id)
    return _bpf(cmd, attr, f"{what} {obj_id}")


def prog_fd_by_id(prog_id: int) -> int:
    """An fd on a loaded program (needs CAP_SYS_ADMIN); ENOENT when it is gone."""
    return _get_fd_by_id(BPF_PROG_GET_FD_BY_ID, prog_id, "BPF_PROG_GET_FD_BY_ID")


def map_fd_by_id(map_id: int) -> int:
    return _get_fd_by_id(BPF_MAP_GET_FD_BY_ID, map_id, "BPF_MAP_GET_FD_BY_ID")


def _obj_info(fd: int, info: ctypes.Structure, what: str) -> None:
    attr = _attr()
    struct.pack_into("=IIQ", attr, 0, fd, ctypes.sizeof(info), _addr(info))
    _bpf(BPF_OBJ_GET_INFO_BY_FD, attr, what)


def prog_load_time(fd: int) -> int:
    """The program's load time (CLOCK_BOOTTIME ns) alone: one call, no map ids."""
    info = _ProgInfo()
    _obj_info(fd, info, "BPF_OBJ_GET_INFO_BY_FD(prog)")
    return int(info.load_time)


def prog_info(fd: int, *, with_code: bool = False) -> ProgInfo:
    """Program facts; with_code also fetches the xlated instructions and func_info starts."""
    info = _ProgInfo()
    _obj_info(fd, info, "BPF_OBJ_GET_INFO_BY_FD(prog)")
    nr_maps = info.nr_map_ids
    xlated_len = info.xlated_prog_len
    nr_func = info.nr_func_info
    func_rec = info.func_info_rec_size
    map_buf = (ctypes.c_uint32 * max(nr_maps, 1))()
    code_buf = ctypes.create_string_buffer(xlated_len) if with_code and xlated_len else None
    func_buf = ctypes.create_string_buffer(nr_func * func_rec) if with_code and nr_func else None
    if nr_maps or code_buf is not None or func_buf is not None:
        second = _ProgInfo()
        second.nr_map_ids = nr_maps
        second.map_ids = ctypes.addressof(map_buf) if nr_maps else 0
        if code_buf is not None:
            second.xlated_prog_len = xlated_len
            second.xlated_prog_insns = ctypes.addressof(code_buf)
        if func_buf is not None:
            second.nr_func_info = nr_func
            second.func_info_rec_size = func_rec
            second.func_info = ctypes.addressof(func_buf)
        _obj_info(fd, second, "BPF_OBJ_GET_INFO_BY_FD(prog)")
        # a program's maps cannot change after load, but be exact about what came back
        nr_maps = min(nr_maps, second.nr_map_ids)
    func_starts: tuple[int, ...] | None = None
    if func_buf is not None:
        # struct bpf_func_info { __u32 insn_off; __u32 type_id; }
        func_starts = tuple(
            struct.unpack_from("=I", func_buf, i * func_rec)[0] for i in range(nr_func)
        )
    elif with_code:
        func_starts = ()
    return ProgInfo(
        id=info.id,
        type=info.type,
        name=info.name.decode(errors="surrogateescape"),
        tag=bytes(info.tag).hex(),
        xlated_len=xlated_len,
        load_time_ns=info.load_time,
        uid=info.created_by_uid,
        map_ids=tuple(map_buf[i] for i in range(nr_maps)),
        btf_id=info.btf_id,
        jited=bool(info.jited_prog_len),
        xlated=code_buf.raw if code_buf is not None else None,
        func_starts=func_starts,
    )


def map_info(fd: int) -> MapInfo:
    info = _MapInfo()
    _obj_info(fd, info, "BPF_OBJ_GET_INFO_BY_FD(map)")
    return MapInfo(
        id=info.id,
        type=info.type,
        name=info.name.decode(errors="surrogateescape"),
        key_size=info.key_size,
        value_size=info.value_size,
        max_entries=info.max_entries,
        map_flags=info.map_flags,
    )


def map_lookup(fd: int, key: bytes, value_size: int) -> bytes | None:
    """One element, or None where the slot is empty (ENOENT)."""
    key_buf = ctypes.create_string_buffer(key, len(key))
    value_buf = ctypes.create_string_buffer(value_size)
    attr = _attr()
    struct.pack_into("=IIQQ", attr, 0, fd, 0, _addr(key_buf), _addr(value_buf))
    try:
        _bpf(BPF_MAP_LOOKUP_ELEM, attr, "BPF_MAP_LOOKUP_ELEM")
    except BpfError as err:
        if err.errno == errno.ENOENT:
            return None
        raise
    return value_buf.raw


def map_update(fd: int, key: bytes, value: bytes, flags: int = 0) -> None:
    key_buf = ctypes.create_string_buffer(key, len(key))
    value_buf = ctypes.create_string_buffer(value, len(value))
    attr = _attr()
    struct.pack_into("=IIQQQ", attr, 0, fd, 0, _addr(key_buf), _addr(value_buf), flags)
    _bpf(BPF_MAP_UPDATE_ELEM, attr, "BPF_MAP_UPDATE_ELEM")


def prog_array_slots(map_id: int) -> dict[int, int]:
    """slot -> program id of a BPF_MAP_TYPE_PROG_ARRAY (a user-space lookup gives the id)."""
    fd = map_fd_by_id(map_id)
    try:
        info = map_info(fd)
        if info.type != BPF_MAP_TYPE_PROG_ARRAY:
            raise BpfError(errno.EINVAL, f"map {map_id} is not a prog array")
        # one set of buffers and a bare syscall per slot: vendors' prog arrays have up to
        # hundreds of thousands of slots (a user-space lookup gives the program id)
        slots: dict[int, int] = {}
        key = ctypes.create_string_buffer(4)
        value = ctypes.create_string_buffer(max(info.value_size, 4))
        attr = _attr()
        struct.pack_into("=IIQQ", attr, 0, fd, 0, ctypes.addressof(key), ctypes.addressof(value))
        nr = _syscall_nr()
        call = _libc.syscall
        pack = struct.pack_into
        for index in range(info.max_entries):
            pack("=I", key, 0, index)
            if call(nr, BPF_MAP_LOOKUP_ELEM, attr, _ATTR_SIZE) == 0:
                slots[index] = struct.unpack_from("=I", value)[0]
            elif ctypes.get_errno() != errno.ENOENT:
                raise BpfError(ctypes.get_errno(), f"BPF_MAP_LOOKUP_ELEM map {map_id}")
        return slots
    finally:
        os.close(fd)


BPF_F_RDONLY_PROG = 1 << 7


def readonly_array_value(map_id: int) -> bytes | None:
    """Element 0 of an array map the kernel treats as read-only for programs, else None.

    The verifier folds loads from such a map into constants only when the map has
    BPF_F_RDONLY_PROG and is frozen (kernel/bpf/verifier.c bpf_map_is_rdonly); the
    frozen state is shown only in the map's fdinfo (``frozen:\t1``). A frozen map cannot
    change any more, so its value is as good as code.
    """
    try:
        fd = map_fd_by_id(map_id)
    except OSError:
        return None
    try:
        info = map_info(fd)
        if info.type != BPF_MAP_TYPE_ARRAY or not info.map_flags & BPF_F_RDONLY_PROG:
            return None
        try:
            with open(f"/proc/self/fdinfo/{fd}", "rb") as handle:
                fdinfo = handle.read()
        except OSError:
            return None
        if b"\nfrozen:\t1\n" not in b"\n" + fdinfo:
            return None
        return map_lookup(fd, struct.pack("=I", 0), info.value_size)
    except OSError:
        return None
    finally:
        os.close(fd)


def map_create(
    map_type: int, key_size: int, value_size: int, max_entries: int, name: str,
    flags: int = 0,
) -> int:
    attr = _attr()
    struct.pack_into("=IIIII", attr, 0, map_type, key_size, value_size, max_entries, flags)
    # map_name sits after map_flags, inner_map_fd and numa_node (offset 28)
    struct.pack_into("=16s", attr, 28, name.encode()[:15])
    return _bpf(BPF_MAP_CREATE, attr, f"BPF_MAP_CREATE {name}")


def map_freeze(fd: int) -> None:
    """BPF_MAP_FREEZE: no more changes from user space (programs see it read-only when
    the map also has BPF_F_RDONLY_PROG)."""
    attr = _attr()
    struct.pack_into("=I", attr, 0, fd)
    _bpf(BPF_MAP_FREEZE, attr, "BPF_MAP_FREEZE")


class _Statfs(ctypes.Structure):
    _fields_ = [("f_type", ctypes.c_long), ("rest", ctypes.c_byte * 120)]


def fs_type(path: str) -> int | None:
    """statfs(2) f_type of the filesystem holding ``path`` (e.g. BPF_FS_MAGIC)."""
    buf = _Statfs()
    if _libc.statfs(path.encode(), ctypes.byref(buf)) != 0:
        return None
    return int(buf.f_type) & 0xFFFFFFFF


def obj_pin(fd: int, path: str) -> None:
    """Pin a map or program on a bpffs path, so it outlives every fd on it."""
    name = ctypes.create_string_buffer(path.encode())
    attr = _attr()
    struct.pack_into("=QII", attr, 0, _addr(name), fd, 0)
    _bpf(BPF_OBJ_PIN, attr, f"BPF_OBJ_PIN {path}")


def obj_get(path: str) -> int:
    """An fd on a pinned object."""
    name = ctypes.create_string_buffer(path.encode())
    attr = _attr()
    struct.pack_into("=QII", attr, 0, _addr(name), 0, 0)
    return _bpf(BPF_OBJ_GET, attr, f"BPF_OBJ_GET {path}")


# ---------------------------------------------------------------------------------------
# loading and running programs (fixtures, tests, the probe's empty baseline)


def prog_load(
    insns: bytes,
    *,
    name: str,
    prog_type: int = BPF_PROG_TYPE_SCHED_CLS,
    license: str = "GPL",
    log_size: int = 1 << 20,
) -> int:
    """Load raw instructions; on failure the verifier log is in BpfError.log."""
    code = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(license.encode())
    # Load without a log first (faster); on failure load again with one, for the message.
    for log_level in (0, 1):
        log = ctypes.create_string_buffer(log_size if log_level else 1)
        attr = _attr()
        # prog_type, insn_cnt, insns, license, log_level, log_size, log_buf, kern_version,
        # prog_flags, prog_name[16]
        struct.pack_into(
            "=IIQQIIQII16s",
            attr,
            0,
            prog_type,
            len(insns) // 8,
            _addr(code),
            _addr(lic),
            log_level,
            log_size if log_level else 0,
            _addr(log) if log_level else 0,
            0,
            0,
            name.encode()[:15],
        )
        ret = _libc.syscall(_syscall_nr(), BPF_PROG_LOAD, attr, _ATTR_SIZE)
        if ret >= 0:
            return int(ret)
        err = ctypes.get_errno()
    raise BpfError(err, f"BPF_PROG_LOAD {name}", log.value.decode(errors="replace"))


@dataclass(frozen=True)
class TestRun:
    retval: int  # the program's r0 as the kernel returned it (u32)
    duration_ns: int  # average per repetition


def prog_test_run(fd: int, data: bytes, *, repeat: int = 1, ctx: bytes | None = None) -> TestRun:
    """BPF_PROG_TEST_RUN: run a program on one packet; the ground truth for one input."""
    data_in = ctypes.create_string_buffer(data, len(data))
    data_out = ctypes.create_string_buffer(len(data) + 256)
    ctx_in = ctypes.create_string_buffer(ctx, len(ctx)) if ctx else None
    attr = _attr()
    # prog_fd, retval, data_size_in, data_size_out, data_in, data_out, repeat, duration,
    # ctx_size_in, ctx_size_out, ctx_in, ctx_out
    struct.pack_into(
        "=IIIIQQIIIIQQ",
        attr,
        0,
        fd,
        0,
        len(data),
        len(data) + 256,
        _addr(data_in),
        _addr(data_out),
        repeat,
        0,
        len(ctx) if ctx else 0,
        0,
        _addr(ctx_in),
        0,
    )
    _bpf(BPF_PROG_TEST_RUN, attr, "BPF_PROG_TEST_RUN")
    (retval,) = struct.unpack_from("=I", attr, 4)
    (duration,) = struct.unpack_from("=I", attr, 36)
    return TestRun(retval=retval, duration_ns=duration)


# ---------------------------------------------------------------------------------------
# TCX (Linux >= 6.6)


@dataclass(frozen=True)
class TcxQuery:
    prog_ids: tuple[int, ...]  # in run order
    link_ids: tuple[int, ...]  # 0 where the program was attached without a link
    revision: int


class TcxUnsupported(Exception):
    """The kernel answers EINVAL to a TCX query: it has no TCX."""


def tcx_query(ifindex: int, attach_type: int) -> TcxQuery:
    """BPF_PROG_QUERY on a TCX hook of ``ifindex`` in the CALLER's namespace."""
    capacity = 64
    while True:
        progs = (ctypes.c_uint32 * capacity)()
        links = (ctypes.c_uint32 * capacity)()
        attr = _attr()
        # target_ifindex, attach_type, query_flags, attach_flags, prog_ids, prog_cnt, pad,
        # prog_attach_flags, link_ids, link_attach_flags, revision
        struct.pack_into(
            "=IIIIQIIQQQQ",
            attr,
            0,
            ifindex,
            attach_type,
            0,
            0,
            ctypes.addressof(progs),
            capacity,
            0,
            0,
            ctypes.addressof(links),
            0,
            0,
        )
        try:
            _bpf(BPF_PROG_QUERY, attr, f"BPF_PROG_QUERY ifindex {ifindex}")
        except BpfError as err:
            if err.errno == errno.EINVAL:
                raise TcxUnsupported(str(err)) from None
            if err.errno == errno.ENOSPC:
                capacity *= 4
                continue
            raise
        (count,) = struct.unpack_from("=I", attr, 24)
        (revision,) = struct.unpack_from("=Q", attr, 56)
        return TcxQuery(
            prog_ids=tuple(progs[i] for i in range(count)),
            link_ids=tuple(links[i] for i in range(count)),
            revision=revision,
        )


def tcx_link_create(prog_fd: int, ifindex: int, attach_type: int, flags: int = 0) -> int:
    """Attach through a bpf_link; the attachment lives as long as the returned fd."""
    attr = _attr()
    struct.pack_into("=IIII", attr, 0, prog_fd, ifindex, attach_type, flags)
    return _bpf(BPF_LINK_CREATE, attr, f"BPF_LINK_CREATE ifindex {ifindex}")


def tcx_prog_attach(prog_fd: int, ifindex: int, attach_type: int, flags: int = 0) -> None:
    """Attach without a link: it OUTLIVES the process; undo with tcx_prog_detach."""
    attr = _attr()
    struct.pack_into("=IIII", attr, 0, ifindex, prog_fd, attach_type, flags)
    _bpf(BPF_PROG_ATTACH, attr, f"BPF_PROG_ATTACH ifindex {ifindex}")


def tcx_prog_detach(prog_fd: int, ifindex: int, attach_type: int) -> None:
    attr = _attr()
    struct.pack_into("=IIII", attr, 0, ifindex, prog_fd, attach_type, 0)
    _bpf(BPF_PROG_DETACH, attr, f"BPF_PROG_DETACH ifindex {ifindex}")
