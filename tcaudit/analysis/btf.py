"""A minimal, lazy reader of the kernel's BTF: struct member offsets, nothing else.

The format is the one described in the kernel's Documentation/bpf/btf.rst ("BPF Type
Format"): a ``struct btf_header`` (magic 0xeB9F, version, flags, hdr_len, then type_off,
type_len, str_off and str_len, both offsets relative to the end of the header), a type
section of variable-length records (``struct btf_type``: name_off, info, size/type,
followed by kind-specific data; type ids count from 1 in record order) and a string
section of NUL-terminated names.

Only what a member lookup needs is parsed. The wanted names are first located in the
string section (so a name is a set of integer offsets), then one pass over the type
records finds their positions by comparing ``name_off`` integers; no per-type objects
are built. The record positions are kept (an ``array('I')``) so anonymous struct/union
members can be followed by type id. A parsed blob is cached per (path, size, mtime).

Every public function answers ``None`` rather than raising: a missing, unreadable,
truncated or corrupt file, or an absent struct or member, are all "unknown".
"""

from __future__ import annotations

import os
import struct
from array import array
from collections.abc import Iterable
from dataclasses import dataclass

VMLINUX = "/sys/kernel/btf/vmlinux"

BTF_MAGIC = 0xEB9F
_HEADER_MIN = 24  # magic(2) version(1) flags(1) hdr_len type_off type_len str_off str_len

# enum of BTF_KIND_* (include/uapi/linux/btf.h)
KIND_INT = 1
KIND_PTR = 2
KIND_ARRAY = 3
KIND_STRUCT = 4
KIND_UNION = 5
KIND_ENUM = 6
KIND_FWD = 7
KIND_TYPEDEF = 8
KIND_VOLATILE = 9
KIND_CONST = 10
KIND_RESTRICT = 11
KIND_FUNC = 12
KIND_FUNC_PROTO = 13
KIND_VAR = 14
KIND_DATASEC = 15
KIND_FLOAT = 16
KIND_DECL_TAG = 17
KIND_TYPE_TAG = 18
KIND_ENUM64 = 19

# Bytes after the 12-byte struct btf_type: fixed part and per-vlen part, by kind.
_FIXED = (-1, 4, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 4, 0, 0)
_PER_VLEN = (-1, 0, 0, 0, 12, 12, 8, 0, 0, 0, 0, 0, 0, 8, 0, 12, 0, 0, 0, 12)
_MODIFIERS = frozenset({KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_TYPE_TAG})
_MAX_DEPTH = 32  # anonymous nesting / modifier chains deeper than this mean corrupt input

# struct __sk_buff.cb[0..4] is 5 x u32 (include/uapi/linux/bpf.h)
SKB_CB_DATA_LEN = 20


@dataclass(frozen=True)
class MemberLocation:
    """Where a member lives: bit offset from the start of the struct, and its bit width.

    ``bit_size`` is 0 for an ordinary (non-bitfield) member.
    """

    bit_offset: int
    bit_size: int

    @property
    def byte_offset(self) -> int:
        """The byte holding the member's first bit (its offset, for non-bitfields)."""
        return self.bit_offset // 8


class Btf:
    """One parsed BTF blob: the raw bytes plus the position of every type record."""

    __slots__ = ("_fmt", "_mem", "_memo", "_pos", "_strings", "_structs")

    def __init__(self, mem: memoryview, fmt: str, pos: array[int], strings: bytes) -> None:
        self._mem = mem
        self._fmt = fmt  # "<" or ">": the blob's byte order (from the magic)
        self._pos = pos  # _pos[type_id] = byte position of its struct btf_type; _pos[0] unused
        self._strings = strings
        self._memo: dict[tuple[str, str], MemberLocation | None] = {}
        self._structs: dict[str, int | None] = {}

    @classmethod
    def from_bytes(cls, data: bytes) -> Btf | None:
        """Validate the header and index the type records; None when corrupt."""
        try:
            return cls._parse(memoryview(data))
        except (struct.error, IndexError, ValueError, OverflowError):
            return None

    @classmethod
    def _parse(cls, mem: memoryview) -> Btf | None:
        if len(mem) < _HEADER_MIN:
            return None
        if struct.unpack_from("<H", mem, 0)[0] == BTF_MAGIC:
            fmt = "<"
        elif struct.unpack_from(">H", mem, 0)[0] == BTF_MAGIC:
            fmt = ">"
        else:
            return None
        hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from(fmt + "5I", mem, 4)
        if hdr_len < _HEADER_MIN or hdr_len > len(mem):
            return None
        t_start = hdr_len + type_off
        t_end = t_start + type_len
        s_start = hdr_len + str_off
        s_end = s_start + str_len
        if t_end > len(mem) or s_end > len(mem) or t_start % 4:
            return None
        pos = array("I", [0])
        append = pos.append
        unpack = struct.Struct(fmt + "I").unpack_from
        fixed = _FIXED
        per_vlen = _PER_VLEN
        p = t_start
        limit = t_end - 12
        while p <= limit:
            append(p)
            info = unpack(mem, p + 4)[0]
            kind = (info >> 24) & 0x1F
            if kind == 0 or kind >= len(fixed):
                return None
            p += 12 + fixed[kind] + (info & 0xFFFF) * per_vlen[kind]
        if p != t_end:
            return None
        return cls(mem, fmt, pos, bytes(mem[s_start:s_end]))

    # -- strings -----------------------------------------------------------------------

    def name_offsets(self, name: str) -> frozenset[int]:
        """Every string-section offset holding exactly ``name`` (empty when absent)."""
        if not name:
            return frozenset()
        strings = self._strings
        needle = name.encode() + b"\0"
        found: set[int] = set()
        if strings.startswith(needle):
            found.add(0)
        needle = b"\0" + needle
        i = strings.find(needle)
        while i >= 0:
            found.add(i + 1)
            i = strings.find(needle, i + 1)
        return frozenset(found)

    # -- types -------------------------------------------------------------------------

    def _header(self, type_id: int) -> tuple[int, int, int, int]:
        """(position, name_off, info, size_or_type) of a type id; IndexError if absent."""
        if type_id <= 0:
            raise IndexError(type_id)
        p = self._pos[type_id]
        name_off, info, size = struct.unpack_from(self._fmt + "3I", self._mem, p)
        return p, name_off, info, size

    def find_struct(self, name: str) -> int | None:
        """The type id of the first STRUCT or UNION called ``name`` with members."""
        if name not in self._structs:
            self._structs[name] = self._find_struct(name)
        return self._structs[name]

    def _find_struct(self, name: str) -> int | None:
        wanted = self.name_offsets(name)
        if not wanted:
            return None
        unpack = struct.Struct(self._fmt + "II").unpack_from
        mem = self._mem
        pos = self._pos
        for type_id in range(1, len(pos)):
            name_off, info = unpack(mem, pos[type_id])
            kind = (info >> 24) & 0x1F
            if name_off in wanted and kind in (KIND_STRUCT, KIND_UNION) and info & 0xFFFF:
                return type_id
        return None

    def _resolve(self, type_id: int) -> tuple[int, int, int]:
        """Skip typedef/const/volatile/restrict/type_tag: (type id, kind, info)."""
        for _ in range(_MAX_DEPTH):
            _, _, info, size = self._header(type_id)
            kind = (info >> 24) & 0x1F
            if kind not in _MODIFIERS:
                return type_id, kind, info
            type_id = size
        raise ValueError("modifier chain too long")

    def locate(self, struct_id: int, member: str) -> MemberLocation | None:
        """Find ``member`` of the struct/union ``struct_id``, through anonymous members."""
        wanted = self.name_offsets(member)
        if not wanted:
            return None
        try:
            return self._locate(struct_id, wanted, 0, 0)
        except (struct.error, IndexError, ValueError, OverflowError):
            return None

    def _locate(
        self, type_id: int, wanted: frozenset[int], base: int, depth: int
    ) -> MemberLocation | None:
        if depth > _MAX_DEPTH:
            raise ValueError("anonymous members nested too deeply")
        p, _, info, _ = self._header(type_id)
        kind = (info >> 24) & 0x1F
        if kind not in (KIND_STRUCT, KIND_UNION):
            return None
        kind_flag = info >> 31
        unpack = struct.Struct(self._fmt + "3I").unpack_from
        mem = self._mem
        anonymous: list[tuple[int, int]] = []
        for i in range(info & 0xFFFF):
            name_off, mtype, offset = unpack(mem, p + 12 + 12 * i)
            if kind_flag:
                bit_offset, bit_size = offset & 0xFFFFFF, offset >> 24
            else:
                bit_offset, bit_size = offset, 0
            if name_off in wanted:
                if not kind_flag:
                    bit_offset, bit_size = self._int_bitfield(mtype, bit_offset)
                return MemberLocation(base + bit_offset, bit_size)
            if name_off == 0:
                anonymous.append((mtype, base + bit_offset))
        # C looks names up in anonymous members too; names are unique, so order is moot.
        for mtype, member_base in anonymous:
            inner, inner_kind, _ = self._resolve(mtype)
            if inner_kind in (KIND_STRUCT, KIND_UNION):
                found = self._locate(inner, wanted, member_base, depth + 1)
                if found is not None:
                    return found
        return None

    def _int_bitfield(self, type_id: int, bit_offset: int) -> tuple[int, int]:
        """Without kind_flag a bitfield is an INT whose encoding has offset/bits."""
        resolved, kind, _ = self._resolve(type_id)
        if kind != KIND_INT:
            return bit_offset, 0
        p, _, _, size = self._header(resolved)
        encoding = struct.unpack_from(self._fmt + "I", self._mem, p + 12)[0]
        int_offset = (encoding >> 16) & 0xFF
        nr_bits = encoding & 0xFF
        if int_offset == 0 and nr_bits == size * 8:
            return bit_offset, 0
        return bit_offset + int_offset, nr_bits

    def member_location(self, struct_name: str, member: str) -> MemberLocation | None:
        """Where ``struct_name.member`` lives, or None (memoized)."""
        key = (struct_name, member)
        if key in self._memo:
            return self._memo[key]
        try:
            struct_id = self.find_struct(struct_name)
        except (struct.error, IndexError, ValueError, OverflowError):
            struct_id = None
        found = None if struct_id is None else self.locate(struct_id, member)
        self._memo[key] = found
        return found


_CACHE: dict[tuple[str, int, int, int], Btf | None] = {}


def load(path: str = VMLINUX) -> Btf | None:
    """The parsed BTF at ``path`` (cached while its size and mtime stay the same)."""
    try:
        st = os.stat(path)
        key = (path, st.st_ino, st.st_size, st.st_mtime_ns)
        if key in _CACHE:
            return _CACHE[key]
        with open(path, "rb") as f:
            data = f.read()
    except (OSError, ValueError):
        return None
    btf = Btf.from_bytes(data)
    _CACHE[key] = btf
    return btf


def member_location(struct_name: str, member: str, path: str = VMLINUX) -> MemberLocation | None:
    """Bit offset and bitfield width of ``struct_name.member`` in the BTF at ``path``."""
    btf = load(path)
    return None if btf is None else btf.member_location(struct_name, member)


def member_offset(struct_name: str, member: str, path: str = VMLINUX) -> int | None:
    """offsetof(struct struct_name, member) in bytes, as the C compiler lays it out.

    The member may sit inside anonymous struct/union members (as sk_buff's do). For a
    bitfield the answer is the byte holding its first bit.
    """
    loc = member_location(struct_name, member, path)
    return None if loc is None else loc.byte_offset


def _offset_chain(steps: Iterable[tuple[str, str]], path: str) -> int | None:
    total = 0
    for struct_name, member in steps:
        off = member_offset(struct_name, member, path)
        if off is None:
            return None
        total += off
    return total


def skb_cb_data_range(path: str = VMLINUX) -> tuple[int, int] | None:
    """[start, end) in struct sk_buff where __sk_buff.cb[0..4] land after ctx rewriting.

    net/core/filter.c bpf_convert_ctx_access(), case offsetof(struct __sk_buff, cb[0])
    ... offsetofend(struct __sk_buff, cb[4]) - 1: off - offsetof(__sk_buff, cb[0]) +
    offsetof(struct sk_buff, cb) + offsetof(struct qdisc_skb_cb, data).
    """
    start = _offset_chain((("sk_buff", "cb"), ("qdisc_skb_cb", "data")), path)
    return None if start is None else (start, start + SKB_CB_DATA_LEN)


_SKB_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "mark": (("sk_buff", "mark"),),
    "priority": (("sk_buff", "priority"),),
    "tc_index": (("sk_buff", "tc_index"),),
    "queue_mapping": (("sk_buff", "queue_mapping"),),
    # bpf_convert_ctx_access(), case offsetof(struct __sk_buff, tc_classid)
    "tc_classid": (("sk_buff", "cb"), ("qdisc_skb_cb", "tc_classid")),
}


def skb_field_offset(name: str, path: str = VMLINUX) -> int | None:
    """Byte offset in struct sk_buff that the verifier uses for ``__sk_buff.<name>``.

    Known names: mark, priority, tc_index, queue_mapping (sk_buff members) and
    tc_classid (qdisc_skb_cb.tc_classid inside sk_buff.cb). Others answer None.
    """
    steps = _SKB_FIELDS.get(name)
    return None if steps is None else _offset_chain(steps, path)
