"""tcaudit.analysis.btf: member offsets from BTF, on synthetic blobs and the real kernel.

The synthetic blobs follow Documentation/bpf/btf.rst (struct btf_header, struct
btf_type records, string section). The kernel test checks the offsets against the
verifier itself: a sched_cls program loading __sk_buff.cb[0] / cb[4] / mark is loaded and
its xlated (context-rewritten) load offsets are compared with what btf.py computes.
"""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tcaudit.analysis import btf
from tcaudit.analysis import insns as I
from tcaudit.kernel import bpf
from tests.conftest import require_privileged


class BlobBuilder:
    """Builds a little-endian BTF blob: types are added in id order from 1."""

    def __init__(self) -> None:
        self.strings = bytearray(b"\0")
        self.types: list[bytes] = []

    def name(self, text: str) -> int:
        if not text:
            return 0
        off = len(self.strings)
        self.strings += text.encode() + b"\0"
        return off

    def add(self, record: bytes) -> int:
        self.types.append(record)
        return len(self.types)

    @staticmethod
    def info(kind: int, vlen: int = 0, kind_flag: bool = False) -> int:
        return (int(kind_flag) << 31) | (kind << 24) | vlen

    def int_(self, name: str, size: int, bits: int | None = None, offset: int = 0) -> int:
        encoding = (offset << 16) | (size * 8 if bits is None else bits)
        return self.add(
            struct.pack("<III", self.name(name), self.info(btf.KIND_INT), size)
            + struct.pack("<I", encoding)
        )

    def typedef(self, name: str, target: int) -> int:
        return self.add(struct.pack("<III", self.name(name), self.info(btf.KIND_TYPEDEF), target))

    def array(self, elem: int, index: int, n: int) -> int:
        return self.add(
            struct.pack("<III", 0, self.info(btf.KIND_ARRAY), 0)
            + struct.pack("<III", elem, index, n)
        )

    def compound(
        self,
        name: str,
        size: int,
        members: list[tuple[str, int, int]],
        *,
        union: bool = False,
        kind_flag: bool = False,
    ) -> int:
        """members: (name, type id, offset word) — the offset word as stored in BTF."""
        kind = btf.KIND_UNION if union else btf.KIND_STRUCT
        head = struct.pack("<III", self.name(name), self.info(kind, len(members), kind_flag), size)
        body = b"".join(struct.pack("<III", self.name(m), t, off) for m, t, off in members)
        return self.add(head + body)

    def build(self, *, big_endian: bool = False) -> bytes:
        types = b"".join(self.types)
        header = struct.pack(
            "<HBBIIIII", btf.BTF_MAGIC, 1, 0, 24, 0, len(types), len(types), len(self.strings)
        )
        blob = header + types + bytes(self.strings)
        if big_endian:
            return _swap(blob)
        return blob


def _swap(blob: bytes) -> bytes:
    """Byte-swap a little-endian blob whose type section is all u32 words."""
    hdr = struct.unpack_from("<HBBIIIII", blob, 0)
    out = bytearray(struct.pack(">HBBIIIII", *hdr))
    t_end = 24 + hdr[5]
    out += b"".join(struct.pack(">I", w) for (w,) in struct.iter_unpack("<I", blob[24:t_end]))
    out += blob[t_end:]
    return bytes(out)


def sample_blob() -> bytes:
    """struct outer {
        int a;                                      // 0
        union { int b; struct { short c; short d; }; };  // 4 (c 4, d 6)
        struct inner named;                         // 8
        unsigned char data[20];                     // 16
        unsigned int f1:3, f2:5;                    // kind_flag bitfields at bit 288, 291
    };
    struct inner { int x; int y; };
    struct old { int pad; int bf; }  // bf: no kind_flag, INT with BTF_INT_OFFSET 2, 4 bits
    """
    b = BlobBuilder()
    i32 = b.int_("int", 4)  # 1
    i16 = b.int_("short", 2)  # 2
    u8 = b.int_("unsigned char", 1)  # 3
    alias = b.typedef("s16", i16)  # 4
    cd = b.compound("", 4, [("c", alias, 0), ("d", i16, 16)])  # 5: anonymous struct
    un = b.compound("", 4, [("b", i32, 0), ("", cd, 0)], union=True)  # 6: anonymous union
    inner = b.compound("inner", 8, [("x", i32, 0), ("y", i32, 32)])  # 7
    arr = b.array(u8, i32, 20)  # 8
    u32 = b.int_("unsigned int", 4)  # 9
    b.compound(  # 10
        "outer",
        40,
        [
            ("a", i32, 0),
            ("", un, 32),
            ("named", inner, 64),
            ("data", arr, 128),
            ("f1", u32, (3 << 24) | 288),
            ("f2", u32, (5 << 24) | 291),
        ],
        kind_flag=True,
    )
    bits = b.int_("int", 4, bits=4, offset=2)  # 11
    b.compound("old", 8, [("pad", i32, 0), ("bf", bits, 32)])  # 12
    b.compound("fwd_only", 0, [])  # 13: a declaration without members is skipped
    b.compound("skb", 16, [("cb", arr, 0), ("mark", i32, 96)])  # 14
    b.compound("qcb", 12, [("", inner, 0), ("data", arr, 32)])  # 15
    return b.build()


@pytest.fixture
def sample(tmp_path: Path) -> str:
    path = tmp_path / "btf"
    path.write_bytes(sample_blob())
    return str(path)


def test_direct_members(sample: str) -> None:
    assert btf.member_offset("outer", "a", sample) == 0
    assert btf.member_offset("outer", "named", sample) == 8
    assert btf.member_offset("outer", "data", sample) == 16
    assert btf.member_offset("inner", "y", sample) == 4


def test_anonymous_union_and_struct_nesting(sample: str) -> None:
    assert btf.member_offset("outer", "b", sample) == 4
    assert btf.member_offset("outer", "c", sample) == 4
    assert btf.member_offset("outer", "d", sample) == 6


def test_named_members_are_not_searched(sample: str) -> None:
    # "x" lives in the *named* member "named", which C does not flatten.
    assert btf.member_offset("outer", "x", sample) is None


def test_bitfields(sample: str) -> None:
    assert btf.member_location("outer", "f1", sample) == btf.MemberLocation(288, 3)
    assert btf.member_location("outer", "f2", sample) == btf.MemberLocation(291, 5)
    assert btf.member_offset("outer", "f2", sample) == 36
    # Without kind_flag the INT encoding carries the bitfield's extra offset and width.
    assert btf.member_location("old", "bf", sample) == btf.MemberLocation(34, 4)
    assert btf.member_location("old", "pad", sample) == btf.MemberLocation(0, 0)


def test_absent_names(sample: str) -> None:
    assert btf.member_offset("outer", "nope", sample) is None
    assert btf.member_offset("nope", "a", sample) is None
    assert btf.member_offset("fwd_only", "a", sample) is None
    assert btf.member_offset("int", "a", sample) is None  # not a struct
    assert btf.member_offset("outer", "", sample) is None


def test_skb_helpers_on_synthetic_layout(tmp_path: Path) -> None:
    b = BlobBuilder()
    i32 = b.int_("int", 4)
    i16 = b.int_("u16", 2)
    arr = b.array(i32, i32, 12)
    b.compound(
        "sk_buff",
        256,
        [
            ("", b.compound("", 8, [("mark", i32, 0), ("x", i32, 32)], union=True), 1024),
            ("cb", arr, 320),
            ("priority", i32, 1120),
            ("tc_index", i16, 1088),
            ("queue_mapping", i16, 992),
        ],
    )
    inner = b.compound("", 8, [("pkt_len", i32, 0), ("q", i16, 32), ("tc_classid", i16, 48)])
    b.compound("qdisc_skb_cb", 28, [("", inner, 0), ("data", arr, 64)])
    path = tmp_path / "skb"
    path.write_bytes(b.build())
    p = str(path)
    assert btf.skb_cb_data_range(p) == (48, 68)
    assert btf.skb_field_offset("mark", p) == 128
    assert btf.skb_field_offset("priority", p) == 140
    assert btf.skb_field_offset("tc_index", p) == 136
    assert btf.skb_field_offset("queue_mapping", p) == 124
    assert btf.skb_field_offset("tc_classid", p) == 46
    assert btf.skb_field_offset("hash", p) is None


def test_big_endian_blob(tmp_path: Path) -> None:
    path = tmp_path / "be"
    path.write_bytes(_swap(sample_blob()))
    assert btf.member_offset("outer", "d", str(path)) == 6
    assert btf.member_location("outer", "f2", str(path)) == btf.MemberLocation(291, 5)


def test_missing_and_garbage_files(tmp_path: Path) -> None:
    assert btf.member_offset("outer", "a", str(tmp_path / "absent")) is None
    assert btf.skb_cb_data_range(str(tmp_path / "absent")) is None
    assert btf.member_offset("outer", "a", str(tmp_path)) is None  # a directory
    junk = tmp_path / "junk"
    junk.write_bytes(b"not btf at all, not at all")
    assert btf.member_offset("outer", "a", str(junk)) is None
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert btf.skb_field_offset("mark", str(empty)) is None


def test_cache_follows_rewrites(tmp_path: Path) -> None:
    path = tmp_path / "btf"
    path.write_bytes(sample_blob())
    assert btf.member_offset("outer", "d", str(path)) == 6
    path.write_bytes(b"garbage")
    os.utime(path, ns=(1, 1))
    assert btf.member_offset("outer", "d", str(path)) is None


def test_self_referencing_anonymous_member_is_not_a_hang() -> None:
    b = BlobBuilder()
    i32 = b.int_("int", 4)
    # id 2 is an anonymous struct containing itself as an anonymous member.
    b.compound("", 4, [("", 2, 0)])
    b.compound("loop", 4, [("", 2, 0), ("z", i32, 0)])
    parsed = btf.Btf.from_bytes(b.build())
    assert parsed is not None
    assert parsed.member_location("loop", "q") is None
    assert parsed.member_location("loop", "z") == btf.MemberLocation(0, 0)


def _real_blob() -> bytes | None:
    try:
        return Path(btf.VMLINUX).read_bytes()
    except OSError:
        return None


REAL = _real_blob()
BASE = REAL if REAL is not None else sample_blob()
QUERIES = (("sk_buff", "cb"), ("qdisc_skb_cb", "data"), ("sk_buff", "mark"), ("outer", "d"))


def _ask(blob: bytes) -> None:
    parsed = btf.Btf.from_bytes(blob)
    if parsed is None:
        return
    for struct_name, member in QUERIES:
        loc = parsed.member_location(struct_name, member)
        assert loc is None or loc.bit_offset >= 0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(min_value=0, max_value=len(BASE)))
def test_fuzz_truncated(cut: int) -> None:
    _ask(BASE[:cut])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    edits=st.lists(
        st.tuples(st.integers(min_value=0, max_value=len(BASE) - 1), st.integers(0, 255)),
        min_size=1,
        max_size=8,
    ),
    header_word=st.one_of(st.none(), st.tuples(st.integers(1, 6), st.integers(0, 2**32 - 1))),
)
def test_fuzz_mutated(edits: list[tuple[int, int]], header_word: tuple[int, int] | None) -> None:
    blob = bytearray(BASE)
    for pos, value in edits:
        blob[pos] = value
    if header_word is not None:
        index, value = header_word
        struct.pack_into("<I", blob, 4 * index, value)
    _ask(bytes(blob))


def _hot_region(blob: bytes) -> tuple[int, int]:
    """The span of struct sk_buff's type record (and the records after it) in the blob."""
    parsed = btf.Btf.from_bytes(blob)
    type_id = parsed.find_struct("sk_buff") if parsed is not None else None
    if parsed is None or type_id is None:
        return 24, len(blob)
    start = parsed._pos[type_id]
    return start, min(len(blob), start + 4096)


HOT = _hot_region(BASE)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    edits=st.lists(
        st.tuples(st.integers(min_value=HOT[0], max_value=HOT[1] - 1), st.integers(0, 255)),
        min_size=1,
        max_size=4,
    )
)
def test_fuzz_mutated_sk_buff_record(edits: list[tuple[int, int]]) -> None:
    """Mutations where the lookups actually walk: sk_buff's members and nearby records."""
    blob = bytearray(BASE)
    for pos, value in edits:
        blob[pos] = value
    _ask(bytes(blob))


@settings(max_examples=150, deadline=None)
@given(edits=st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 255)), max_size=12))
def test_fuzz_mutated_small_blob(edits: list[tuple[int, int]]) -> None:
    """The small blob reaches the member walk often, so its corrupt paths get exercised."""
    blob = bytearray(sample_blob())
    for pos, value in edits:
        blob[pos % len(blob)] = value
    _ask(bytes(blob))


# -- the real kernel ----------------------------------------------------------------------


def _ldx_w(dst: int, src: int, off: int) -> I.Insn:
    return I.Insn(I.BPF_LDX | I.BPF_MEM | I.BPF_W, dst, src, off, 0)


EXIT = I.Insn(I.BPF_JMP | I.BPF_EXIT, 0, 0, 0, 0)


def _rewritten_offset(ctx_off: int) -> int:
    """Load `r0 = *(u32 *)(r1 + ctx_off); exit` as sched_cls; the xlated load's offset."""
    fd = bpf.prog_load(I.encode([_ldx_w(0, 1, ctx_off), EXIT]), name="tcabtf")
    try:
        info = bpf.prog_info(fd, with_code=True)
    finally:
        os.close(fd)
    assert info.xlated is not None
    code = I.decode(info.xlated)
    loads = [i for i in code if i.code == I.BPF_LDX | I.BPF_MEM | I.BPF_W]
    assert len(loads) == 1 and loads[0].src == 1 and loads[0].dst == 0, code
    return loads[0].off


def test_real_vmlinux_is_fast_and_complete() -> None:
    if REAL is None:
        pytest.skip("no readable /sys/kernel/btf/vmlinux")
    btf._CACHE.clear()
    start = time.perf_counter()
    rng = btf.skb_cb_data_range()
    elapsed = time.perf_counter() - start
    assert rng is not None and rng[1] - rng[0] == 20
    assert elapsed < 0.5  # ~30 ms on a 2024 laptop; generous for CI
    for name in ("mark", "priority", "tc_index", "queue_mapping", "tc_classid"):
        off = btf.skb_field_offset(name)
        assert off is not None and 0 <= off < 512, name


@pytest.mark.privileged
def test_real_vmlinux_matches_the_verifier() -> None:
    require_privileged()
    if not os.path.exists(btf.VMLINUX):
        pytest.skip("no /sys/kernel/btf/vmlinux")
    rng = btf.skb_cb_data_range()
    assert rng is not None
    start, end = rng
    assert _rewritten_offset(48) == start  # offsetof(struct __sk_buff, cb[0])
    assert _rewritten_offset(64) == start + 16  # cb[4]
    assert end == start + 20
    assert _rewritten_offset(8) == btf.skb_field_offset("mark")  # __sk_buff.mark
    assert _rewritten_offset(32) == btf.skb_field_offset("priority")  # __sk_buff.priority
